"""tunebench's core: what plugin authors import.

A plugin needs one import and one entry point::

    from tunebench import ModelFamily, hookimpl

    class TinyDense(ModelFamily):
        name = "tiny_dense"
        def build(self, hp, spec): ...

    @hookimpl
    def tunebench_register_model_families(registry):
        registry.add(TinyDense)

Everything not listed in `__all__` is internal and may change.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tunebench")  # the one place it is written: pyproject.toml
except PackageNotFoundError:  # pragma: no cover - running from a source tree that was never installed
    __version__ = "0+unknown"

from tunebench.budget import Budget, allowed_overshoot, parse_duration
from tunebench.databases import database_url
from tunebench.datasets import ArrayData, Dataset, DataSpec, SizedDataset, Splits, split_arrays
from tunebench.errors import (
    BudgetExhausted,
    DataError,
    MissingDependencyError,
    OptionsError,
    TrialPruned,
    TunebenchError,
    require,
)
from tunebench.images import (
    cache_dir,
    data_dir,
    image_size,
    is_image,
    load_images,
    read_idx,
    readable,
    unset_variable_hint,
)
from tunebench.models import (
    ModelFamily,
    TrainingSettings,
    TrialSettings,
    augmentation,
    class_weight_for,
    default_augmentation,
    loss_for,
    make_optimizer,
    metrics_for,
    output_layer,
    scaled_inputs,
    stopped,
)
from tunebench.options import Option
from tunebench.registry import Registry, hookimpl
from tunebench.space import (
    DefaultHyperParameters,
    FixedHyperParameters,
    HyperParameters,
    KerasTunerHyperParameters,
    OptunaHyperParameters,
    Param,
    RandomHyperParameters,
    as_keras_tuner,
    optuna_distribution,
)
from tunebench.strategies import SearchContext, SearchStrategy, SelectionRule, TrialRecord
from tunebench.tables import Curve, Table, budget_rule
from tunebench.vocabulary import TrialStatus

__all__ = [
    # registering plugins
    "Registry", "hookimpl",
    # datasets
    "ArrayData", "DataSpec", "Dataset", "SizedDataset", "Splits", "cache_dir", "data_dir", "image_size", "is_image",
    "load_images", "read_idx", "readable", "split_arrays", "unset_variable_hint",
    # model families
    "ModelFamily", "TrainingSettings", "TrialSettings", "augmentation", "class_weight_for", "default_augmentation",
    "loss_for", "make_optimizer", "metrics_for", "output_layer", "scaled_inputs", "stopped",
    # search strategies and the search-space language
    "DefaultHyperParameters", "FixedHyperParameters", "HyperParameters", "KerasTunerHyperParameters",
    "OptunaHyperParameters", "Param", "RandomHyperParameters", "SearchContext", "SearchStrategy", "SelectionRule",
    "TrialRecord", "TrialStatus",
    "as_keras_tuner", "optuna_distribution",
    # tables: the simulated clock's sources
    "Curve", "Table", "budget_rule",
    # options, budgets and errors
    "Budget", "BudgetExhausted", "DataError", "MissingDependencyError", "Option", "OptionsError", "TrialPruned",
    "TunebenchError", "allowed_overshoot", "database_url", "parse_duration", "require",
]
