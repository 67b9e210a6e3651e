"""The search-strategy contract and the trial context a strategy drives.

Roles stay apart: a strategy proposes configurations, the harness builds and trains each one under
the clock and records it, and the strategy gets back a frozen `TrialRecord`. A strategy never sees
the test split, never touches the store and never owns the clock: it asks `ctx.run_trial(hp)`
until it is done or the budget is spent (then `run_trial` raises `BudgetExhausted`, which ends the
search normally).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from tunebench.errors import OptionsError
from tunebench.options import Configurable, Option
from tunebench.vocabulary import FailureKind, TrialStatus

if TYPE_CHECKING:
    from pathlib import Path

    from tunebench.budget import Budget
    from tunebench.datasets import DataSpec
    from tunebench.space import HyperParameters, Param

#: Called after every epoch with (epoch index, metrics); raise `tunebench.TrialPruned` to stop.
EpochReport = Callable[[int, Mapping[str, float]], None]


@dataclass(frozen=True)
class TrialRecord:
    """What a strategy learns about one finished trial.

    `score` is the best validation value of the objective over the trial's completed epochs, or
    None if no epoch completed. `history` holds one mapping of metrics per completed epoch.
    """

    number: int
    #: A `TrialStatus` (`ok`, `failed`, `nan`, `pruned`, `timeout`, ...).
    status: str
    params: Mapping[str, Any]
    score: float | None
    history: tuple[Mapping[str, float], ...] = ()
    error: str | None = None
    duration: float = 0.0
    param_count: int | None = None
    epochs: int = 0
    timings: Mapping[str, float] = field(default_factory=dict)
    #: The epochs this trial was allowed (its `epochs` hyperparameter, a strategy's override such as
    #: Hyperband's, capped by the suite); `epochs` is how many it completed.
    epoch_budget: int | None = None
    #: Milliseconds per image of batched inference on the search's device, when the trial measured
    #: it (`run_trial(..., latency=True)`, or a latency selection rule).
    inference_ms: float | None = None
    #: The trial whose model this one continued (`run_trial(resume_from=N)`), and the epoch it
    #: started from; `epochs` counts only the epochs this trial trained itself.
    resumed_from: int | None = None
    initial_epoch: int = 0
    #: Whether a checkpoint of its final state was kept (`run_trial(checkpoint=True)`).
    checkpointed: bool = False
    #: Why it failed or stopped, a `FailureKind` (`infeasible`: the feasibility guard turned the
    #: draw away, `deadline`, `oom`, ...), or None.
    error_kind: str | None = None

    @property
    def turned_away(self) -> bool:
        """The feasibility guard turned this draw away, unscored: it could not train an epoch in
        the time it had. A strategy that learns from outcomes should count it as a poor draw (too
        costly for this budget), not as a crash to ignore, or it may draw it again and again."""
        return self.score is None and self.error_kind == FailureKind.INFEASIBLE

    @property
    def selectable(self) -> bool:
        return self.status in TrialStatus.selectable() and self.score is not None

    @classmethod
    def from_row(cls, row: Mapping[str, Any], history: Sequence[Mapping[str, float]] = ()) -> TrialRecord:
        """The record of a trial as the store holds it (a `trials` row), with its per-epoch metrics:
        the one mapping from the store's columns to what a strategy sees."""
        notes = row.get("notes") or {}
        started = row["started_at"]
        return cls(number=row["number"], status=row["status"], params=dict(row.get("params") or {}),
                   score=row.get("score"), history=tuple(history), error=row.get("error"),
                   duration=(row.get("finished_at") or started) - started, param_count=row.get("param_count"),
                   epochs=row.get("epochs_done") or 0, timings=row.get("timings") or {},
                   epoch_budget=row.get("epoch_budget"), inference_ms=row.get("inference_ms"),
                   resumed_from=notes.get("resumed_from"), initial_epoch=notes.get("initial_epoch", 0),
                   checkpointed=bool(notes.get("checkpoint")), error_kind=row.get("error_kind"))


@dataclass(frozen=True)
class SelectionRule:
    """How a search selects the configuration it tests, on validation only: the best validation
    score among the trials whose `metric` (`latency`: ms per image, or `params`) is at most `limit`.
    A search without a rule selects the best validation score. The rule is recorded with the run."""

    metric: str
    limit: float

    def admits(self, latency_ms: float | None, param_count: int | None) -> bool:
        value = latency_ms if self.metric == "latency" else param_count
        return value is not None and value <= self.limit

    def describe(self) -> str:
        unit = "ms per image" if self.metric == "latency" else "parameters"
        return f"best validation score with {self.metric} at most {self.limit:g} {unit}"


