"""Exceptions of tunebench.

`TunebenchError` and its subclasses are problems a user can fix (a bad suite, an unknown plugin,
missing data): the CLI prints their message without a traceback and exits non-zero. Anything else
is a bug and is allowed to raise.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class TunebenchError(Exception):
    """A problem the user can fix; the message says what is wrong and how to fix it."""

    exit_code = 1


class UsageError(TunebenchError):
    """A command given arguments that cannot work (a file where a folder belongs)."""

    exit_code = 2


class ProblemsError(TunebenchError):
    """Several problems found at once, reported together."""

    def __init__(self, title: str, problems: Iterable[str]) -> None:
        self.title = title
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{title}\n{lines}")


class SuiteError(ProblemsError):
    """A suite file that cannot be run as written."""

    exit_code = 2


class OptionsError(ProblemsError):
    """Options given to a plugin that do not match its declared schema."""

    exit_code = 2


class PluginError(TunebenchError):
    """A plugin that cannot be loaded, or two plugins that clash."""

    exit_code = 2


class DuplicateNameError(PluginError):
    """Two plugins register the same name: which one a suite means cannot be known."""


class UnknownPluginError(PluginError):
    """A dataset, model family or strategy name that no plugin registered."""


class StoreError(TunebenchError):
    """A results store that cannot be used as it is: missing, corrupt, unwritable."""


class StoreURLError(StoreError):
    """A `--store` that is not a database URL."""

    exit_code = 2


class DataError(TunebenchError):
    """Data that is missing or unreadable."""


class MissingDependencyError(TunebenchError):
    """An optional dependency is not installed."""


class SpaceError(TunebenchError):
    """A hyperparameter declared inconsistently, or pinned to a value it cannot take."""


class BudgetExhausted(Exception):
    """Raised when a strategy asks for a trial after the search's budget is spent.

    Not an error: the harness catches it and ends the search normally.
    """


class TrialPruned(Exception):
    """Raised from a per-epoch report callback to stop a trial early; recorded as `pruned`."""


def require(module: str, *, purpose: str, extra: str | None = None) -> Any:
    """Import a dependency, or raise an error that says how to install it: the extra of tunebench
    that brings it (`extra`), or, for one of tunebench's own dependencies (no extra), a reinstall."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        how = (f"Install it with: pip install 'tunebench[{extra}]'" if extra else
               "It is one of tunebench's own dependencies: reinstall tunebench (pip install --force-reinstall "
               "tunebench, or `make install` in a checkout)")
        raise MissingDependencyError(
            f"{purpose} needs the Python package '{module.split('.')[0]}', which is not installed or does not "
            f"import ({exc}). {how}") from None
