"""The simulated clock: a search driven against a table (`tunebench.tables.Table`) instead of training.

`SimulatedContext` is a `SearchContext` whose `run_trial` asks the table for the configuration's
learning curve and advances the search's clock by what the table recorded (the start-up, then each
epoch's training and validation), not by wall time. Everything keeps its meaning on that clock: the
deadline cuts a trial at the last epoch that fits (`timeout`, its epochs kept), the feasibility
guard turns away a first epoch that cannot end in time, `min_trials` caps a trial at its share,
`first_trial: defaults` runs the table's default configuration, a continued trial pays only its
new epochs, and what the table recorded as NaN or failed comes back so. The strategy's own
computing (a sampler's fit) is measured and charged to the clock as a real run pays it, or reported
apart (`sampler_time: apart`), which makes a seed's search exactly repeatable.

With `parallel_trials: N`, N simulated lanes run the search asynchronously, each with its own copy
of the strategy as real lanes have: an event queue orders their trials' epochs by simulated time
(each lane is a thread, and exactly one runs at a time, the one whose next event is soonest), so
ASHA and the Optuna strategies see each other's trials as they would with N real workers.

A simulated search runs in the process that asks for it, with no worker process, no Keras and no
kill: `simulate` returns the run's fields and its trial rows, and `run_simulated` writes them to the
store in one transaction.
"""

from __future__ import annotations

import math
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunebench.budget import in_the_tail
from tunebench.errors import BudgetExhausted, TrialPruned
from tunebench.space import DefaultHyperParameters, FixedHyperParameters, HyperParameters, Param
from tunebench.strategies import EpochReport, SearchContext, TrialRecord
from tunebench.vocabulary import FailureKind, TrialStatus

if TYPE_CHECKING:
    from tunebench.settings import SearchSettings
    from tunebench.tables import Curve, Table


#: What an infeasible draw costs on the simulated clock besides its start-up: the share of its first
#: epoch the feasibility guard watches before it projects the rest (on real CPU runs, turning a draw
#: away cost 0.2-2 s against first epochs of 5-30 s).
GUARD_SHARE = 0.05


class SimulatedBudget:
    """A search's budget on the simulated clock (the interface of `budget.Budget`): it starts at 0."""

    def __init__(self, seconds: float, clock: _Clock, trial_seconds: float | None = None) -> None:
        self.seconds, self.trial_seconds, self._clock = seconds, trial_seconds, clock
        self.started = 0.0

    @property
    def deadline(self) -> float:
        return self.seconds

    def remaining(self) -> float:
        return max(0.0, self.deadline - self._clock.now)

    def elapsed(self) -> float:
        return self._clock.now

    @property
    def expired(self) -> bool:
        return self._clock.now >= self.deadline

    def trial_deadline(self, trial_started: float) -> float:
        if self.trial_seconds is None:
            return self.deadline
        return min(self.deadline, trial_started + self.trial_seconds)


class _Clock:
    """The simulated time, and with several lanes the order in which they run: a lane that waits for
    time `t` blocks until every event before `t` (another lane's epoch, say) has happened."""

    def __init__(self, lanes: int) -> None:
        self.now = 0.0
        self.lanes = lanes
        self._cond = threading.Condition()
        self._waiting: dict[int, float] = {}
        self._running: int | None = None
        self._done: set[int] = set()

    def advance_to(self, lane: int, when: float) -> None:
        """Let simulated time run to `when` for `lane` (now, if it is past)."""
        when = max(when, self.now)
        if self.lanes == 1:
            self.now = when
            return
        with self._cond:
            self._waiting[lane] = when
            self._pass_baton()
            while self._running != lane:
                self._cond.wait()

    def start(self, lane: int) -> None:
        """A lane's thread begins: it waits for its turn at time 0."""
        if self.lanes > 1:
            self.advance_to(lane, 0.0)

    def finish(self, lane: int) -> None:
        """A lane's strategy has returned (or raised): the others go on without it."""
        if self.lanes == 1:
            return
        with self._cond:
            self._done.add(lane)
            self._waiting.pop(lane, None)
            self._pass_baton()

    def _pass_baton(self) -> None:
        """Run the lane whose next event is soonest (the lowest lane first at a tie), once every lane
        that has not finished is waiting: then nothing before that event can happen any more."""
        if len(self._waiting) + len(self._done) < self.lanes:
            return  # a lane has not reached the clock yet (its thread is starting)
        if not self._waiting:
            self._running = None
            self._cond.notify_all()
            return
        lane = min(self._waiting, key=lambda k: (self._waiting[k], k))
        self.now = max(self.now, self._waiting.pop(lane))
        self._running = lane
        self._cond.notify_all()


