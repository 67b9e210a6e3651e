"""Run one search in the current process, for tests and conformance suites."""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tunebench.job import Events, job_for, run_fields
from tunebench.store import Store
from tunebench.worker import execute


def run_search(results_dir: str | Path, *, dataset: str = "digits", model_family: str = "mlp",
               strategy: str = "random", dataset_options: Mapping[str, Any] | None = None,
               model_options: Mapping[str, Any] | None = None,
               strategy_options: Mapping[str, Any] | None = None, seed: int = 0, budget_s: float = 10.0,
               trial_budget_s: float | None = None, max_epochs: int | None = 2,
               plugins: Sequence[str] = ("tunebench.testing.scripted",),
               search_options: Mapping[str, Any] | None = None) -> tuple[Store, int, Events]:
    """Run one search (and its test evaluation) in-process; returns the store, run id and events.

    Options are validated and resolved the same way a suite does it, and the run row and the job
    are built by the runner's own functions (`job.run_fields`, `job.job_for`); `search_options` are
    the suite's top-level search keys (`first_trial`, `feasibility_guard`, ...).
    """
    from tunebench.errors import SuiteError
    from tunebench.registry import load_plugins
    from tunebench.settings import SearchSettings
    from tunebench.suite import Entry, Search

    catalog = load_plugins(tuple(plugins))
    entries = {}
    for kind, registry, name, options in (("dataset", catalog.datasets, dataset, dataset_options),
                                          ("model_family", catalog.model_families, model_family, model_options),
                                          ("strategy", catalog.strategies, strategy, strategy_options)):
        entries[kind] = Entry(name, dict(registry.get(name)(**(options or {})).options), name)
    settings, problems = SearchSettings.parse(dict(search_options or {}))
    if problems:
        raise SuiteError("search options are not valid:", problems)
    search = Search("inprocess", entries["dataset"], entries["model_family"], entries["strategy"], seed, budget_s,
                    trial_budget_s, max_epochs, options=settings)
    store = Store.open(results_dir)
    row = dict(run_fields(search, backend=""), search_key=f"inprocess-{seed}", host=socket.gethostname())
    row.pop("backend")  # the search's process records the backend it ran under
    run_id = store.create_run(**row)
    job = job_for(search, run_id, store_url=store.url, results_dir=results_dir, plugins=tuple(plugins),
                  spawn_lanes=True)
    store.update_run(run_id, artifact_dir=job.artifact_dir)
    events = Events()
    execute(job, events)
    return store, run_id, events
