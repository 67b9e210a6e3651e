"""The environment variables tunebench reads, each parsed in one place.

The command line checks every one it finds set (`problems`) before anything runs, so a value such as
`TUNEBENCH_WORKER_RECYCLE_MB=1GB` is refused with what to write instead, rather than failing every
search in its own process with "see log.txt". The processes tunebench starts read them through
`number`, which falls back to the default (and says so on standard error) for a value the command
line would have refused.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Variable:
    name: str
    default: float
    meaning: str
    minimum: float = 0.0
    integer: bool = False

    def parse(self, text: str) -> float:
        """The value of `text`, or ValueError saying what to write."""
        try:
            value = int(text) if self.integer else float(text)
        except ValueError:
            raise ValueError(self.advice(text)) from None
        if value < self.minimum or value != value:
            raise ValueError(self.advice(text))
        return value

    def advice(self, text: str) -> str:
        kind = "a whole number" if self.integer else "a number"
        return (f"{self.name}={text!r} is not {kind} of at least {self.minimum:g} ({self.meaning}); "
                f"write it like {self.name}={int(self.default) if self.integer else self.default:g}")


VARIABLES = {v.name: v for v in (
    Variable("TUNEBENCH_WORKER_RECYCLE_MB", 1024, "MiB a warm worker's memory may grow before it is replaced"),
    Variable("TUNEBENCH_WORKER_MAX_JOBS", 100, "searches a warm worker runs before it is replaced", 1, True),
    Variable("TUNEBENCH_SETUP_TIMEOUT", 600, "seconds a search's process may take to load its plugins and data", 1),
    Variable("TUNEBENCH_LOAD_CACHE_MIN_S", 1.0, "seconds a dataset's load must take before it is cached on disk"),
    Variable("TUNEBENCH_MEMORY_LIMIT", 0, "bytes of memory a search's process may hold (set by the runner)", 1, True),
)}


def number(name: str, *, warn: Callable[[str], object] | None = None) -> float:
    """The value of the environment variable `name`, or its default when unset; a value the command
    line would have refused also gives the default, with a line on standard error."""
    variable = VARIABLES[name]
    text = os.environ.get(name)
    if text is None or not text.strip():
        return variable.default
    try:
        return variable.parse(text.strip())
    except ValueError as exc:
        (warn or (lambda m: print(m, file=sys.stderr)))(f"warning: {exc}; using {variable.default:g}")
        return variable.default


def problems() -> list[str]:
    """What is wrong with the tunebench environment variables that are set, one line each."""
    found = []
    for name, variable in VARIABLES.items():
        text = os.environ.get(name)
        if text is not None and text.strip():
            try:
                variable.parse(text.strip())
            except ValueError as exc:
                found.append(str(exc))
    return found


__all__ = ["VARIABLES", "Variable", "number", "problems"]