@dataclass
class _Shared:
    """What the lanes of one simulated search share: the clock, numbers, trials, claims, checkpoints."""

    table: Table
    task: str
    seed: int
    settings: SearchSettings
    clock: _Clock
    budget: SimulatedBudget
    max_epochs: int
    charge_sampler: bool
    repeats: int = 1
    next_number: int = 0
    default_trial: int | None = None
    records: dict[int, TrialRecord] = field(default_factory=dict)
    running: dict[int, TrialRecord] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    claims: set[str] = field(default_factory=set)
    checkpoints: dict[int, int] = field(default_factory=dict)  # trial number -> the epoch it reached
    repeat_of: dict[int, int] = field(default_factory=dict)  # trial number -> which of the table's runs it drew
    curves: dict[tuple[Any, ...], Curve] = field(default_factory=dict)
    best: TrialRecord | None = None
    sampler_s: float = 0.0
    table_s: float = 0.0

    def take_number(self) -> int:
        number, self.next_number = self.next_number, self.next_number + 1
        return number

    def curve(self, config: Mapping[str, Any], repeat: int) -> Curve:
        """The table's curve for `config`'s `repeat`-th run, asked once per search."""
        key = (tuple(sorted((k, repr(v)) for k, v in config.items())), repeat)
        hit = self.curves.get(key)
        if hit is None:
            started = time.perf_counter()
            hit = self.curves[key] = self.table.curve(self.task, config, repeat)
            self.table_s += time.perf_counter() - started
        return hit


