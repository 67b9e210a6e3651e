"""The table contract: a benchmark table or surrogate that answers a configuration with its learning
curve, so that a search runs on a simulated clock instead of training.

A table plugin declares, per task, the search space (define-by-run, through `hp`, like a model
family), its fidelity (the epochs a configuration can be trained for), and for any configuration in
that space the curve it would have given: the validation objective after each epoch, what each
epoch cost in seconds, what it cost to start (build, compile, tracing), and its test score. The
simulated clock (`tunebench.simulation`) charges those seconds instead of training, so the same
strategy plugins that drive real Keras training drive a table, and the results go to the same
store, leaderboards and reports. Built-in tables: `replay` (a store of tunebench's own runs,
exported with `tunebench export-table`), `nas_bench_201`, `lcbench` (YAHPO Gym's surrogate) and
`hpobench`.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from tunebench.options import Configurable, Option
from tunebench.vocabulary import TrialStatus

if TYPE_CHECKING:
    from tunebench.space import HyperParameters


@dataclass(frozen=True)
class Curve:
    """What a table answers for one configuration trained to its full fidelity.

    Attributes:
        scores: the validation objective after each epoch (higher is better).
        epoch_s: the seconds each epoch took, its validation pass included.
        startup_s: the seconds before the first epoch could end its first step (build, compile,
            tracing); a trial pays it whether it starts afresh or continues a checkpoint.
        finish_s: the seconds a trial spends after its last epoch (writing weights, its record).
        tests: the test score after each epoch, where the table has it per epoch.
        test: the test score of the fully trained configuration (when `tests` is absent).
        status: `ok`, or `nan` / `failed` when the recorded run broke at epoch `failed_at`
            (0-based); the epochs before it count, that one's time too.
        error: the recorded error, for `failed`.
        metrics: other per-epoch metrics to record with the score (names as Keras gives them).
    """

    scores: tuple[float, ...]
    epoch_s: tuple[float, ...]
    startup_s: float = 0.0
    finish_s: float = 0.0
    tests: tuple[float, ...] | None = None
    test: float | None = None
    status: str = TrialStatus.OK
    failed_at: int | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        if len(self.scores) != len(self.epoch_s):
            raise ValueError(f"a curve needs one time per score: {len(self.scores)} scores, {len(self.epoch_s)} times")

    @property
    def epochs(self) -> int:
        return len(self.scores)

    def test_at(self, epoch: int | None) -> float | None:
        """The test score after `epoch` (0-based), or the configuration's own when per-epoch ones
        are unknown."""
        if self.tests is not None and epoch is not None and 0 <= epoch < len(self.tests):
            return self.tests[epoch]
        return self.test


class Table(Configurable):
    """The contract for a table plugin (registered with `tunebench_register_tables`).

    Subclasses set `name` and implement `tasks`, `declare`, `max_epochs` and `curve`; the others
    have defaults. Every table accepts the options `tasks` (which of its tasks a suite runs) and
    `params` (pinned values, as a model family's).
    """

    #: The validation metric a table's scores are (as Keras names it); runs record it as their objective.
    objective: ClassVar[str] = "val_accuracy"
    #: What the test score of a configuration is, for the run's record and the report.
    test_metric: ClassVar[str] = "test accuracy"
    #: True when the table answers from a fitted model of recorded runs (a surrogate) rather than
    #: the runs themselves: at the edge of its box it extrapolates, and a strategy may find scores
    #: there that no real network reaches. A run records how many of its selection's numeric
    #: hyperparameters sit at a bound (`at_bounds`), and the leaderboard flags the corners.
    surrogate: ClassVar[bool] = False

    common_options: ClassVar[Mapping[str, Option]] = {
        "tasks": Option(list, None, "the tasks to run (default: every task of the table)"),
        "params": Option(dict, None, "hyperparameter values pinned for every trial"),
    }

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        from tunebench.errors import OptionsError

        wanted = self.options.get("tasks")
        if wanted is not None:
            known = [str(t) for t in self.tasks()]
            unknown = [str(t) for t in wanted if str(t) not in known]
            if unknown or not wanted:
                raise OptionsError(f"table '{self.name}' options are not valid:", [
                    f"tasks: {', '.join(unknown) or 'an empty list'} {'is' if len(unknown) == 1 else 'are'} not "
                    f"a task of this table (its tasks: {', '.join(known[:40])}"
                    f"{', ...' if len(known) > 40 else ''})"])

    @property
    def pins(self) -> dict[str, Any]:
        return dict(self.options.get("params") or {})

    def selected_tasks(self) -> list[str]:
        """The tasks a suite runs: the `tasks` option, or all of them."""
        wanted = self.options.get("tasks")
        return [str(t) for t in wanted] if wanted is not None else [str(t) for t in self.tasks()]

    @abstractmethod
    def tasks(self) -> Sequence[str]:
        """Every task (dataset, instance) the table has."""

    @abstractmethod
    def declare(self, hp: HyperParameters, task: str) -> None:
        """Declare the task's search space through `hp` (define-by-run, as a model family does)."""

    @abstractmethod
    def max_epochs(self, task: str) -> int:
        """The highest fidelity: the epochs of a full evaluation (1 for a table of final results)."""

    @abstractmethod
    def curve(self, task: str, config: Mapping[str, Any], seed: int) -> Curve:
        """The curve of `config` (values `declare` gave) trained to `max_epochs`; `seed` (below
        `repeats(task)`) picks among a table's repeated runs of one configuration."""

    def repeats(self, task: str) -> int:
        """How many runs of one configuration the table holds (its seeds): `curve` is asked with a seed
        below this, so a deterministic table (1) answers each configuration once."""
        return 1

    def default(self, task: str) -> dict[str, Any] | None:
        """The task's default configuration (`first_trial: defaults`), or None when it has none."""
        return None

    def full_evaluation_s(self, task: str) -> float:
        """The typical cost of one full evaluation (its median over the table), in seconds: the unit
        of the budget rule (`budget: rule`)."""
        raise NotImplementedError(f"table '{self.name}' does not say what a full evaluation costs; give the "
                                  f"suite a budget in seconds")

    def searched(self, task: str) -> dict[str, Any]:
        """The hyperparameters a strategy searches on `task` (declared, not pinned): name -> `Param`."""
        from tunebench.space import DefaultHyperParameters

        hp = DefaultHyperParameters().pin(self.pins)
        self.declare(hp, task)
        return {n: p for n, p in hp.params.items() if n not in self.pins}

    def dimension(self, task: str) -> int:
        """The number of hyperparameters a strategy searches (not pinned), for the budget rule."""
        return len(self.searched(task))

    def optimum(self, task: str) -> float | None:
        """The best validation score any configuration reaches (the table's known optimum, for
        regret), or None when it is not known."""
        return None

    def between_trials_s(self, task: str) -> float:
        """What a real search spends between two trials besides the strategy (freeing the last
        model, the record), as measured where the table was recorded; 0 for a published table."""
        return 0.0

    def identity(self) -> dict[str, Any]:
        """What the table is, for the run's provenance: name, version, source, licence."""
        return {"name": self.name}

    def check(self) -> list[str]:
        """Problems that would stop the table from answering (missing data), found before anything runs."""
        return []


def at_bounds(table: Table, task: str, config: Mapping[str, Any]) -> tuple[int, int]:
    """(at a bound, numeric): how many of the task's searched numeric hyperparameters `config`
    sets at the low or high end of their range, and how many numeric ones it searches."""
    hit = numeric = 0
    for name, param in table.searched(task).items():
        if param.kind not in ("int", "float") or param.low == param.high or name not in config:
            continue
        numeric += 1
        value = float(config[name])
        hit += any(math.isclose(value, float(end), rel_tol=1e-6, abs_tol=1e-12)
                   for end in (param.low, param.high))
    return hit, numeric


def budget_rule(dimension: int) -> int:
    """Full evaluations a search of a `dimension`-dimensional space gets, as YAHPO Gym and CARP-S
    give them: ⌈20 + 40·√d⌉."""
    return math.ceil(20 + 40 * math.sqrt(dimension))


__all__ = ["Curve", "Table", "at_bounds", "budget_rule"]
