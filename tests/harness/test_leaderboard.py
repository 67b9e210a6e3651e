from __future__ import annotations

import csv
import io
import json
import math
import statistics

import pytest

from tests.conftest import tunebench, write_suite
from tunebench import leaderboard
from tunebench.store import Store


def add_run(store, *, model, strategy, seed, status="ok", test=None, val=None, trials=(), started=1000.0,
            budget=10.0, used=10.5, best_trial=None, key=None):
    run_id = store.create_run(search_key=key or f"{model}-{strategy}-{seed}", suite="hand", dataset="d",
                              dataset_label="d", model_family=model, model_label=model, strategy=strategy,
                              strategy_label=strategy, seed=seed, budget_s=budget, status=status,
                              started_at=started, finished_at=started + used, test_score=test, best_val=val,
                              best_trial=best_trial, backend="tensorflow")
    for number, (trial_status, finished) in enumerate(trials):
        tid = store.start_trial(run_id, number, started_at=started + number)
        store.finish_trial(tid, status=trial_status, finished_at=started + finished)
    return run_id


@pytest.fixture
def hand_made(tmp_path):
    store = Store.open(tmp_path)
    # An interrupted earlier attempt of A/s1 seed 0: replaced by its re-run, so never counted.
    add_run(store, model="A", strategy="s1", seed=0, status="interrupted", test=0.1, key="A-s1-0")
    for seed, test in enumerate([0.9, 0.8, 0.7]):
        add_run(store, model="A", strategy="s1", seed=seed, test=test, val=test + 0.05,
                trials=[("ok", 2.0), ("failed", 3.0), ("ok", 4.0 + seed)], best_trial=2, key=f"A-s1-{seed}")
    for seed in range(3):
        add_run(store, model="A", strategy="s2", seed=seed, test=0.6, val=0.62, trials=[("ok", 5.0), ("timeout", 9.0)],
                best_trial=0, used=9.0)
    add_run(store, model="B", strategy="s1", seed=0, status="failed", trials=[("nan", 1.0), ("failed", 2.0)])
    for seed, test in [(1, 0.5), (2, 0.7)]:
        add_run(store, model="B", strategy="s1", seed=seed, test=test, val=0.7, trials=[("ok", 1.0), ("pruned", 2.0)],
                best_trial=0)
    for seed, test in enumerate([0.95, 0.85, 0.9]):
        add_run(store, model="B", strategy="s2", seed=seed, test=test, val=0.9, trials=[("ok", 3.0)], best_trial=0)
    return store


def test_known_values_give_known_means_sds_ranks_and_counts(hand_made):
    board = leaderboard.build(hand_made).set_index(["model_family", "strategy"])
    a1, a2, b1, b2 = (board.loc[k] for k in [("A", "s1"), ("A", "s2"), ("B", "s1"), ("B", "s2")])
    assert a1["test_mean"] == pytest.approx(0.8) and a1["test_sd"] == pytest.approx(0.1)
    assert a1["runs"] == 3 and a1["runs_ok"] == 3  # the interrupted attempt is not counted
    assert a1["trials_ok"] == 6 and a1["trials_failed"] == 3
    assert a1["time_to_best_s"] == pytest.approx(5.0)  # median of 4, 5, 6
    assert a2["test_sd"] == pytest.approx(0.0) and a2["trials_timeout"] == 3
    assert a2["budget_used"] == pytest.approx(0.9)
    assert b1["runs"] == 3 and b1["runs_ok"] == 2 and b1["runs_failed"] == 1
    assert b1["test_mean"] == pytest.approx(0.6) and b1["test_sd"] == pytest.approx(statistics.stdev([0.5, 0.7]))
    assert (b1["trials_nan"], b1["trials_failed"], b1["trials_pruned"]) == (1, 1, 2)
    assert b2["test_mean"] == pytest.approx(0.9)
    assert [b2["rank"], a1["rank"], a2["rank"], b1["rank"]] == [1, 2, 3, 3]  # ties share a rank