class SimulatedContext(SearchContext):
    """One lane of a search on the simulated clock (see the module's docstring)."""

    def __init__(self, shared: _Shared, *, lane: int = 0, lanes: int = 1, run_id: int = 0,
                 workdir: Path | None = None, search_key: str = "") -> None:
        from tunebench.datasets import DataSpec

        self._s = shared
        self.seed = shared.seed
        self.budget = shared.budget  # type: ignore[assignment]
        self.spec = DataSpec((1, 1, 1), (shared.task,))
        self.objective = shared.table.objective
        self.max_epochs = shared.max_epochs
        self.workdir = workdir or Path(tempfile.gettempdir())
        self.search_key = search_key or f"simulated-{run_id}"
        self.lane, self.lanes, self.run_id = lane, lanes, run_id
        self.shared_store_url = None
        self.pins = shared.table.pins
        self.default_trial = shared.default_trial
        self.first_number = 0 if shared.default_trial is None else shared.default_trial + 1
        self._trials: list[TrialRecord] = []
        self._returned_at: float | None = None
        self._sampler_pending = 0.0
        self._least_start: float | None = None
        #: simulated seconds from a trial's start to the end of its first epoch, per trial trained
        #: from scratch (the real context's `_to_first_epoch`, with the same two rules: no trial
        #: starts with less left than the least of them, and a draw turned away with less left than
        #: their median ends the search)
        self._to_first_epoch: list[float] = []
        self._least_first_epoch = 0.0  # their least, kept as they come (a search may run 100,000 trials)

    # -- what a strategy reads ------------------------------------------------------------------------
    @property
    def trials(self) -> tuple[TrialRecord, ...]:
        return tuple(self._trials)

    def search_trials(self, *, curves: bool = True) -> tuple[TrialRecord, ...]:
        s = self._s
        if self.lanes == 1:
            return self.trials
        merged = {**s.records, **s.running}
        return tuple(merged[n] for n in sorted(merged))

    def space(self, hp: HyperParameters | None = None) -> dict[str, Param]:
        hp = (hp or DefaultHyperParameters()).pin(self.pins)
        self._s.table.declare(hp, self._s.task)
        return hp.params

    def default_values(self) -> dict[str, Any]:
        return dict(self._s.table.default(self._s.task) or {})

    def claim(self, name: str) -> bool:
        if name in self._s.claims:
            return False
        self._s.claims.add(name)
        return True

    def discard_checkpoint(self, number: int) -> None:
        self._s.checkpoints.pop(number, None)

    def next_number(self) -> int:
        self._enter()
        number = self._s.take_number()
        self._returned_at = time.perf_counter()  # what the strategy computes before it runs the trial counts too
        return number

    # -- the clock ------------------------------------------------------------------------------------
    def _enter(self) -> None:
        """The strategy asks for a trial: charge what it computed since the last one (its sampler),
        then `BudgetExhausted` when no trial can start any more."""
        if self._returned_at is not None:
            spent = time.perf_counter() - self._returned_at
            self._returned_at = None
            self._sampler_pending += spent
            self._s.sampler_s += spent
            if self._s.charge_sampler:
                self._s.clock.advance_to(self.lane, self._s.clock.now + spent)
        left = self._s.budget.remaining()
        need = max(self._least_start or 0.0, self._least_first_epoch)
        last = self._trials[-1] if self._trials else None
        if left <= 0 or left < need or in_the_tail(last is not None and last.turned_away, self._to_first_epoch, left):
            raise BudgetExhausted()

    def _wait(self, when: float) -> None:
        self._s.clock.advance_to(self.lane, when)

    def _fair_share(self, now: float, *, default: bool) -> float | None:
        wanted = self._s.settings.min_trials
        if wanted is None or default:
            return None
        left = wanted - sum(1 for t in self._trials if t.score is not None)
        if left <= 1:
            return None
        return now + self._s.budget.remaining() / left

    def run_default_first(self) -> TrialRecord | None:
        number = self._s.default_trial
        if number is None or self.lane != 0:
            return None
        return self.run_trial(FixedHyperParameters(self.default_values()), number=number)

    # -- one trial ------------------------------------------------------------------------------------
    def run_trial(self, hp: HyperParameters, *, epochs: int | None = None,
                  report: EpochReport | None = None, number: int | None = None,
                  latency: bool = False, resume_from: int | None = None,
                  checkpoint: bool = False) -> TrialRecord:
        s = self._s
        self._enter()
        if number is None:
            number = s.take_number()
        clock, budget = s.clock, s.budget
        hp.pin(self.pins)
        asked = time.perf_counter()
        s.table.declare(hp, s.task)  # the strategy's answers: a define-by-run sampler decides here
        answered = time.perf_counter() - asked
        self._sampler_pending += answered
        s.sampler_s += answered
        if s.charge_sampler:
            self._wait(clock.now + answered)
        start = clock.now
        default = number == s.default_trial
        deadline = budget.trial_deadline(start)
        share = self._fair_share(start, default=default)
        notes: dict[str, Any] = {}
        if share is not None and share < deadline:
            deadline = share
            notes["min_trials_cap_s"] = round(share - start, 2)
        if default:
            notes["family_default"] = True
        config = hp.values
        trial_seed = (s.seed * 100_003 + number) % (2**31 - 1)
        target = s.max_epochs if default or epochs is None else max(1, min(int(epochs), s.max_epochs))
        initial = 0
        repeat = trial_seed % max(1, s.repeats)
        if resume_from is not None:
            reached = s.checkpoints.get(resume_from)
            if reached is None:
                notes["resume_skipped"] = f"trial {resume_from} left no checkpoint: trained from scratch"
            else:
                initial = min(reached, target)
                notes.update(resumed_from=resume_from, initial_epoch=initial)
                # the model it continues is that trial's run: its curve goes on from there
                repeat = s.repeat_of.get(resume_from, repeat)
        s.repeat_of[number] = repeat
        curve = s.curve(config, repeat)
        running = TrialRecord(number, TrialStatus.RUNNING, config, None, epoch_budget=target,
                              resumed_from=notes.get("resumed_from"), initial_epoch=initial)
        s.running[number] = running

        status: str = TrialStatus.OK
        error: str | None = None
        kind: str | None = None
        history: list[dict[str, float]] = []
        best_score: float | None = None
        best_epoch: int | None = None
        guard = s.settings.feasibility_guard
        margin = s.settings.feasibility_margin
        t = start + curve.startup_s
        broken = curve.failed_at is not None and curve.failed_at <= initial
        first = initial if initial < curve.epochs and not broken else None
        if first is not None and t > deadline:
            status, kind, t = TrialStatus.TIMEOUT, FailureKind.DEADLINE, deadline
        elif first is not None and guard and t + curve.epoch_s[first] * margin > deadline:
            # the guard judges a first epoch from its first steps: that much of it is spent
            t = min(t + GUARD_SHARE * curve.epoch_s[first], deadline)
            status, kind = TrialStatus.TIMEOUT, FailureKind.INFEASIBLE
            error = (f"projected {curve.epoch_s[first]:.0f} s for its first epoch and validation, "
                     f"{max(0.0, deadline - t):.0f} s were left (feasibility guard, margin {margin:g})")
            notes["feasibility"] = {"first_epoch_s": round(curve.epoch_s[first], 2),
                                    "left_s": round(deadline - t, 2), "margin": margin, "stopped": True}
        else:
            self._least_start = min(self._least_start or math.inf, curve.startup_s)
            try:
                for epoch in range(initial, min(target, max(curve.epochs, initial + 1))):
                    cost = curve.epoch_s[epoch] if epoch < curve.epochs else 0.0
                    if t + cost > deadline:
                        status, kind = TrialStatus.TIMEOUT, FailureKind.DEADLINE
                        # the guard does not start an epoch that cannot end; without it, the epoch
                        # runs until the deadline stops it and is thrown away
                        t = t if guard and history else deadline
                        break
                    t = min(t + cost, deadline)
                    self._wait(t)
                    if curve.failed_at is not None and epoch >= curve.failed_at:
                        status = TrialStatus.NAN if curve.status == TrialStatus.NAN else TrialStatus.FAILED
                        kind = FailureKind.NAN if status == TrialStatus.NAN else FailureKind.EXCEPTION
                        error = curve.error or ("loss became NaN or infinite" if status == TrialStatus.NAN
                                                else "the recorded trial failed")
                        break
                    if epoch >= curve.epochs:  # the table ends here (a continuation past its epochs)
                        break
                    score = curve.scores[epoch]
                    metrics = {self.objective: score}
                    history.append(metrics)
                    if epoch == 0:
                        self._to_first_epoch.append(t - start)
                        self._least_first_epoch = min(self._least_first_epoch or math.inf, t - start)
                    if best_score is None or score > best_score:
                        best_score, best_epoch = score, epoch
                    if report is not None:
                        report(epoch, metrics)
            except TrialPruned:
                status = TrialStatus.PRUNED
        if history or status in (TrialStatus.NAN, TrialStatus.FAILED):
            t = min(t + curve.finish_s, max(deadline, t))
        t = max(t, start)
        t_end = t + s.table.between_trials_s(s.task)
        self._wait(t_end)
        if checkpoint and status == TrialStatus.OK and initial + len(history) == target:
            s.checkpoints[number] = target
            notes["checkpoint"] = True
        timings = {"startup": curve.startup_s if t > start else 0.0, "train": t - start - curve.startup_s,
                   "sampler": round(self._sampler_pending, 6)}
        self._sampler_pending = 0.0
        row = {"number": number, "started_at": start, "finished_at": t_end, "status": status, "error": error,
               "error_kind": kind, "params": config, "score": best_score, "best_epoch": best_epoch,
               "epochs_done": len(history), "epoch_budget": target, "seed": trial_seed, "lane": self.lane,
               "timings": timings, "notes": notes, "sampler_s": timings["sampler"],
               "metrics": history[-1] if history else None}
        record = TrialRecord.from_row(row, history)
        s.running.pop(number, None)
        s.records[number] = record
        notes["test_score"] = curve.test_at(best_epoch)  # for the record, never the strategy's
        s.rows.append(row)
        if record.selectable and (s.best is None or record.score > s.best.score):  # type: ignore[operator]
            s.best = record
        self._trials.append(record)
        self._returned_at = time.perf_counter()
        return record


