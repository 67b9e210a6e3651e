"""One search, in its own process: load the data once, drive the strategy, record every trial,
then evaluate the selected configuration on test.

The runner starts `python -m harness.worker JOB.json` per search and supervises it from outside;
`execute()` is also callable in-process (tests, conformance suites). This module does not import
Keras at module scope: `harness.training` does, and is imported only once a search starts.

Events for the supervisor (the budget clock's start, each trial's start and end) go as JSON lines
to the file descriptor named by `TUNEBENCH_EVENT_FD`. The store is the record; events only drive
supervision and the progress display.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.budget import Budget
from harness.errors import BudgetExhausted, SpaceError, TrialPruned, TunebenchError
from harness.models import objective_for
from harness.space import DefaultHyperParameters, FixedHyperParameters, HyperParameters, Param
from harness.store import Store
from harness.strategies import (FAILED, INTERRUPTED, NAN, OK, PRUNED, SELECTABLE, TIMEOUT, EpochReport,
                                SearchContext, TrialRecord)

if TYPE_CHECKING:
    from harness.datasets import Dataset, Splits
    from harness.models import ModelFamily
    from harness.strategies import SearchStrategy

EVENT_FD_ENV = "TUNEBENCH_EVENT_FD"
#: How many searches share this process's GPU (`--trials-per-gpu`), for its data placement.
GPU_SHARE_ENV = "TUNEBENCH_GPU_SHARE"
BEST_WEIGHTS = "best.weights.h5"
#: How often a lane waiting on the others looks at the store.
LANE_POLL_S = 0.2
#: Share of the allowed overshoot lane 0 waits past the deadline for the other lanes before it kills
#: them: well before the runner's own kill (`runner.KILL_AT`), so the search still ends on time.
LANE_GRACE = 0.3
#: How long loading plugins, Keras and the data may take before the search's clock starts (the
#: runner kills a search process still in setup after this; a lane waits this long for lane 0).
SETUP_TIMEOUT_S = float(os.environ.get("TUNEBENCH_SETUP_TIMEOUT", "600"))


def weights_path(artifact_dir: str | Path, lane: int = 0) -> Path:
    """Where a lane keeps the weights of its best trial so far (lane 0: `best.weights.h5`)."""
    return Path(artifact_dir) / (BEST_WEIGHTS if lane == 0 else f"best.lane{lane}.weights.h5")


@dataclass(frozen=True)
class PluginCall:
    """A plugin by registered name, with its resolved options."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SearchJob:
    """Everything a child process needs to run one search (JSON-serialisable)."""

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
    #: The suite's `training:` block: mixed_precision, jit_compile, steps_per_execution.
    training: Mapping[str, Any] = field(default_factory=dict)
    #: Parallel trials: `lanes` processes run this search at once; this one is lane `lane`. Lane 0
    #: owns the run (the clock, the totals, the test evaluation); with `spawn_lanes` it starts the
    #: others itself, else something else does (a cluster executor, on other machines).
    lanes: int = 1
    lane: int = 0
    spawn_lanes: bool = True

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> SearchJob:
        raw = json.loads(text)
        for key in ("dataset", "model_family", "strategy"):
            raw[key] = PluginCall(**raw[key])
        raw["plugins"] = tuple(raw.get("plugins", ()))
        return cls(**raw)


class Events:
    """JSON-lines events to the supervising runner; silent when there is none."""

    def __init__(self, fd: int | None = None) -> None:
        self._file = os.fdopen(fd, "w", buffering=1) if fd is not None else None
        self.sent: list[dict[str, Any]] = []

    def send(self, event: str, **data: Any) -> None:
        message = {"event": event, **data}
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


# -- the trial context ---------------------------------------------------------------------------------

class _FatalTrialError(Exception):
    """A trial failed in a way every trial would (a user error such as a misspelt pin)."""


