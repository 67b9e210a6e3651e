"""Pruning, multi-fidelity epoch budgets and AutoKeras, on real (tiny) training runs."""

from __future__ import annotations

import json

import pytest

from tests.conftest import tunebench, write_suite
from tunebench.budget import allowed_overshoot
from tunebench.store import Store
from tunebench.testing import run_search


def test_optuna_pruning_records_pruned_trials_with_their_partial_curves(tmp_path):
    store, run_id, _ = run_search(tmp_path, model_family="mlp", strategy="optuna_random",
                                  strategy_options={"pruner": "median", "max_trials": 10}, budget_s=120,
                                  max_epochs=4,
                                  model_options={"params": {"epochs": 4}}, dataset_options={"limit": 600})
    trials = store.trials([run_id])
    pruned = [t for t in trials if t["status"] == "pruned"]
    assert pruned, [t["status"] for t in trials]
    epochs = store.epochs([t["id"] for t in pruned])
    for t in pruned:
        curve = [e for e in epochs if e["trial_id"] == t["id"]]
        assert 1 <= len(curve) == t["epochs_done"] < t["epoch_budget"] == 4
        assert all("val_accuracy" in e["metrics"] for e in curve)
    assert store.run(run_id)["status"] == "ok"


@pytest.mark.parametrize("strategy", ["optuna_tpe", "optuna_gp"])
def test_pins_outside_the_searched_range_reach_optuna_with_the_family_default_first(tmp_path, strategy):
    """The family default (first trial) is replayed into the study: its pinned batch size 512 (the
    space offers 32-256) and 100 units (4-64) are constants the study must not be told about."""
    store, run_id, _ = run_search(tmp_path, model_family="scripted", strategy=strategy,
                                  strategy_options={"max_trials": 3, "n_startup_trials": 1}, budget_s=120,
                                  model_options={"params": {"batch_size": 512, "units": 100}},
                                  dataset_options={"limit": 400})
    run = store.run(run_id)
    assert run["status"] == "ok", run["error"]
    trials = store.trials([run_id])
    assert len(trials) == 3 and trials[0]["notes"].get("family_default")  # the default, then the study's
    assert all(t["params"]["batch_size"] == 512 and t["params"]["units"] == 100 for t in trials)
    assert all(t["status"] == "ok" for t in trials)


def test_hyperband_trials_carry_their_epoch_budget(tmp_path):
    store, run_id, _ = run_search(tmp_path, model_family="mlp", strategy="kt_hyperband",
                                  strategy_options={"max_epochs": 3}, budget_s=30, max_epochs=3,
                                  dataset_options={"limit": 600})
    trials = store.trials([run_id])
    assert {t["epoch_budget"] for t in trials} == {1, 3}
    # a promoted trial continues the previous round's model: its own epochs make up the rest
    assert all(t["epochs_done"] + (t["notes"] or {}).get("initial_epoch", 0) == t["epoch_budget"]
               for t in trials if t["status"] == "ok")


def test_autokeras_pairs_itself_with_its_family(catalog):
    from tunebench.suite import parse_suite

    suite = parse_suite({"budget": "1m", "datasets": ["digits"], "model_families": ["mlp"],
                         "strategies": ["random", {"autokeras": {"tuner": "greedy"}}]}, catalog)
    pairs = [(s.model_family.name, s.strategy.name) for s in suite.searches()]
    assert pairs == [("mlp", "random"), ("autokeras", "autokeras")]


def test_an_autokeras_search_finishes_inside_its_budget_and_is_tested(tmp_path):
    """Two AutoKeras trials on digits; the second architecture (a ResNet) may not finish in time."""
    suite = write_suite(tmp_path / "ak.yaml", """
name: ak
budget: 20s
max_epochs: 2
datasets: [digits]
model_families: [autokeras]
strategies: [{autokeras: {tuner: greedy, max_trials: 2}}]
""")
    result = tunebench("run", str(suite), "--results", str(tmp_path / "results"))
    assert result.returncode == 0, result.stderr
    store = Store.open(tmp_path / "results")
    (run,) = store.runs()
    assert run["finished_at"] - run["started_at"] <= run["budget_s"] + allowed_overshoot(run["budget_s"])
    trials = store.trials([run["id"]])
    assert 1 <= len(trials) <= 2 and trials[0]["status"] == "ok"
    assert "image_block_1/block_type" in trials[0]["params"]
    assert run["status"] == "ok" and 0 < run["test_score"] <= 1
    board = json.loads(tunebench("leaderboard", "--results", str(tmp_path / "results"), "--format", "json").stdout)
    assert [(r["model_family"], r["strategy"]) for r in board if r["kind"] == "search"] == [
        ("autokeras", "autokeras")]


@pytest.mark.parametrize("options, message", [
    ({"optuna_tpe": {"pruner": "mean"}}, "option 'pruner' must be one of none, median"),
    ({"autokeras": {"tuner": "evolution"}}, "option 'tuner' must be one of greedy"),
    ({"kt_hyperband": {"factr": 3}}, "unknown option 'factr' (did you mean 'factor'?)"),
])
def test_strategy_options_are_checked_up_front(catalog, options, message):
    from tunebench.errors import SuiteError
    from tunebench.suite import parse_suite

    with pytest.raises(SuiteError) as err:
        parse_suite({"budget": "1m", "datasets": ["digits"], "model_families": ["mlp"], "strategies": [options]},
                    catalog)
    assert message in str(err.value)
