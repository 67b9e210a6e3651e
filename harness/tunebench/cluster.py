"""Run a suite's searches on a Ray cluster (`tunebench run SUITE --executor ray --address ADDR`).

The driver (this process) plans the suite against the shared store, claims each search, creates
its run record (status `queued`) and submits one Ray task per search with the resources the
search declares. On the worker node the task runs the same supervisor as a local run
(`Runner.execute`): one child process per search, the budget measured there, the kill at the
hard deadline, the test evaluation in a fresh process. Queueing time (`dispatched_at -
created_at`) is recorded and never charged to the strategy.

When a worker dies mid-search (the node is lost, the process is killed) the run is closed as
`interrupted`: its finished trials stay in the store, the trial in flight is marked
`interrupted`, and the search is submitted again as a new attempt, up to `max_retries` times.
A search that keeps failing is recorded as failed with each attempt's error, and the suite goes
on. Ray is an optional dependency: `pip install tunebench[ray]`.

A search with `parallel_trials: N` becomes N tasks, each with the search's resources, which Ray may
place on different nodes: lane 0 (the supervisor above, which owns the clock and the test
evaluation) and N-1 lane tasks that run trials of the same search against the same deadline,
sharing an Optuna study in the store's PostgreSQL. A lost lane loses its trial in flight; lane 0
closes it when the deadline has passed.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import IO, Any

from tunebench.budget import allowed_overshoot
from tunebench.errors import TunebenchError
from tunebench.job import SETUP_TIMEOUT_S
from tunebench.quiet import quiet_environment
from tunebench.runner import Outcome, Runner
from tunebench.settings import Resources
from tunebench.suite import Search
from tunebench.vocabulary import RunStatus

#: Seconds between checks of the submitted tasks.
POLL_S = 0.5


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise TunebenchError("--executor ray needs Ray, which is not installed: pip install 'tunebench[ray]' "
                             "(on the driver and on every node)") from None
    return ray


def _run_remote(suite: Any, search: Search, run_id: int, store_url: str, results_dir: str,
                verbose: bool, plugins: tuple[str, ...], index: int, total: int) -> str:
    """The Ray task: supervise one search on this node; returns its status (the rest is in the store)."""
    import io

    from tunebench.store import Store

    store = Store(store_url)
    try:
        runner = Runner(suite, store, results_dir, verbose=verbose, plugins=plugins, out=io.StringIO(),
                        spawn_lanes=False)
        return runner.execute(search, run_id, index=index, total=total).status
    finally:
        store.close()


def _run_lane_remote(job_json: str, timeout_s: float) -> int:
    """A Ray task: one extra lane of a search with parallel trials, in its own process on this node.
    Its trials go to the store; returns the process's exit code."""
    import os
    import subprocess

    from tunebench.job import SearchJob
    from tunebench.lanes import lane_command

    job = SearchJob.from_json(job_json)
    command = lane_command(job, job.lane)
    with open(Path(job.artifact_dir) / f"log.lane{job.lane}.txt", "ab") as log:
        proc = subprocess.Popen(command, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=quiet_environment(dict(os.environ, PYTHONUNBUFFERED="1")))
        try:
            return proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()


