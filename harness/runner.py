"""The runner: plans a suite's searches, runs each in a child process, and supervises the clock.

The runner owns the loop, the clock and the record. Each search runs in its own process
(`python -m harness.worker`), so its host and accelerator memory is returned when it ends and a
hung plugin can be killed. The child stops trials cooperatively at the deadline; the runner kills
it if it has not stopped `0.6 x allowed_overshoot` after the deadline, records what was in flight
as `timeout`, and evaluates the best configuration found so far in a fresh process. Finished
searches are skipped when the same suite runs again; interrupted ones run again.
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
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from harness.budget import allowed_overshoot, format_duration
from harness.store import Store
from harness.strategies import FAILED, INTERRUPTED, TIMEOUT
from harness.suite import Search, Suite
from harness.worker import EVENT_FD_ENV, PluginCall, SearchJob

#: How long loading plugins, Keras and the data may take before the search's clock starts.
SETUP_TIMEOUT_S = float(os.environ.get("TUNEBENCH_SETUP_TIMEOUT", "600"))
#: Share of the allowed overshoot after which a search that has not stopped is killed.
KILL_AT = 0.6
POLL_S = 0.2


@dataclass(frozen=True)
class Outcome:
    """What became of one search in this invocation."""

    search: Search
    run_id: int | None
    status: str  # ok, failed, interrupted, skipped
    note: str = ""
    test_score: float | None = None


@dataclass
class _Active:
    search: Search
    job: SearchJob
    job_path: Path
    proc: subprocess.Popen[bytes]
    reader: IO[bytes]
    index: int
    phase: str = "setup"  # setup -> search -> finalize
    launched: float = field(default_factory=time.time)
    search_started: float | None = None
    search_deadline: float | None = None
    trial_deadline: float | None = None
    finalize_started: float | None = None
    killed: str | None = None
    killed_at: float | None = None
    killed_cpu_s: float | None = None
    trials: int = 0
    ok_trials: int = 0
    best: float | None = None
    buffer: bytes = b""


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
                 out: IO[str] | None = None) -> None:
        self.suite = suite
        self.store = store
        self.results_dir = Path(results_dir)
        self.workers = max(1, workers)
        self.rerun_failed = rerun_failed
        self.verbose = verbose
        self.plugins = plugins
        self.progress = Progress(out or sys.stderr)

    # -- planning ------------------------------------------------------------------------------------
    def plan(self) -> tuple[list[Search], list[Outcome]]:
        """Split the suite into searches to run now and those to skip (already done)."""
        searches = self.suite.searches()
        latest = self.store.latest_runs(s.key for s in searches)
        to_run, skipped = [], []
        for s in searches:
            run = latest.get(s.key)
            if run is None or run["status"] == "interrupted":
                to_run.append(s)
            elif run["status"] == "ok":
                skipped.append(Outcome(s, run["id"], "skipped", "already finished"))
            elif run["status"] == "failed":
                if self.rerun_failed:
                    to_run.append(s)
                else:
                    skipped.append(Outcome(s, run["id"], "skipped", "failed before; --rerun-failed retries it"))
            elif _alive(run):
                skipped.append(Outcome(s, run["id"], "skipped", f"running in process {run['pid']}"))
            else:
                self._interrupt(run["id"], "the runner stopped before this search ended")
                to_run.append(s)
        return to_run, skipped

    def _interrupt(self, run_id: int, why: str) -> None:
        self.store.close_open_trials(run_id, INTERRUPTED, why)
        self.store.update_run(run_id, status="interrupted", error=why)

    # -- running -------------------------------------------------------------------------------------
    def run(self) -> list[Outcome]:
        """Run every search that is not finished yet; returns one outcome per search of the suite."""
        to_run, outcomes = self.plan()
        for o in outcomes:
            self.progress.skipped(o)
        pending = deque(enumerate(to_run, 1))
        active: dict[int, _Active] = {}
        total = len(to_run)
        try:
            while pending or active:
                while pending and len(active) < self.workers:
                    index, search = pending.popleft()
                    a = self._launch(search, index)
                    active[a.reader.fileno()] = a
                    self.progress.started(a, total)
                self._pump(active)
                now = time.time()
                for fd, a in list(active.items()):
                    if a.proc.poll() is not None:
                        self._drain(a)
                        del active[fd]
                        follow_up = self._ended(a)
                        if isinstance(follow_up, _Active):
                            active[follow_up.reader.fileno()] = follow_up
                        else:
                            outcomes.append(follow_up)
                            self.progress.finished(a, follow_up, total)
                    else:
                        self._enforce(a, now)
                self.progress.tick(list(active.values()), total)
        except KeyboardInterrupt:
            for a in active.values():
                _kill(a.proc)
                self._interrupt(a.job.run_id, "interrupted by the user (Ctrl-C)")
            raise
        finally:
            self.progress.clear()
        order = {s.key: i for i, s in enumerate(self.suite.searches())}
        return sorted(outcomes, key=lambda o: order[o.search.key])

    def _launch(self, search: Search, index: int, *, finalize_job: SearchJob | None = None) -> _Active:
        if finalize_job is None:
            run_id = self.store.create_run(
                search_key=search.key, suite=search.suite,
                dataset=search.dataset.name, dataset_options=dict(search.dataset.options),
                dataset_label=search.dataset.label,
                model_family=search.model_family.name, model_options=dict(search.model_family.options),
                model_label=search.model_family.label,
                strategy=search.strategy.name, strategy_options=dict(search.strategy.options),
                strategy_label=search.strategy.label,
                seed=search.seed, budget_s=search.budget_s, trial_budget_s=search.trial_budget_s,
                max_epochs=search.max_epochs, host=socket.gethostname())
            artifact_dir = self.results_dir / "runs" / str(run_id)
            artifact_dir.mkdir(parents=True, exist_ok=True)
            self.store.update_run(run_id, artifact_dir=str(artifact_dir))
            job = SearchJob(
                run_id=run_id, store_url=self.store.url, artifact_dir=str(artifact_dir),
                dataset=PluginCall(search.dataset.name, dict(search.dataset.options)),
                model_family=PluginCall(search.model_family.name, dict(search.model_family.options)),
                strategy=PluginCall(search.strategy.name, dict(search.strategy.options)),
                seed=search.seed, budget_s=search.budget_s, trial_budget_s=search.trial_budget_s,
                max_epochs=search.max_epochs, verbose=self.verbose, plugins=self.plugins,
                search_key=search.key)
            args = [str(Path(artifact_dir) / "job.json")]
        else:
            job = finalize_job
            args = ["--finalize", str(Path(job.artifact_dir) / "job.json")]
        job_path = Path(job.artifact_dir) / "job.json"
        job_path.write_text(job.to_json())
        read_fd, write_fd = os.pipe()
        env = dict(os.environ, **{EVENT_FD_ENV: str(write_fd), "TUNEBENCH_PARENT_PID": str(os.getpid()),
                                  "PYTHONUNBUFFERED": "1"})
        if not self.verbose:
            env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            log = open(Path(job.artifact_dir) / "log.txt", "ab")  # noqa: SIM115 - handed to the child
            streams: dict[str, Any] = {"stdout": log, "stderr": subprocess.STDOUT}
        else:
            log, streams = None, {}
        proc = subprocess.Popen([sys.executable, "-m", "harness.worker", *args], env=env,
                                pass_fds=(write_fd,), stdin=subprocess.DEVNULL,
                                start_new_session=True, **streams)
        os.close(write_fd)
        if log is not None:
            log.close()
        if finalize_job is None:
            self.store.update_run(job.run_id, pid=proc.pid)
        a = _Active(search, job, job_path, proc, os.fdopen(read_fd, "rb", buffering=0), index)
        if finalize_job is not None:
            a.phase, a.finalize_started = "finalize", time.time()
        return a

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

    def _drain(self, a: _Active) -> None:
        while select.select([a.reader], [], [], 0)[0] and self._read(a):
            pass
        a.reader.close()

    def _event(self, a: _Active, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "started":
            a.phase, a.search_started, a.search_deadline = "search", event["started_at"], event["deadline"]
        elif kind == "trial_start":
            a.trial_deadline = event["deadline"] if a.job.trial_budget_s else None
        elif kind == "trial":
            a.trials += 1
            a.ok_trials += event["status"] == "ok"
            a.best = event.get("best")
        elif kind == "search_done":
            a.phase, a.finalize_started = "finalize", time.time()

    def _enforce(self, a: _Active, now: float) -> None:
        """Kill a child that is past its hard deadline for the phase it is in."""
        if a.killed:
            return
        if a.phase == "setup" and now > a.launched + SETUP_TIMEOUT_S:
            self._kill(a, f"setup (loading plugins, Keras and the data) took longer than "
                          f"{format_duration(SETUP_TIMEOUT_S)}")
        elif a.phase == "search":
            hard = a.search_deadline + KILL_AT * allowed_overshoot(a.job.budget_s)  # type: ignore[operator]
            if a.trial_deadline is not None and a.job.trial_budget_s:
                hard = min(hard, a.trial_deadline + KILL_AT * allowed_overshoot(a.job.trial_budget_s))
            if now > hard:
                self._kill(a, "the trial in flight did not stop at its deadline")
        elif a.phase == "finalize" and now > a.finalize_started + _finalize_timeout(a.job):  # type: ignore[operator]
            self._kill(a, f"the test evaluation took longer than {format_duration(_finalize_timeout(a.job))}")

    def _kill(self, a: _Active, why: str) -> None:
        a.killed, a.killed_at = why, time.time()
        a.killed_cpu_s = _cpu_seconds(a.proc.pid)  # the child can no longer record it itself
        _kill(a.proc)

    def _ended(self, a: _Active) -> Outcome | _Active:
        """Record how a child ended; may start the test evaluation in a fresh process."""
        run_id = a.job.run_id
        run = self.store.run(run_id)
        if run["status"] in ("ok", "failed"):
            return Outcome(a.search, run_id, run["status"], run["error"] or "", run["test_score"])
        if a.killed and a.phase == "search":
            self.store.close_open_trials(run_id, TIMEOUT, f"killed by the runner: {a.killed}",
                                         finished_at=a.killed_at)
            gpus = len((run["hardware"] or {}).get("gpus", []))
            started = run["started_at"] or a.killed_at
            self.store.update_run(run_id, finished_at=a.killed_at, stop_reason="killed",
                                  error=f"search stopped by the runner: {a.killed}", cpu_seconds=a.killed_cpu_s,
                                  accelerator_seconds=(a.killed_at - started) * gpus)
            follow_up = self._launch(a.search, a.index, finalize_job=a.job)
            follow_up.trials, follow_up.ok_trials, follow_up.best = a.trials, a.ok_trials, a.best
            return follow_up
        if a.killed:
            why = a.killed
        else:
            code = a.proc.returncode
            why = f"the search process exited with code {code}"
            if code is not None and code < 0:
                name = signal.Signals(-code).name
                why = f"the search process died from {name}"
                if -code == signal.SIGKILL:
                    why += " (often the system running out of memory)"
            why += f"; see {Path(a.job.artifact_dir) / 'log.txt'}"
        now = time.time()
        self.store.close_open_trials(run_id, FAILED, why, finished_at=now)
        self.store.update_run(run_id, status="failed", error=why, stop_reason=run["stop_reason"] or "crashed",
                              finished_at=run["finished_at"] or now, completed_at=now)
        return Outcome(a.search, run_id, "failed", why)


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

        return "harness.worker" in " ".join(psutil.Process(pid).cmdline())
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
        mark = "done" if o.status == "ok" else o.status.upper()
        note = f" — {o.note}" if o.note and o.status != "ok" else ""
        self._write(f"[{a.index}/{total}] {mark:<5} {a.search.title}: {a.trials} trials, "
                    f"best val {best}{test}{note}")