@dataclass
class Simulated:
    """The outcome of one simulated search: the run's fields and its trials' rows."""

    run: dict[str, Any]
    trials: list[dict[str, Any]]
    stop_reason: str
    error: str | None = None


def simulate(table: Table, task: str, strategy_factory: Any, *, seed: int, budget_s: float,
             settings: SearchSettings, trial_budget_s: float | None = None, max_epochs: int | None = None,
             lanes: int = 1, charge_sampler: bool = True, run_id: int = 0, search_key: str = "") -> Simulated:
    """Run one search of `strategy_factory()` (one strategy per lane) against `table`'s `task` on the
    simulated clock. Nothing is written: the caller records the result (`record`)."""
    from tunebench.context import drive

    top = table.max_epochs(task)
    clock = _Clock(max(1, lanes))
    shared = _Shared(table, task, seed, settings, clock, SimulatedBudget(budget_s, clock, trial_budget_s),
                     min(top, max_epochs) if max_epochs else top, charge_sampler, table.repeats(task))
    if settings.first_trial == "defaults" and table.default(task) is not None:
        shared.default_trial = shared.take_number()
    outcome: dict[int, tuple[str, str | None]] = {}
    wall = time.perf_counter()
    with _scratch() as workdir:
        def lane_main(lane: int) -> None:
            ctx = SimulatedContext(shared, lane=lane, lanes=lanes, run_id=run_id, workdir=workdir / f"lane{lane}",
                                   search_key=search_key)
            clock.start(lane)
            try:
                outcome[lane] = drive(strategy_factory(), ctx, freeze=False)
            finally:
                clock.finish(lane)

        if lanes == 1:
            lane_main(0)
        else:
            threads = [threading.Thread(target=lane_main, args=(k,), daemon=True) for k in range(lanes)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    stop_reason, error = outcome.get(0, ("error", "lane 0 did not run"))
    errors = [e for _, e in outcome.values() if e]
    error = error or (errors[0] if errors else None)
    if stop_reason == "completed" and shared.budget.expired:
        stop_reason = "budget"
    finished = max([r["finished_at"] for r in shared.rows], default=0.0)
    best, default = shared.best, shared.records.get(shared.default_trial) if shared.default_trial is not None else None
    rows = sorted(shared.rows, key=lambda r: r["number"])
    by_number = {r["number"]: r for r in rows}
    run: dict[str, Any] = {
        "started_at": 0.0, "finished_at": min(finished, budget_s) if stop_reason == "budget" else finished,
        "stop_reason": "error" if error else stop_reason, "error": error, "n_trials": len(rows),
        "lanes": lanes, "objective": table.objective, "sampler_seconds": shared.sampler_s,
        "cpu_seconds": time.perf_counter() - wall, "accelerator_seconds": 0.0,
        "best_trial": best.number if best else None, "best_val": best.score if best else None,
        "best_params": dict(best.params) if best else None,
        "test_score": by_number[best.number]["notes"]["test_score"] if best else None,
        "default_trial": shared.default_trial,
        "default_val": default.score if default is not None else None,
        "default_test_score": by_number[default.number]["notes"]["test_score"] if default is not None
        and default.score is not None else None,
        "table": {**table.identity(), "task": task, "optimum": table.optimum(task),
                  "surrogate_seconds": round(shared.table_s, 4)},
    }
    if table.surrogate:
        from tunebench.tables import at_bounds

        run["table"]["surrogate"] = True
        if best is not None:
            run["table"]["selected_at_bounds"] = list(at_bounds(table, task, best.params))
    return Simulated(run, rows, run["stop_reason"], error)


@contextmanager
def _scratch() -> Iterator[Path]:
    """A scratch folder for a simulated search's strategy (KerasTuner writes its oracle there)."""
    shm = Path("/dev/shm")  # memory-backed where there is one: KerasTuner writes two files a trial
    folder = Path(tempfile.mkdtemp(prefix="tunebench-sim-", dir=shm if os.access(shm, os.W_OK) else None))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


__all__ = ["Simulated", "SimulatedBudget", "SimulatedContext", "simulate"]


# -- running a suite's simulated searches -----------------------------------------------------------------

@dataclass(frozen=True)
class Done:
    """What became of one simulated search."""

    key: str
    run_id: int
    status: str
    note: str
    test_score: float | None


_WORKER: dict[str, Any] = {}


def _start_worker(store_url: str, plugins: tuple[str, ...], log: str | None = None) -> None:
    """A process that runs simulated searches: the plugins and the store, once. Its output (a
    strategy's traceback, what KerasTuner's TensorFlow prints as it loads) goes to `log`."""
    import os
    import signal

    from tunebench.quiet import quiet_environment
    from tunebench.registry import load_plugins
    from tunebench.store import Store

    # the parent stops the searches (Ctrl-C reaches the whole process group): a worker leaves
    # SIGINT to it, and dies on SIGTERM rather than inherit the CLI's unwinding handler
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    quiet_environment()
    if log is not None:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    _WORKER.clear()
    _WORKER.update(catalog=load_plugins(plugins), store=Store(store_url), tables={})


def _table_for(entry: Any) -> Table:
    import json

    key = json.dumps([entry.name, entry.options], sort_keys=True, default=str)
    tables = _WORKER["tables"]
    if key not in tables:
        tables[key] = _WORKER["catalog"].tables.get(entry.name)(**entry.options)
    table: Table = tables[key]
    return table


def run_one(search: Any) -> Done:
    """Run one simulated search (a `suite.Search` with `simulated`) and record it in the worker's
    store, unless another runner on the same store has it (status `skipped`)."""
    from tunebench.vocabulary import RunStatus

    catalog, store = _WORKER["catalog"], _WORKER["store"]
    token = f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}"
    taken = _taken(store, search.key, token)
    if taken is not None:
        return Done(search.key, taken[0], "skipped", taken[1], None)
    try:
        done = _run_claimed(search, catalog, store)
    except BaseException:
        store.release_claim(search.key, token)
        raise
    if done.status == RunStatus.OK:
        store.bind_claim(search.key, token, done.run_id)
    else:
        store.release_claim(search.key, token)
    return done


