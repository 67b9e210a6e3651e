"""One search, in its own process: load the data once, drive the strategy, record every trial,
then evaluate the selected configuration on test.

The runner starts `python -m tunebench.worker JOB.json` per search (`--finalize JOB.json` for a
test evaluation after a kill) and supervises it from outside; `execute()` is also callable
in-process (tests, conformance suites). The protocol is in `tunebench.job`, the trial context in
`tunebench.context`, the other lanes of a parallel search in `tunebench.lanes`. This module does not
import Keras at module scope: `tunebench.training` does, and is imported only once a search starts.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunebench import environment, space_costs
from tunebench.budget import Budget
from tunebench.context import TrialContext, drive, history_of, out_of_collector_sight
from tunebench.errors import TunebenchError
from tunebench.job import (
    MEMORY_LIMIT_ENV,
    PARENT_PID_ENV,
    Events,
    SearchJob,
    limit_memory,
    trial_weights_path,
    weights_path,
)
from tunebench.lanes import await_lanes, await_ready, children_cpu_s, execute_lane, spawn_lanes
from tunebench.provenance import rss_mb
from tunebench.search_setup import instantiate, load_and_record
from tunebench.settings import ExecutionSettings
from tunebench.space import FixedHyperParameters
from tunebench.store import Store
from tunebench.vocabulary import EventKind, RunStatus

if TYPE_CHECKING:
    from tunebench.datasets import Splits
    from tunebench.models import ModelFamily


def execute(job: SearchJob, events: Events | None = None, *, finalize_after: bool = True,
            resume: bool = False) -> str:
    """Run one search and (by default) its test evaluation; returns the run's final status.

    With `resume`, the search goes on in this fresh process after the runner killed a trial (a
    per-trial cap, a hang) or the previous process crashed: against the same wall-clock deadline,
    with the trials recorded so far as the strategy's history.
    """
    events = events or Events()
    if job.lane > 0:
        return execute_lane(job, events)
    store = Store(job.store_url)
    lanes: list[subprocess.Popen[bytes]] = []
    try:
        try:
            dataset, family, strategy = instantiate(job)
            if job.lanes > 1 and job.spawn_lanes:  # they load their data while this one does
                lanes = spawn_lanes(job)
            data = load_and_record(job, store, dataset)
            if lanes and not resume:
                await_ready(job, lanes)  # the clock starts with every lane loaded
        except Exception as exc:
            fail(store, job, exc, stage="setup")
            return RunStatus.FAILED

        run = store.run(job.run_id)
        cpu_before = float(run["cpu_seconds"] or 0.0) if resume else 0.0
        resuming = resume and run["started_at"] is not None
        try:  # what the search can afford, before its clock starts (or as it was recorded)
            space_costs.for_search(job, store, family, strategy, data, fresh=not resuming)
        except Exception as exc:  # an optimisation: the search goes on with the whole space
            print(f"cost-aware space: not estimated ({type(exc).__name__}: {exc})", flush=True)
        if resuming:
            started = float(run["started_at"])
            history = history_of(store, job.run_id)
        else:
            started, history = time.time(), []
            fields: dict[str, Any] = {"started_at": started, "lanes": job.lanes}
            if job.search.first_trial == "defaults":
                # reserved before the clock starts, so that every lane knows which trial it is
                fields["default_trial"] = store.next_trial_number(job.run_id)
            store.update_run(job.run_id, **fields)  # the other lanes start on this
        # The search's wall-clock deadline, on this process's monotonic clock.
        budget = Budget(job.budget_s, started=time.monotonic() - (time.time() - started),
                        trial_seconds=job.trial_budget_s)
        cpu_start = time.process_time() + children_cpu_s()
        events.send(EventKind.STARTED, started_at=started, deadline=started + job.budget_s, resumed=resume)
        rule = strategy.selection_rule()
        if rule is not None:
            store.update_run(job.run_id, selection={"metric": rule.metric, "limit": rule.limit,
                                                    "rule": rule.describe()})
        ctx = TrialContext(job, store, family, data, budget, events, history=history, rule=rule)
        if resume:
            print(f"the search goes on after trial(s) were stopped (resume {run['resumes'] or 0}); "
                  f"{len(history)} trial(s) recorded, {budget.remaining():.1f} s left", flush=True)
        stop_reason, error = drive(strategy, ctx)
        if job.lanes > 1:
            await_lanes(job, store, lanes, deadline=started + job.budget_s, done=stop_reason != "budget")
        finished = time.time()
        if stop_reason == "completed" and budget.expired:
            stop_reason = "budget"
        gpus = len(store.run(job.run_id)["hardware"]["gpus"])
        cpu = cpu_before + time.process_time() + children_cpu_s() - cpu_start  # lanes started here included
        store.update_run(job.run_id, finished_at=finished, stop_reason=stop_reason, error=error,
                         n_trials=store.trial_count(job.run_id), cpu_seconds=cpu,
                         accelerator_seconds=(finished - started) * gpus)
        events.send(EventKind.SEARCH_DONE, finished_at=finished, stop_reason=stop_reason)
        ctx.release()  # the last trial's model, once the search is on record
        ctx.drop_checkpoints()  # every lane has stopped: nothing will continue them
        if error is not None:
            store.fail_run(job.run_id, error)
            return RunStatus.FAILED
        if not finalize_after:
            return RunStatus.RUNNING
        return finalize(job, store, data=data, family=family)
    finally:
        for proc in lanes:  # only after an error: await_lanes has ended them otherwise
            if proc.poll() is None:
                proc.kill()
        store.close()


def finalize(job: SearchJob, store: Store | None = None, *, data: Splits | None = None,
             family: ModelFamily | None = None) -> str:
    """Evaluate the selected configuration once on the test split and close the run.

    The selected configuration is the run's recorded best trial, with the weights of that trial's
    recorded best epoch (`trial_weights_path`): they were written before the record named them. With
    `first_trial: defaults`, the family default's trial is scored on test too (a baseline, never a
    candidate: selection used validation only). The selected weights are kept as `best.weights.h5`.
    """
    own_store = store is None
    store = store or Store(job.store_url)
    try:
        with out_of_collector_sight(collect=False):  # `release` collects: not the frameworks' objects
            return _finalize(job, store, data, family)
    finally:
        if own_store:
            store.close()


def _finalize(job: SearchJob, store: Store, data: Splits | None, family: ModelFamily | None) -> str:
    # a search the runner killed at its deadline could not free its trials' checkpoints: nothing will
    # continue them now
    shutil.rmtree(Path(job.artifact_dir) / "checkpoints", ignore_errors=True)
    run = store.run(job.run_id)
    rows = {t["number"]: t for t in store.trials([job.run_id])}
    best = rows.get(run["best_trial"]) if run["best_trial"] is not None else None
    if run["best_params"] is None or best is None or best["best_epoch"] is None:
        store.fail_run(job.run_id, run["error"] or "no trial finished with a validation score")
        return RunStatus.FAILED
    weights = trial_weights_path(job.artifact_dir, best["number"], best["best_epoch"])
    if not weights.exists():
        store.fail_run(job.run_id, f"the weights of the selected trial {best['number']} (epoch "
                                   f"{best['best_epoch'] + 1}) are missing: {weights}")
        return RunStatus.FAILED
    try:
        if family is None or data is None:
            dataset, family, _ = instantiate(job)
            data = dataset.splits(job.seed)
        from tunebench import training

        options = job.training
        training.set_precision(options)
        metrics, model, scores = _test(job, family, data, options, run["best_params"], weights)
        metrics.update(training.test_report(scores, data.y_test, data.spec.task, data.spec.class_names))
        test_key = run["objective"][len("val_"):] if run["objective"] else "accuracy"
        inference = training.inference_ms(model, data.x_test)
        training.release(model)
        default_test = _default_test(job, run, rows, family, data, options, test_key, metrics)
        store.finish_run(job.run_id, test_score=metrics.get(test_key), test_metrics=metrics,
                         baselines=baselines(data), inference_ms=inference, default_test_score=default_test,
                         pareto=search_front(run, rows))
        _keep_selected(job, weights)
        return RunStatus.OK
    except Exception as exc:
        fail(store, job, exc, stage="test evaluation")
        return RunStatus.FAILED


def search_front(run: Mapping[str, Any], rows: Mapping[int, Mapping[str, Any]]) -> dict[str, Any] | None:
    """A multi-objective search's own Pareto set: its trials that no other beats on both the
    validation score and the cost it searched against (latency when measured, else parameters)."""
    from tunebench.fronts import non_dominated

    trials = list(rows.values())
    metric = (run["selection"] or {}).get("metric")
    if metric is None and any(t["inference_ms"] is not None for t in trials):
        metric = "latency"
    if metric is None:
        return None
    key = "inference_ms" if metric == "latency" else "param_count"
    front = non_dominated([(t["score"], t[key]) for t in trials])
    return {"metric": metric, "trials": sorted(trials[i]["number"] for i in front)}


def _test(job: SearchJob, family: ModelFamily, data: Splits, options: ExecutionSettings,
          params: Mapping[str, Any], weights: Path) -> tuple[dict[str, Any], Any, Any]:
    """Rebuild one configuration with its recorded weights and score it once on the test split:
    its compiled loss and metrics, and its predictions (one pass over the test images)."""
    from tunebench import training

    model, settings = training.build_trial_model(
        family, FixedHyperParameters(params), data.spec, options, max_epochs=job.max_epochs,
        train_size=len(data.x_test), weights=str(weights))
    metrics, scores = training.evaluate_once(model, data.x_test, data.y_test, settings.batch_size)
    return metrics, model, scores


def _default_test(job: SearchJob, run: Mapping[str, Any], rows: Mapping[int, Mapping[str, Any]],
                  family: ModelFamily, data: Splits, options: ExecutionSettings, test_key: str,
                  selected: Mapping[str, Any]) -> float | None:
    """The family default's test score (`first_trial: defaults`), when its trial has a score."""
    from tunebench import training

    default = rows.get(run["default_trial"]) if run["default_trial"] is not None else None
    if default is None or default["best_epoch"] is None:
        return None
    if default["number"] == run["best_trial"]:
        return selected.get(test_key)
    weights = trial_weights_path(job.artifact_dir, default["number"], default["best_epoch"])
    if not weights.exists():
        return None
    metrics, model, _ = _test(job, family, data, options, default["params"], weights)
    training.release(model)
    return metrics.get(test_key)


