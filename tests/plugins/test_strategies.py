"""Strategies against a fake context: what they propose, without training anything."""

from __future__ import annotations

import pytest

from harness import SearchContext, TrialRecord
from harness.budget import Budget
from harness.errors import BudgetExhausted
from plugins.strategies.optuna_search import OptunaTPE
from plugins.strategies.random_search import RandomSearch


class FakeContext(SearchContext):
    """Declares a small space and scores it with a known function."""

    def __init__(self, seed, limit=12):
        self.seed, self.budget, self.limit = seed, Budget(3600), limit
        self._trials: list[TrialRecord] = []

    @property
    def trials(self):
        return tuple(self._trials)

    def run_trial(self, hp, *, epochs=None, report=None):
        if len(self._trials) >= self.limit:
            raise BudgetExhausted()
        x = hp.Float("x", -5, 5)
        kind = hp.Choice("kind", ["a", "b"])
        score = -(x - 1) ** 2 + (0.5 if kind == "b" else 0)
        record = TrialRecord(len(self._trials), "ok", hp.values, score)
        self._trials.append(record)
        return record


def proposals(strategy, seed, limit=12):
    ctx = FakeContext(seed, limit)
    try:
        strategy.search(ctx)
    except BudgetExhausted:
        pass
    return [t.params for t in ctx.trials]


@pytest.mark.parametrize("make", [lambda: RandomSearch(), lambda: OptunaTPE(n_startup_trials=4)])
def test_a_fixed_seed_gives_the_same_sequence_of_configurations(make):
    assert proposals(make(), 0) == proposals(make(), 0)
    assert proposals(make(), 0) != proposals(make(), 1)


def test_max_trials_is_honoured():
    assert len(proposals(RandomSearch(max_trials=5), 0, limit=100)) == 5
    assert len(proposals(OptunaTPE(max_trials=3), 0, limit=100)) == 3


def test_tpe_learns_from_what_it_is_told():
    found = proposals(OptunaTPE(n_startup_trials=5), 0, limit=40)
    late = [abs(p["x"] - 1) for p in found[-10:]]
    early = [abs(p["x"] - 1) for p in found[:5]]
    assert sum(late) / len(late) < sum(early) / len(early)