#: A claim of a simulated search by a runner on another machine is taken over after this long.
FOREIGN_CLAIM_S = 3600.0


def _taken(store: Any, key: str, token: str) -> tuple[int, str] | None:
    """Claim the search `key` for `token`, by the rule a real search's runner follows
    (`Store.acquire`), so that two runners on one store never run a simulated search twice. None
    when claimed; else (run id or 0, why not).

    A simulated search writes its run only when it ends, so a run bound to a claim that is not
    finished is stale, and a claim without a run is stale when its process (on this machine) is
    gone, or, from another machine, after `FOREIGN_CLAIM_S`."""
    import psutil

    def stale(claim: dict[str, Any], run: dict[str, Any] | None) -> bool:
        if run is not None:
            return True
        host, _, rest = str(claim["token"]).partition(":")
        pid = rest.partition(":")[0]
        if host == socket.gethostname() and pid.isdigit():
            return not psutil.pid_exists(int(pid)) or int(pid) == os.getpid()
        return bool(time.time() - claim["claimed_at"] > FOREIGN_CLAIM_S)

    got = store.acquire(key, token, stale)
    if got.taken:
        return None
    if got.finished and got.run is not None:
        return got.run["id"], f"finished by another runner (run {got.run['id']})"
    if got.holder is None:
        return 0, "taken by another runner"
    return 0, f"being run by another runner ({got.holder})"


