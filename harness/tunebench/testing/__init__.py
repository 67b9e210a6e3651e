"""Test helpers that ship with tunebench, for its own tests and for plugin authors.

- `tunebench.testing.scripted`: a plugin module with a misbehaving-on-purpose model family (`scripted`), to check
  that a strategy or the runner survives failures, NaN losses, hangs and slow trials. Load it with
  `tunebench run --plugin tunebench.testing.scripted` or `load_plugins(["tunebench.testing.scripted"])`.
- `tunebench.testing.run_search`: run one search in-process against a temporary store.
"""

from __future__ import annotations

from tunebench.testing.inprocess import run_search

__all__ = ["run_search"]
