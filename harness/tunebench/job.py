"""The protocol between the runner and a search's process: the job, the events and the environment.

The runner writes a `SearchJob` as JSON and starts `python -m tunebench.worker JOB.json`; the
search's process sends JSON-lines events (the clock's start, each trial's start and end) to the
file descriptor named by `EVENT_FD_ENV`. This module imports nothing heavy: the runner imports it
and nothing else of the search's side.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunebench import environment
from tunebench.settings import ExecutionSettings, SearchSettings
from tunebench.vocabulary import EventKind

if TYPE_CHECKING:
    from tunebench.suite import Search

#: The file descriptor a search's process writes its events to.
EVENT_FD_ENV = "TUNEBENCH_EVENT_FD"
#: The runner's pid: a search's process exits when it dies.
PARENT_PID_ENV = "TUNEBENCH_PARENT_PID"
#: How many searches share this process's GPU (`--trials-per-gpu`), for its data placement.
GPU_SHARE_ENV = "TUNEBENCH_GPU_SHARE"
#: The memory guard: bytes of data (heap and private mappings) a search's process may hold.
MEMORY_LIMIT_ENV = "TUNEBENCH_MEMORY_LIMIT"
#: Share of the machine's memory the searches running at once may use between them, by default.
MEMORY_SHARE = 0.8


def limit_memory() -> int | None:
    """Apply the memory guard to this process (and the lanes it starts): its data segment (heap and
    private mappings, `RLIMIT_DATA`) may not grow past `TUNEBENCH_MEMORY_LIMIT` bytes, so that an
    allocation too big fails as an error the trial records (`failed/oom`), not as the kernel's
    out-of-memory killer taking the search or the machine down. Linux only; returns the limit, or
    None where there is none."""
    value = os.environ.get(MEMORY_LIMIT_ENV)
    if not value:
        return None
    try:
        import resource

        limit = int(value)
        _, hard = resource.getrlimit(resource.RLIMIT_DATA)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
        return limit
    except (ImportError, ValueError, OSError, AttributeError):  # no such limit on this system
        return None
#: How long loading plugins, Keras and the data may take before the search's clock starts (the
#: runner kills a search process still in setup after this; a lane waits this long for lane 0).
SETUP_TIMEOUT_S = environment.number("TUNEBENCH_SETUP_TIMEOUT")
#: The module every search process runs.
WORKER_MODULE = "tunebench.worker"
BEST_WEIGHTS = "best.weights.h5"


TRIAL_WEIGHTS = "trials"


def weights_path(artifact_dir: str | Path) -> Path:
    """Where the weights of the selected configuration are kept once the run is tested."""
    return Path(artifact_dir) / BEST_WEIGHTS


def trial_weights_path(artifact_dir: str | Path, number: int, epoch: int) -> Path:
    """The weights of trial `number` after epoch `epoch` (0-based), written before the epoch's
    record: the store names only weights that are on disk."""
    return Path(artifact_dir) / TRIAL_WEIGHTS / f"{number}-{epoch}.weights.h5"


@dataclass(frozen=True)
class PluginCall:
    """A plugin by registered name, with its resolved options."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SearchJob:
    """Everything a search's process needs to run one search (JSON-serialisable)."""

    run_id: int
    store_url: str
    artifact_dir: str
    dataset: PluginCall
    model_family: PluginCall
    strategy: PluginCall
    seed: int
    budget_s: float
    trial_budget_s: float | None = None
    max_epochs: int | None = None
    verbose: bool = False
    plugins: tuple[str, ...] = ()
    search_key: str = ""
    #: The suite's `training:` block.
    training: ExecutionSettings = field(default_factory=ExecutionSettings)
    #: The suite's search settings (first trial, feasibility guard, hang timeout, min_trials).
    search: SearchSettings = field(default_factory=SearchSettings)
    #: Parallel trials: `lanes` processes run this search at once; this one is lane `lane`. Lane 0
    #: owns the run (the clock, the totals, the test evaluation); with `spawn_lanes` it starts the
    #: others itself, else something else does (a cluster executor, on other machines).
    lanes: int = 1
    lane: int = 0
    spawn_lanes: bool = True

    def to_json(self) -> str:
        raw = dataclasses.asdict(self)
        raw["training"], raw["search"] = self.training.to_mapping(), self.search.to_mapping()
        return json.dumps(raw)

    @classmethod
    def from_json(cls, text: str) -> SearchJob:
        """The job a `to_json` wrote, its settings rebuilt as the typed objects they were."""
        raw = json.loads(text)
        for key in ("dataset", "model_family", "strategy"):
            raw[key] = PluginCall(**raw[key])
        raw["plugins"] = tuple(raw.get("plugins", ()))
        raw["training"] = ExecutionSettings.from_json(raw.get("training"))
        raw["search"] = SearchSettings.from_json(raw.get("search"))
        return cls(**raw)

    def for_lane(self, lane: int) -> SearchJob:
        """The same search, as lane `lane` (which never starts lanes of its own)."""
        return dataclasses.replace(self, lane=lane, spawn_lanes=False)


def run_fields(search: Search, backend: str | None) -> dict[str, Any]:
    """The run row of one attempt at `search`, as the runner and the in-process test helper create it
    (`Store.create_run(**run_fields(...), ...)`)."""
    return dict(search_key=search.key, suite=search.suite,
                dataset=search.dataset.name, dataset_options=dict(search.dataset.options),
                dataset_label=search.dataset.label,
                model_family=search.model_family.name, model_options=dict(search.model_family.options),
                model_label=search.model_family.label,
                strategy=search.strategy.name, strategy_options=dict(search.strategy.options),
                strategy_label=search.strategy.label,
                seed=search.seed, budget_s=search.budget_s, trial_budget_s=search.trial_budget_s,
                max_epochs=search.max_epochs, backend=backend)


def job_for(search: Search, run_id: int, *, store_url: str, results_dir: str | Path, verbose: bool = False,
            plugins: tuple[str, ...] = (), spawn_lanes: bool = True, lane: int = 0) -> SearchJob:
    """What a search's process (or one lane of it) needs to run `search` as run `run_id`."""
    return SearchJob(
        run_id=run_id, store_url=store_url, artifact_dir=str(Path(results_dir) / "runs" / str(run_id)),
        dataset=PluginCall(search.dataset.name, dict(search.dataset.options)),
        model_family=PluginCall(search.model_family.name, dict(search.model_family.options)),
        strategy=PluginCall(search.strategy.name, dict(search.strategy.options)),
        seed=search.seed, budget_s=search.budget_s, trial_budget_s=search.trial_budget_s,
        max_epochs=search.max_epochs, verbose=verbose, plugins=plugins, search_key=search.key,
        training=search.training, search=search.options, lanes=search.lanes, lane=lane, spawn_lanes=spawn_lanes)


class Events:
    """JSON-lines events to the supervising runner; silent when there is none."""

    def __init__(self, fd: int | None = None) -> None:
        self._file = os.fdopen(fd, "w", buffering=1) if fd is not None else None
        self.sent: list[dict[str, Any]] = []

    def send(self, event: EventKind, **data: Any) -> None:
        message = {"event": event.value, **data}
        self.sent.append(message)
        if self._file is not None:
            try:
                self._file.write(json.dumps(message) + "\n")
            except (BrokenPipeError, OSError):
                self._file = None

    @classmethod
    def from_env(cls) -> Events:
        fd = os.environ.get(EVENT_FD_ENV)
        return cls(int(fd) if fd else None)