def test_renderings(hand_made, tmp_path):
    board = leaderboard.build(hand_made)
    table = leaderboard.render(board, "table")
    assert "0.8000 ± 0.1000" in table and "Dataset: d" in table
    md = leaderboard.render(board, "md")
    assert md.startswith("## d") and "| rank" in md
    rows = list(csv.DictReader(io.StringIO(leaderboard.render(board, "csv"))))
    assert len(rows) == 4 and set(leaderboard.COLUMNS) == set(rows[0])
    assert json.loads(leaderboard.render(board, "json"))[0]["model_family"] == "B"
    files = leaderboard.write_files(board, tmp_path / "out")
    assert [f.name for f in files] == ["leaderboard.md", "leaderboard.csv"] and all(f.stat().st_size for f in files)


def test_the_legend_explains_only_the_columns_shown(hand_made, tmp_path):
    table = leaderboard.render(leaderboard.build(hand_made), "table")
    # three seeds give intervals; no search ran the family default first, so no "vs default" column
    assert "95% CI" in table and leaderboard.LEGEND_CI in table
    assert "vs default" not in table and "infeasible" not in table
    store = Store.open(tmp_path / "one_seed")
    run = add_run(store, model="A", strategy="s1", seed=0, test=0.5, val=0.5, trials=[("ok", 2.0)], best_trial=0)
    turned_away = store.start_trial(run, 1, started_at=1003.0)
    store.finish_trial(turned_away, status="timeout", finished_at=1003.2, error_kind="infeasible",
                       error="estimated 9 s for its first epoch, 1 s were left for it")
    board = leaderboard.build(store)
    table = leaderboard.render(board, "table")
    assert "infeasible: 1" in table and leaderboard.LEGEND_INFEASIBLE in table
    assert "1/0/1/0" in table  # the turned-away draw counts as a timeout
    # one seed: no interval column, but the legend still says how one is computed (from 3 seeds)
    assert "95% CI" not in leaderboard.display_frame(board).columns and leaderboard.LEGEND_CI in table


@pytest.fixture(scope="module")
def real_results(tmp_path_factory):
    # Real models on a budget with room: the searches end after their two trials (seconds), and a
    # loaded machine still finishes them (no wall-clock luck).
    tmp = tmp_path_factory.mktemp("lb")
    suite = write_suite(tmp / "lb.yaml", """
name: lb
budget: 90s
max_epochs: 2
seeds: [0]
datasets: [digits]
model_families: [mlp, {scripted: {as: scripted}}]
strategies: [{random: {max_trials: 2}}, {optuna_tpe: {n_startup_trials: 2, max_trials: 2}}]
""")
    result = tunebench("run", str(suite), "--results", str(tmp / "results"), "--plugin", "tunebench.testing.scripted")
    assert result.returncode == 0, result.stderr
    return tmp / "results", result


