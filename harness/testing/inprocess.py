"""Run one search in the current process, for tests and conformance suites."""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tunebench.job import Events, PluginCall, SearchJob
from tunebench.store import Store
from tunebench.worker import execute


def run_search(results_dir: str | Path, *, dataset: str = "digits", model_family: str = "mlp",
               strategy: str = "random", dataset_options: Mapping[str, Any] | None = None,
               model_options: Mapping[str, Any] | None = None,
               strategy_options: Mapping[str, Any] | None = None, seed: int = 0, budget_s: float = 10.0,
               trial_budget_s: float | None = None, max_epochs: int | None = 2,
               plugins: Sequence[str] = ("tunebench.testing.plugins",),
               search_options: Mapping[str, Any] | None = None) -> tuple[Store, int, Events]:
    """Run one search (and its test evaluation) in-process; returns the store, run id and events.

    Options are validated and resolved the same way a suite does it; `search_options` are the
    suite's top-level search keys (`first_trial`, `feasibility_guard`, ...).
    """
    from tunebench.errors import SuiteError
    from tunebench.registry import load_plugins
    from tunebench.settings import SearchOptions

    catalog = load_plugins(tuple(plugins))
    resolved = {}
    for kind, registry, name, options in (("dataset", catalog.datasets, dataset, dataset_options),
                                          ("model_family", catalog.model_families, model_family, model_options),
                                          ("strategy", catalog.strategies, strategy, strategy_options)):
        resolved[kind] = PluginCall(name, dict(registry.get(name)(**(options or {})).options))
    search, problems = SearchOptions.parse(dict(search_options or {}))
    if problems:
        raise SuiteError("search options are not valid:", problems)
    store = Store.open(results_dir)
    run_id = store.create_run(search_key=f"inprocess-{seed}", suite="inprocess", dataset=dataset,
                              dataset_options=dict(resolved["dataset"].options), dataset_label=dataset,
                              model_family=model_family, model_options=dict(resolved["model_family"].options),
                              model_label=model_family, strategy=strategy,
                              strategy_options=dict(resolved["strategy"].options), strategy_label=strategy,
                              seed=seed, budget_s=budget_s, trial_budget_s=trial_budget_s,
                              max_epochs=max_epochs, host=socket.gethostname())
    artifact_dir = Path(results_dir) / "runs" / str(run_id)
    store.update_run(run_id, artifact_dir=str(artifact_dir))
    job = SearchJob(run_id=run_id, store_url=store.url, artifact_dir=str(artifact_dir),
                    dataset=resolved["dataset"], model_family=resolved["model_family"],
                    strategy=resolved["strategy"], seed=seed, budget_s=budget_s,
                    trial_budget_s=trial_budget_s, max_epochs=max_epochs, plugins=tuple(plugins),
                    search=search.to_mapping())
    events = Events()
    execute(job, events)
    return store, run_id, events
