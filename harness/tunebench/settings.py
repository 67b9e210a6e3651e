"""What a suite sets for all its searches, each block a typed, validated, frozen object: the
`training:` block (`ExecutionSettings`), the search settings among the top-level keys (`first_trial`,
the feasibility guard, `hang_timeout`, `min_trials`: `SearchSettings`) and `resources:`
(`Resources`). "Settings" are what a suite sets; "options" are what a plugin accepts.

Their defaults live here and nowhere else. The suite validator builds them once (`parse`, which
reports every problem at once); the job carries the objects themselves to the search's process
(`to_json` / `from_json`), where the training code and the trial context read their fields.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, Union

MixedPrecision = Literal[False, True, "float16", "bfloat16"]
Auto = Literal["auto"]

#: What each key means, for error messages and `tunebench validate`.
TRAINING_KEYS = {
    "mixed_precision": "false, true (float16) or bfloat16",
    "jit_compile": "auto, true or false (XLA / torch.compile)",
    "steps_per_execution": "auto or a positive integer (batches per compiled call)",
    "data_on_device": "auto, true or false (torch/jax: copy the data to the accelerator up front)",
}


@dataclass(frozen=True)
class ExecutionSettings:
    """The suite's `training:` block: how every trial's model is compiled and fed.

    Attributes:
        mixed_precision: Keras's global dtype policy: float32 (False), mixed_float16 (True or
            "float16") or mixed_bfloat16.
        jit_compile: "auto" leaves Keras's default; True or False forces XLA (or torch.compile).
        steps_per_execution: "auto" chooses from the measured cost of a step; an integer forces it.
        data_on_device: "auto" copies the training data to the accelerator when it fits.
    """

    mixed_precision: MixedPrecision = False
    jit_compile: Union[bool, Auto] = "auto"
    steps_per_execution: Union[int, Auto] = "auto"
    data_on_device: Union[bool, Auto] = "auto"

    @classmethod
    def parse(cls, raw: object) -> tuple[ExecutionSettings, list[str]]:
        """Validate a `training:` block; returns the options (defaults where invalid) and every problem."""
        problems: list[str] = []
        if raw is None:
            return cls(), problems
        if not isinstance(raw, Mapping):
            return cls(), [f"'training' must be a mapping with keys among: {', '.join(TRAINING_KEYS)}"]
        for key in raw:
            if key not in TRAINING_KEYS:
                problems.append(f"'training': unknown key '{key}' (known: "
                                + ", ".join(f"{n} = {what}" for n, what in TRAINING_KEYS.items()) + ")")
        values: dict[str, Any] = {}
        mp = raw.get("mixed_precision")
        if mp is not None:
            if isinstance(mp, bool) or mp in ("float16", "bfloat16"):
                values["mixed_precision"] = mp
            else:
                problems.append(f"'training': mixed_precision must be false, true (float16) or bfloat16, not {mp!r}")
        for key in ("jit_compile", "data_on_device"):
            value = raw.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or value == "auto":
                values[key] = value
            else:
                problems.append(f"'training': {key} must be auto, true or false, not {value!r}")
        spe = raw.get("steps_per_execution")
        if spe is not None:
            if spe == "auto" or (isinstance(spe, int) and not isinstance(spe, bool) and spe >= 1):
                values["steps_per_execution"] = spe
            else:
                problems.append(f"'training': steps_per_execution must be auto or a positive integer, not {spe!r}")
        return cls(**values), problems

    @classmethod
    def from_json(cls, raw: Mapping[str, Any] | None) -> ExecutionSettings:
        """The settings a job file carries (`to_mapping`), validated again: a hand-edited job file
        gets the same messages as a suite."""
        return _valid(cls.parse(dict(raw or {})))

    def to_mapping(self) -> dict[str, Any]:
        """Only the keys that differ from the defaults: what a suite wrote, and a search's identity."""
        return _non_defaults(self)

    @property
    def dtype_policy(self) -> str:
        """The Keras dtype policy name for `mixed_precision`."""
        mp = self.mixed_precision
        return "mixed_bfloat16" if mp == "bfloat16" else "mixed_float16" if mp else "float32"


