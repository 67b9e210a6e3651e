"""Strategies against a fake context: what they propose, without training anything."""

from __future__ import annotations

import pytest

from tunebench import DefaultHyperParameters, SearchContext, TrialRecord
from tunebench.budget import Budget
from tunebench.errors import BudgetExhausted, OptionsError
from tunebench_plugins.strategies.grid import GridSearch
from tunebench_plugins.strategies.keras_tuner_search import KTBayesian, KTHyperband, KTRandom
from tunebench_plugins.strategies.optuna_search import OptunaCmaEs, OptunaRandom, OptunaTPE
from tunebench_plugins.strategies.random_search import RandomSearch


class FakeContext(SearchContext):
    """Declares a small space and scores it with a known function."""

    objective = "val_accuracy"
    max_epochs = 3

    def __init__(self, seed, limit=12, workdir=None):
        self.seed, self.budget, self.limit = seed, Budget(3600), limit
        self.workdir = workdir
        self.search_key = f"fake-{seed}"
        self._trials: list[TrialRecord] = []

    @property
    def trials(self):
        return tuple(self._trials)

    @staticmethod
    def declare(hp):
        x = hp.Float("x", -5, 5)
        kind = hp.Choice("kind", ["a", "b"])
        return -(x - 1) ** 2 + (0.5 if kind == "b" else 0)

    def space(self, hp=None):
        hp = hp or DefaultHyperParameters()
        self.declare(hp)
        return hp.params

    def run_trial(self, hp, *, epochs=None, report=None, number=None, latency=False, resume_from=None,
                  checkpoint=False):
        if len(self._trials) >= self.limit:
            raise BudgetExhausted()
        score = self.declare(hp)
        record = TrialRecord(len(self._trials), "ok", hp.values, score, epoch_budget=epochs)
        self._trials.append(record)
        return record


def proposals(strategy, seed, limit=12, workdir=None):
    ctx = FakeContext(seed, limit, workdir)
    try:
        strategy.search(ctx)
    except BudgetExhausted:
        pass
    return [t.params for t in ctx.trials]


@pytest.mark.parametrize("make", [
    lambda: RandomSearch(), lambda: OptunaTPE(n_startup_trials=4), lambda: OptunaRandom(),
    lambda: OptunaCmaEs(), lambda: KTRandom(), lambda: KTBayesian(num_initial_points=3),
    lambda: KTHyperband(max_epochs=3)])
def test_a_fixed_seed_gives_the_same_sequence_of_configurations(make, tmp_path):
    assert proposals(make(), 0, workdir=tmp_path / "a") == proposals(make(), 0, workdir=tmp_path / "b")
    assert proposals(make(), 0, workdir=tmp_path / "c") != proposals(make(), 1, workdir=tmp_path / "d")


def test_every_builtin_strategy_states_whether_it_is_deterministic():
    from tunebench.registry import load_plugins

    for info in load_plugins().strategies:
        assert isinstance(info.cls.deterministic, bool), info.name


def test_keras_tuner_hyperband_hands_out_its_epoch_budgets(tmp_path):
    ctx = FakeContext(0, limit=100, workdir=tmp_path)
    try:
        KTHyperband(max_epochs=9).search(ctx)
    except BudgetExhausted:
        pass
    budgets = [t.epoch_budget for t in ctx.trials]
    assert set(budgets) == {1, 3, 9}  # rounds of successive halving with factor 3
    assert budgets.count(1) > budgets.count(9)


def test_keras_tuner_files_are_removed_unless_kept(tmp_path):
    proposals(KTRandom(), 0, limit=3, workdir=tmp_path / "clean")
    assert not (tmp_path / "clean" / "keras_tuner").exists()
    proposals(KTRandom(keep_trial_dirs=True), 0, limit=3, workdir=tmp_path / "kept")
    assert (tmp_path / "kept" / "keras_tuner" / "oracle" / "oracle.json").exists()


def test_grid_runs_every_combination_in_order():
    found = proposals(GridSearch(grid={"x": [0.0, 1.0, 2.0], "kind": ["a", "b"]}), 0, limit=100)
    assert [(p["x"], p["kind"]) for p in found] == [(0.0, "a"), (0.0, "b"), (1.0, "a"), (1.0, "b"),
                                                    (2.0, "a"), (2.0, "b")]
    with pytest.raises(OptionsError, match="non-empty list"):
        GridSearch(grid={"x": []})