class TrialContext(SearchContext):
    """The harness's concrete `SearchContext`: runs, times and records each trial."""

    def __init__(self, job: SearchJob, store: Store, family: ModelFamily, data: Splits,
                 budget: Budget, events: Events) -> None:
        self.job = job
        self.store = store
        self.family = family
        self._data = data  # private: strategies never see the test split
        self.spec = data.spec
        self.seed = job.seed
        self.budget = budget
        self.events = events
        self.objective = objective_for(data.spec.task)
        self.max_epochs = job.max_epochs
        self.pins = dict(family.options.get("params") or {})
        self.search_key = job.search_key or f"run-{job.run_id}"
        self.run_id = job.run_id
        self.lane, self.lanes = job.lane, job.lanes
        self.shared_store_url = store.url if store.engine.dialect.name == "postgresql" else None
        self.workdir = Path(job.artifact_dir) / "strategy"
        self._trials: list[TrialRecord] = []
        self._best_score: float | None = None
        Path(job.artifact_dir).mkdir(parents=True, exist_ok=True)

    @property
    def trials(self) -> tuple[TrialRecord, ...]:
        return tuple(self._trials)

    def space(self, hp: HyperParameters | None = None) -> dict[str, Param]:
        from harness import training

        hp = (hp or DefaultHyperParameters()).pin(self.pins)
        try:
            model = self.family.build(hp, self.spec)
            self.family.training(hp, self.spec, self.max_epochs)
            training.release(model)
        except Exception:  # the first trial will meet, and record, the same error
            traceback.print_exc()
        return hp.params

    def next_number(self) -> int:
        return self.store.next_trial_number(self.job.run_id)

    def run_trial(self, hp: HyperParameters, *, epochs: int | None = None,
                  report: EpochReport | None = None, number: int | None = None) -> TrialRecord:
        if self.budget.expired:
            raise BudgetExhausted()
        from harness import training

        if number is None:
            number = self.next_number()
        started_wall, t0 = time.time(), time.monotonic()
        deadline = self.budget.trial_deadline(t0)
        hp.pin(self.pins)
        trial_seed = (self.seed * 100_003 + number) % (2**31 - 1)
        trial_id = self.store.start_trial(self.job.run_id, number, started_at=started_wall, seed=trial_seed,
                                          lane=self.lane)
        self.events.send("trial_start", number=number, lane=self.lane, deadline=started_wall + (deadline - t0))

        def on_epoch(epoch: int, metrics: Mapping[str, float], elapsed: float) -> None:
            self.store.record_epoch(self.job.run_id, trial_id, epoch, metrics, elapsed)
            if report is not None:
                report(epoch, metrics)

        status, error, error_kind = OK, None, None
        model, callback, param_count, epoch_budget, timings_bytes = None, None, None, None, None
        timings: dict[str, float] = {}
        fatal: Exception | None = None
        try:
            import keras

            keras.utils.set_random_seed(trial_seed)
            tb = time.monotonic()
            model = self.family.build(hp, self.spec)
            settings = self.family.training(hp, self.spec, self.max_epochs)
            if epochs is not None:
                settings = dataclasses.replace(settings, epochs=int(epochs))
            if self.max_epochs is not None:
                settings = dataclasses.replace(settings, epochs=min(settings.epochs, self.max_epochs))
            epoch_budget = settings.epochs
            unused = hp.unused_pins()
            if unused:
                declared = ", ".join(hp.params) or "none"
                raise SpaceError(f"pinned hyperparameter(s) {', '.join(unused)} not declared by model "
                                 f"family '{self.family.name}' (it declares: {declared})")
            settings = dataclasses.replace(settings, compile_options=compile_options(
                self.job.training, keras.backend.backend(), model, len(self._data.x_train) // settings.batch_size))
            self.family.compile(model, settings, self.spec)
            param_count = int(model.count_params())
            timings_bytes = training.model_bytes(model)
            timings["build"] = time.monotonic() - tb
            callback = training.TrialCallback(deadline, self.objective, on_epoch, beat=self._best_score)
            tf = time.monotonic()
            self.family.fit(model, self._data, settings, [callback], verbose=2 if self.job.verbose else 0)
            timings["train"] = time.monotonic() - tf
            if callback.non_finite:
                status, error, error_kind = NAN, "loss became NaN or infinite", "nan"
            elif callback.timed_out:
                status, error_kind = TIMEOUT, "deadline"
        except TrialPruned:
            status = PRUNED
        except SpaceError as exc:
            status, error, error_kind = FAILED, str(exc), "space"
            fatal = exc
        except Exception as exc:  # a trial's failure is recorded, never fatal to the search
            traceback.print_exc()
            status, error = FAILED, f"{type(exc).__name__}: {exc}"[:4000]
            error_kind = "oom" if training.is_out_of_memory(exc) else "exception"

        score = callback.best_score if callback is not None else None
        if callback is not None:
            timings["first_epoch"] = callback.epoch_seconds[0] if callback.epoch_seconds else 0.0
            timings["eval"] = callback.eval_seconds
        improved = (status in SELECTABLE and score is not None
                    and (self._best_score is None or score > self._best_score))
        if improved:
            tc = time.monotonic()
            training.save_weights(model, callback, str(weights_path(self.job.artifact_dir, self.lane)))
            timings["checkpoint"] = time.monotonic() - tc
            self._best_score = score
        history = tuple(callback.history) if callback is not None else ()
        if model is not None:
            training.release(model)
            model = None
        timings["rss_mb"] = _rss_mb()  # host memory after the trial: flat across trials, or a leak
        finished_wall = time.time()
        params = hp.values
        self.store.finish_trial(
            trial_id, status=status, error=error, error_kind=error_kind, params=params,
            finished_at=finished_wall, score=score,
            best_epoch=callback.best_epoch if callback is not None else None,
            epochs_done=len(history), epoch_budget=epoch_budget, param_count=param_count,
            model_bytes=timings_bytes,
            metrics=history[-1] if history else None, timings=timings)
        if improved:  # this lane's best so far; the run's best if no other lane has a better one
            self.store.offer_best(self.job.run_id, score, best_trial=number, best_params=params,  # type: ignore[arg-type]
                                  best_param_count=param_count)
        record = TrialRecord(number=number, status=status, params=params, score=score, history=history,
                             error=error, duration=finished_wall - started_wall,
                             param_count=param_count, epochs=len(history), timings=timings,
                             epoch_budget=epoch_budget)
        self._trials.append(record)
        self.events.send("trial", number=number, lane=self.lane, status=status, score=score, best=self._best_score)
        if fatal is not None and not any(t.status == OK for t in self._trials):
            raise _FatalTrialError(str(fatal))
        return record


# -- one search ------------------------------------------------------------------------------------------

def execute(job: SearchJob, events: Events | None = None, *, finalize_after: bool = True) -> str:
    """Run one search and (by default) its test evaluation; returns the run's final status."""
    events = events or Events()
    if job.lane > 0:
        return execute_lane(job, events)
    store = Store(job.store_url)
    lanes: list[subprocess.Popen[bytes]] = []
    try:
        try:
            dataset, family, strategy = _instantiate(job)
            if job.lanes > 1 and job.spawn_lanes:  # they load their data while this one does
                lanes = _spawn_lanes(job)
            data = _load(job, store, dataset)
        except Exception as exc:
            _fail(store, job, exc, stage="setup")
            return "failed"

        budget = Budget(job.budget_s, trial_seconds=job.trial_budget_s)
        cpu_start = time.process_time() + _children_cpu_s()
        started = time.time()
        store.update_run(job.run_id, started_at=started, lanes=job.lanes)  # the other lanes start on this
        events.send("started", started_at=started, deadline=started + job.budget_s)
        ctx = TrialContext(job, store, family, data, budget, events)
        stop_reason, error = _search(strategy, ctx)
        if job.lanes > 1:
            _await_lanes(job, store, lanes, deadline=started + job.budget_s, done=stop_reason != "budget")
        finished = time.time()
        if stop_reason == "completed" and budget.expired:
            stop_reason = "budget"
        gpus = len(store.run(job.run_id)["hardware"]["gpus"])
        cpu = time.process_time() + _children_cpu_s() - cpu_start  # lanes started here included
        store.update_run(job.run_id, finished_at=finished, stop_reason=stop_reason, error=error,
                         n_trials=store.trial_count(job.run_id), cpu_seconds=cpu,
                         accelerator_seconds=(finished - started) * gpus)
        events.send("search_done", finished_at=finished, stop_reason=stop_reason)
        if error is not None:
            store.update_run(job.run_id, status="failed", completed_at=time.time())
            return "failed"
        if not finalize_after:
            return "running"
        return finalize(job, store, data=data, family=family)
    finally:
        for proc in lanes:  # only after an error: _await_lanes has ended them otherwise
            if proc.poll() is None:
                proc.kill()
        store.close()


def _search(strategy: SearchStrategy, ctx: TrialContext) -> tuple[str, str | None]:
    """Drive the strategy; its stop reason, and an error if it broke.

    What exists before the first trial (the frameworks' modules, the data, the strategy) is moved
    out of the garbage collector's sight for the search (`gc.freeze`): each trial ends with
    `clear_session`, which runs a full collection, and walking the frameworks' millions of objects
    was most of a small trial's fixed cost (0.29 s per trial under torch). Reference counting
    still frees them; the search's end gives them back to the collector.
    """
    import gc

    gc.collect()
    gc.freeze()
    try:
        strategy.search(ctx)
    except BudgetExhausted:
        return "budget", None
    except _FatalTrialError as exc:
        return "error", str(exc)
    except Exception as exc:  # the strategy itself broke
        traceback.print_exc()
        return "error", f"strategy '{strategy.name}' raised {type(exc).__name__}: {exc}"
    finally:
        gc.unfreeze()
    return "completed", None


# -- parallel trials: the other lanes of a search ---------------------------------------------------------

def lane_command(job: SearchJob, lane: int) -> list[str]:
    """Write lane `lane`'s job file beside the run's and return the command that runs that lane."""
    folder = Path(job.artifact_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"job.lane{lane}.json"
    path.write_text(dataclasses.replace(job, lane=lane, spawn_lanes=False).to_json())
    return [sys.executable, "-m", "harness.worker", str(path)]


def _spawn_lanes(job: SearchJob) -> list[subprocess.Popen[bytes]]:
    """Start lanes 1..N-1 as child processes of this one (so the runner's kill reaches them)."""
    fd = os.environ.get(EVENT_FD_ENV)
    env = dict(os.environ, TUNEBENCH_PARENT_PID=str(os.getpid()))
    return [subprocess.Popen(lane_command(job, lane), env=env, pass_fds=(int(fd),) if fd else (),
                             stdin=subprocess.DEVNULL) for lane in range(1, job.lanes)]


def execute_lane(job: SearchJob, events: Events) -> str:
    """Lane k > 0 of a search with parallel trials: load the data, wait for lane 0's clock to start,
    then drive the strategy against the same run until the same deadline."""
    store = Store(job.store_url)
    try:
        try:
            dataset, family, strategy = _instantiate(job)
            data, _ = _splits(job, dataset)
            started = None
            give_up = time.time() + SETUP_TIMEOUT_S
            while started is None and time.time() < give_up:
                run = store.run(job.run_id)
                if run["status"] not in ("running", "queued") or run["finished_at"] is not None:
                    print(f"lane {job.lane}: run {job.run_id} has ended already; nothing to do", flush=True)
                    return "ok"
                started = run["started_at"]
                if started is None:
                    time.sleep(LANE_POLL_S)
            if started is None:
                raise TunebenchError(f"lane 0 of run {job.run_id} did not start its search within "
                                     f"{SETUP_TIMEOUT_S:.0f} s")
            check_fingerprint(store, job.run_id, data.fingerprint)  # against lane 0's too
        except Exception as exc:
            traceback.print_exc()
            print(f"lane {job.lane} of run {job.run_id} could not start: {exc}", flush=True)
            return "failed"
        # The same wall-clock deadline as lane 0, on this process's monotonic clock.
        budget = Budget(job.budget_s, started=time.monotonic() - (time.time() - started),
                        trial_seconds=job.trial_budget_s)
        ctx = TrialContext(job, store, family, data, budget, events)
        stop_reason, error = _search(strategy, ctx)
        if error:
            print(f"lane {job.lane} of run {job.run_id}: {error}", flush=True)
        return "ok" if error is None else "failed"
    finally:
        store.lane_done(job.run_id)
        store.close()


def _await_lanes(job: SearchJob, store: Store, procs: list[subprocess.Popen[bytes]], *, deadline: float,
                 done: bool) -> None:
    """Wait for the other lanes to finish their trials (they stop at the same deadline); a lane
    still running `LANE_GRACE x allowed_overshoot` past it is killed, and its trial in flight recorded as
    `timeout`. Lanes started elsewhere (a cluster) are waited for through the store, until they
    report back or no trial is in flight once the strategy is `done` (out of work) or the deadline passed."""
    from harness.budget import allowed_overshoot

    cutoff = deadline + LANE_GRACE * allowed_overshoot(job.budget_s)
    while time.time() < cutoff:
        if procs:
            if all(p.poll() is not None for p in procs):
                break
        elif (store.run(job.run_id)["lanes_done"] or 0) >= job.lanes - 1:
            break
        elif (done or time.time() >= deadline) and not store.open_trials(job.run_id):
            break  # nothing in flight, and nothing left to start: a lane not yet placed would find no work
        time.sleep(LANE_POLL_S)
    for lane, proc in enumerate(procs, 1):
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            store.close_open_trials(job.run_id, TIMEOUT, f"lane {lane} did not stop at the deadline; killed",
                                    lane=lane)
        elif proc.returncode not in (0, 1):
            store.close_open_trials(job.run_id, FAILED, f"lane {lane}'s process exited with code "
                                    f"{proc.returncode}", lane=lane)
    # A lane on another machine that never reported back (its node died, or it never started).
    store.close_open_trials(job.run_id, INTERRUPTED, "its lane did not finish (the process or its node was lost)")


def _children_cpu_s() -> float:
    """CPU seconds used by this process's finished (reaped) children: the lanes it started."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def finalize(job: SearchJob, store: Store | None = None, *, data: Splits | None = None,
             family: ModelFamily | None = None) -> str:
    """Evaluate the selected configuration once on the test split and close the run."""
    own_store = store is None
    store = store or Store(job.store_url)
    try:
        run = store.run(job.run_id)
        best = [t for t in store.trials([job.run_id]) if t["number"] == run["best_trial"]]
        weights = weights_path(job.artifact_dir, (best[0]["lane"] or 0) if best else 0)
        if run["best_params"] is None or not weights.exists():
            store.update_run(job.run_id, status="failed", completed_at=time.time(),
                             error=run["error"] or "no trial finished with a validation score")
            return "failed"
        try:
            if family is None or data is None:
                dataset, family, _ = _instantiate(job)
                data = dataset.splits(job.seed)
            import keras

            from harness import training

            set_precision(job.training)
            hp = FixedHyperParameters(run["best_params"])
            model = family.build(hp, data.spec)
            settings = family.training(hp, data.spec, job.max_epochs)
            settings = dataclasses.replace(settings, compile_options=compile_options(
                job.training, keras.backend.backend(), model, len(data.x_test) // settings.batch_size))
            model.load_weights(str(weights))  # before compiling: the file holds no optimizer state we need
            family.compile(model, settings, data.spec)
            metrics = model.evaluate(data.x_test, data.y_test, batch_size=settings.batch_size,
                                     return_dict=True, verbose=0)
            metrics = {k: float(v) for k, v in metrics.items()}
            metrics.update(training.test_report(model, data.x_test, data.y_test, data.spec.task,
                                                data.spec.class_names, settings.batch_size))
            test_key = run["objective"][len("val_"):] if run["objective"] else "accuracy"
            test_score = metrics.get(test_key)
            store.update_run(job.run_id, status="ok", test_score=test_score, test_metrics=metrics,
                             baselines=baselines(data), inference_ms=training.inference_ms(model, data.x_test),
                             completed_at=time.time())
            training.release(model)
            return "ok"
        except Exception as exc:
            _fail(store, job, exc, stage="test evaluation")
            return "failed"
    finally:
        if own_store:
            store.close()


def baselines(data: Splits) -> dict[str, float]:
    """Scores that give a number its meaning, from the test split: majority class and uniform random
    guessing (accuracy); for multilabel, predicting every label / each label with probability 1/2 (macro F1)."""
    import numpy as np

    y = np.asarray(data.y_test)
    if data.spec.task == "multiclass":
        counts = np.bincount(y.astype(int), minlength=data.spec.num_classes)
        return {"majority_class": float(counts.max() / counts.sum()), "random_guess": 1.0 / data.spec.num_classes}
    p = y.mean(axis=0)
    return {"all_positive": float(np.mean(2 * p / (1 + p))), "random_guess": float(np.mean(p / (p + 0.5)))}


def _instantiate(job: SearchJob) -> tuple[Dataset, ModelFamily, SearchStrategy]:
    from harness.plugins import load_plugins

    catalog = load_plugins(job.plugins)
    dataset = catalog.datasets.get(job.dataset.name)(**job.dataset.options)
    family = catalog.model_families.get(job.model_family.name)(**job.model_family.options)
    strategy = catalog.strategies.get(job.strategy.name)(**job.strategy.options)
    return dataset, family, strategy


#: Models up to this many parameters get several batches per compiled call (`steps_per_execution`).
SMALL_MODEL_PARAMS = 2_000_000


def set_precision(training: Mapping[str, Any]) -> None:
    """Apply the suite's `mixed_precision` setting (Keras's global dtype policy)."""
    import keras

    mp = training.get("mixed_precision")
    keras.mixed_precision.set_global_policy(
        "mixed_bfloat16" if mp == "bfloat16" else "mixed_float16" if mp else "float32")


def compile_options(training: Mapping[str, Any], backend: str, model: Any, steps_per_epoch: int) -> dict[str, Any]:
    """`model.compile` arguments from the suite's `training:` block.

    `steps_per_execution: auto` runs several batches per compiled call for small models (up to
    `SMALL_MODEL_PARAMS`), where the per-call dispatch would dominate: about 20 calls per epoch, at
    most 32 batches each. PyTorch's trainer supports only 1. `jit_compile: auto` leaves Keras's
    own default (XLA where it is known to work).
    """
    options: dict[str, Any] = {}
    jit = training.get("jit_compile", "auto")
    if jit != "auto":
        options["jit_compile"] = bool(jit)
    spe = training.get("steps_per_execution", "auto")
    if spe == "auto":
        try:
            small = int(model.count_params()) <= SMALL_MODEL_PARAMS
        except Exception:  # not built yet: leave Keras's default
            small = False
        spe = max(1, min(32, steps_per_epoch // 20)) if small else 1
    if backend == "torch":
        spe = 1
    if int(spe) > 1:
        options["steps_per_execution"] = int(spe)
    return options


def _splits(job: SearchJob, dataset: Dataset) -> tuple[Splits, str]:
    """This process's splits, trained as the suite says (precision set, data placed on the device
    when it fits), and where the data went. Every lane of a search prepares its data here."""
    from harness import training

    set_precision(job.training)
    data, placement = training.place_data(dataset.splits(job.seed), job.training.get("data_on_device", "auto"))
    print(f"training data: {placement}", flush=True)
    return data, placement


def _load(job: SearchJob, store: Store, dataset: Dataset) -> Splits:
    import keras

    data, placement = _splits(job, dataset)
    check_fingerprint(store, job.run_id, data.fingerprint)
    if dataset.notes.get("skipped"):
        print(f"dataset '{dataset.name}': skipped {dataset.notes['skipped']} unreadable image(s): "
              f"{json.dumps(dataset.notes.get('skipped_files', {}), indent=1)}", flush=True)
    store.update_run(job.run_id, host=socket.gethostname(), pid=os.getpid(),
                     backend=keras.backend.backend(), versions=versions(),
                     hardware=dict(hardware(), data_placement=placement),
                     split_fingerprint=data.fingerprint, split_sizes=data.sizes,
                     data_notes=dataset.notes or None,
                     objective=objective_for(data.spec.task))
    return data


def _rss_mb() -> float:
    import psutil

    return round(psutil.Process().memory_info().rss / 2**20, 1)


def check_fingerprint(store: Store, run_id: int, fingerprint: str) -> None:
    """Refuse to search on data that differs from what other runs of this suite, dataset and seed
    used (another node's copy of the data, say): results would not be comparable."""
    run = store.run(run_id)
    for other in store.runs(suite=run["suite"]):  # this run included: its lane 0 may have recorded one
        if (other["dataset"] == run["dataset"] and other["seed"] == run["seed"]
                and other["dataset_options"] == run["dataset_options"] and other["split_fingerprint"]
                and other["split_fingerprint"] != fingerprint):
            raise TunebenchError(
                f"dataset '{run['dataset_label'] or run['dataset']}' (seed {run['seed']}) gives split "
                f"fingerprint {fingerprint} on {socket.gethostname()}, but run {other['id']} on "
                f"{other['host']} had {other['split_fingerprint']}: the data differs between machines or "
                f"has changed since. Give every worker the same copy (its data directory or cache), or "
                f"use a new results store")


def _fail(store: Store, job: SearchJob, exc: BaseException, *, stage: str) -> None:
    if not isinstance(exc, TunebenchError):
        traceback.print_exc()
    message = str(exc) if isinstance(exc, TunebenchError) else f"{type(exc).__name__}: {exc}"
    now = time.time()
    store.update_run(job.run_id, status="failed", stop_reason="error", error=f"{stage}: {message}"[:4000],
                     completed_at=now, finished_at=store.run(job.run_id)["finished_at"] or now)


# -- provenance ----------------------------------------------------------------------------------------

_VERSIONED = ("tunebench", "keras", "tensorflow", "tensorflow-cpu", "keras-tuner", "autokeras",
              "optuna", "numpy", "torch", "jax")


def versions() -> dict[str, str]:
    """Versions of Python and of every package that shapes a result."""
    import importlib.metadata as md

    found = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            found[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    if "tensorflow" not in found and "tensorflow-cpu" in found:  # one key, whichever build is installed
        found["tensorflow"] = found["tensorflow-cpu"]
    return found


def hardware() -> dict[str, Any]:
    """CPU model and count, memory, and GPU names when `nvidia-smi` is there."""
    import shutil
    import subprocess

    import psutil

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpus: list[str] = []
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10).stdout
            gpus = [g.strip() for g in out.splitlines() if g.strip()]
        except (OSError, subprocess.SubprocessError):
            pass
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "gpus": gpus, "platform": platform.platform()}


# -- process entry point ----------------------------------------------------------------------------------

def _die_with_parent(parent: int) -> None:
    """Exit if the runner dies (even by kill -9): PDEATHSIG on Linux, a watchdog elsewhere too."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(3)

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=watch, daemon=True, name="tunebench-parent-watch").start()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    mode = "search"
    if argv and argv[0] == "--finalize":
        mode, argv = "finalize", argv[1:]
    job = SearchJob.from_json(Path(argv[0]).read_text())
    parent = os.environ.get("TUNEBENCH_PARENT_PID")
    if parent:
        _die_with_parent(int(parent))
    status = execute(job, Events.from_env()) if mode == "search" else finalize(job)
    sys.stdout.flush()
    return 0 if status == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["SearchJob", "PluginCall", "TrialContext", "execute", "finalize"]
