"""Every tunebench hook, in one place.

A plugin is a module (or object) with functions marked `@tunebench.hookimpl` whose names match the
specs below. It is registered through an entry point in the `tunebench` group::

    [project.entry-points.tunebench]
    my_models = "my_package.tunebench_plugin"

The built-in plugins in `plugins/` are registered the same way, by tunebench's own pyproject.toml.
A hook implementation may accept fewer arguments than its spec names; an implementation of a hook
that is not specified here is refused when the plugin is loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from tunebench.datasets import Dataset
    from tunebench.models import ModelFamily
    from tunebench.registry import Registry
    from tunebench.strategies import SearchStrategy
    from tunebench.tables import Table

hookspec = pluggy.HookspecMarker("tunebench")


# ---------------------------------------------------------------------------------------------
# Registration: called once when the plugin manager is built, in every process that needs plugins
# (the CLI and each search's child process). Implementations add classes and must be cheap: no
# TensorFlow/Keras import, no data loading, no I/O.
# ---------------------------------------------------------------------------------------------


@hookspec
def tunebench_register_datasets(registry: Registry[Dataset]) -> None:
    """Add dataset classes.

    Args:
        registry: call `registry.add(MyDataset)` for each subclass of `tunebench.Dataset`. The class's
            `name` is what suites refer to; registering a name another plugin already registered
            is an error naming both plugins.
    """


@hookspec
def tunebench_register_model_families(registry: Registry[ModelFamily]) -> None:
    """Add model-family classes.

    Args:
        registry: call `registry.add(MyFamily)` for each subclass of `tunebench.ModelFamily`.
    """


@hookspec
def tunebench_register_search_strategies(registry: Registry[SearchStrategy]) -> None:
    """Add search-strategy classes.

    Args:
        registry: call `registry.add(MyStrategy)` for each subclass of `tunebench.SearchStrategy`.
    """


@hookspec
def tunebench_register_tables(registry: Registry[Table]) -> None:
    """Add table classes: benchmark tables and surrogates that answer a configuration with its
    learning curve, so that searches run on the simulated clock (a suite's `tables:`).

    Args:
        registry: call `registry.add(MyTable)` for each subclass of `tunebench.Table`.
    """