def _keep_selected(job: SearchJob, weights: Path) -> None:
    """Keep the tested weights as `best.weights.h5`; the other trials' files are no longer needed."""
    os.replace(weights, weights_path(job.artifact_dir))
    shutil.rmtree(weights.parent, ignore_errors=True)


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


def fail(store: Store, job: SearchJob, exc: BaseException, *, stage: str) -> None:
    """Close the run as failed at `stage` (setup, test evaluation), with the error."""
    if not isinstance(exc, TunebenchError):
        traceback.print_exc()
    message = str(exc) if isinstance(exc, TunebenchError) else f"{type(exc).__name__}: {exc}"
    now = time.time()
    store.fail_run(job.run_id, f"{stage}: {message}", stop_reason="error",
                   finished_at=store.run(job.run_id)["finished_at"] or now)


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


def _run_job(mode: str, job: SearchJob, events: Events) -> str | None:
    """Run one job (`search`, `resume` or `finalize`); None when its record could not be written."""
    try:
        if mode == "finalize":
            return finalize(job)
        return execute(job, events, resume=mode == "resume")
    except Exception as exc:  # the record itself could not be written (a full disk): say why on the pipe
        events.send(EventKind.FATAL, error=f"{type(exc).__name__}: {exc}"[:2000])  # first: the log is on that disk too
        try:
            traceback.print_exc()
        except OSError:
            pass
        return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    mode = "search"
    if argv and argv[0] == "--serve":
        return serve()
    if argv and argv[0] in ("--finalize", "--resume"):
        mode, argv = argv[0][2:], argv[1:]
    job = SearchJob.from_json(Path(argv[0]).read_text())
    limit_memory()  # before the frameworks load: every allocation of the search is under the guard
    parent = os.environ.get(PARENT_PID_ENV)
    if parent:
        _die_with_parent(int(parent))
    events = Events.from_env()
    status = _run_job(mode, job, events)
    if status is None:
        return 1
    sys.stdout.flush()
    return 0 if status == RunStatus.OK else 1


