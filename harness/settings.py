"""How every search of a suite runs and every trial trains: the suite's `training:` block and its
search options (`first_trial`, the feasibility guard, `hang_timeout`), each one typed, validated object.

Their defaults live here and nowhere else. The suite validator builds them (`parse`, which reports
every problem at once), the job carries them to the search's process as mappings, and the training
code and the trial context read their fields.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Union

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
class TrainingOptions:
    """The suite's `training:` block.

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
    def parse(cls, raw: object) -> tuple[TrainingOptions, list[str]]:
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
    def from_mapping(cls, raw: Mapping[str, Any] | None) -> TrainingOptions:
        """Options from an already validated mapping (a job file); unknown keys are an error."""
        options, problems = cls.parse(dict(raw or {}))
        if problems:
            raise ValueError("; ".join(problems))
        return options

    def to_mapping(self) -> dict[str, Any]:
        """Only the keys that differ from the defaults: what a suite wrote, and a search's identity."""
        default = TrainingOptions()
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) != getattr(default, f.name)}

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
    "min_trials": "a whole number >= 2: each trial (but the family default) may use at most the time left divided "
                  "by the scored trials still wanted, so that one long draw cannot take the rest of the search",
}


@dataclass(frozen=True)
class SearchOptions:
    """How every search of a suite runs, beyond its budgets.

    Attributes:
        first_trial: "defaults" runs the model family's default configuration (its declared defaults
            and the suite's pins) as each search's first trial, for every strategy alike, so that a
            strategy's gain over it can be read off the leaderboard; "none" leaves the first trial
            to the strategy.
        feasibility_guard: after a trial's first steps the harness projects its first epoch; a trial
            that cannot finish it before its deadline is stopped then, as `timeout`, with the reason.
        feasibility_margin: the projection is multiplied by this before it is compared with the time left.
        hang_timeout_s: a trial whose training makes no progress (no batch ends) for this long is
            killed by the runner and the search goes on in a fresh process.
        min_trials: the scored trials a search should end with. Each trial but the family default
            (the baseline, which runs in full) may use at most the time left divided by the scored
            trials still wanted; a trial cut there keeps its completed epochs and its best epoch's
            score. None: no such cap.
    """

    first_trial: Literal["defaults", "none"] = "defaults"
    feasibility_guard: bool = True
    feasibility_margin: float = 1.0
    hang_timeout_s: float = 600.0
    min_trials: int | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> tuple[SearchOptions, list[str]]:
        """The search options among a suite's top-level keys; every problem is reported."""
        from tunebench.budget import parse_duration

        problems: list[str] = []
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
        least = raw.get("min_trials")
        if least is not None:
            if isinstance(least, int) and not isinstance(least, bool) and least >= 2:
                values["min_trials"] = least
            else:
                problems.append(f"'min_trials' must be a whole number of at least 2, not {least!r}")
        hang = raw.get("hang_timeout")
        if hang is not None:
            try:
                values["hang_timeout_s"] = parse_duration(hang)
            except ValueError as exc:
                problems.append(f"'hang_timeout': {exc}")
        return cls(**values), problems

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | None) -> SearchOptions:
        """Options from a job file's mapping (`to_mapping`)."""
        return cls(**dict(raw or {}))

    def to_mapping(self) -> dict[str, Any]:
        """Only the fields that differ from the defaults."""
        default = SearchOptions()
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) != getattr(default, f.name)}
