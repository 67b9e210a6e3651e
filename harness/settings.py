"""How every trial of a suite trains: the suite's `training:` block as one typed, validated object.

Its defaults live here and nowhere else. The suite validator builds it (`TrainingOptions.parse`,
which reports every problem at once), the job carries it to the search's process as a mapping,
and the training code reads its fields.
"""

from __future__ import annotations

import dataclasses
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
