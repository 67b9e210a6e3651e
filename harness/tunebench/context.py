"""The harness's concrete `SearchContext`: what a strategy drives in a search's process.

`TrialContext.run_trial` builds, trains, times and records one configuration under the search's
clock; `drive` runs a strategy against a context and turns how it ended into a stop reason.
Keras is imported only inside `run_trial` and `space`, through `tunebench.training`.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunebench.budget import in_the_tail
from tunebench.errors import BudgetExhausted, SpaceError, TrialPruned
from tunebench.job import trial_weights_path
from tunebench.models import objective_for
from tunebench.provenance import rss_mb
from tunebench.space import FixedHyperParameters, HyperParameters, Param
from tunebench.strategies import EpochReport, SearchContext, TrialRecord
from tunebench.vocabulary import EventKind, FailureKind, TrialStatus, failure_kind

if TYPE_CHECKING:
    from tunebench.budget import Budget
    from tunebench.datasets import Splits
    from tunebench.job import Events, SearchJob
    from tunebench.models import ModelFamily, TrialSettings
    from tunebench.store import Store
    from tunebench.strategies import SearchStrategy, SelectionRule

#: Training images handed to `training.build_trial_model` to time a step: a whole batch up to this.
ESTIMATE_SAMPLE = 256
#: A budget-assigned trial's share is at least this many times what its first epoch is expected to need
#: (tiny models spend most of a first epoch tracing their steps, which varies with the batch size).
SHARE_FLOOR = 2.0
#: What a first epoch's tracing is taken to need before a search has traced any (a small model's is
#: 0.4-0.8 s on 2 CPU cores).
FIRST_TRACING_S = 1.0


class FatalTrialError(Exception):
    """A trial failed in a way every trial would (a user error such as a misspelt pin)."""


@dataclass(eq=False)
class _Trial:
    """One trial in flight: what the steps of `TrialContext.run_trial` learn about it, in order."""

    number: int
    hp: HyperParameters
    default: bool  # the family default's trial (`first_trial: defaults`)
    seed: int
    started_wall: float
    t0: float
    deadline: float  # on the monotonic clock: the soonest of the search's, the trial cap and its share
    hard_deadline: float = math.inf  # the soonest of the search's and the trial cap (no share)
    trial_id: int = 0
    notes: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None  # the checkpoint it continues
    resumed_from: int | None = None
    beat: float | None = None  # an epoch's weights are written when it beats this
    status: TrialStatus = TrialStatus.OK
    error: str | None = None
    error_kind: FailureKind | None = None
    fatal: Exception | None = None
    model: Any = None
    settings: TrialSettings | None = None
    callback: Any = None  # training.TrialCallback, once training starts
    share_end: bool = False  # its deadline is its share of the budget: stopping there is an ordinary end
    patience: int | None = None  # stop after this many epochs without a better score
    param_count: int | None = None
    epoch_budget: int | None = None
    model_size: int | None = None
    latency_ms: float | None = None
    timings: dict[str, float] = field(default_factory=lambda: {"checkpoint": 0.0})

    def fail(self, error: str, kind: FailureKind) -> None:
        self.status, self.error, self.error_kind = TrialStatus.FAILED, error, kind


@dataclass(frozen=True)
class _Candidate:
    """The best configuration a single-fidelity strategy has found so far, kept to be promoted."""

    number: int
    values: dict[str, Any]
    score: float
    reached: int  # the epochs its checkpoint holds
    epoch_s: float  # the median of its epochs' seconds (with validation)
    most: int  # the most epochs its family allows it


class TrialContext(SearchContext):
    """Runs, times and records each trial of one search (one lane of it, with parallel trials).

    Args:
        history: the trials an earlier process of this search recorded (the search goes on in a
            fresh process after a trial was killed or crashed); strategies see them in `trials`.
    """

    def __init__(self, job: SearchJob, store: Store, family: ModelFamily, data: Splits,
                 budget: Budget, events: Events, *, history: Sequence[TrialRecord] = (),
                 rule: SelectionRule | None = None) -> None:
        self.job = job
        self.store = store
        self.family = family
        self._data = data  # private: strategies never see the test split
        self.spec = data.spec
        self.seed = job.seed
        self.budget = budget
        self.events = events
        self.options = job.training
        self.search_options = job.search
        self.objective = objective_for(data.spec.task)
        self.max_epochs = job.max_epochs
        self.pins = family.pins
        self.search_key = job.search_key or f"run-{job.run_id}"
        self.run_id = job.run_id
        self.lane, self.lanes = job.lane, job.lanes
        self.shared_store_url = store.url if store.engine.dialect.name == "postgresql" else None
        self.workdir = Path(job.artifact_dir) / "strategy"
        self._trials: list[TrialRecord] = list(history)
        #: The strategy's selection rule: only trials it admits may become the search's best.
        self.rule = rule
        self.resumed = bool(history)
        self.default_trial: int | None = store.run(job.run_id)["default_trial"]
        self.first_number = 0 if self.default_trial is None else self.default_trial + 1
        self._best_score: float | None = max((t.score for t in history if t.score is not None), default=None)
        #: The times this search's trials needed from their start to their first batch end
        #: (building, compiling, tracing): with less time left than a trial is expected to need
        #: (`_expected_start_s`), no trial is started.
        self._to_first_step: list[float] = []
        self._spent: Any = None  # the last trial's model, freed by `release` (see there)
        self._first_steps: list[float] = []  # seconds from `fit` to its first batch end (tracing), per trial
        self._first_epochs: list[float] = []  # seconds from `fit` to the end of its first epoch, per trial
        #: seconds from a trial's start to the end of its first epoch (build, tracing, the epoch), per
        #: trial trained from scratch: with less time left than the least of them, no trial can reach a
        #: score, so none is started (it would only be turned away, counted against the strategy)
        self._to_first_epoch: list[float] = []
        #: The weights file this process keeps for each trial (the run's best, and the family default's).
        self._files: dict[int, Path] = {}
        #: The strategy's own computing between trials (`timings.sampler`): when the context last
        #: handed it a record or a number, and what it has computed since its last trial.
        self._returned_at: float | None = None
        self._sampler_s = 0.0
        #: The promotion (`promote_share`): the seconds at the end of the budget kept from the
        #: strategy once its first trial's epochs were assigned, the best configuration it found so
        #: far (`_Candidate`, with a checkpoint), and the trial number being continued.
        self._reserve = 0.0
        self._candidate: _Candidate | None = None
        self._promoting: int | None = None
        Path(job.artifact_dir).mkdir(parents=True, exist_ok=True)

    @property
    def trials(self) -> tuple[TrialRecord, ...]:
        return tuple(self._trials)

    def space(self, hp: HyperParameters | None = None) -> dict[str, Param]:
        from tunebench.declared import declared_space

        found = declared_space(self.family, self.spec, None, self.max_epochs, hp=hp)
        for problem in filter(None, (found.space_error, found.error, *found.pin_problems)):
            print(f"the search space's reference build: {problem}", flush=True)  # the first trial records it
        return found.params

    def next_number(self) -> int:
        # a number handed out is a trial on record: never one that cannot start (with several
        # lanes a number reserved and then dropped at the deadline left a gap in the numbering)
        self._strategy_time()
        self._ready_to_start()
        number = self.store.next_trial_number(self.job.run_id)
        self._returned_at = time.monotonic()  # what the strategy computes before running it counts too
        return number

    def _strategy_time(self) -> None:
        """Add what the strategy computed since the context last handed it something (its sampler)."""
        if self._returned_at is not None:
            self._sampler_s += time.monotonic() - self._returned_at
            self._returned_at = None

    def _ready_to_start(self) -> None:
        """Free the last trial's model; `BudgetExhausted` when no trial can start any more."""
        if self._no_time():
            raise BudgetExhausted()
        self.release()
        if self._no_time():  # freeing the last trial's model took the time that was left
            raise BudgetExhausted()

    def default_values(self) -> dict[str, Any]:
        return dict(self.family.default_values(self.spec))

    def default_epochs(self) -> int | None:
        family = self.family
        if family.epochs_searched:
            return None
        return min(family.epochs_for(self.spec), family.epoch_range(self.spec, self.max_epochs))

    def run_default_first(self) -> TrialRecord | None:
        """With `first_trial: defaults`, run the family's default configuration (its declared
        defaults and the suite's pins) as the search's first trial, before the strategy proposes
        anything: the same trial for every strategy, recorded as the run's `default_trial` (whose
        number lane 0 reserved when the clock started)."""
        number = self.default_trial
        if number is None or self.lane != 0 or any(t.number == number for t in self._trials):
            return None  # off, another lane's job, or run already (the search resumed after it)
        record = self.run_trial(FixedHyperParameters(self.family.default_values(self.spec)), number=number)
        self.store.update_run(self.run_id, default_val=record.score)
        return record

    def _fair_share(self, now: float, *, default: bool, wanted: int | None = None) -> float | None:
        """With `min_trials` (or `wanted`), the deadline that leaves the scored trials still wanted
        after this one their share of the time left (None when off, for the family default, which
        has its own share, or when no other scored trial is wanted)."""
        wanted = wanted or self.search_options.min_trials
        if wanted is None or default:
            return None
        left = wanted - sum(1 for t in self._trials if t.score is not None)
        if left <= 1:
            return None
        return now + self._left() / left

    def _left(self) -> float:
        """The seconds left to the strategy: the budget's, less the promotion's reserve (none while
        the best configuration so far has trained all the epochs it may: there is nothing to continue)."""
        candidate = self._candidate
        full = candidate is not None and candidate.reached >= candidate.most
        return max(0.0, self.budget.remaining() - (0.0 if full else self._reserve))

    def _no_time(self) -> bool:
        expected = self._expected_start_s()
        least = min(self._to_first_epoch) if self._to_first_epoch else None
        need = max(expected or 0.0, least or 0.0)
        left = self._left()
        return (self.budget.expired or left <= 0 or (bool(need) and left < need)
                or self._tail_turned_away())

    def _tail_turned_away(self) -> bool:
        last = self._trials[-1] if self._trials else None
        return in_the_tail(last is not None and last.turned_away, self._to_first_epoch, self._left())

    def _expected_start_s(self) -> float | None:
        """What a trial is expected to need before its first batch end: the upper quartile of this
        search's trials so far (the most of them, with fewer than four). A trial started with less
        time left would reach its first step past the deadline (the runner kills a search that
        overruns it), so none is started."""
        seen = self._to_first_step
        if not seen:
            return None
        if len(seen) < 4:
            return max(seen)
        return statistics.quantiles(seen, n=4)[2]

    def search_trials(self, *, curves: bool = True) -> tuple[TrialRecord, ...]:
        if self.lanes == 1:
            return self.trials
        return tuple(history_of(self.store, self.run_id, curves=curves))  # every lane's, from the store

    def claim(self, name: str) -> bool:
        if self.lanes == 1:
            return super().claim(name)
        # an atomic insert in the store's claims: the first lane wins
        return self.store.claim(f"run-{self.run_id}:{name}", f"lane-{self.lane}")

    def checkpoint_path(self, number: int) -> Path:
        """Where trial `number`'s checkpoint lives (`training.save_checkpoint` adds the suffixes)."""
        return Path(self.job.artifact_dir) / "checkpoints" / f"trial-{number}"

    def discard_checkpoint(self, number: int) -> None:
        base = self.checkpoint_path(number)
        for suffix in (".weights.h5", ".json"):
            base.with_name(base.name + suffix).unlink(missing_ok=True)

    def drop_checkpoints(self) -> None:
        """Remove every checkpoint of the search (at its end: nothing will continue them)."""
        import shutil

        shutil.rmtree(Path(self.job.artifact_dir) / "checkpoints", ignore_errors=True)

    def run_trial(self, hp: HyperParameters, *, epochs: int | None = None,
                  report: EpochReport | None = None, number: int | None = None,
                  latency: bool = False, resume_from: int | None = None,
                  checkpoint: bool = False) -> TrialRecord:
        trial = self._begin(hp, number, resume_from)
        try:
            self._build(trial, epochs, latency)
            self._train(trial, report, checkpoint)
            self._outcome(trial)
        except TrialPruned:
            trial.status = TrialStatus.PRUNED
        except SpaceError as exc:  # a pin the family does not declare: every trial would fail alike
            trial.fail(str(exc), FailureKind.SPACE)
            trial.fatal = exc
        except Exception as exc:  # a trial's failure is recorded, never fatal to the search
            traceback.print_exc()
            trial.fail(f"{type(exc).__name__}: {exc}"[:4000], failure_kind(exc))
        return self._record(trial)

    # -- the steps of one trial ------------------------------------------------------------------------
    def _begin(self, hp: HyperParameters, number: int | None, resume_from: int | None) -> _Trial:
        """Reserve the trial's number and deadline, put it on record, and tell the runner it started."""
        from tunebench import training

        self._strategy_time()
        self._ready_to_start()
        if number is None:
            number = self.next_number()
            self._strategy_time()
        default = number == self.default_trial
        started_wall, t0 = time.time(), time.monotonic()
        deadline = hard = self.budget.trial_deadline(t0)
        share = None if self._promoting is not None else self._fair_share(t0, default=default)
        if share is not None and share < deadline:
            deadline = share
        hp.pin(self.pins).restrict(self.family.restrictions)
        trial = _Trial(number=number, hp=hp, default=default, seed=(self.seed * 100_003 + number) % (2**31 - 1),
                       started_wall=started_wall, t0=t0, deadline=deadline, hard_deadline=hard)
        if default:
            trial.notes["family_default"] = True
        trial.timings["sampler"], self._sampler_s = round(self._sampler_s, 6), 0.0
        if resume_from is not None:
            if not self.family.continues:
                trial.notes["resume_skipped"] = (f"model family '{self.family.name}' cannot continue a trial: "
                                                 f"trained from scratch")
            elif not training.has_checkpoint(self.checkpoint_path(resume_from)):
                trial.notes["resume_skipped"] = f"trial {resume_from} left no checkpoint: trained from scratch"
            else:
                trial.source, trial.resumed_from = self.checkpoint_path(resume_from), resume_from
        if share is not None and share <= deadline:
            trial.notes["min_trials_cap_s"] = round(share - t0, 2)
        trial.trial_id = self.store.start_trial(self.job.run_id, number, started_at=started_wall, seed=trial.seed,
                                                lane=self.lane)
        self.events.send(EventKind.TRIAL_START, number=number, lane=self.lane,
                         deadline=started_wall + (deadline - t0))
        known = [b for b in (self._best_score, self.store.run(self.run_id)["best_val"]) if b is not None]
        # An epoch's weights are written only when it beats the search's best so far (or it is the
        # family default's, which the test evaluation also scores).
        trial.beat = None if default else max(known, default=None)
        return trial

    def _build(self, trial: _Trial, epochs: int | None, latency: bool) -> None:
        """Build and compile the configuration (continuing a checkpoint), and put what it is on
        record: a trial killed from here on keeps its hyperparameters, size and epoch budget."""
        import keras

        from tunebench import training

        keras.utils.set_random_seed(trial.seed)
        tb = time.monotonic()
        model, settings = training.build_trial_model(
            self.family, trial.hp, self.spec, self.options, max_epochs=self.max_epochs,
            epochs=None if trial.default else epochs, train_size=len(self._data.x_train),
            sample=self._data.x_train[:ESTIMATE_SAMPLE],
            # on record once its values are drawn: a trial killed while it compiles keeps them
            on_built=lambda: self.store.update_trial(trial.trial_id, params=trial.hp.values))
        trial.model = model
        if trial.source is not None:
            reached, restored = training.load_checkpoint(model, trial.source)
            settings = dataclasses.replace(settings, initial_epoch=reached)
            trial.notes.update(resumed_from=trial.resumed_from, initial_epoch=reached,
                               optimizer_variables_restored=restored)
        if settings.fidelity and epochs is None and trial.source is None:
            settings = self._assign_epochs(trial, settings)
        if self._promoting is not None and trial.number != self.default_trial:
            trial.share_end = True  # the search's end is this trial's share: stopping there is ordinary
            trial.patience = self.search_options.plateau_patience or None
            trial.notes["promoted"] = {"from_trial": self._promoting, "from_epoch": settings.initial_epoch,
                                       "to_epoch": settings.epochs}
        trial.settings = settings
        trial.epoch_budget = settings.epochs
        trial.param_count = int(model.count_params())
        trial.model_size = training.model_bytes(model)
        trial.notes["steps_per_execution"] = int(settings.compile_options.get("steps_per_execution", 1))
        if settings.extra.get("step_seconds") is not None:
            trial.notes["step_seconds"] = round(float(settings.extra["step_seconds"]), 5)
        if latency or (self.rule is not None and self.rule.metric == "latency"):
            # inference latency does not depend on the weights: measured before training
            trial.latency_ms = training.inference_ms(model, self._data.x_val, limit=512)
        if self.rule is not None and not self.rule.admits(trial.latency_ms, trial.param_count):
            trial.beat = math.inf  # outside the selection rule: recorded, never selected
            trial.notes["selectable"] = False
        self.store.update_trial(trial.trial_id, params=trial.hp.values, param_count=trial.param_count,
                                inference_ms=trial.latency_ms, epoch_budget=trial.epoch_budget,
                                model_bytes=trial.model_size, notes=trial.notes)
        trial.timings["build"] = time.monotonic() - tb

    def _assign_epochs(self, trial: _Trial, settings: TrialSettings) -> TrialSettings:
        """The epochs of a trial whose epochs are a fidelity and whose strategy named none.

        The family default trains its calibrated epochs (`default_epochs`), within its share of the
        budget (`default_share`). Any other trial gets its share of the time left: the time left over
        the scored trials still wanted (`min_trials`, by default `DEFAULT_MIN_TRIALS`), and as many
        epochs as the estimate taken at build time fits there (all it may have without one), and
        stops earlier on a validation plateau (`plateau_patience`). Stopping at an epoch's end
        before its share is an ordinary end (`notes.stopped`)."""
        from tunebench.settings import DEFAULT_MIN_TRIALS

        now = time.monotonic()
        trial.share_end = True
        estimate = self._epoch_estimate(settings)
        tracing = statistics.median(self._first_steps) if self._first_steps else 0.0
        # never less than the trial's first epoch is expected to take (after tracing, with its
        # validation pass; at least what this search's first epochs took, whose tracing the estimate
        # cannot see, or a guess before there are any): a smaller share would only turn it away
        need = (tracing or FIRST_TRACING_S) + (estimate or 0.0) * self.search_options.feasibility_margin
        if self._first_epochs:
            need = max(need, statistics.median(self._first_epochs))
        floor = now + SHARE_FLOOR * need
        if trial.default:
            share = self.search_options.default_share
            if share is not None and share < 1:
                cap = max(trial.t0 + share * self.budget.seconds, floor)
                if cap < trial.deadline:
                    trial.deadline = cap
                    trial.notes["default_share_s"] = round(cap - trial.t0, 2)
            return dataclasses.replace(settings, epochs=max(1, min(settings.default_epochs or settings.epochs,
                                                                   settings.epochs)))
        trial.patience = self.search_options.plateau_patience or None
        promote = self.search_options.promote_share
        if promote and not self._reserve and self.lanes == 1:
            # a single-fidelity strategy: the end of the budget is kept for its best configuration
            self._reserve = promote * self.budget.seconds
        if self._reserve:
            end = time.monotonic() + self._left()  # the strategy's part of the budget ends there
            if end < trial.deadline:  # never past the deadline it had (a floor can reach beyond it)
                trial.deadline = min(trial.deadline, max(end, floor))
                trial.notes["reserve_cap_s"] = round(trial.deadline - trial.t0, 2)
        if self.search_options.min_trials is None:  # an explicit `min_trials` set the share at the trial's start
            wanted = DEFAULT_MIN_TRIALS
            most = self.job.strategy.options.get("max_trials")
            if most:  # a strategy that stops at N trials wants no more than those (and the default)
                wanted = min(wanted, int(most) + (self.default_trial is not None))
            share = self._fair_share(now, default=False, wanted=wanted)
            if share is not None:  # fewer trials than wanted fit in the time left: at least the floor
                share = max(share, floor)
            if share is not None and share < trial.deadline:
                trial.deadline = share
                trial.notes["min_trials_cap_s"] = round(share - trial.t0, 2)
        epochs = settings.epochs
        left = trial.deadline - now - tracing
        if estimate:
            epochs = int(max(1, min(settings.epochs, left // estimate)))
        trial.notes["epochs_assigned"] = {"epochs": epochs, "most": settings.epochs, "share_s": round(left, 3),
                                          "estimated_epoch_s": round(estimate, 4) if estimate else None}
        return dataclasses.replace(settings, epochs=epochs)

    def _epoch_estimate(self, settings: TrialSettings) -> float | None:
        """An epoch and its validation pass, in seconds, from the step timed at build time (None
        without one)."""
        from tunebench import training

        step = settings.extra.get("step_seconds")
        if not step:
            return None
        step = float(step)
        n = len(self._data.x_train)
        train = step * math.ceil(n / max(1, settings.batch_size))
        return train * (1 + training.VALIDATION_COST * len(self._data.x_val) / max(1, n))

    def _train(self, trial: _Trial, report: EpochReport | None, checkpoint: bool) -> None:
        """Train under the trial's deadline (unless the feasibility guard turns the draw away before
        training), recording each epoch as it ends; keep a checkpoint when asked and complete."""
        from tunebench import training

        settings, guard = trial.settings, self.search_options
        assert settings is not None
        # the time left once the training step is traced (the median of this search's trials so far)
        tracing = statistics.median(self._first_steps) if self._first_steps else 0.0
        left = trial.hard_deadline - time.monotonic()  # the search's (or the trial cap's), not a share
        if self._first_steps and left < tracing:
            # built, but its first batch would end past its deadline: not trained, so that the search
            # stops on time (a trial that outran it was killed, and its search with it)
            trial.status, trial.error_kind = TrialStatus.TIMEOUT, FailureKind.DEADLINE
            trial.error = (f"not started: {max(left, 0):.1f} s were left, and this search's trials have needed "
                           f"{tracing:.1f} s from the start of training to their first step")
            trial.notes["not_started"] = True
            return
        verdict = training.prefit_verdict(
            settings.extra.get("step_seconds"), len(self._data.x_train), settings.batch_size,
            trial.deadline - time.monotonic() - tracing, guard.feasibility_margin) if guard.feasibility_guard else None
        if verdict is not None and verdict[1] is not None:
            # hopeless by the estimate taken at build time: not even traced
            trial.status, trial.error, trial.error_kind = TrialStatus.TIMEOUT, verdict[1], FailureKind.INFEASIBLE
            trial.notes["feasibility"] = {"estimated_epoch_s": round(verdict[0], 2),
                                          "left_s": round(trial.deadline - time.monotonic() - tracing, 2),
                                          "tracing_s": round(tracing, 2), "margin": guard.feasibility_margin,
                                          "before_training": True, "stopped": True}
            return
        if verdict is not None:
            trial.notes["estimated_epoch_s"] = round(verdict[0], 2)
        trial.callback = callback = training.TrialCallback(
            trial.deadline, self.objective, lambda *args: self._on_epoch(trial, report, *args), beat=trial.beat,
            save=lambda epoch: self._save(trial, epoch),
            guard=training.Guard(guard.feasibility_margin) if guard.feasibility_guard else None,
            on_progress=lambda: self.events.send(EventKind.PROGRESS, lane=self.lane),
            val_ratio=len(self._data.x_val) / max(1, len(self._data.x_train)),
            share_end=trial.share_end, patience=trial.patience)
        tf = time.monotonic()
        try:
            self.family.fit(trial.model, self._data, settings, [callback], verbose=2 if self.job.verbose else 0)
        except training.TrialStopped:  # the callback left fit at the deadline or on the guard's word
            pass
        trial.timings["train"] = time.monotonic() - tf
        if self.search_options.record_test and callback.history:
            self._record_test(trial)
        self._keep_candidate(trial)
        if (checkpoint and not callback.stopped and not callback.infeasible
                and len(callback.history) == settings.epochs - settings.initial_epoch):
            tc = time.monotonic()  # complete: a later trial may continue it
            training.save_checkpoint(trial.model, self.checkpoint_path(trial.number), epoch=settings.epochs)
            trial.timings["checkpoint"] += time.monotonic() - tc
            trial.notes["checkpoint"] = True

    def _keep_candidate(self, trial: _Trial) -> None:
        """With a promotion to come, keep a checkpoint of the strategy's best budget-assigned trial so
        far (the family default's is never continued: it trained its calibrated epochs), and drop the
        one it replaces."""
        from tunebench import training

        callback, settings = trial.callback, trial.settings
        if (not self._reserve or trial.default or self._promoting is not None or callback is None
                or settings is None or "epochs_assigned" not in trial.notes or not callback.history
                or callback.non_finite or callback.infeasible or callback.best_score is None
                or not math.isfinite(callback.best_score) or trial.beat == math.inf):
            return
        old = self._candidate
        if old is not None and callback.best_score <= old.score:
            return
        tc = time.monotonic()
        reached = settings.initial_epoch + len(callback.history)
        try:
            training.save_checkpoint(trial.model, self.checkpoint_path(trial.number), epoch=reached)
        except Exception as exc:  # the promotion then continues the last candidate kept, or none
            trial.notes["checkpoint_error"] = f"{type(exc).__name__}: {exc}"[:500]
            return
        finally:
            trial.timings["checkpoint"] += time.monotonic() - tc
        trial.notes["checkpoint"] = True
        if old is not None:
            self.discard_checkpoint(old.number)
        self._candidate = _Candidate(trial.number, dict(trial.hp.values), float(callback.best_score), reached,
                                     float(statistics.median(callback.epoch_seconds)),
                                     int(trial.notes["epochs_assigned"]["most"]))

    def promote(self) -> TrialRecord | None:
        """Spend the promotion's reserve (`promote_share`) on the strategy's best configuration: its
        trial's checkpoint continued (or, for a family that cannot continue, the configuration
        trained from scratch) for as many more epochs as the time left fits, at most the family's
        most, stopping on a validation plateau or at the search's end (an ordinary end). Its epochs
        are recorded like any trial's, and it is selected only if it beats the search's best (the
        family default included). None when there was no reserve, no candidate, or no room for
        an epoch. Called by the harness (`drive`) when the strategy has ended."""
        candidate, self._reserve = self._candidate, 0.0
        if candidate is None:
            return None
        continues = self.family.continues
        tracing = statistics.median(self._first_steps) if self._first_steps else 0.0
        builds = [t.timings.get("build", 0.0) for t in self._trials if t.timings]
        fixed = tracing + (statistics.median(builds) if builds else 0.0)
        more = int((self.budget.remaining() - fixed) // max(candidate.epoch_s, 1e-6))
        start = candidate.reached if continues else 0
        target = min(candidate.most, start + more)
        if more < 1 or target <= candidate.reached:
            print(f"promotion: no room to continue trial {candidate.number} "
                  f"({self.budget.remaining():.1f} s left, its epochs take {candidate.epoch_s:.1f} s)", flush=True)
            return None
        self._promoting = candidate.number
        try:
            return self.run_trial(FixedHyperParameters(candidate.values), epochs=target,
                                  resume_from=candidate.number if continues else None)
        finally:
            self._promoting = None

    def _record_test(self, trial: _Trial) -> None:
        """Score the trial's final model on the test split (`record_test: true`, for a table of the
        configurations): kept in the trial's notes, never in what the strategy gets back."""
        from tunebench import training

        assert trial.settings is not None
        tt = time.monotonic()
        metrics, _ = training.evaluate_once(trial.model, self._data.x_test, self._data.y_test,
                                            trial.settings.batch_size)
        trial.notes["test_score"] = metrics.get(self.objective[len("val_"):])
        trial.timings["test_eval"] = time.monotonic() - tt

    def _save(self, trial: _Trial, epoch: int) -> None:
        """Write the trial's weights after `epoch` (before the epoch's record names them)."""
        from tunebench import training

        tc = time.monotonic()
        training.save_weights(trial.model, trial_weights_path(self.job.artifact_dir, trial.number, epoch))
        trial.timings["checkpoint"] += time.monotonic() - tc

    def _on_epoch(self, trial: _Trial, report: EpochReport | None, epoch: int, metrics: Mapping[str, float],
                  elapsed: float, saved: bool) -> None:
        """Commit one completed epoch (and, when its weights were saved, the trial as the run's best
        if it is), then give the strategy its report."""
        callback = trial.callback
        assert callback is not None
        best = ({"best_trial": trial.number, "best_params": trial.hp.values, "best_param_count": trial.param_count}
                if saved else None)
        became = self.store.record_epoch(self.job.run_id, trial.trial_id, epoch, metrics, elapsed,
                                         score=callback.best_score, best_epoch=callback.best_epoch, best=best)
        if saved:
            self._keep(trial.number, trial_weights_path(self.job.artifact_dir, trial.number, epoch), became,
                       trial.default)
        if report is not None:
            report(epoch, metrics)

    @staticmethod
    def _outcome(trial: _Trial) -> None:
        """How training ended, from the callback: a non-finite loss, the guard, the deadline, or ok."""
        callback = trial.callback
        if callback is None:
            return
        if callback.non_finite:
            trial.status, trial.error, trial.error_kind = (TrialStatus.NAN, "loss became NaN or infinite",
                                                           FailureKind.NAN)
        elif callback.infeasible:
            trial.status, trial.error, trial.error_kind = (TrialStatus.TIMEOUT, callback.infeasible,
                                                           FailureKind.INFEASIBLE)
        elif callback.timed_out:
            trial.status, trial.error_kind = TrialStatus.TIMEOUT, FailureKind.DEADLINE
        if callback.ended is not None and trial.status == TrialStatus.OK:
            trial.notes["stopped"] = callback.ended  # its share of the budget, or a plateau

    def _record(self, trial: _Trial) -> TrialRecord:
        """Close the trial's record, tell the runner, and hand the strategy its frozen record."""
        callback = trial.callback
        score = callback.best_score if callback is not None else None
        if callback is not None:
            trial.timings["first_epoch"] = callback.epoch_seconds[0] if callback.epoch_seconds else 0.0
            trial.timings["eval"] = callback.eval_seconds
            if callback.epoch_seconds and trial.settings is not None and not trial.settings.initial_epoch:
                self._first_epochs.append(callback.epoch_seconds[0])
                self._to_first_epoch.append(trial.timings.get("build", 0.0) + callback.epoch_seconds[0])
            if callback.first_step_s is not None:
                self._first_steps.append(callback.first_step_s)
                trial.timings["to_first_step"] = trial.timings.get("build", 0.0) + callback.first_step_s
                self._to_first_step.append(trial.timings["to_first_step"])
            if callback.projection is not None:
                trial.notes["feasibility"] = dict(callback.projection, stopped=bool(callback.infeasible))
        # a failed trial (its weights could not be written, say) never sets the bar either
        if (score is not None and trial.beat != math.inf
                and trial.status not in (TrialStatus.FAILED, TrialStatus.NAN)
                and (self._best_score is None or score > self._best_score)):
            self._best_score = score  # a trial outside the selection rule never sets the bar
        history = tuple(callback.history) if callback is not None else ()
        # Freed at the next trial's start or when the search ends, not here: clearing Keras's state
        # (a garbage collection that may meet TensorFlow's input pipeline) took over a second now
        # and then, which at the deadline kept the trial off the record past the runner's grace.
        self._spent, trial.model = trial.model, None
        trial.timings["rss_mb"] = rss_mb()  # host memory at the trial's end (with its model): flat, or a leak
        row = {"number": trial.number, "started_at": trial.started_wall, "finished_at": time.time(),
               "status": trial.status, "error": trial.error, "error_kind": trial.error_kind,
               "params": trial.hp.values, "score": score,
               "best_epoch": callback.best_epoch if callback is not None else None, "epochs_done": len(history),
               "epoch_budget": trial.epoch_budget, "param_count": trial.param_count,
               "model_bytes": trial.model_size, "metrics": history[-1] if history else None,
               "timings": trial.timings, "notes": trial.notes, "inference_ms": trial.latency_ms,
               "sampler_s": trial.timings.get("sampler")}
        self.store.finish_trial(trial.trial_id, **{k: v for k, v in row.items() if k not in ("number", "started_at")})
        record = TrialRecord.from_row(row, history)
        self._trials.append(record)
        self.events.send(EventKind.TRIAL, number=trial.number, lane=self.lane, status=trial.status, score=score,
                         best=self._best_score)
        self._returned_at = time.monotonic()
        if trial.fatal is not None and not any(t.status == TrialStatus.OK for t in self._trials):
            raise FatalTrialError(str(trial.fatal))
        return record

    def release(self) -> None:
        """Free the last trial's model and Keras's global state (`training.release`)."""
        if self._spent is not None:
            from tunebench import training

            spent, self._spent = self._spent, None
            training.release(spent)

    def _keep(self, number: int, path: Path, became_best: bool, default: bool) -> None:
        """After an epoch's weights were written and its record committed: keep the file while the
        store may select it (the run's best, or the family default's), delete what no record names."""
        old = self._files.pop(number, None)
        if old is not None and old != path:
            old.unlink(missing_ok=True)
        if became_best or default:
            self._files[number] = path
        else:  # another lane holds a better trial: these weights can never be selected
            path.unlink(missing_ok=True)
        if became_best:
            for other in [n for n in self._files if n not in (number, self.default_trial)]:
                self._files.pop(other).unlink(missing_ok=True)


def history_of(store: Store, run_id: int, *, curves: bool = True) -> list[TrialRecord]:
    """The trials a run has recorded so far, as strategies see them (for a search that goes on in a
    fresh process, or another lane's view); `curves=False` leaves each trial's `history` empty."""
    rows = store.trials([run_id])
    by_trial: dict[int, list[dict[str, float]]] = {}
    for e in store.epochs([r["id"] for r in rows]) if curves else ():
        by_trial.setdefault(e["trial_id"], []).append(dict(e["metrics"]))
    return [TrialRecord.from_row(r, by_trial.get(r["id"], ())) for r in rows]


def drive(strategy: SearchStrategy, ctx: SearchContext, *, freeze: bool = True) -> tuple[str, str | None]:
    """Run the strategy's search (after the family default's trial, with `first_trial: defaults`);
    its stop reason (completed, budget, error), and an error if it broke.

    What exists before the first trial (the frameworks' modules, the data, the strategy) is moved
    out of the garbage collector's sight for the search (`gc.freeze`): each trial ends with
    `clear_session`, which runs a full collection, and walking the frameworks' millions of objects
    was most of a small trial's fixed cost (0.29 s per trial under torch). Reference counting
    still frees them; the search's end gives them back to the collector. A search on the simulated
    clock (`freeze=False`) makes no models to collect, and skips it.
    """
    with out_of_collector_sight() if freeze else _nothing():
        try:
            ctx.run_default_first()
            strategy.search(ctx)
            reason = "completed"
        except BudgetExhausted:
            reason = "budget"
        except FatalTrialError as exc:
            return "error", str(exc)
        except Exception as exc:  # the strategy itself broke
            traceback.print_exc()
            return "error", f"strategy '{strategy.name}' raised {type(exc).__name__}: {exc}"
        try:
            ctx.promote()  # the budget's reserved end, for the strategy's best configuration
        except BudgetExhausted:
            pass
    return reason, None


@contextmanager
def _nothing() -> Iterator[None]:
    yield


@contextmanager
def out_of_collector_sight(*, collect: bool = True) -> Iterator[None]:
    """Keep what exists now out of the garbage collector's walks (`gc.freeze`) for the block, after
    a full collection (`collect`). A warm worker froze the frameworks once for its life
    (`tunebench.worker.serve`): then this does nothing, and the block's own objects stay in sight."""
    import gc

    if gc.get_freeze_count():
        yield
        return
    if collect:
        gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