def _run_claimed(search: Any, catalog: Any, store: Any) -> Done:
    from tunebench import __version__
    from tunebench.job import run_fields
    from tunebench.vocabulary import RunStatus

    table = _table_for(search.model_family)
    cls = catalog.strategies.get(search.strategy.name)
    options = dict(search.strategy.options)
    outcome = simulate(table, search.dataset.name, lambda: cls(**options), seed=search.seed,
                       budget_s=search.budget_s, settings=search.options, trial_budget_s=search.trial_budget_s,
                       max_epochs=search.max_epochs, lanes=search.lanes,
                       charge_sampler=search.options.sampler_time == "charged", search_key=search.key)
    run = {**run_fields(search, backend=None), **outcome.run, "host": socket.gethostname(), "executor": "simulated",
           "attempt": 1, "versions": {"tunebench": __version__, "table": outcome.run["table"].get("version")},
           "hardware": {"simulated": True}}
    failed = outcome.error or run["best_trial"] is None
    note = outcome.error or ("no trial finished with a validation score" if run["best_trial"] is None else "")
    run["table"]["budget"] = "rule" if search.budget_rule else search.budget_s
    run["status"] = RunStatus.FAILED if failed else RunStatus.OK
    run["error"] = note or None
    run_id = store.record_simulated(run, outcome.trials)
    return Done(search.key, run_id, run["status"], note, run.get("test_score"))


