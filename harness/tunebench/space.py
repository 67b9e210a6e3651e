"""One search-space language for every model family and every strategy.

A model family declares each hyperparameter once, define-by-run, while it builds a model::

    blocks = hp.Int("blocks", 1, 4)
    for i in range(blocks):                       # conditional: filters_2 exists only if blocks > 2
        filters = hp.Choice(f"filters_{i}", [16, 32, 64])
    lr = hp.Float("learning_rate", 1e-4, 1e-1, log=True)

What answers each declaration is up to the strategy, through an adapter: `RandomHyperParameters`
(the harness's own sampler), `OptunaHyperParameters` (an `optuna.Trial`),
`KerasTunerHyperParameters` (a `keras_tuner.HyperParameters`) or `FixedHyperParameters` (given
values, defaults for the rest). Any adapter can also carry *pins*: values set in the suite that
override whatever the strategy would have proposed, so one configuration can be re-run exactly.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from tunebench.errors import SpaceError

if TYPE_CHECKING:
    import numpy as np

Kind = Literal["int", "float", "choice", "boolean"]


@dataclass(frozen=True)
class Param:
    """The declaration of one hyperparameter."""

    name: str
    kind: Kind
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    values: tuple[Any, ...] | None = None
    default: Any = None

    def __post_init__(self) -> None:
        if self.kind in ("int", "float"):
            if self.low is None or self.high is None or self.low > self.high:
                raise SpaceError(f"hyperparameter '{self.name}': needs low <= high, got {self.low}, {self.high}")
            if self.log and self.low <= 0:
                raise SpaceError(f"hyperparameter '{self.name}': log scale needs low > 0")
            if self.log and self.step not in (None, 1):
                raise SpaceError(f"hyperparameter '{self.name}': a step cannot be combined with log scale")
            if self.step is not None and self.step <= 0:
                raise SpaceError(f"hyperparameter '{self.name}': step must be positive")
        if self.kind == "choice" and not self.values:
            raise SpaceError(f"hyperparameter '{self.name}': a choice needs at least one value")
        if self.default is not None and not self.contains(self.default):
            raise SpaceError(f"hyperparameter '{self.name}': default {self.default!r} is outside its range")

    @property
    def default_value(self) -> Any:
        """The declared default, or the natural one: low end, first choice, False."""
        if self.default is not None:
            return self.default
        if self.kind == "int":
            return int(self.low)  # type: ignore[arg-type]
        if self.kind == "float":
            return float(self.low)  # type: ignore[arg-type]
        if self.kind == "choice":
            return self.values[0]  # type: ignore[index]
        return False

    def contains(self, value: Any) -> bool:
        """Whether `value` lies in the declared range or among the choices."""
        if self.kind == "boolean":
            return isinstance(value, bool)
        if self.kind == "choice":
            return value in self.values  # type: ignore[operator]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.kind == "int" and int(value) != value:
            return False
        return self.low - 1e-12 <= value <= self.high + 1e-12  # type: ignore[operator]

    def grid(self, max_points: int = 5) -> list[Any]:
        """Up to `max_points` representative values, for grid-like strategies."""
        if self.kind == "boolean":
            return [False, True]
        if self.kind == "choice":
            return list(self.values)  # type: ignore[arg-type]
        low, high = float(self.low), float(self.high)  # type: ignore[arg-type]
        if self.kind == "int" and not self.log:
            step = int(self.step or 1)
            points = list(range(int(low), int(high) + 1, step))
            if len(points) <= max_points:
                return points
        n = max_points
        if self.log:
            raw = [math.exp(math.log(low) + i * (math.log(high) - math.log(low)) / (n - 1)) for i in range(n)]
        else:
            raw = [low + i * (high - low) / (n - 1) for i in range(n)]
        if self.kind == "int":
            return sorted({int(round(v)) for v in raw})
        return raw

    def describe(self) -> str:
        if self.kind == "boolean":
            return "boolean"
        if self.kind == "choice":
            return "one of " + ", ".join(map(repr, self.values))  # type: ignore[arg-type]
        scale = ", log" if self.log else ""
        step = f", step {self.step}" if self.step else ""
        return f"{self.kind} in [{self.low}, {self.high}]{scale}{step}"


class HyperParameters(ABC):
    """What a model family declares its hyperparameters through.

    Each declaration returns the value to use in this trial. Declaring the same name again with the
    same definition returns the same value; with a different definition it is an error.
    """

    def __init__(self) -> None:
        self._params: dict[str, Param] = {}
        self._values: dict[str, Any] = {}
        self._pins: dict[str, Any] = {}
        #: With `collect_pin_problems`, why pins did not fit their declarations (else they raise).
        self.pin_problems: list[str] = []
        #: Pins that fit but lie outside what the family searches (a published value): worth a word.
        self.pin_notes: list[str] = []
        self._collect = False
        self._space: dict[str, tuple[Any, ...] | dict[str, Any]] = {}

    # -- declarations -------------------------------------------------------------------------
    def Int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False,
            default: int | None = None) -> int:
        """An integer in [low, high], optionally on a log scale or in steps."""
        value: int = self._declare(Param(name, "int", low, high, step if step != 1 else None, log, None, default))
        return value

    def Float(self, name: str, low: float, high: float, *, step: float | None = None,
              log: bool = False, default: float | None = None) -> float:
        """A real number in [low, high], optionally on a log scale or in steps."""
        value: float = self._declare(Param(name, "float", float(low), float(high), step, log, None, default))
        return value

    def Choice(self, name: str, values: Sequence[Any], *, default: Any = None) -> Any:
        """One of `values` (strings, numbers or booleans)."""
        return self._declare(Param(name, "choice", values=tuple(values), default=default))

    def Boolean(self, name: str, *, default: bool = False) -> bool:
        """True or False."""
        value: bool = self._declare(Param(name, "boolean", default=default))
        return value

    # -- what was declared ----------------------------------------------------------------------
    @property
    def values(self) -> dict[str, Any]:
        """The values of every hyperparameter declared so far."""
        return dict(self._values)

    @property
    def params(self) -> dict[str, Param]:
        """The declarations made so far, in order."""
        return dict(self._params)

    def pin(self, pins: Mapping[str, Any]) -> HyperParameters:
        """Force the given values, whatever the strategy would propose. Returns self."""
        self._pins.update(pins)
        return self

    def unused_pins(self) -> list[str]:
        """Pinned names that no declaration used: a typo in the suite, or a conditional
        hyperparameter that this configuration does not reach (`filters_2` with 2 blocks)."""
        return sorted(set(self._pins) - set(self._params))

    @property
    def pins(self) -> dict[str, Any]:
        """The pinned values (a copy)."""
        return dict(self._pins)

    def restrict(self, space: Mapping[str, Any]) -> HyperParameters:
        """Offer only some values of these hyperparameters, whatever range the family declares (a
        suite's `space:`, or what a search can afford). Per name, a list makes it a choice among
        those values (a grid to search, or to record as a table); a mapping `{max: v}` (and/or
        `{min: v}`) narrows a numeric range, or drops a numeric choice's values beyond it, keeping the
        rest of the declaration. A pin of the same name still wins. Returns self."""
        self._space.update({name: dict(values) if isinstance(values, Mapping) else tuple(values)
                            for name, values in space.items()})
        return self

    def unused_restrictions(self) -> list[str]:
        """Restricted names that no declaration used (like `unused_pins`)."""
        return sorted(set(self._space) - set(self._params))

    def _restricted(self, param: Param) -> Param:
        """`param` as the suite (or the search's cost model) restricts it, when it does."""
        values = self._space.get(param.name)
        if values is None:
            return param
        if isinstance(values, dict):
            return _bounded(param, values.get("min"), values.get("max"))
        for value in values:
            if param.kind != "choice" and not _fits_kind(param, value):
                raise SpaceError(f"space: '{param.name}' is {param.describe()}; {value!r} is not a value of its kind")
        default = param.default_value
        if default not in values:
            numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
            default = (min(values, key=lambda v: abs(math.log(v / default)) if param.log and v > 0 and default > 0
                           else abs(v - default)) if numeric and isinstance(default, (int, float)) else values[0])
        return Param(param.name, "choice", values=values, default=default)

    def collect_pin_problems(self) -> HyperParameters:
        """Keep going past a pin that does not fit its declaration: note why in `pin_problems` and
        use the strategy's value instead, so that one build reports every bad pin. Returns self."""
        self._collect = True
        return self

    # -- machinery -------------------------------------------------------------------------------
    def _declare(self, param: Param) -> Any:
        param = self._restricted(param)
        known = self._params.get(param.name)
        if known is not None:
            if known != param:
                raise SpaceError(f"hyperparameter '{param.name}' declared twice differently: "
                                 f"{known.describe()} and {param.describe()}")
            return self._values[param.name]
        if param.name in self._pins:
            try:
                value = _coerce_pin(param, self._pins[param.name])
                if not param.contains(value):
                    self.pin_notes.append(f"pinned '{param.name}': {value!r} is not among what the family searches "
                                          f"({param.describe()}); it is used as given (a published value?)")
            except SpaceError as exc:
                if not self._collect:
                    raise
                self.pin_problems.append(str(exc))
                value = self._suggest(param)
        else:
            value = self._suggest(param)
        self._params[param.name] = param
        self._values[param.name] = value
        return value

    @abstractmethod
    def _suggest(self, param: Param) -> Any:
        """The value the strategy proposes for a newly declared hyperparameter."""


def _bounded(param: Param, low: Any, high: Any) -> Param:
    """`param` with its numeric range (or a numeric choice's values) kept within [low, high]; the
    default moves to the nearest value left. A bound that would leave nothing is ignored."""
    def inside(v: Any) -> bool:
        return (isinstance(v, (int, float)) and not isinstance(v, bool)
                and (low is None or v >= low) and (high is None or v <= high))

    if param.kind == "choice":
        kept = tuple(v for v in param.values or ()
                     if inside(v) or not isinstance(v, (int, float)) or isinstance(v, bool))
        if not kept:
            return param
        default = param.default_value
        if default not in kept:
            default = min(kept, key=lambda v: abs(v - default)) if inside(kept[0]) else kept[0]
        return dataclasses.replace(param, values=kept, default=default)
    if param.kind not in ("int", "float"):
        return param
    new_low = param.low if low is None else max(param.low, low)
    new_high = param.high if high is None else min(param.high, high)
    if new_low > new_high:  # type: ignore[operator]
        return param
    default = min(max(param.default_value, new_low), new_high)
    if param.kind == "int":
        default = int(default)
    return dataclasses.replace(param, low=new_low, high=new_high, default=default)


def _fits_kind(param: Param, value: Any) -> bool:
    """Whether `value` is of a numeric or boolean parameter's kind (a range does not bind it)."""
    if param.kind == "boolean":
        return isinstance(value, bool)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return param.kind == "float" or int(value) == value


def _coerce_pin(param: Param, value: Any) -> Any:
    """Check a pinned value's type, and a categorical pin against the choices. Numbers outside the
    declared range (or the numeric choices) are allowed on purpose: published configurations
    (batch 512, 100 epochs) often lie outside a search range."""
    if param.kind == "boolean":
        if not isinstance(value, bool):
            raise SpaceError(f"pinned '{param.name}' must be true or false, not {value!r}")
        return value
    if param.kind in ("int", "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpaceError(f"pinned '{param.name}' must be a number, not {value!r}")
        if param.kind == "int":
            if int(value) != value:
                raise SpaceError(f"pinned '{param.name}' must be an integer, not {value!r}")
            return int(value)
        return float(value)
    values = tuple(param.values or ())
    if value in values:
        return value
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if numeric and isinstance(value, (int, float)) and not isinstance(value, bool):
        return value  # a published number outside the searched ones
    raise SpaceError(f"pinned '{param.name}' must be one of {', '.join(map(repr, values))}; got {value!r}")


class DefaultHyperParameters(HyperParameters):
    """Every hyperparameter at its default: the family's baseline configuration."""

    def _suggest(self, param: Param) -> Any:
        return param.default_value


class FixedHyperParameters(DefaultHyperParameters):
    """Given values, defaults for the rest: re-runs one configuration exactly."""

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.pin(values or {})


class RandomHyperParameters(HyperParameters):
    """The harness's own sampler: independent uniform draws (log-uniform on log scales).

    Args:
        seed: anything `numpy.random.default_rng` accepts, e.g. `(search_seed, trial_number)`,
            so that the same seed gives the same sequence of configurations.
    """

    def __init__(self, seed: Any = None, *, rng: np.random.Generator | None = None) -> None:
        super().__init__()
        import numpy as np

        self._rng = rng if rng is not None else np.random.default_rng(seed)

    def _suggest(self, param: Param) -> Any:
        rng = self._rng
        if param.kind == "boolean":
            return bool(rng.random() < 0.5)
        if param.kind == "choice":
            values = param.values or ()
            return values[int(rng.integers(len(values)))]
        low, high = float(param.low), float(param.high)  # type: ignore[arg-type]
        x: float
        if param.log:
            x = math.exp(rng.uniform(math.log(low), math.log(high)))
        elif param.step:
            n = int(math.floor((high - low) / param.step + 1e-9))
            x = low + param.step * int(rng.integers(n + 1))
        elif param.kind == "float":
            x = float(rng.uniform(low, high))
        else:
            x = int(rng.integers(int(low), int(high) + 1))
        if param.kind == "int":
            return int(min(max(round(x), low), high))
        return float(min(max(x, low), high))


_OPTUNA_CATEGORICAL = (type(None), bool, int, float, str)


class OptunaHyperParameters(HyperParameters):
    """Answers declarations from an `optuna.Trial` (define-by-run on both sides)."""

    def __init__(self, trial: Any) -> None:
        super().__init__()
        self.trial = trial

    def _suggest(self, param: Param) -> Any:
        t = self.trial
        if param.kind == "int":
            return int(t.suggest_int(param.name, int(param.low), int(param.high),  # type: ignore[arg-type]
                                     step=int(param.step or 1), log=param.log))
        if param.kind == "float":
            return float(t.suggest_float(param.name, param.low, param.high, step=param.step, log=param.log))
        if param.kind == "boolean":
            return bool(t.suggest_categorical(param.name, [False, True]))
        values = param.values
        if all(isinstance(v, _OPTUNA_CATEGORICAL) for v in values):  # type: ignore[union-attr]
            return t.suggest_categorical(param.name, list(values))  # type: ignore[arg-type]
        index = t.suggest_categorical(param.name, list(range(len(values))))  # type: ignore[arg-type]
        return values[index]  # type: ignore[index]


def optuna_distribution(param: Param, value: Any) -> tuple[Any, Any]:
    """The Optuna distribution `OptunaHyperParameters` suggests `param` from, and `value` as Optuna
    records it (a choice among values Optuna cannot store is recorded as its index)."""
    import optuna

    d = optuna.distributions
    if param.kind == "int":
        return d.IntDistribution(int(param.low), int(param.high), step=int(param.step or 1),  # type: ignore[arg-type]
                                 log=param.log), int(value)
    if param.kind == "float":
        return d.FloatDistribution(float(param.low), float(param.high), step=param.step,  # type: ignore[arg-type]
                                   log=param.log), float(value)
    if param.kind == "boolean":
        return d.CategoricalDistribution([False, True]), bool(value)
    values = list(param.values or ())
    if all(isinstance(v, _OPTUNA_CATEGORICAL) for v in values):
        return d.CategoricalDistribution(values), value
    return d.CategoricalDistribution(list(range(len(values)))), values.index(value)


class KerasTunerHyperParameters(HyperParameters):
    """Answers declarations from a `keras_tuner.HyperParameters` (also define-by-run)."""

    def __init__(self, kt_hp: Any) -> None:
        super().__init__()
        self.kt_hp = kt_hp

    def _suggest(self, param: Param) -> Any:
        hp = self.kt_hp
        sampling = "log" if param.log else "linear"
        if param.kind == "int":
            # In KerasTuner a step on a log scale is a multiplier, so leave it unset there.
            step = None if param.log else int(param.step or 1)
            return int(hp.Int(param.name, int(param.low), int(param.high), step=step,  # type: ignore[arg-type]
                              sampling=sampling, default=param.default))
        if param.kind == "float":
            return float(hp.Float(param.name, param.low, param.high, step=param.step,
                                  sampling=sampling, default=param.default))
        if param.kind == "boolean":
            return bool(hp.Boolean(param.name, default=bool(param.default)))
        value = hp.Choice(param.name, list(param.values), default=param.default)  # type: ignore[arg-type]
        # KerasTuner standardizes a choice of booleans to ints (bool is an int subclass), so a
        # boolean held at its default by `space:` or the focus would come back as 0: give back the
        # declared value itself.
        return next((v for v in param.values or () if v == value), value)


def as_keras_tuner(hp: HyperParameters) -> Any:
    """A `keras_tuner.HyperParameters` view of `hp`, for code written against KerasTuner.

    Declarations made through it (including AutoKeras's and any KerasTuner `HyperModel`'s, with
    their name scopes and conditional scopes) become declarations of `hp`, so every strategy
    (random, Optuna, KerasTuner, grid) drives them and pins apply. `Fixed` values are constants.
    """
    import keras_tuner as kt

    class _Bridge(kt.HyperParameters):
        def _retrieve(self, param: Any) -> Any:
            if self._exists(param.name, param.conditions):
                return self.values[param.name] if self.is_active(param) else None
            self._register(param)
            if not self.is_active(param):
                return None
            value = _declare_kt(hp, param)
            self.values[param.name] = value
            return value

    return _Bridge()


def _declare_kt(hp: HyperParameters, p: Any) -> Any:
    kind = type(p).__name__
    log = getattr(p, "sampling", "linear") == "log"
    if kind == "Fixed":
        return p.value
    if kind == "Boolean":
        return hp.Boolean(p.name, default=bool(p.default))
    if kind == "Choice":
        return hp.Choice(p.name, list(p.values), default=p.default)
    if kind == "Int":
        step = None if log else (p.step or 1)
        return hp.Int(p.name, int(p.min_value), int(p.max_value), step=int(step or 1), log=log,
                      default=p.default)
    if kind == "Float":
        return hp.Float(p.name, p.min_value, p.max_value, step=None if log else p.step, log=log,
                        default=p.default)
    raise SpaceError(f"KerasTuner hyperparameter type {kind} ('{p.name}') is not supported")
