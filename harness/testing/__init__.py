"""Test helpers that ship with tunebench, for its own tests and for plugin authors.

- `harness.testing.plugins`: a plugin module with misbehaving-on-purpose model families, to check
  that a strategy or the runner survives failures, NaN losses, hangs and slow trials. Load it with
  `tunebench run --plugin harness.testing.plugins` or `load_plugins(["harness.testing.plugins"])`.
- `harness.testing.run_search`: run one search in-process against a temporary store.
"""

from __future__ import annotations

from harness.testing.inprocess import run_search

__all__ = ["run_search"]