def run_searches(searches: list[Any], store_url: str, *, plugins: tuple[str, ...] = (), workers: int = 1,
                 log: str | Path | None = None, out: Any = None) -> Iterator[tuple[Any, Done]]:
    """Run simulated searches in `workers` processes (each loads the plugins and tables once, and
    writes its output to `log`), and yield each search with what became of it, in order."""
    import multiprocessing
    import sys
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    if not searches:
        return
    out = out or sys.stderr
    tty = hasattr(out, "isatty") and out.isatty()
    step = max(1, len(searches) // 10)
    pool = ProcessPoolExecutor(max(1, workers), mp_context=multiprocessing.get_context("fork"),
                               initializer=_start_worker, initargs=(store_url, plugins, str(log) if log else None))
    try:
        with tqdm(total=len(searches), desc="simulated searches", unit="search", file=out, disable=not tty,
                  smoothing=0.05) as bar:
            for i, (search, done) in enumerate(zip(searches, pool.map(run_one, searches, chunksize=4)), 1):
                bar.update()
                if not tty and (i % step == 0 or i == len(searches)):
                    out.write(f"simulated searches: {i}/{len(searches)}\n")
                    out.flush()
                yield search, done
    except BaseException:  # Ctrl-C, SIGTERM (as SystemExit): stop now, not after every search queued
        pool.shutdown(wait=False, cancel_futures=True)
        for child in multiprocessing.active_children():
            child.terminate()
        raise
    pool.shutdown()