# -- a warm worker, reused across searches ----------------------------------------------------------------

#: A warm worker leaves (and the runner starts a fresh one) once its resident memory has grown by
#: this many MiB over what it held after its first job, or after `RECYCLE_JOBS` jobs.
RECYCLE_GROWTH_MB = environment.number("TUNEBENCH_WORKER_RECYCLE_MB")
RECYCLE_JOBS = int(environment.number("TUNEBENCH_WORKER_MAX_JOBS"))


def serve() -> int:
    """A warm worker (`python -m tunebench.worker --serve`): import the frameworks and the plugins
    once, then run the jobs the runner writes to stdin, one JSON line each (`{"mode": "search" |
    "resume" | "finalize", "job": PATH, "memory_limit": BYTES}`), one after the other.

    Each job's output goes to its own `log.txt`, and each starts from the same state: Keras's
    session cleared, its global configuration (float type, dtype policy, image layout) and the
    environment as they were after the warm-up; every trial seeds itself. After each job it sends
    `job_end` (the status, its resident memory) and leaves when memory grew past
    `RECYCLE_GROWTH_MB` (`recycle: true`). A kill, as ever, ends the process: the runner then starts
    a fresh one. The process exits at end of input.
    """
    limit_memory()
    parent = os.environ.get(PARENT_PID_ENV)
    if parent:
        _die_with_parent(int(parent))
    events = Events.from_env()
    state = _WarmState.capture()
    # the frameworks' objects, out of every collection for the worker's life: the searches'
    # per-trial collections walk only what the searches make (see `context.drive`)
    gc.collect()
    gc.freeze()
    events.send(EventKind.READY, warm_s=round(state.warm_s, 3))
    baseline: float | None = None
    jobs = 0
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        job = SearchJob.from_json(Path(request["job"]).read_text())
        if request.get("memory_limit"):  # this search's memory guard (its lanes inherit it)
            os.environ[MEMORY_LIMIT_ENV] = str(request["memory_limit"])
            limit_memory()
        with _output_to(Path(job.artifact_dir) / "log.txt", enabled=not job.verbose):
            status = _run_job(request["mode"], job, events)
            sys.stdout.flush()
            sys.stderr.flush()
        if status is None:
            return 1
        jobs += 1
        state.restore()  # for the next job, and to free what this one left before measuring
        gc.freeze()  # what the job imported for good (a strategy's library) joins the frameworks
        rss = rss_mb()
        baseline = rss if baseline is None else baseline
        recycle = rss - baseline > RECYCLE_GROWTH_MB or jobs >= RECYCLE_JOBS
        events.send(EventKind.JOB_END, status=status, rss_mb=round(rss, 1), jobs=jobs, recycle=recycle)
        if recycle:
            return 0
    return 0


