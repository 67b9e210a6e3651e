"""tunebench's core: what plugin authors import.

A plugin needs one import and one entry point::

    from harness import ModelFamily, hookimpl

    class TinyDense(ModelFamily):
        name = "tiny_dense"
        def build(self, hp, spec): ...

    @hookimpl
    def tunebench_register_model_families(registry):
        registry.add(TinyDense)

Everything not listed in `__all__` is internal and may change.
"""

from __future__ import annotations

__version__ = "0.1.0"

from harness.budget import Budget, allowed_overshoot, parse_duration
from harness.datasets import ArrayData, Dataset, DataSpec, Splits, split_arrays
from harness.images import cache_dir, data_dir, is_image, load_images, read_idx
from harness.errors import (BudgetExhausted, DataError, MissingDependencyError, OptionsError, TrialPruned,
                            TunebenchError, require)
from harness.models import (DEFAULT_AUGMENTATION, ModelFamily, TrainingSettings, augmentation, class_weight_for, loss_for,
                            make_optimizer, metrics_for, output_layer, scaled_inputs, stopped)
from harness.options import Option
from harness.plugins import Registry, hookimpl
from harness.space import (DefaultHyperParameters, FixedHyperParameters, HyperParameters,
                           KerasTunerHyperParameters, OptunaHyperParameters, Param,
                           RandomHyperParameters, as_keras_tuner)
from harness.strategies import SearchContext, SearchStrategy, TrialRecord

__all__ = [
    "OptionsError", "cache_dir", "class_weight_for", "is_image", "DEFAULT_AUGMENTATION", "augmentation", "loss_for", "metrics_for", "stopped",
    "ArrayData", "Budget", "BudgetExhausted", "DataError", "DataSpec", "Dataset",
    "DefaultHyperParameters", "FixedHyperParameters", "HyperParameters", "KerasTunerHyperParameters",
    "MissingDependencyError", "ModelFamily", "Option", "OptunaHyperParameters", "Param",
    "RandomHyperParameters", "Registry", "SearchContext", "SearchStrategy", "Splits", "TrainingSettings",
    "TrialPruned", "TrialRecord", "TunebenchError", "allowed_overshoot", "as_keras_tuner", "hookimpl", "make_optimizer",
    "data_dir", "load_images", "output_layer", "parse_duration", "read_idx", "require", "scaled_inputs",
    "split_arrays",
]