def test_leaderboard_numbers_equal_what_the_store_holds(real_results):
    results, run_output = real_results
    board = json.loads(tunebench("leaderboard", "--results", str(results), "--format", "json").stdout)
    runs = json.loads(tunebench("runs", "--results", str(results), "--format", "json").stdout)
    trials = json.loads(tunebench("trials", "--results", str(results), "--format", "json").stdout)
    assert len([r for r in board if r["kind"] == "search"]) == 4 and len(runs) == 4
    for row in [r for r in board if r["kind"] == "search"]:
        mine = [r for r in runs if (r["model_label"], r["strategy_label"]) == (row["model_family"], row["strategy"])]
        assert len(mine) == row["runs"] == row["runs_ok"] == 1
        run = mine[0]
        assert row["test_mean"] == pytest.approx(run["test_score"])
        assert row["val_mean"] == pytest.approx(run["best_val"])
        theirs = [t for t in trials if t["run_id"] == run["id"]]
        assert row["trials_ok"] == sum(t["status"] == "ok" for t in theirs)
        assert row["trials_timeout"] == sum(t["status"] == "timeout" for t in theirs)
        assert run["best_val"] == max(t["score"] for t in theirs if t["score"] is not None)
        best = next(t for t in theirs if t["number"] == run["best_trial"])
        assert best["score"] == run["best_val"]
    baselines = [r for r in board if r["model_family"] == "baseline"]
    import numpy as np

    from tunebench_plugins.datasets.digits import Digits

    y = Digits().splits(0).y_test
    majority = next(r for r in baselines if r["strategy"] == "majority_class")
    assert majority["test_mean"] == pytest.approx(np.bincount(y).max() / len(y))
    assert next(r for r in baselines if r["strategy"] == "random_guess")["test_mean"] == pytest.approx(0.1)
    for row in board:
        if row["kind"] != "search":
            continue
        run = next(r for r in runs if (r["model_label"], r["strategy_label"]) == (row["model_family"], row["strategy"]))
        assert row["params"] == run["best_param_count"]
        assert row["inference_ms"] == pytest.approx(run["inference_ms"]) and run["inference_ms"] > 0
        assert row["cpu_hours"] == pytest.approx(run["cpu_seconds"] / 3600) and run["cpu_seconds"] > 0
        assert row["accelerator_hours"] == 0  # no GPU on this machine
    assert "Dataset: digits" in run_output.stdout  # `run` prints the leaderboard at the end
    assert (results / "leaderboard.md").read_text().count("|") > 10
    # + 2 family defaults and 2 baselines
    assert len((results / "leaderboard.csv").read_text().splitlines()) == 1 + 4 + 2 + 2


def test_runs_and_trials_exports_have_the_promised_columns(real_results):
    results, _ = real_results
    runs = list(csv.DictReader(io.StringIO(tunebench("runs", "--results", str(results), "--format", "csv").stdout)))
    assert {"id", "dataset", "model_family", "strategy", "seed", "status", "started_at", "finished_at",
            "best_val", "test_score", "versions", "hardware", "backend", "split_fingerprint"} <= set(runs[0])
    assert runs[0]["started_at"].endswith("+00:00")
    trials = list(csv.DictReader(io.StringIO(tunebench("trials", "--results", str(results), "--format", "csv").stdout)))
    assert {"run_id", "number", "status", "params", "score", "timings", "param_count"} <= set(trials[0])
    assert "learning_rate" in json.loads(trials[0]["params"])
    assert not math.isnan(float(trials[0]["started_at"][:4]))


def test_vs_default_compares_each_search_with_its_own_family_default_trial(tmp_path):
    """The default configuration trains to another score in another search (another share of the
    budget, another load): a search that selected its own default gained nothing."""
    store = Store.open(tmp_path)
    for seed, (own, test) in enumerate([(0.50, 0.50), (0.48, 0.48), (0.51, 0.51)]):  # s1 selected its default
        run = add_run(store, model="A", strategy="s1", seed=seed, test=test, val=test, trials=[("ok", 2.0)],
                      best_trial=0)
        store.update_run(run, default_trial=0, default_val=own, default_test_score=own)
    for seed, (own, test) in enumerate([(0.45, 0.47), (0.44, 0.49), (0.46, 0.46)]):  # s2 beat its own, by 0.02
        run = add_run(store, model="A", strategy="s2", seed=seed, test=test, val=test, trials=[("ok", 2.0)],
                      best_trial=0)
        store.update_run(run, default_trial=0, default_val=own, default_test_score=own)
    board = leaderboard.build(store).set_index(["model_family", "strategy"])
    assert board.loc[("A", "s1"), "vs_default"] == pytest.approx(0.0)
    assert board.loc[("A", "s2"), "vs_default"] == pytest.approx((0.02 + 0.05 + 0.0) / 3)
