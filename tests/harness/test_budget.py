from __future__ import annotations

import time

import pytest

from tunebench.budget import Budget, allowed_overshoot, format_duration, parse_duration


@pytest.mark.parametrize("text, seconds", [
    ("90", 90), (90, 90), ("30s", 30), ("2m", 120), ("1h30m", 5400), ("1.5h", 5400), ("250ms", 0.25),
    ("2 min", 120), ("1d", 86400),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "fast", "2x", "-5s", "0", "1m-", True, "m2"])
def test_parse_duration_rejects_with_the_accepted_forms(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_format_duration():
    assert format_duration(5.25) == "5.2s"
    assert format_duration(125) == "2m05s"
    assert format_duration(3720) == "1h02m"
    assert format_duration(None) == "-"


def test_allowed_overshoot_is_max_of_2s_and_5_percent():
    assert allowed_overshoot(10) == 2.0
    assert allowed_overshoot(600) == 30.0


def test_budget_clock_and_trial_deadline():
    b = Budget(100.0, trial_seconds=10.0)
    assert not b.expired and 99 < b.remaining() <= 100
    now = time.monotonic()
    assert b.trial_deadline(now) == pytest.approx(now + 10)
    assert b.trial_deadline(b.deadline - 1) == pytest.approx(b.deadline)  # never past the search's
    assert Budget(0.001, started=time.monotonic() - 1).expired