def test_a_grids_epochs_are_each_trials_epoch_budget_and_an_unknown_entry_is_refused():
    ctx = FakeContext(0, limit=100)
    GridSearch(grid={"kind": ["a", "b"], "epochs": [1, 3]}).search(ctx)  # epochs: a fidelity, not in the space
    assert [(t.params["kind"], t.epoch_budget) for t in ctx.trials] == [("a", 1), ("a", 3), ("b", 1), ("b", 3)]
    assert all("epochs" not in t.params for t in ctx.trials)
    with pytest.raises(OptionsError) as refused:
        GridSearch(grid={"kind": ["a"], "depth": [1, 2]}).search(FakeContext(0))
    assert "grid entry 'depth' is not a hyperparameter of this search's space (it declares: x, kind)" in str(
        refused.value.problems)


def test_optuna_storage_keeps_the_study_in_a_database(tmp_path):
    import optuna

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    proposals(OptunaTPE(storage=url, n_startup_trials=2), 0, limit=5)
    study = optuna.load_study(study_name="tunebench-fake-0", storage=url)
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") == 5 and "RUNNING" not in states  # nothing left dangling
    assert study.best_value == pytest.approx(max(
        t.value for t in study.trials if t.value is not None))


def test_max_trials_is_honoured():
    assert len(proposals(RandomSearch(max_trials=5), 0, limit=100)) == 5
    assert len(proposals(OptunaTPE(max_trials=3), 0, limit=100)) == 3


def test_tpe_learns_from_what_it_is_told():
    found = proposals(OptunaTPE(n_startup_trials=5), 0, limit=40)
    late = [abs(p["x"] - 1) for p in found[-10:]]
    early = [abs(p["x"] - 1) for p in found[:5]]
    assert sum(late) / len(late) < sum(early) / len(early)


class CostlyContext(FakeContext):
    """Kind `b` scores higher but cannot train at this budget: the feasibility guard turns it away."""

    def run_trial(self, hp, *, epochs=None, report=None, number=None, latency=False, resume_from=None,
                  checkpoint=False):
        if len(self._trials) >= self.limit:
            raise BudgetExhausted()
        score = self.declare(hp)
        if hp.values["kind"] == "b":
            record = TrialRecord(len(self._trials), "timeout", hp.values, None, error_kind="infeasible")
        else:
            record = TrialRecord(len(self._trials), "ok", hp.values, score)
        self._trials.append(record)
        return record


@pytest.mark.parametrize("seed", [0, 1])
def test_tpe_learns_to_avoid_draws_the_guard_turned_away(seed):
    # Told as failed, TPE ignored the turned-away draws and drew kind b in 32-34 of its 35 draws
    # after start-up (a real 10-minute search drew one configuration 13 times in its last 6 s);
    # told as pruned, it ranks them below every scored trial and draws b 5-7 times.
    assert TrialRecord(0, "timeout", {}, None, error_kind="infeasible").turned_away
    assert not TrialRecord(0, "timeout", {}, 0.5, error_kind="deadline").turned_away
    ctx = CostlyContext(seed, limit=40)
    with pytest.raises(BudgetExhausted):
        OptunaTPE(n_startup_trials=5).search(ctx)
    later = [t.params["kind"] for t in ctx.trials[5:]]
    assert len(later) == 35 and later.count("b") <= 12, later


def test_grid_without_a_grid_visits_the_spaces_own_grid_once_each_in_an_order_shuffled_by_the_seed():
    found = proposals(GridSearch(points=3), 0, limit=100)
    combos = [(p["x"], p["kind"]) for p in found]
    assert sorted(combos) == sorted((x, k) for x in (-5.0, 0.0, 5.0) for k in ("a", "b"))  # 3 points x 2 choices
    assert combos == [(p["x"], p["kind"]) for p in proposals(GridSearch(points=3), 0, limit=100)]
    assert combos != [(p["x"], p["kind"]) for p in proposals(GridSearch(points=3), 1, limit=100)]
    ordered = [(p["x"], p["kind"]) for p in proposals(GridSearch(points=3, shuffle=False), 0, limit=100)]
    assert ordered == sorted(combos, key=lambda c: ((-5.0, 0.0, 5.0).index(c[0]), c[1]))