#: The suite's top-level keys that shape how every search runs (besides budgets), and their meaning.
SEARCH_KEYS = {
    "first_trial": "defaults (the family's default configuration is each search's first trial) or none",
    "feasibility_guard": "true or false: stop a trial early when its first epoch cannot end before the deadline",
    "feasibility_margin": "a number >= 1: the projected epoch time is multiplied by it before the comparison",
    "hang_timeout": "a duration: a trial with no training progress for this long is killed; the search goes on",
    "sampler_time": "charged (default: a strategy's own computing advances the simulated clock, as a real run pays "
                    "it) or apart (reported, not charged: a seed's simulated search is then exactly repeatable)",
    "record_test": "true or false: also score every trial's final model on the test split, for a table of the "
                   "configurations (`tunebench export-table`); strategies never see it",
    "min_trials": "a whole number >= 2: each trial (but the family default) may use at most the time left divided "
                  "by the scored trials still wanted, so that one long draw cannot take the rest of the search "
                  "(default: 12 for trials whose epochs the budget assigns, off for the others)",
    "default_share": "a share of the budget, above 0 and at most 1 (default 0.2): the most the family default's "
                     "trial may take when its epochs are not pinned",
    "plateau_patience": "a whole number >= 0 (default 3): a trial whose epochs the budget assigns stops after this "
                        "many epochs without a better validation score (0: never)",
    "cost_aware_space": "true or false (default true): before the search, leave out the values whose configuration "
                        "cannot train one epoch within a trial's share of the budget (the run's notes say which)",
    "promote_share": "a share of the budget, at least 0 and below 1 (default 0.2; 0: off): the last part of a search "
                     "whose epochs the budget assigns, kept to continue its best configuration (not the family "
                     "default) from where its trial stopped",
    "focus": "auto (default), all, or a whole number: how many of the family's hyperparameters a search of its "
             "default space varies, the most important first (`ModelFamily.priority`); auto: one per "
             "3 scored trials the budget buys (`min_trials`), at least 2; the others stay at their defaults",
}

#: The scored trials a search wants when the suite does not say (`min_trials`), for the trials whose
#: epochs the budget assigns: each gets its share of the time left over the trials still wanted.
DEFAULT_MIN_TRIALS = 12