class SearchContext(ABC):
    """The harness's side of a search, as a strategy sees it."""

    seed: int
    budget: Budget
    spec: DataSpec
    objective: str
    #: Always "max": objectives are scores (accuracy, F1), higher is better.
    direction: str = "max"
    #: The suite's cap on epochs per trial, or None.
    max_epochs: int | None = None
    #: A scratch directory for this search under the run's results folder (oracle state, caches).
    workdir: Path
    #: The search's stable identity across invocations (e.g. to name a shared Optuna study).
    search_key: str = ""
    #: Parallel trials: this process is lane `lane` of `lanes` running the same search at once
    #: (`parallel_trials`). Each lane calls `search`; trial numbers are shared between them.
    lane: int = 0
    lanes: int = 1
    #: The run this search records into (names per-run shared state, such as a shared study).
    run_id: int = 0
    #: The results store's URL when it is a database server every lane can reach (PostgreSQL), else
    #: None: strategies that keep shared state (an Optuna study) may keep it there.
    shared_store_url: str | None = None
    #: The first trial number the strategy proposes: 1 when the harness ran the family's default
    #: configuration as trial 0 (`first_trial: defaults`), else 0. Strategies that index by trial
    #: number (a grid's cells) count from it.
    first_number: int = 0
    #: The suite's pinned hyperparameters (the model family's `params`): constants every trial gets,
    #: whatever the strategy proposes (a study should not learn them as choices).
    pins: Mapping[str, Any] = {}
    #: Whether this search went on in a fresh process after a trial was killed or its process
    #: crashed: `trials` then starts with what the earlier process recorded, and a strategy that
    #: keeps its own state (a study, an oracle in `workdir`) picks it up from there.
    resumed: bool = False

    @property
    @abstractmethod
    def trials(self) -> tuple[TrialRecord, ...]:
        """Every trial of this search so far, in order (with parallel trials: this lane's, and those
        recorded before the search resumed)."""

    def search_trials(self, *, curves: bool = True) -> tuple[TrialRecord, ...]:
        """Every trial of the whole search so far, across its lanes (with parallel trials it reads
        the store; a trial in flight in another lane has status `running`). Same as `trials` with
        one lane. `curves=False` leaves out the other lanes' per-epoch histories (one query less,
        for a strategy that reads only scores)."""
        return self.trials

    @property
    def best(self) -> TrialRecord | None:
        """The selectable trial with the highest score so far."""
        scored = [t for t in self.trials if t.selectable]
        return max(scored, key=lambda t: t.score) if scored else None  # type: ignore[arg-type, return-value]

    def next_number(self) -> int:
        """Reserve the next trial number of this search (unique across lanes): 0, 1, 2, ..."""
        return len(self.trials)

    def trial_numbers(self, limit: int | None = None) -> Iterator[int]:
        """Reserved trial numbers, up to `limit` in the whole search. With several lanes each number
        goes to exactly one lane, so `RandomHyperParameters((seed, number))` or `grid[number]`
        proposes the same configurations as a serial search."""
        while True:
            number = self.next_number()
            if limit is not None and number >= limit:
                return
            yield number

    def default_values(self) -> dict[str, Any]:
        """The model family's default configuration's values where they are not its declared
        defaults (`ModelFamily.default_values`); the suite's pins still apply on top."""
        return {}

    def default_epochs(self) -> int | None:
        """The family default's epochs on this data, when the epochs are a fidelity (the suite
        neither pins nor searches them): what a strategy that re-runs the default configuration
        (`fixed`) passes as `run_trial(..., epochs=)`. None otherwise."""
        return None

    def run_default_first(self) -> TrialRecord | None:
        """The harness's own first trial (`first_trial: defaults`), before the strategy's; None where
        a context has none. Called by the harness, not by strategies."""
        return None

    def promote(self) -> TrialRecord | None:
        """The harness's own last trial (`promote_share`), after the strategy's: its best
        configuration continued in the budget's reserved end; None where a context has none.
        Called by the harness, not by strategies."""
        return None

    def discard_checkpoint(self, number: int) -> None:
        """Free trial `number`'s checkpoint early (no later trial will continue it)."""
        return None

    def claim(self, name: str) -> bool:
        """Take `name` for this lane, once per search: True for the first lane that asks, False for
        every later ask (any lane's). With parallel trials, what two lanes must not both do (e.g.
        promote the same trial) is claimed first. With one lane: True the first time."""
        claimed = self.__dict__.setdefault("_claimed", set())
        if name in claimed:
            return False
        claimed.add(name)
        return True

    @abstractmethod
    def space(self, hp: HyperParameters | None = None) -> dict[str, Param]:
        """Declare the model family's hyperparameters through `hp` without training anything.

        Builds the model once (as KerasTuner does to discover a define-by-run space) and returns
        the declarations made with `hp`'s answers (defaults when `hp` is None). The time counts
        against the search's budget.
        """

    @abstractmethod
    def run_trial(self, hp: HyperParameters, *, epochs: int | None = None,
                  report: EpochReport | None = None, number: int | None = None,
                  latency: bool = False, resume_from: int | None = None,
                  checkpoint: bool = False) -> TrialRecord:
        """Build, train and record one configuration; return its record.

        Args:
            hp: the adapter that answers the model family's declarations.
            number: a number from `trial_numbers`/`next_number`; a new one is reserved if None.
            epochs: train for this many epochs instead of the `epochs` hyperparameter (for
                multi-fidelity strategies such as Hyperband); still capped by the suite.
            report: called after every epoch; raising `TrialPruned` stops the trial as `pruned`.
            latency: also measure the model's inference latency (ms per image, on the search's
                device, before training: it does not depend on the weights), in the record's
                `inference_ms`; for multi-objective strategies.
            resume_from: continue trial N's model (weights and optimizer state, from its
                checkpoint) from the epoch it reached up to `epochs` in total, rather than train
                from scratch. `hp` should be N's configuration (PBT may change training
                hyperparameters such as the learning rate; the architecture must stay). Without a
                checkpoint of N, or with a family that cannot continue (`ModelFamily.continues`), the
                trial trains from scratch and `notes.resume_skipped` says why. The record's
                `resumed_from` and `initial_epoch` say what happened; `epochs` counts its own.
            checkpoint: keep this trial's final state when it completes all its epochs, so that a
                later trial may continue it. Kept until `discard_checkpoint` or the search's end.

        Raises:
            BudgetExhausted: the search's budget is spent; let it propagate.
        """


