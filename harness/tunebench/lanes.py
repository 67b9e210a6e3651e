"""Parallel trials: the other lanes of a search (`parallel_trials: N`).

Lane 0 (`tunebench.worker.execute`) owns the run. Lanes 1..N-1 are whole search processes of their
own: each loads the data, waits for lane 0 to start the clock, and drives its own copy of the
strategy against the same run and the same wall-clock deadline, sharing trial numbers, the best
trial and (for Optuna) the study through the store. Lane 0 starts them as its children here, or a
cluster executor places them on other machines.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

from tunebench import space_costs
from tunebench.budget import Budget, allowed_overshoot
from tunebench.context import TrialContext, drive
from tunebench.errors import TunebenchError
from tunebench.job import EVENT_FD_ENV, PARENT_PID_ENV, SETUP_TIMEOUT_S, WORKER_MODULE, Events, SearchJob
from tunebench.provenance import check_fingerprint
from tunebench.search_setup import instantiate, prepare_splits
from tunebench.store import Store
from tunebench.vocabulary import RunStatus, TrialStatus

#: How often a lane waiting on the others looks at the store.
LANE_POLL_S = 0.2
#: Share of the allowed overshoot lane 0 waits past the deadline for the other lanes before it kills
#: them: well before the runner's own kill (`runner.KILL_AT`), so the search still ends on time.
LANE_GRACE = 0.3


def lane_command(job: SearchJob, lane: int) -> list[str]:
    """Write lane `lane`'s job file beside the run's and return the command that runs that lane."""
    folder = Path(job.artifact_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"job.lane{lane}.json"
    path.write_text(job.for_lane(lane).to_json())
    return [sys.executable, "-m", WORKER_MODULE, str(path)]


def spawn_lanes(job: SearchJob) -> list[subprocess.Popen[bytes]]:
    """Start lanes 1..N-1 as child processes of this one (so the runner's kill reaches them)."""
    fd = os.environ.get(EVENT_FD_ENV)
    env = dict(os.environ, **{PARENT_PID_ENV: str(os.getpid())})
    return [subprocess.Popen(lane_command(job, lane), env=env, pass_fds=(int(fd),) if fd else (),
                             stdin=subprocess.DEVNULL) for lane in range(1, job.lanes)]


def ready_path(job: SearchJob, lane: int) -> Path:
    """The file lane `lane` writes once its data is loaded (lanes started by lane 0 share its disk)."""
    return Path(job.artifact_dir) / f"lane{lane}.ready"


def await_ready(job: SearchJob, procs: list[subprocess.Popen[bytes]]) -> None:
    """Wait until every lane lane 0 started has loaded its data (or died, or `SETUP_TIMEOUT_S`
    passed), so that the search's clock starts with all its lanes: a warm lane 0 is ready in a
    fraction of a second, a fresh lane process only after importing the frameworks."""
    give_up = time.time() + SETUP_TIMEOUT_S
    for lane, proc in enumerate(procs, 1):
        while not ready_path(job, lane).exists() and proc.poll() is None and time.time() < give_up:
            time.sleep(LANE_POLL_S)


def execute_lane(job: SearchJob, events: Events) -> str:
    """Lane k > 0 of a search with parallel trials: load the data, wait for lane 0's clock to start,
    then drive the strategy against the same run until the same deadline."""
    store = Store(job.store_url)
    try:
        try:
            dataset, family, strategy = instantiate(job)
            data, _ = prepare_splits(job, dataset)
            ready_path(job, job.lane).touch()  # lane 0 starts the clock once every lane is here
            started = None
            give_up = time.time() + SETUP_TIMEOUT_S
            while started is None and time.time() < give_up:
                run = store.run(job.run_id)
                if run["status"] not in RunStatus.active() or run["finished_at"] is not None:
                    print(f"lane {job.lane}: run {job.run_id} has ended already; nothing to do", flush=True)
                    return RunStatus.OK
                started = run["started_at"]
                if started is None:
                    time.sleep(LANE_POLL_S)
            if started is None:
                raise TunebenchError(f"lane 0 of run {job.run_id} did not start its search within "
                                     f"{SETUP_TIMEOUT_S:.0f} s")
            check_fingerprint(store, job.run_id, data.fingerprint)  # against lane 0's too
            space_costs.for_search(job, store, family, strategy, data, fresh=False)  # lane 0's
        except Exception as exc:
            traceback.print_exc()
            print(f"lane {job.lane} of run {job.run_id} could not start: {exc}", flush=True)
            return RunStatus.FAILED
        # The same wall-clock deadline as lane 0, on this process's monotonic clock.
        budget = Budget(job.budget_s, started=time.monotonic() - (time.time() - started),
                        trial_seconds=job.trial_budget_s)
        ctx = TrialContext(job, store, family, data, budget, events, rule=strategy.selection_rule())
        _, error = drive(strategy, ctx)
        ctx.release()
        if error:
            print(f"lane {job.lane} of run {job.run_id}: {error}", flush=True)
        return RunStatus.OK if error is None else RunStatus.FAILED
    finally:
        store.lane_done(job.run_id)
        store.close()


def await_lanes(job: SearchJob, store: Store, procs: list[subprocess.Popen[bytes]], *, deadline: float,
                done: bool) -> None:
    """Wait for the other lanes to finish their trials (they stop at the same deadline); a lane
    still running `LANE_GRACE x allowed_overshoot` past it is killed, and its trial in flight recorded as
    `timeout`. Lanes started elsewhere (a cluster) are waited for through the store, until they
    report back or no trial is in flight once the strategy is `done` (out of work) or the deadline passed."""
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
            store.close_open_trials(job.run_id, TrialStatus.TIMEOUT,
                                    f"lane {lane} did not stop at the deadline; killed", lane=lane)
        elif proc.returncode not in (0, 1):
            store.close_open_trials(job.run_id, TrialStatus.FAILED, f"lane {lane}'s process exited with code "
                                    f"{proc.returncode}", lane=lane)
    # A lane on another machine that never reported back (its node died, or it never started).
    store.close_open_trials(job.run_id, TrialStatus.INTERRUPTED,
                            "its lane did not finish (the process or its node was lost)")


def children_cpu_s() -> float:
    """CPU seconds used by this process's finished (reaped) children: the lanes it started."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