@dataclass(frozen=True)
class SearchSettings:
    """How every search of a suite runs, beyond its budgets.

    Attributes:
        first_trial: "defaults" runs the model family's default configuration (its declared defaults
            and the suite's pins) as each search's first trial, for every strategy alike, so that a
            strategy's gain over it can be read off the leaderboard; "none" leaves the first trial
            to the strategy.
        feasibility_guard: after a trial's first steps the harness projects its first epoch; a trial
            that cannot finish it before its deadline is stopped then, as `timeout`, with the reason.
        feasibility_margin: the projection is multiplied by this before it is compared with the time left.
        hang_timeout: seconds: a trial whose training makes no progress (no batch ends) for this
            long is killed by the runner and the search goes on in a fresh process.
        min_trials: the scored trials a search should end with. Each trial but the family default
            (the baseline, which runs in full) may use at most the time left divided by the scored
            trials still wanted; a trial cut there keeps its completed epochs and its best epoch's
            score. None: no such cap.
        sampler_time: on the simulated clock, `charged` adds a strategy's own computing time to the
            clock as a real run pays it; `apart` only reports it (`runs.sampler_seconds`), so that
            the same seed gives exactly the same search.
        default_share: the most of the budget the family default's trial may take, when its epochs
            are the harness's to assign (a fidelity: the suite neither pins nor searches them). It
            trains its calibrated epochs and stops at an epoch's end before its share. None: no cap.
        plateau_patience: a trial whose epochs the budget assigns stops after this many epochs
            without a better validation score (0: never).
        cost_aware_space: before the clock starts, leave out of the space every value whose
            configuration (the defaults with that value) is estimated not to train one epoch and
            validate within a trial's share of the budget (`tunebench.space_costs`).
        promote_share: the last part of the budget of a search whose epochs the budget assigns: the
            strategy's trials stop where it begins, and the best configuration the strategy found
            (not the family default) is continued from its trial's checkpoint for as many epochs as
            fit (`TrialContext.promote`). 0: off.
        focus: how many hyperparameters a search of the family's default space varies (`auto`,
            `all`, or a number): the first of the family's `priority`, the others held at their
            defaults (`tunebench.space_costs.focus`). A suite's own `space:` is never narrowed.
        record_test: score every trial's final model on the test split too (`notes.test_score`,
            not seen by strategies), so that the store can be exported as a table whose every
            configuration has a test score (`tunebench export-table`). Off: only the selected
            configuration is tested.
    """

    first_trial: Literal["defaults", "none"] = "defaults"
    feasibility_guard: bool = True
    feasibility_margin: float = 1.0
    hang_timeout: float = 600.0
    min_trials: int | None = None
    default_share: float | None = 0.2
    plateau_patience: int = 3
    cost_aware_space: bool = True
    record_test: bool = False
    sampler_time: Literal["charged", "apart"] = "charged"
    promote_share: float = 0.2
    focus: int | str = "auto"

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> tuple[SearchSettings, list[str]]:
        """The search options among a suite's top-level keys; every problem is reported."""
        from tunebench.budget import parse_duration

        problems: list[str] = [f"'{key}' is set to nothing (null); give it a value ({meaning}), or leave the key out"
                               for key, meaning in SEARCH_KEYS.items() if key in raw and raw[key] is None]
        values: dict[str, Any] = {}
        first = raw.get("first_trial")
        if first is not None:
            if first in ("defaults", "none") or first is False:
                values["first_trial"] = "none" if first is False else first
            else:
                problems.append(f"'first_trial' must be defaults or none, not {first!r}")
        guard = raw.get("feasibility_guard")
        if guard is not None:
            if isinstance(guard, bool):
                values["feasibility_guard"] = guard
            else:
                problems.append(f"'feasibility_guard' must be true or false, not {guard!r}")
        margin = raw.get("feasibility_margin")
        if margin is not None:
            if (isinstance(margin, (int, float)) and not isinstance(margin, bool) and math.isfinite(margin)
                    and margin >= 1):
                values["feasibility_margin"] = float(margin)
            else:
                problems.append(f"'feasibility_margin' must be a number of at least 1, not {margin!r}")
        for key, valid, convert, wanted in _CHECKED_KEYS:
            value = raw.get(key)
            if value is None:
                continue
            if valid(value):
                values[key] = convert(value)
            else:
                problems.append(f"'{key}' must be {wanted}, not {value!r}")
        hang = raw.get("hang_timeout")
        if hang is not None:
            try:
                values["hang_timeout"] = parse_duration(hang)
            except ValueError as exc:
                problems.append(f"'hang_timeout': {exc}")
        return cls(**values), problems

    @classmethod
    def from_json(cls, raw: Mapping[str, Any] | None) -> SearchSettings:
        """The settings a job file carries (`to_mapping`: the suite's own keys), validated again."""
        return _valid(cls.parse(dict(raw or {})))

    def to_mapping(self) -> dict[str, Any]:
        """Only the fields that differ from the defaults."""
        return _non_defaults(self)

    def identity(self) -> dict[str, Any]:
        """What a search's key hashes: `to_mapping` under the names earlier versions hashed
        (`hang_timeout_s`), so that their stores resume instead of running everything again."""
        return {("hang_timeout_s" if k == "hang_timeout" else k): v for k, v in self.to_mapping().items()}


#: A search's process is never limited below this (TensorFlow itself needs about 0.6 GB of data).
MIN_MEMORY_LIMIT = 2**30

#: The suite's `resources:` keys and their meaning.
RESOURCE_KEYS = {"cpus": "CPUs per search", "gpus": "GPUs per search (fractional packs searches on one)",
                 "memory": "host memory per search, e.g. 4GB"}


