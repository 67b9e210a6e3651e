"""The runner: plans a suite's searches, runs each in a child process, and supervises the clock.

The runner owns the loop, the clock and the record. Searches run outside the runner's process, in
warm workers (`python -m tunebench.worker --serve`) that run one search after another: the
framework import is paid once per suite, and a hung plugin can still be killed. A worker is
replaced after a kill, or when its memory has grown (it leaves by itself). The child stops trials
cooperatively at the deadline; the runner kills
it if it has not stopped `0.6 x allowed_overshoot` after the deadline, records what was in flight
as `timeout`, and evaluates the best configuration found so far in a fresh process.

A kill ends a search only at its deadline. When the runner must stop a trial sooner (its
`trial_budget` is spent, or it made no progress for `hang_timeout`), or the search's process dies
(a crash, the kernel's out-of-memory killer), the trial in flight is recorded and the search goes on
in a fresh process (`--resume`), with the trials so far as its history and the same deadline.
Finished searches are skipped when the same suite runs again; interrupted ones run again.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tunebench.budget import allowed_overshoot, format_duration
from tunebench.job import (
    EVENT_FD_ENV,
    GPU_SHARE_ENV,
    MEMORY_LIMIT_ENV,
    MEMORY_SHARE,
    PARENT_PID_ENV,
    SETUP_TIMEOUT_S,
    WORKER_MODULE,
    SearchJob,
    job_for,
    run_fields,
)
from tunebench.quiet import quiet_environment
from tunebench.settings import MIN_MEMORY_LIMIT
from tunebench.store import Store
from tunebench.suite import Search, Suite
from tunebench.vocabulary import EventKind, FailureKind, RunStatus, TrialStatus, failure_kind

#: Share of the allowed overshoot after which a search that has not stopped is killed.
KILL_AT = 0.6
POLL_S = 0.2
#: A search resumes after an early kill or a crash only if this much of its budget is left.
RESUME_MIN_S = 2.0
#: A search whose process dies this many times in a row without finishing a trial fails.
MAX_CRASHES = 3


@dataclass(frozen=True)
class Outcome:
    """What became of one search in this invocation."""

    search: Search
    run_id: int | None
    status: str  # ok, failed, interrupted, skipped
    note: str = ""
    test_score: float | None = None


@dataclass
class _Worker:
    """A warm search process (`python -m tunebench.worker --serve`), reused by consecutive searches
    that need the same environment (`key`: backend, accelerator, memory guard, log capture)."""

    proc: subprocess.Popen[bytes]
    reader: IO[bytes]
    key: tuple[Any, ...]
    jobs: int = 0


@dataclass
class _Active:
    search: Search
    job: SearchJob
    job_path: Path
    worker: _Worker
    index: int
    slot: str | None = None  # the accelerator it runs on
    phase: str = "setup"  # setup -> search -> finalize
    launched: float = field(default_factory=time.time)
    search_started: float | None = None
    search_deadline: float | None = None
    trial_deadlines: dict[int, float] = field(default_factory=dict)  # lane -> its trial's deadline
    in_flight: dict[int, float] = field(default_factory=dict)  # lane -> when its trial last made progress
    finalize_started: float | None = None
    killed: str | None = None
    #: Whether the kill was for a trial (its cap, a hang), after which the search goes on, or for
    #: the search's deadline, which ends it.
    kill_ends_search: bool = True
    crashes: int = 0  # deaths of the search's process in a row with no trial finished in between
    fatal: str | None = None  # the error the search's process could not record itself
    killed_at: float | None = None
    killed_cpu_s: float | None = None
    killed_phase: str | None = None  # the phase the runner saw when it killed (events may follow)
    cpu_at_launch: float = 0.0  # the warm worker's CPU seconds before this job (it served others)
    job_end: dict[str, Any] | None = None  # the worker's word that the job ended (it stays alive)
    trials: int = 0
    ok_trials: int = 0
    best: float | None = None
    buffer: bytes = b""

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        return self.worker.proc

    @property
    def reader(self) -> IO[bytes]:
        return self.worker.reader

    @property
    def ended(self) -> bool:
        """The job is over: the worker said so, or its process is gone."""
        return self.job_end is not None or self.proc.poll() is not None

    @property
    def exit_code(self) -> int | None:
        """The process's exit code, or for a job a warm worker finished, what a one-job process
        would have exited with."""
        if self.proc.returncode is None and self.job_end is not None:
            return 0 if self.job_end.get("status") == RunStatus.OK else 1
        return self.proc.returncode


class Runner:
    """Runs the searches of one suite against one results store.

    Args:
        suite: a validated suite.
        store: the results store.
        results_dir: where per-run artifacts (logs, best weights) go.
        workers: how many searches run at once.
        rerun_failed: run searches again whose last run failed.
        verbose: show Keras's own logs instead of capturing them in each run's log file.
        plugins: extra plugin modules (besides entry points) the child processes must load.
        out: where progress lines go.
    """

    def __init__(self, suite: Suite, store: Store, results_dir: str | Path, *, workers: int = 1,
                 rerun_failed: bool = False, verbose: bool = False, plugins: tuple[str, ...] = (),
                 out: IO[str] | None = None, gpus: list[str] | None = None, trials_per_gpu: int = 1,
                 spawn_lanes: bool = True) -> None:
        self.suite = suite
        self.store = store
        self.results_dir = Path(results_dir)
        self.workers = max(1, workers)
        self.rerun_failed = rerun_failed
        self.verbose = verbose
        self.plugins = plugins
        self.progress = Progress(out or sys.stderr)
        #: This runner's name in the store's claims: two runners on one store never run one search twice.
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        #: Accelerators to spread searches over (CUDA device ids), each shared by `trials_per_gpu`.
        self.slots = [g for g in (gpus or []) for _ in range(max(1, trials_per_gpu))]
        #: Whether a search with `parallel_trials` starts its other lanes itself (locally), or leaves
        #: them to a cluster executor that places them on other machines.
        self.spawn_lanes = spawn_lanes
        #: Warm workers waiting for their next search.
        self.idle: list[_Worker] = []

    # -- planning ------------------------------------------------------------------------------------
    def plan(self) -> tuple[list[Search], list[Outcome]]:
        """Split the suite into searches to run now and those to skip (already done)."""
        searches = self.suite.searches()
        latest = self.store.latest_runs(s.key for s in searches)
        to_run, skipped = [], []
        for s in searches:
            run = latest.get(s.key)
            if run is None or run["status"] == RunStatus.INTERRUPTED:
                to_run.append(s)
            elif run["status"] == RunStatus.OK:
                skipped.append(Outcome(s, run["id"], "skipped", "already finished"))
            elif run["status"] == RunStatus.FAILED:
                if self.rerun_failed:
                    to_run.append(s)
                else:
                    skipped.append(Outcome(s, run["id"], "skipped", "failed before; --rerun-failed retries it"))
            elif _alive(run):
                skipped.append(Outcome(s, run["id"], "skipped", f"running in process {run['pid']}"))
            else:
                self.store.interrupt_run(run["id"], "the runner stopped before this search ended")
                to_run.append(s)
        return to_run, skipped

    def claim(self, search: Search) -> str | None:
        """Take `search` for this runner; None if so, else why another runner has it."""
        def stale(claim: dict[str, Any], run: dict[str, Any] | None) -> bool:
            if run is None:  # claimed, but no run was ever created
                return bool(time.time() - claim["claimed_at"] > 120)
            return run["status"] in (RunStatus.FAILED, RunStatus.INTERRUPTED) or not _alive(run)

        got = self.store.acquire(search.key, self.token, stale)
        if got.taken:
            if got.run is not None and got.run["status"] in RunStatus.active():
                self.store.interrupt_run(got.run["id"], "the runner stopped before this search ended")
            return None
        if got.finished and got.run is not None:
            return f"finished by another runner (run {got.run['id']})"
        if got.holder is None:
            return "taken by another runner"
        where = f"run {got.run['id']} on {got.run['host']}" if got.run is not None else "another runner"
        return f"running elsewhere ({where})"

    def claim_or_skip(self, search: Search) -> Outcome | None:
        """Claim `search`; if another runner has it, the `skipped` outcome that says so."""
        why = self.claim(search)
        if why is None:
            return None
        latest = self.store.latest_runs([search.key]).get(search.key)
        return Outcome(search, latest["id"] if latest else None, "skipped", why)

    def create_run(self, search: Search, **fields: Any) -> int:
        """The run row of one attempt at `search`, bound to this runner's claim. Until a search
        process is started its pid is this runner's, so that other runners see it alive."""
        fields.setdefault("pid", os.getpid())
        run_id = self.store.create_run(**run_fields(search, backend_of(search)), host=socket.gethostname(), **fields)
        self.store.bind_claim(search.key, self.token, run_id)
        return run_id

    def release(self, search: Search, status: str) -> None:
        """Keep the claim of a finished search (it is done); free it otherwise, for a later run."""
        if status != RunStatus.OK:
            self.store.release_claim(search.key, self.token)

    # -- running -------------------------------------------------------------------------------------
    def run(self, planned: tuple[list[Search], list[Outcome]] | None = None) -> list[Outcome]:
        """Run every search that is not finished yet (or those `planned`: what `plan` gave); returns
        one outcome per search. Searches on a table (`Search.simulated`) are not this runner's:
        `tunebench.simulation.run_searches` runs them."""
        to_run, outcomes = planned or self.plan()
        to_run = [s for s in to_run if not s.simulated]
        for o in outcomes:
            self.progress.skipped(o)
        outcomes += self._loop(deque((i, s, None) for i, s in enumerate(to_run, 1)), len(to_run))
        order = {s.key: i for i, s in enumerate(self.suite.searches())}
        return sorted(outcomes, key=lambda o: order[o.search.key])

    def execute(self, search: Search, run_id: int, *, index: int = 1, total: int = 1) -> Outcome:
        """Run one search whose run record exists already (a cluster worker's share of a suite).
        Claims stay with whoever created the run."""
        return self._loop(deque([(index, search, run_id)]), total, claims=False)[0]

    def _loop(self, pending: deque[tuple[int, Search, int | None]], total: int, *,
              claims: bool = True) -> list[Outcome]:
        outcomes: list[Outcome] = []
        active: dict[int, _Active] = {}
        free = list(self.slots)
        try:
            while pending or active:
                while pending and len(active) < max(self.workers, len(self.slots)):
                    index, search, run_id = pending.popleft()
                    if claims and (skipped := self.claim_or_skip(search)) is not None:
                        outcomes.append(skipped)
                        self.progress.skipped(skipped)
                        continue
                    slot = free.pop(0) if free else None
                    a = self._launch(search, index, run_id=run_id, slot=slot)
                    active[a.reader.fileno()] = a
                    self.progress.started(a, total)
                self._pump(active)
                now = time.time()
                for fd, a in list(active.items()):
                    if a.ended:
                        self._drain(a)
                        del active[fd]
                        follow_up = self._ended(a)
                        if isinstance(follow_up, _Active):
                            active[follow_up.reader.fileno()] = follow_up
                        else:
                            outcomes.append(follow_up)
                            if claims:
                                self.release(a.search, follow_up.status)
                            if a.slot is not None:
                                free.append(a.slot)
                            self.progress.finished(a, follow_up, total)
                    else:
                        self._enforce(a, now)
                self.progress.tick(list(active.values()), total)
        except BaseException:  # Ctrl-C, SIGTERM (as SystemExit), or a bug: leave nothing running
            for a in active.values():
                _kill(a.proc)
                self.store.interrupt_run(a.job.run_id, "the runner was stopped (Ctrl-C or a signal)")
                if claims:
                    self.release(a.search, RunStatus.INTERRUPTED)
            raise
        finally:
            self.progress.clear()
            self.close_workers()
        return outcomes

    def close_workers(self) -> None:
        """End the warm workers: each leaves at the end of its input (killed if it does not)."""
        idle, self.idle = self.idle, []
        for w in idle:  # all at once: they leave side by side
            _end_input(w)
        for w in idle:
            retire(w)

    def _worker_for(self, key: tuple[Any, ...], env: dict[str, str], log_path: Path | None) -> tuple[_Worker, bool]:
        """An idle warm worker with `key`, or a fresh one; and whether it was warm."""
        for w in list(self.idle):
            if w.key == key and w.proc.poll() is None:
                self.idle.remove(w)
                return w, True
        # none: the idle ones (another backend or accelerator, or dead) give their memory back
        idle, self.idle = self.idle, []
        for w in idle:
            retire(w)
        return spawn_worker(key, env, log_path), False

    def prewarm(self, worker: _Worker | None) -> None:
        """Keep `worker` (from `prewarm_worker`, started while the suite was checked) for the first search."""
        if worker is not None:
            self.idle.append(worker)


    def _give_back(self, a: _Active) -> bool:
        """Keep the worker of an ended job for the next search, when it is alive and may be reused."""
        w = a.worker
        if (a.job_end is None or a.killed or a.job_end.get("recycle") or w.proc.poll() is not None
                or a.buffer.strip()):
            return False
        a.buffer = b""
        if len(self.idle) >= max(self.workers, len(self.slots), 1):  # more than can run at once
            return False
        self.idle.append(w)
        return True

    def _launch(self, search: Search, index: int, *, run_id: int | None = None, slot: str | None = None,
                finalize_job: SearchJob | None = None, resume_job: SearchJob | None = None) -> _Active:
        if finalize_job is None and resume_job is None and run_id is None:
            run_id = self.create_run(search, executor="local", attempt=1)
        if resume_job is not None:
            job = resume_job
        elif finalize_job is None:
            assert run_id is not None
            job = self.job_for(search, run_id)
            artifact_dir = Path(job.artifact_dir)
            artifact_dir.mkdir(parents=True, exist_ok=True)
            self.store.dispatch_run(run_id, artifact_dir=str(artifact_dir), host=socket.gethostname())
        else:
            job = finalize_job
        job_path = Path(job.artifact_dir) / "job.json"
        job_path.write_text(job.to_json())
        env = dict(os.environ, **{PARENT_PID_ENV: str(os.getpid()), "PYTHONUNBUFFERED": "1"})
        if slot is not None:
            env.update(accelerator_env(slot, share=self.slots.count(slot)))
        env[MEMORY_LIMIT_ENV] = str(self.memory_limit(search))
        if search.backend is not None:
            env["KERAS_BACKEND"] = search.backend
        if not self.verbose:
            quiet_environment(env)
        key = worker_key(backend_of(search), slot, self.verbose)
        # a fresh worker's own output (its warm-up) goes to the log of the job it was started for
        spawn_log = None if self.verbose else Path(job.artifact_dir) / "log.txt"
        worker, warm = self._worker_for(key, env, spawn_log)
        mode = "finalize" if finalize_job is not None else "resume" if resume_job is not None else "search"
        request = json.dumps({"mode": mode, "job": str(job_path),
                              "memory_limit": env[MEMORY_LIMIT_ENV]}).encode() + b"\n"
        if not _send(worker, request):  # it died while idle: a fresh one
            _kill(worker.proc)
            worker.reader.close()
            worker, warm = self._worker_for(key, env, spawn_log)
            _send(worker, request)
        worker.jobs += 1
        self.store.update_run(job.run_id, pid=worker.proc.pid)  # the process other runners check for life
        a = _Active(search, job, job_path, worker, index, slot=slot)
        if warm:
            a.cpu_at_launch = _cpu_seconds(worker.proc.pid) or 0.0
        if finalize_job is not None:
            a.phase, a.finalize_started = "finalize", time.time()
        return a

    def memory_limit(self, search: Search) -> int:
        """The memory guard of one search's processes, in bytes: the suite's `resources.memory`,
        or by default `MEMORY_SHARE` of this machine's memory split between the processes that run
        at once (searches side by side, times the search's lanes), at least `MIN_MEMORY_LIMIT`."""
        import psutil

        declared = self.suite.resources.memory_bytes
        if declared is not None:
            return int(declared)
        at_once = max(self.workers, len(self.slots), 1) * search.lanes
        return max(MIN_MEMORY_LIMIT, int(MEMORY_SHARE * psutil.virtual_memory().total / at_once))

    def job_for(self, search: Search, run_id: int, lane: int = 0) -> SearchJob:
        """What a search process (or one lane of it) needs to run `search` as run `run_id`."""
        return job_for(search, run_id, store_url=self.store.url, results_dir=self.results_dir, verbose=self.verbose,
                       plugins=self.plugins, spawn_lanes=self.spawn_lanes, lane=lane)

    # -- supervision --------------------------------------------------------------------------------
    def _pump(self, active: dict[int, _Active]) -> None:
        if not active:
            return
        ready, _, _ = select.select(list(active), [], [], POLL_S)
        for fd in ready:
            self._read(active[fd])

    def _read(self, a: _Active) -> bool:
        """Handle what the child has sent; False at end of stream."""
        try:
            chunk = os.read(a.reader.fileno(), 65536)
        except OSError:
            chunk = b""
        a.buffer += chunk
        *lines, a.buffer = a.buffer.split(b"\n")
        for line in lines:
            if line.strip():
                self._event(a, json.loads(line))
        return bool(chunk)

    def _read_pending(self, a: _Active) -> None:
        """Handle every event the child has written so far, without waiting for more."""
        while select.select([a.reader], [], [], 0)[0] and self._read(a):
            pass

    def _drain(self, a: _Active) -> None:
        """Read what the ended job's process said; keep its worker for the next search, or end it."""
        self._read_pending(a)
        if not self._give_back(a):
            retire(a.worker)

    def _event(self, a: _Active, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == EventKind.STARTED:
            a.phase, a.search_started, a.search_deadline = "search", event["started_at"], event["deadline"]
        elif kind == EventKind.TRIAL_START:
            a.in_flight[event.get("lane", 0)] = time.time()
            if a.job.trial_budget_s:
                a.trial_deadlines[event.get("lane", 0)] = event["deadline"]
        elif kind == EventKind.PROGRESS:
            if event.get("lane", 0) in a.in_flight:
                a.in_flight[event.get("lane", 0)] = time.time()
        elif kind == EventKind.TRIAL:
            a.trials += 1
            a.crashes = 0
            a.ok_trials += event["status"] == TrialStatus.OK
            a.trial_deadlines.pop(event.get("lane", 0), None)
            a.in_flight.pop(event.get("lane", 0), None)
            if event.get("best") is not None:  # the best over the lanes
                a.best = event["best"] if a.best is None else max(a.best, event["best"])
        elif kind == EventKind.FATAL:
            a.fatal = event.get("error")
        elif kind == EventKind.SEARCH_DONE:
            a.phase, a.finalize_started = "finalize", time.time()
        elif kind == EventKind.JOB_END:
            a.job_end = event
            run = self.store.run(a.job.run_id)
            # which process ran it: the nth search of a warm worker, and its memory after the search
            self.store.update_run(a.job.run_id, hardware=dict(run["hardware"] or {}, worker={
                "pid": a.proc.pid, "job": event.get("jobs"), "rss_mb": event.get("rss_mb"),
                "recycled": bool(event.get("recycle"))}))

    def _enforce(self, a: _Active, now: float) -> None:
        """Kill a child that is past its hard deadline for the phase it is in."""
        if a.killed:
            return
        if a.phase == "setup" and now > a.launched + SETUP_TIMEOUT_S:
            self._kill(a, f"setup (loading plugins, Keras and the data) took longer than "
                          f"{format_duration(SETUP_TIMEOUT_S)}")
        elif a.phase == "search":
            assert a.search_deadline is not None
            hard = a.search_deadline + KILL_AT * allowed_overshoot(a.job.budget_s)
            why, ends = "the trial in flight did not stop at its deadline", True
            if a.trial_deadlines and a.job.trial_budget_s:
                trial_hard = min(a.trial_deadlines.values()) + KILL_AT * allowed_overshoot(a.job.trial_budget_s)
                if trial_hard < hard:
                    hard, ends = trial_hard, False
                    cap = format_duration(a.job.trial_budget_s)
                    why = f"the trial in flight did not stop at its trial budget ({cap})"
            hang = a.job.search.hang_timeout
            if a.in_flight and min(a.in_flight.values()) + hang < hard:
                hard, ends = min(a.in_flight.values()) + hang, False
                why = f"the trial in flight made no progress for {format_duration(hang)} (hang_timeout)"
            if now > hard:
                self._read_pending(a)  # what it said since the last poll: it may have just stopped in time
                if a.phase == "search":
                    self._kill(a, why)
                    a.kill_ends_search = ends
        elif a.phase == "finalize" and now > a.finalize_started + _finalize_timeout(a.job):  # type: ignore[operator]
            self._kill(a, f"the test evaluation took longer than {format_duration(_finalize_timeout(a.job))}")

    def _kill(self, a: _Active, why: str) -> None:
        a.killed, a.killed_at, a.killed_phase = why, time.time(), a.phase
        cpu = _cpu_seconds(a.proc.pid)  # the child can no longer record it itself
        a.killed_cpu_s = None if cpu is None else cpu - a.cpu_at_launch
        _kill(a.proc)

    def _ended(self, a: _Active) -> Outcome | _Active:
        """Record how a child ended; may start the test evaluation in a fresh process."""
        run_id = a.job.run_id
        run = self.store.run(run_id)
        if run["status"] in RunStatus.ended():
            return Outcome(a.search, run_id, run["status"], run["error"] or _warning(run), run["test_score"])
        time_left = (a.search_deadline or 0.0) - time.time()
        if a.killed and a.killed_phase == "search" and not a.kill_ends_search and time_left > RESUME_MIN_S:
            # a trial was stopped early (its cap, a hang): record it, and the search goes on
            a.trials += self.store.close_open_trials(run_id, TrialStatus.TIMEOUT, f"killed by the runner: {a.killed}",
                                                     finished_at=a.killed_at)
            return self._resume(a, run, extra_cpu_s=a.killed_cpu_s)
        if (not a.killed and a.phase == "setup" and a.exit_code not in (0, 1) and a.crashes + 1 < MAX_CRASHES
                and run["started_at"] is None):
            # the process died before the search's clock started (a warm worker lost while the
            # search loaded its data): the search starts afresh in a new process, nothing is lost
            follow_up = self._launch(a.search, a.index, run_id=run_id, slot=a.slot)
            follow_up.crashes = a.crashes + 1
            return follow_up
        crashed = (not a.killed and a.phase == "search" and a.exit_code not in (0, 1)
                   and time_left > RESUME_MIN_S and a.crashes + 1 < MAX_CRASHES)
        if crashed:  # the search's process died (a crash, the OOM killer): its trial in flight failed
            why = _death(a) + " while this trial ran; the search went on in a fresh process"
            died = FailureKind.OOM if _out_of_memory(a) else FailureKind.CRASHED
            a.trials += self.store.close_open_trials(run_id, TrialStatus.FAILED, why, error_kind=died)
            return self._resume(a, run, crashes=a.crashes + 1)
        if a.killed and a.killed_phase == "search":  # the search's trials are kept: test its best
            a.trials += self.store.close_open_trials(run_id, TrialStatus.TIMEOUT, f"killed by the runner: {a.killed}",
                                                     finished_at=a.killed_at)
            gpus = len((run["hardware"] or {}).get("gpus", []))
            killed_at = a.killed_at or time.time()
            started = run["started_at"] or killed_at
            self.store.update_run(run_id, finished_at=killed_at, stop_reason="killed",
                                  error=f"search stopped by the runner: {a.killed}", cpu_seconds=a.killed_cpu_s,
                                  accelerator_seconds=(killed_at - started) * gpus)
            follow_up = self._launch(a.search, a.index, finalize_job=a.job, slot=a.slot)
            follow_up.trials, follow_up.ok_trials, follow_up.best = a.trials, a.ok_trials, a.best
            return follow_up
        kind = FailureKind.KILLED
        if a.killed:
            why = a.killed
        elif a.fatal:
            why = f"the search's process could not go on: {a.fatal}; see {Path(a.job.artifact_dir) / 'log.txt'}"
            kind = failure_kind(a.fatal)
        else:
            why = _death(a)
            if a.crashes:
                why += f" ({a.crashes + 1} times in a row)"
        now = time.time()
        a.trials += self.store.close_open_trials(run_id, TrialStatus.FAILED, why, finished_at=now, error_kind=kind)
        self.store.fail_run(run_id, why, stop_reason=run["stop_reason"] or "crashed",
                            finished_at=run["finished_at"] or now, completed_at=now)
        return Outcome(a.search, run_id, RunStatus.FAILED, why)


    def _resume(self, a: _Active, run: dict[str, Any], *, extra_cpu_s: float | None = None,
                crashes: int = 0) -> _Active:
        """Start the search again in a fresh process, against the same deadline (`--resume`)."""
        self.store.update_run(a.job.run_id, resumes=(run["resumes"] or 0) + 1,
                              cpu_seconds=(run["cpu_seconds"] or 0.0) + (extra_cpu_s or 0.0))
        follow_up = self._launch(a.search, a.index, resume_job=a.job, slot=a.slot)
        follow_up.trials, follow_up.ok_trials, follow_up.best = a.trials, a.ok_trials, a.best
        follow_up.crashes = crashes
        return follow_up


def worker_key(backend: str, slot: str | None, verbose: bool) -> tuple[Any, ...]:
    """What a warm worker is bound to for life: its Keras backend, its accelerator, log capture."""
    return (backend, slot, verbose)


def spawn_worker(key: tuple[Any, ...], env: dict[str, str], log_path: Path | None) -> _Worker:
    """Start a warm worker (`python -m tunebench.worker --serve`) with `env`; its own output goes
    to `log_path` (None: inherited)."""
    read_fd, write_fd = os.pipe()
    env = dict(env, **{EVENT_FD_ENV: str(write_fd)})
    if log_path is not None:
        log = open(log_path, "ab")
        streams: dict[str, Any] = {"stdout": log, "stderr": subprocess.STDOUT}
    else:
        log, streams = None, {}
    proc = subprocess.Popen([sys.executable, "-m", WORKER_MODULE, "--serve"], env=env,
                            pass_fds=(write_fd,), stdin=subprocess.PIPE, start_new_session=True, **streams)
    os.close(write_fd)
    if log is not None:
        log.close()
    return _Worker(proc, os.fdopen(read_fd, "rb", buffering=0), key)


def prewarm_worker(*, verbose: bool = False) -> _Worker:
    """A warm worker for the first search of a local run, started before the suite is checked (its
    framework import runs beside the command line's own). A search that needs another backend or
    an accelerator does not use it, and it is ended."""
    env = dict(os.environ, **{PARENT_PID_ENV: str(os.getpid()), "PYTHONUNBUFFERED": "1"})
    if not verbose:
        quiet_environment(env)
    return spawn_worker(worker_key(default_backend(), None, verbose), env, None if verbose else Path(os.devnull))


def _send(w: _Worker, request: bytes) -> bool:
    """Hand `w` a job; False if it is gone."""
    try:
        assert w.proc.stdin is not None
        w.proc.stdin.write(request)
        w.proc.stdin.flush()
        return True
    except OSError:
        return False


def _end_input(w: _Worker) -> None:
    """Tell `w` no job follows (it leaves); one that never got a job (it may still be importing) is killed."""
    if w.jobs == 0:
        _kill(w.proc)
    try:
        if w.proc.stdin is not None:
            w.proc.stdin.close()
    except OSError:
        pass


def retire(w: _Worker) -> None:
    """End a worker that will not be reused: it leaves by itself after its last job (a recycle),
    or is killed."""
    _end_input(w)
    try:
        w.proc.wait(5)
    except subprocess.TimeoutExpired:
        _kill(w.proc)
    w.reader.close()


def _out_of_memory(a: _Active) -> bool:
    """Whether the end of a dead search process's log shows an allocation that failed (a C++
    `bad_alloc` under the memory guard aborts the process rather than raising)."""
    try:
        with open(Path(a.job.artifact_dir) / "log.txt", "rb") as log:
            log.seek(0, 2)
            log.seek(max(0, log.tell() - 8192))
            tail = log.read().decode("utf-8", "replace")
    except OSError:
        return False
    return failure_kind(tail) == FailureKind.OOM


#: Said beside a finished search whose selected model gave every test image the same answer.
COLLAPSED = ("warning: the selected model gives every test image the same answer (a collapsed network; "
             "benchmarks/diagnostics/dead_units.py shows whether its units died)")


#: Said beside a finished multilabel search whose test images all carry the same label set.
TRIVIAL = ("warning: every test image has the same labels, so a model that always answers them scores perfectly; "
           "the score says nothing (check the dataset's label columns)")


def _warning(run: Mapping[str, Any]) -> str:
    """What a user should know about a finished search that succeeded: a collapsed model, or a
    multilabel test split whose metric is trivially perfect."""
    metrics = run.get("test_metrics") or {}
    if not isinstance(metrics, dict):
        return ""
    return TRIVIAL if metrics.get("trivial") else COLLAPSED if metrics.get("collapsed") else ""


def _death(a: _Active) -> str:
    """How a search's process ended, for the record."""
    code = a.exit_code
    why = f"the search process exited with code {code}"
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        why = f"the search process died from {name}"
        if -code == signal.SIGKILL:
            why += " (often the system running out of memory)"
    return why + f"; see {Path(a.job.artifact_dir) / 'log.txt'}"


def backend_of(search: Search) -> str:
    """The Keras backend a search's process will use."""
    return search.backend or default_backend()


def default_backend() -> str:
    """The Keras backend a search's process uses unless the suite names one."""
    return os.environ.get("KERAS_BACKEND") or "tensorflow"


def accelerator_env(device: str, *, share: int = 1) -> dict[str, str]:
    """Environment pinning a search process to one GPU that `share` searches use at once. When
    several share it, none may grab all of its memory up front (TensorFlow: memory growth; JAX: no
    preallocation), and each counts on 1/`share` of it when deciding whether its data fits there."""
    env = {"CUDA_VISIBLE_DEVICES": device}
    if share > 1:
        env.update(TF_FORCE_GPU_ALLOW_GROWTH="true", XLA_PYTHON_CLIENT_PREALLOCATE="false",
                   **{GPU_SHARE_ENV: str(share)})
    return env


def visible_gpus() -> list[str]:
    """CUDA device ids on this machine, without importing a framework: CUDA_VISIBLE_DEVICES, or
    nvidia-smi. Empty on CPU-only machines."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip() and d.strip() != "-1"]
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def _finalize_timeout(job: SearchJob) -> float:
    return max(120.0, job.budget_s)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Kill a child and anything it started (it leads its own process group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system, with its children) a process has used so far."""
    try:
        import psutil

        t = psutil.Process(pid).cpu_times()
        return float(t.user + t.system + t.children_user + t.children_system)
    except Exception:  # gone already
        return None


def _alive(run: dict[str, Any]) -> bool:
    """Whether a run marked `running` still has a live process behind it."""
    if run.get("host") and run["host"] != socket.gethostname():
        beat = run.get("heartbeat_at") or run.get("created_at") or 0
        return time.time() - beat < 600
    pid = run.get("pid")
    if not pid:
        return False
    try:
        import psutil

        command = " ".join(psutil.Process(pid).cmdline())
        return "harness" in command or "tunebench" in command
    except Exception:  # no such process, or not ours to inspect
        return False


# -- progress display ----------------------------------------------------------------------------------

class Progress:
    """One live line per search on a terminal; a line per start and end in logs."""

    def __init__(self, out: IO[str], *, clock: Callable[[], float] = time.time) -> None:
        self.out = out
        self.tty = hasattr(out, "isatty") and out.isatty()
        self.clock = clock
        self._shown = False

    def _write(self, text: str) -> None:
        self.clear()
        self.out.write(text + "\n")
        self.out.flush()

    def clear(self) -> None:
        if self.tty and self._shown:
            self.out.write("\r\x1b[K")
            self.out.flush()
            self._shown = False

    def skipped(self, o: Outcome) -> None:
        self._write(f"  skip  {o.search.title} (run {o.run_id}: {o.note})")

    def started(self, a: _Active, total: int) -> None:
        if not self.tty:
            self._write(f"[{a.index}/{total}] start {a.search.title} (run {a.job.run_id}, "
                        f"budget {format_duration(a.job.budget_s)})")

    def line(self, a: _Active, total: int) -> str:
        best = f"{a.best:.4f}" if a.best is not None else "-"
        if a.phase == "setup":
            state = "loading data"
        elif a.phase == "search":
            left = max(0.0, (a.search_deadline or 0) - self.clock())
            state = f"trials {a.trials} ({a.ok_trials} ok) · best val {best} · {format_duration(left)} left"
        else:
            state = f"trials {a.trials} · best val {best} · evaluating on test"
        return f"[{a.index}/{total}] {a.search.title} | {state}"

    def tick(self, active: list[_Active], total: int) -> None:
        if not self.tty or not active:
            return
        text = "  ||  ".join(self.line(a, total) for a in active)
        try:
            width = os.get_terminal_size(self.out.fileno()).columns
        except (OSError, ValueError):
            width = 120
        self.out.write("\r\x1b[K" + text[: max(20, width - 1)])
        self.out.flush()
        self._shown = True

    def finished(self, a: _Active, o: Outcome, total: int) -> None:
        best = f"{a.best:.4f}" if a.best is not None else "-"
        test = f", test {o.test_score:.4f}" if o.test_score is not None else ""
        mark = "done" if o.status == RunStatus.OK else o.status.upper()
        note = f" — {o.note}" if o.note else ""
        self._write(f"[{a.index}/{total}] {mark:<5} {a.search.title}: {a.trials} trials, "
                    f"best val {best}{test}{note}")