class RayExecutor:
    """Dispatches the searches a `Runner` planned to a Ray cluster and collects their outcomes.

    Args:
        runner: the planning runner (its suite, store, results directory and options).
        address: the cluster's address (`auto`, `HOST:PORT` or `ray://HOST:PORT`).
        resources: what each search asks for.
        max_retries: attempts after the first for a search whose worker died or whose process crashed.
    """

    def __init__(self, runner: Runner, address: str, *, resources: Resources = Resources(),
                 max_retries: int = 2, out: IO[str] | None = None) -> None:
        self.runner = runner
        self.store = runner.store
        self.address = address
        self.resources = resources
        self.max_retries = max(0, max_retries)
        self.out = out or sys.stderr

    def _say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def run(self) -> list[Outcome]:
        ray = import_ray()
        if not ray.is_initialized():
            _check_reachable(self.address)
            try:
                ray.init(address=self.address, log_to_driver=self.runner.verbose,
                         logging_level="ERROR", configure_logging=True)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise TunebenchError(f"cannot connect to the Ray cluster at '{self.address}': {exc}. "
                                     f"Start one with `ray start --head`, or pass its address") from None
        task = ray.remote(_run_remote).options(max_retries=0, **self.resources.ray_options())
        lane_task = ray.remote(_run_lane_remote).options(max_retries=0, **self.resources.ray_options())
        lane_refs: list[Any] = []  # extra lanes of searches with parallel trials; lane 0 reports for them

        to_run, outcomes = self.runner.plan()
        for o in outcomes:
            self._say(f"  skip  {o.search.title} (run {o.run_id}: {o.note})")
        total = len(to_run)
        refs: dict[Any, tuple[int, Search, int, int]] = {}  # ref -> (index, search, run_id, attempt)

        def submit(index: int, search: Search, attempt: int, retry_of: int | None = None) -> None:
            run_id = self._queue(search, attempt, retry_of)
            ref = task.remote(self.runner.suite, search, run_id, self.store.url,
                              str(self.runner.results_dir), self.runner.verbose, self.runner.plugins,
                              index, total)
            refs[ref] = (index, search, run_id, attempt)
            job = self.runner.job_for(search, run_id)
            for lane in range(1, search.lanes):
                lane_refs.append(lane_task.remote(
                    job.for_lane(lane).to_json(),
                    SETUP_TIMEOUT_S + search.budget_s + allowed_overshoot(search.budget_s)))
            self._say(f"[{index}/{total}] queued {search.title} (run {run_id}"
                      f"{f', attempt {attempt}' if attempt > 1 else ''}, budget {search.budget_s:g}s)")

        try:
            for index, search in enumerate(to_run, 1):
                skipped = self.runner.claim_or_skip(search)
                if skipped is not None:
                    outcomes.append(skipped)
                    self._say(f"  skip  {search.title} ({skipped.note})")
                    continue
                submit(index, search, 1)
            while refs:
                ready, _ = ray.wait(list(refs), num_returns=1, timeout=POLL_S)
                for ref in ready:
                    index, search, run_id, attempt = refs.pop(ref)
                    try:
                        status, died = ray.get(ref), None
                    except ray.exceptions.RayError as exc:
                        status, died = None, _first_line(exc)
                    run = self.store.run(run_id)
                    if died is not None:  # the node or the worker process is gone
                        why = f"the Ray worker running it died: {died}"
                        self.store.interrupt_run(run_id, why)
                        retry = True
                    else:
                        retry = status == RunStatus.FAILED and run["stop_reason"] == "crashed"
                    if retry and attempt <= self.max_retries:
                        self._say(f"[{index}/{total}] RETRY {search.title}: run {run_id} "
                                  f"{'was interrupted' if died else 'crashed'} ({(run['error'] or '')[:200]})")
                        submit(index, search, attempt + 1, retry_of=run_id)
                        continue
                    if died is not None:  # out of retries
                        self.store.fail_run(run_id, f"{why} (after {attempt} attempt(s))", stop_reason="crashed")
                    run = self.store.run(run_id)
                    o = Outcome(search, run_id, run["status"], run["error"] or "", run["test_score"])
                    outcomes.append(o)
                    self.runner.release(search, o.status)
                    score = f", test {o.test_score:.4f}" if o.test_score is not None else ""
                    self._say(f"[{index}/{total}] {'done' if o.status == RunStatus.OK else o.status.upper():<5} "
                              f"{search.title}: {run['n_trials'] or 0} trials on {run['host']}{score}"
                              f"{f' — {o.note}' if o.status != RunStatus.OK and o.note else ''}")
        except BaseException:
            for ref in lane_refs:
                ray.cancel(ref, force=True)
            for ref, (_, search, run_id, _) in refs.items():
                ray.cancel(ref, force=True)
                self.store.interrupt_run(run_id, "the driver was stopped (Ctrl-C or a signal)")
                self.runner.release(search, RunStatus.INTERRUPTED)
            raise
        order = {s.key: i for i, s in enumerate(self.runner.suite.searches())}
        return sorted(outcomes, key=lambda o: order[o.search.key])

    def _queue(self, search: Search, attempt: int, retry_of: int | None) -> int:
        """Create the run record of one attempt; the worker fills in where and when it ran."""
        return self.runner.create_run(search, status=RunStatus.QUEUED, executor="ray", attempt=attempt,
                                      retry_of=retry_of)


def _check_reachable(address: str) -> None:
    """Fail in seconds on a HOST:PORT nobody listens on (Ray itself retries for minutes)."""
    if address == "auto" or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except (OSError, ValueError) as exc:
        raise TunebenchError(f"cannot reach the Ray cluster at '{address}' ({exc}). Start one with "
                             f"`ray start --head`, or pass its address (HOST:PORT of the head node)") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]