class _WarmState:
    """What a warm worker restores before each job: Keras's global configuration and the environment."""

    def __init__(self, environ: dict[str, str], keras_config: dict[str, Any], warm_s: float) -> None:
        self.environ = environ
        self.keras_config = keras_config
        self.warm_s = warm_s

    @classmethod
    def capture(cls) -> _WarmState:
        started = time.perf_counter()
        import keras

        from tunebench import training  # noqa: F401  (the framework's import: the cost being paid once)
        from tunebench.registry import load_plugins

        try:
            load_plugins(())
        except Exception:  # a broken plugin: the job that names it reports it
            pass
        config = {"floatx": keras.config.floatx(), "epsilon": keras.config.epsilon(),
                  "image_data_format": keras.config.image_data_format(),
                  "dtype_policy": keras.config.dtype_policy().name}
        return cls(dict(os.environ), config, time.perf_counter() - started)

    def restore(self) -> None:
        import keras

        keras.backend.clear_session()
        keras.config.set_floatx(self.keras_config["floatx"])
        keras.config.set_epsilon(self.keras_config["epsilon"])
        keras.config.set_image_data_format(self.keras_config["image_data_format"])
        keras.config.set_dtype_policy(self.keras_config["dtype_policy"])
        if os.environ != self.environ:
            os.environ.clear()
            os.environ.update(self.environ)


class _output_to:
    """Send this process's stdout and stderr (file descriptors 1 and 2, so the frameworks' own
    output too) to `path` for the length of one job."""

    def __init__(self, path: Path, *, enabled: bool = True) -> None:
        self.path, self.enabled = path, enabled
        self.saved: tuple[int, int] | None = None

    def __enter__(self) -> None:
        if not self.enabled:
            return
        sys.stdout.flush()
        sys.stderr.flush()
        self.saved = (os.dup(1), os.dup(2))
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)

    def __exit__(self, *exc: object) -> None:
        if self.saved is None:
            return
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except OSError:
            pass
        for target, fd in zip((1, 2), self.saved):
            os.dup2(fd, target)
            os.close(fd)



if __name__ == "__main__":
    sys.exit(main())


__all__ = ["execute", "finalize"]
