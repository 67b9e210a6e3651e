"""Durations, sizes, budgets and deadlines.

Budgets are enforced at two levels: the training path stops a trial cooperatively at the first
batch end past its deadline, and the runner's supervising process kills a search that does not stop
in time. `allowed_overshoot` is the contract both levels serve.
"""

from __future__ import annotations

import math
import re
import statistics
import time
from dataclasses import dataclass, field

#: The longest duration accepted: a year (longer ones are typing mistakes, and `inf` overflows clocks).
MAX_DURATION_S = 365 * 86400.0
_UNITS = {"ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|sec|min|s|m|h|d)")


def parse_size(text: str | None) -> int | None:
    """Bytes in a size such as `4GB`, `512MB`, `2GiB` or a plain byte count.

    Raises:
        ValueError: with a message that shows the accepted forms.
    """
    if text is None:
        return None
    units = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}
    raw = str(text).strip().lower().replace(" ", "")
    number = raw.rstrip("kmgib")
    unit = raw[len(number):]
    try:
        value = float(number)
    except ValueError:
        value = -1
    if unit not in units or value <= 0:
        raise ValueError(f"'{text}' is not a size; write it like 4GB, 512MB or 2GiB")
    return int(value * units[unit])


def parse_duration(text: str | int | float) -> float:
    """Seconds in a duration such as `90`, `30s`, `2m`, `1h30m` or `1.5h`.

    Raises:
        ValueError: with a message that shows the accepted forms.
    """
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not a duration")
    if isinstance(text, (int, float)):
        seconds = float(text)
        if not math.isfinite(seconds):
            raise ValueError(f"{text!r} is not a finite duration; write it like 90, 30s, 2m, 1h30m")
    else:
        s = str(text).strip().lower().replace(" ", "")
        if re.fullmatch(r"\d+(\.\d+)?", s):
            seconds = float(s)
        else:
            pos, seconds = 0, 0.0
            for m in _PART.finditer(s):
                if m.start() != pos:
                    break
                seconds += float(m.group(1)) * _UNITS[m.group(2)]
                pos = m.end()
            if pos != len(s) or not s:
                raise ValueError(f"'{text}' is not a duration; write it like 90, 30s, 2m, 1h30m")
    if seconds <= 0:
        raise ValueError(f"'{text}' is not a positive duration")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"'{text}' is longer than any budget can be; at most {MAX_DURATION_S / 86400:g} days")
    return seconds


def format_duration(seconds: float | None) -> str:
    """A short human form: `45s`, `2m05s`, `1h02m`."""
    if seconds is None:
        return "-"
    seconds = max(0.0, float(seconds))
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    m, s = divmod(int(round(seconds)), 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def in_the_tail(turned_away: bool, to_first_epoch: list[float], left: float) -> bool:
    """Whether a search is in its tail and ends: the guard has just turned a draw away
    (`turned_away`) with less time `left` than the median of the search's start-to-first-epoch
    times. Another draw would most likely be turned away too (a sampler may even draw the same one
    again: TPE drew one 13 times in a search's last 6 s), and one that fits would train an epoch or
    so. The real and the simulated clock both apply it."""
    return turned_away and bool(to_first_epoch) and left < statistics.median(to_first_epoch)


def allowed_overshoot(budget_s: float) -> float:
    """How far past its budget a search may end: max(2 s, 5 %)."""
    return max(2.0, 0.05 * budget_s)


@dataclass(frozen=True)
class Budget:
    """A wall-clock budget for one search, started when the strategy starts.

    `deadline` is on the `time.monotonic` clock of the process that runs the search.
    """

    seconds: float
    started: float = field(default_factory=time.monotonic)
    trial_seconds: float | None = None

    @property
    def deadline(self) -> float:
        return self.started + self.seconds

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.deadline - time.monotonic())

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.deadline

    def trial_deadline(self, trial_started: float) -> float:
        """The deadline of a trial starting now: the search's, or sooner with a per-trial budget."""
        if self.trial_seconds is None:
            return self.deadline
        return min(self.deadline, trial_started + self.trial_seconds)
