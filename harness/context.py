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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunebench.errors import BudgetExhausted, SpaceError, TrialPruned
from tunebench.job import trial_weights_path
from tunebench.models import objective_for
from tunebench.provenance import rss_mb
from tunebench.settings import SearchOptions, TrainingOptions
from tunebench.space import DefaultHyperParameters, FixedHyperParameters, HyperParameters, Param
from tunebench.strategies import FAILED, NAN, OK, PRUNED, TIMEOUT, EpochReport, SearchContext, TrialRecord

if TYPE_CHECKING:
    from tunebench.budget import Budget
    from tunebench.datasets import Splits
    from tunebench.job import Events, SearchJob
    from tunebench.models import ModelFamily
    from tunebench.store import Store
    from tunebench.strategies import SearchStrategy, SelectionRule

#: Training images handed to `training.build_trial_model` to time a step: a whole batch up to this.
ESTIMATE_SAMPLE = 256


class FatalTrialError(Exception):
    """A trial failed in a way every trial would (a user error such as a misspelt pin)."""


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
        self.options = TrainingOptions.from_mapping(job.training)
        self.search_options = SearchOptions.from_mapping(job.search)
        self.objective = objective_for(data.spec.task)
        self.max_epochs = job.max_epochs
        self.pins = dict(family.options.get("params") or {})
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
        #: The least time a trial of this search has needed from its start to its first batch end
        #: (building, compiling, tracing): with less time left, no trial can train at all.
        self._least_start_s: float | None = None
        self._spent: Any = None  # the last trial's model, freed by `release` (see there)
        self._first_steps: list[float] = []  # seconds from `fit` to its first batch end (tracing), per trial
        #: The weights file this process keeps for each trial (the run's best, and the family default's).
        self._files: dict[int, Path] = {}
        Path(job.artifact_dir).mkdir(parents=True, exist_ok=True)

    @property
    def trials(self) -> tuple[TrialRecord, ...]:
        return tuple(self._trials)

    def space(self, hp: HyperParameters | None = None) -> dict[str, Param]:
        from tunebench import training

        hp = (hp or DefaultHyperParameters()).pin(self.pins)
        try:
            model = self.family.build(hp, self.spec)
            self.family.training(hp, self.spec, self.max_epochs)
            training.release(model)
        except Exception:  # the first trial will meet, and record, the same error
            traceback.print_exc()
        return hp.params

    def next_number(self) -> int:
        # a number handed out is a trial on record: never one that cannot start (with several
        # lanes a number reserved and then dropped at the deadline left a gap in the numbering)
        self._ready_to_start()
        return self.store.next_trial_number(self.job.run_id)

    def _ready_to_start(self) -> None:
        """Free the last trial's model; `BudgetExhausted` when no trial can start any more."""
        if self._no_time():
            raise BudgetExhausted()
        self.release()
        if self._no_time():  # freeing the last trial's model took the time that was left
            raise BudgetExhausted()

    def default_values(self) -> dict[str, Any]:
        return dict(self.family.default_values(self.spec))

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

    def _fair_share(self, now: float, *, default: bool) -> float | None:
        """With `min_trials`, the deadline that leaves the scored trials still wanted after this one
        their share of the time left (None when off, for the family default, which runs in full as
        the baseline, or when no other scored trial is wanted)."""
        wanted = self.search_options.min_trials
        if wanted is None or default:
            return None
        left = wanted - sum(1 for t in self._trials if t.score is not None)
        if left <= 1:
            return None
        return now + self.budget.remaining() / left

    def _no_time(self) -> bool:
        return self.budget.expired or (self._least_start_s is not None
                                       and self.budget.remaining() < self._least_start_s)

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
        self._ready_to_start()
        from tunebench import training

        if number is None:
            number = self.next_number()
        default = number == self.default_trial
        started_wall, t0 = time.time(), time.monotonic()
        deadline = self.budget.trial_deadline(t0)
        share = self._fair_share(t0, default=default)
        if share is not None and share < deadline:
            deadline = share
        hp.pin(self.pins)
        trial_seed = (self.seed * 100_003 + number) % (2**31 - 1)
        notes: dict[str, Any] = {"family_default": True} if default else {}
        source = None
        if resume_from is not None:
            if not self.family.continues:
                notes["resume_skipped"] = (f"model family '{self.family.name}' cannot continue a trial: "
                                           f"trained from scratch")
            elif not training.has_checkpoint(self.checkpoint_path(resume_from)):
                notes["resume_skipped"] = f"trial {resume_from} left no checkpoint: trained from scratch"
            else:
                source = self.checkpoint_path(resume_from)
        if share is not None and share <= deadline:
            notes["min_trials_cap_s"] = round(share - t0, 2)
        trial_id = self.store.start_trial(self.job.run_id, number, started_at=started_wall, seed=trial_seed,
                                          lane=self.lane)
        self.events.send("trial_start", number=number, lane=self.lane, deadline=started_wall + (deadline - t0))
        known = [b for b in (self._best_score, self.store.run(self.run_id)["best_val"]) if b is not None]
        # An epoch's weights are written only when it beats the search's best so far (or it is the
        # family default's, which the test evaluation also scores).
        beat = None if default else max(known, default=None)

        status, error, error_kind = OK, None, None
        model: Any = None
        callback: training.TrialCallback | None = None
        param_count, epoch_budget, model_size, latency_ms = None, None, None, None
        timings: dict[str, float] = {"checkpoint": 0.0}
        fatal: Exception | None = None

        def save(epoch: int) -> None:
            tc = time.monotonic()
            training.save_weights(model, trial_weights_path(self.job.artifact_dir, number, epoch))
            timings["checkpoint"] += time.monotonic() - tc

        def on_epoch(epoch: int, metrics: Mapping[str, float], elapsed: float, saved: bool) -> None:
            assert callback is not None
            best = ({"best_trial": number, "best_params": hp.values, "best_param_count": param_count}
                    if saved else None)
            became = self.store.record_epoch(self.job.run_id, trial_id, epoch, metrics, elapsed,
                                             score=callback.best_score, best_epoch=callback.best_epoch, best=best)
            if saved:
                self._keep(number, trial_weights_path(self.job.artifact_dir, number, epoch), became, default)
            if report is not None:
                report(epoch, metrics)

        try:
            import keras

            keras.utils.set_random_seed(trial_seed)
            tb = time.monotonic()
            model, settings = training.build_trial_model(
                self.family, hp, self.spec, self.options, max_epochs=self.max_epochs,
                epochs=None if default else epochs, train_size=len(self._data.x_train),
                sample=self._data.x_train[:ESTIMATE_SAMPLE])
            if source is not None:
                reached, restored = training.load_checkpoint(model, source)
                settings = dataclasses.replace(settings, initial_epoch=reached)
                notes.update(resumed_from=resume_from, initial_epoch=reached, optimizer_variables_restored=restored)
            epoch_budget = settings.epochs
            param_count = int(model.count_params())
            model_size = training.model_bytes(model)
            notes["steps_per_execution"] = int(settings.compile_options.get("steps_per_execution", 1))
            if settings.extra.get("step_seconds") is not None:
                notes["step_seconds"] = round(float(settings.extra["step_seconds"]), 5)
            if latency or (self.rule is not None and self.rule.metric == "latency"):
                # inference latency does not depend on the weights: measured before training
                latency_ms = training.inference_ms(model, self._data.x_val, limit=512)
            if self.rule is not None and not self.rule.admits(latency_ms, param_count):
                beat = math.inf  # outside the selection rule: recorded, never selected
                notes["selectable"] = False
            # On record from its first second: a trial killed from here on keeps what it was.
            self.store.update_trial(trial_id, params=hp.values, param_count=param_count, inference_ms=latency_ms,
                                    epoch_budget=epoch_budget, model_bytes=model_size, notes=notes)
            timings["build"] = time.monotonic() - tb
            guard = self.search_options
            # the time left once the training step is traced (the median of this search's trials so far)
            tracing = statistics.median(self._first_steps) if self._first_steps else 0.0
            verdict = training.prefit_verdict(
                settings.extra.get("step_seconds"), len(self._data.x_train), settings.batch_size,
                deadline - time.monotonic() - tracing, guard.feasibility_margin) if guard.feasibility_guard else None
            if verdict is not None and verdict[1] is not None:
                # hopeless by the estimate taken at build time: not even traced
                status, error, error_kind = TIMEOUT, verdict[1], "infeasible"
                notes["feasibility"] = {"estimated_epoch_s": round(verdict[0], 2),
                                        "left_s": round(deadline - time.monotonic() - tracing, 2),
                                        "tracing_s": round(tracing, 2), "margin": guard.feasibility_margin,
                                        "before_training": True, "stopped": True}
            else:
                if verdict is not None:
                    notes["estimated_epoch_s"] = round(verdict[0], 2)
                callback = training.TrialCallback(
                    deadline, self.objective, on_epoch, beat=beat, save=save,
                    guard=training.Guard(guard.feasibility_margin) if guard.feasibility_guard else None,
                    on_progress=lambda: self.events.send("progress", lane=self.lane),
                    val_ratio=len(self._data.x_val) / max(1, len(self._data.x_train)))
                tf = time.monotonic()
                try:
                    self.family.fit(model, self._data, settings, [callback], verbose=2 if self.job.verbose else 0)
                except training.TrialStopped:  # the callback left fit at the deadline or on the guard's word
                    pass
                timings["train"] = time.monotonic() - tf
            if (checkpoint and callback is not None and not callback.stopped and not callback.infeasible
                    and len(callback.history) == settings.epochs - settings.initial_epoch):
                tc = time.monotonic()  # complete: a later trial may continue it
                training.save_checkpoint(model, self.checkpoint_path(number), epoch=settings.epochs)
                timings["checkpoint"] += time.monotonic() - tc
                notes["checkpoint"] = True
            if callback is None:
                pass
            elif callback.non_finite:
                status, error, error_kind = NAN, "loss became NaN or infinite", "nan"
            elif callback.infeasible:
                status, error, error_kind = TIMEOUT, callback.infeasible, "infeasible"
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
            error_kind = ("oom" if training.is_out_of_memory(exc) else
                          "disk_full" if training.is_disk_full(exc) else "exception")

        score = callback.best_score if callback is not None else None
        if callback is not None:
            timings["first_epoch"] = callback.epoch_seconds[0] if callback.epoch_seconds else 0.0
            timings["eval"] = callback.eval_seconds
            if callback.first_step_s is not None:
                self._first_steps.append(callback.first_step_s)
                timings["to_first_step"] = timings.get("build", 0.0) + callback.first_step_s
                self._least_start_s = min(self._least_start_s or math.inf, timings["to_first_step"])
            if callback.projection is not None:
                notes["feasibility"] = dict(callback.projection, stopped=bool(callback.infeasible))
        # a failed trial (its weights could not be written, say) never sets the bar either
        if (score is not None and beat != math.inf and status not in (FAILED, NAN)
                and (self._best_score is None or score > self._best_score)):
            self._best_score = score  # a trial outside the selection rule never sets the bar
        history = tuple(callback.history) if callback is not None else ()
        # Freed at the next trial's start or when the search ends, not here: clearing Keras's state
        # (a garbage collection that may meet TensorFlow's input pipeline) took over a second now
        # and then, which at the deadline kept the trial off the record past the runner's grace.
        self._spent, model = model, None
        timings["rss_mb"] = rss_mb()  # host memory at the trial's end (with its model): flat across trials, or a leak
        finished_wall = time.time()
        params = hp.values
        self.store.finish_trial(
            trial_id, status=status, error=error, error_kind=error_kind, params=params,
            finished_at=finished_wall, score=score,
            best_epoch=callback.best_epoch if callback is not None else None,
            epochs_done=len(history), epoch_budget=epoch_budget, param_count=param_count,
            model_bytes=model_size, metrics=history[-1] if history else None, timings=timings, notes=notes)
        record = TrialRecord(number=number, status=status, params=params, score=score, history=history,
                             error=error, duration=finished_wall - started_wall,
                             param_count=param_count, epochs=len(history), timings=timings,
                             epoch_budget=epoch_budget, inference_ms=latency_ms,
                             resumed_from=notes.get("resumed_from"), initial_epoch=notes.get("initial_epoch", 0),
                             checkpointed=bool(notes.get("checkpoint")))
        self._trials.append(record)
        self.events.send("trial", number=number, lane=self.lane, status=status, score=score, best=self._best_score)
        if fatal is not None and not any(t.status == OK for t in self._trials):
            raise FatalTrialError(str(fatal))
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
    return [TrialRecord(number=r["number"], status=r["status"], params=dict(r["params"] or {}), score=r["score"],
                        history=tuple(by_trial.get(r["id"], ())), error=r["error"],
                        duration=(r["finished_at"] or r["started_at"]) - r["started_at"],
                        param_count=r["param_count"], epochs=r["epochs_done"] or 0, timings=r["timings"] or {},
                        epoch_budget=r["epoch_budget"], inference_ms=r["inference_ms"],
                        resumed_from=(r["notes"] or {}).get("resumed_from"),
                        initial_epoch=(r["notes"] or {}).get("initial_epoch", 0),
                        checkpointed=bool((r["notes"] or {}).get("checkpoint")))
            for r in rows]


def drive(strategy: SearchStrategy, ctx: TrialContext) -> tuple[str, str | None]:
    """Run the strategy's search (after the family default's trial, with `first_trial: defaults`);
    its stop reason (completed, budget, error), and an error if it broke.

    What exists before the first trial (the frameworks' modules, the data, the strategy) is moved
    out of the garbage collector's sight for the search (`gc.freeze`): each trial ends with
    `clear_session`, which runs a full collection, and walking the frameworks' millions of objects
    was most of a small trial's fixed cost (0.29 s per trial under torch). Reference counting
    still frees them; the search's end gives them back to the collector.
    """
    with out_of_collector_sight():
        try:
            ctx.run_default_first()
            strategy.search(ctx)
        except BudgetExhausted:
            return "budget", None
        except FatalTrialError as exc:
            return "error", str(exc)
        except Exception as exc:  # the strategy itself broke
            traceback.print_exc()
            return "error", f"strategy '{strategy.name}' raised {type(exc).__name__}: {exc}"
    return "completed", None


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