class SearchStrategy(Configurable):
    """The contract for a search-strategy plugin.

    Subclasses set `name` and `options_schema` and implement `search`. `self.options` holds the
    validated options. Every strategy accepts `max_trials`.
    """

    #: Whether a fixed seed gives the same sequence of proposed configurations.
    deterministic: ClassVar[bool] = True
    #: Whether several processes can run one search of this strategy at once (`parallel_trials`).
    parallel: ClassVar[bool] = False
    #: Whether it draws configurations from the space (False: `fixed`): the search's cost-aware space
    #: is estimated only for those that do.
    explores: ClassVar[bool] = True
    #: A model family this strategy can only be paired with (its own search space), or None.
    #: The suite pairs the strategy with that family alone, adding it if the suite does not list it.
    model_family: ClassVar[str | None] = None

    common_options: ClassVar[dict[str, Option]] = {
        "max_trials": Option(int, None, "stop after this many trials (default: when the budget ends)",
                             minimum=1),
        "parallel_trials": Option(int, 1, "run this many trials of the search at once, each in its own "
                                  "process (strategies that allow it)", minimum=1),
    }

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if self.options["parallel_trials"] > 1 and not self.parallel:
            raise OptionsError(f"strategy '{self.name}' options are not valid:", [
                f"parallel_trials: {self.options['parallel_trials']}: '{self.name}' runs one trial at a time "
                f"in one process per search{self.serial_reason}. Remove parallel_trials, or use random, grid "
                f"or an Optuna strategy, which can share one search between processes"])

    #: Why a strategy cannot run trials in parallel, for the error message.
    serial_reason: ClassVar[str] = ""

    @abstractmethod
    def search(self, ctx: SearchContext) -> None:
        """Propose configurations and run them with `ctx.run_trial` until done or out of budget."""

    def check(self, max_epochs: int | None) -> list[str]:
        """Problems with this strategy's options in a suite whose trials may train at most
        `max_epochs` epochs (None: no cap): reported when the suite is validated. None by default."""
        return []

    def selection_rule(self) -> SelectionRule | None:
        """The rule this search selects its tested configuration by (validation only), or None for
        the best validation score. Multi-objective strategies state theirs from their options."""
        return None

    def trial_numbers(self, ctx: SearchContext) -> Iterator[int]:
        """Reserved trial numbers up to `max_trials` (or forever), shared with the search's other
        lanes: the loop for strategies. Pass each to `ctx.run_trial(hp, number=...)`."""
        return ctx.trial_numbers(self.options.get("max_trials"))
