"""Test helpers that ship with tunebench, for its own tests and for plugin authors.

- `tunebench.testing.plugins`: a plugin module with misbehaving-on-purpose model families, to check
  that a strategy or the runner survives failures, NaN losses, hangs and slow trials. Load it with
  `tunebench run --plugin tunebench.testing.plugins` or `load_plugins(["tunebench.testing.plugins"])`.
- `tunebench.testing.run_search`: run one search in-process against a temporary store.
"""

from __future__ import annotations

from tunebench.testing.inprocess import run_search

__all__ = ["run_search"]