@dataclass(frozen=True)
class Resources:
    """What each search asks for (the suite's `resources:`): CPUs and GPUs of a Ray cluster (fractional
    GPUs pack several small searches on one), and host memory, which is also the memory guard of
    the search's processes (`runner.Runner.memory_limit`). None: not set."""

    cpus: float | None = None
    gpus: float | None = None
    memory_bytes: int | None = None

    @classmethod
    def parse(cls, raw: object) -> tuple[Resources, list[str]]:
        """Validate a `resources:` block; every problem is reported."""
        from tunebench.budget import parse_size

        if raw is None:
            return cls(), []
        if not isinstance(raw, Mapping):
            return cls(), [f"'resources' must be a mapping with keys among: {', '.join(RESOURCE_KEYS)}"]
        problems = [f"'resources': unknown key '{k}' (known: "
                    + ", ".join(f"{n} = {what}" for n, what in RESOURCE_KEYS.items()) + ")"
                    for k in raw if k not in RESOURCE_KEYS]
        values: dict[str, Any] = {}
        for key in ("cpus", "gpus"):
            value = raw.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                problems.append(f"'resources': {key} must be a number of at least 0, not {value!r}")
            else:
                values[key] = float(value)
        if raw.get("memory") is not None:
            try:
                memory = parse_size(raw["memory"])
                if memory is not None and memory < MIN_MEMORY_LIMIT:
                    problems.append(f"'resources': memory {raw['memory']} is less than a search's process needs to "
                                    f"start (at least {MIN_MEMORY_LIMIT / 2**30:.0f} GiB: the frameworks alone take "
                                    f"about 0.6 GB); give at least 1GiB")
                else:
                    values["memory_bytes"] = memory
            except ValueError as exc:
                problems.append(f"'resources': memory: {exc}")
        return cls(**values), problems

    def ray_options(self, *, default_gpus: float = 0.0) -> dict[str, Any]:
        """Ray's `.options(...)` for one search's task: 1 CPU and `default_gpus` unless set."""
        options: dict[str, Any] = {"num_cpus": 1.0 if self.cpus is None else self.cpus,
                                   "num_gpus": default_gpus if self.gpus is None else self.gpus}
        if self.memory_bytes:
            options["memory"] = self.memory_bytes
        return options


_S = TypeVar("_S")


def _valid(parsed: tuple[_S, list[str]]) -> _S:
    """The settings `parse` built, or a ValueError listing every problem."""
    settings, problems = parsed
    if problems:
        raise ValueError("; ".join(problems))
    return settings


def _non_defaults(settings: Any) -> dict[str, Any]:
    """The fields of a settings object that differ from its class's defaults."""
    default = type(settings)()
    return {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)
            if getattr(settings, f.name) != getattr(default, f.name)}


def _whole(least: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= least


def _flag(v: Any) -> bool:
    return isinstance(v, bool)


def _share(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0 < v <= 1


#: Search keys checked the same way: (key, valid, convert, what it must be).
_CHECKED_KEYS: tuple[tuple[str, Callable[[Any], bool], Callable[[Any], Any], str], ...] = (
    ("sampler_time", lambda v: v in ("charged", "apart"), str, "charged or apart"),
    ("record_test", _flag, bool, "true or false"),
    ("min_trials", _whole(2), int, "a whole number of at least 2"),
    ("default_share", _share, float, "a share of the budget above 0 and at most 1 (0.2 is a fifth)"),
    ("plateau_patience", _whole(0), int, "a whole number of epochs, at least 0"),
    ("cost_aware_space", _flag, bool, "true or false"),
    ("promote_share", lambda v: v == 0 or (_share(v) and v < 1), float,
     "a share of the budget, at least 0 and below 1 (0.2 is a fifth; 0 turns it off)"),
    ("focus", lambda v: v in ("auto", "all") or _whole(1)(v), lambda v: v,
     "auto, all, or a whole number of at least 1"),
)
