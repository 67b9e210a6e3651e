"""The harness's concrete `SearchContext`: what a strategy drives in a search's process.

`TrialContext.run_trial` builds, trains, times and records one configuration under the search's
clock; `drive` runs a strategy against a context and turns how it ended into a stop reason.
Keras is imported only inside `run_trial` and `space`, through `tunebench.training`.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunebench.errors import BudgetExhausted, SpaceError, TrialPruned
from tunebench.job import weights_path
from tunebench.models import objective_for
from tunebench.provenance import rss_mb
from tunebench.settings import TrainingOptions
from tunebench.space import DefaultHyperParameters, HyperParameters, Param
from tunebench.strategies import FAILED, NAN, OK, PRUNED, SELECTABLE, TIMEOUT, EpochReport, SearchContext, TrialRecord

if TYPE_CHECKING:
    from tunebench.budget import Budget
    from tunebench.datasets import Splits
    from tunebench.job import Events, SearchJob
    from tunebench.models import ModelFamily
    from tunebench.store import Store
    from tunebench.strategies import SearchStrategy


class FatalTrialError(Exception):
    """A trial failed in a way every trial would (a user error such as a misspelt pin)."""


class TrialContext(SearchContext):
    """Runs, times and records each trial of one search (one lane of it, with parallel trials)."""

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
        self.options = TrainingOptions.from_mapping(job.training)
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
        return self.store.next_trial_number(self.job.run_id)

    def run_trial(self, hp: HyperParameters, *, epochs: int | None = None,
                  report: EpochReport | None = None, number: int | None = None) -> TrialRecord:
        if self.budget.expired:
            raise BudgetExhausted()
        from tunebench import training

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
        model: Any = None
        callback: training.TrialCallback | None = None
        param_count, epoch_budget, timings_bytes = None, None, None
        timings: dict[str, float] = {}
        fatal: Exception | None = None
        try:
            import keras

            keras.utils.set_random_seed(trial_seed)
            tb = time.monotonic()
            model, settings = training.build_trial_model(
                self.family, hp, self.spec, self.options, max_epochs=self.max_epochs, epochs=epochs,
                train_size=len(self._data.x_train))
            epoch_budget = settings.epochs
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
        if improved and callback is not None:
            tc = time.monotonic()
            training.save_weights(model, callback, str(weights_path(self.job.artifact_dir, self.lane)))
            timings["checkpoint"] = time.monotonic() - tc
            self._best_score = score
        history = tuple(callback.history) if callback is not None else ()
        if model is not None:
            training.release(model)
            model = None
        timings["rss_mb"] = rss_mb()  # host memory after the trial: flat across trials, or a leak
        finished_wall = time.time()
        params = hp.values
        self.store.finish_trial(
            trial_id, status=status, error=error, error_kind=error_kind, params=params,
            finished_at=finished_wall, score=score,
            best_epoch=callback.best_epoch if callback is not None else None,
            epochs_done=len(history), epoch_budget=epoch_budget, param_count=param_count,
            model_bytes=timings_bytes,
            metrics=history[-1] if history else None, timings=timings)
        if improved and score is not None:  # this lane's best so far; the run's best if no other lane has a better one
            self.store.offer_best(self.job.run_id, score, best_trial=number, best_params=params,
                                  best_param_count=param_count)
        record = TrialRecord(number=number, status=status, params=params, score=score, history=history,
                             error=error, duration=finished_wall - started_wall,
                             param_count=param_count, epochs=len(history), timings=timings,
                             epoch_budget=epoch_budget)
        self._trials.append(record)
        self.events.send("trial", number=number, lane=self.lane, status=status, score=score, best=self._best_score)
        if fatal is not None and not any(t.status == OK for t in self._trials):
            raise FatalTrialError(str(fatal))
        return record


def drive(strategy: SearchStrategy, ctx: TrialContext) -> tuple[str, str | None]:
    """Run the strategy's search; its stop reason (completed, budget, error), and an error if it broke.

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
    except FatalTrialError as exc:
        return "error", str(exc)
    except Exception as exc:  # the strategy itself broke
        traceback.print_exc()
        return "error", f"strategy '{strategy.name}' raised {type(exc).__name__}: {exc}"
    finally:
        gc.unfreeze()
    return "completed", None
