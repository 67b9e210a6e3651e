"""Cost-accuracy fronts, multi-objective searches and their selection rule, and the statistics the
report takes from libraries: each recomputed from the raw store."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from tests.conftest import tunebench
from tunebench import leaderboard
from tunebench.analysis import compare_strategies, interquartile_mean, nemenyi_cd
from tunebench.store import Store
from tunebench.testing import run_search

#: (family, strategy, test score, CPU seconds per search, ms per image, parameters)
CELLS = [("a", "random", 0.90, 100.0, 2.0, 5000), ("a", "tpe", 0.92, 300.0, 1.0, 9000),
         ("b", "random", 0.85, 50.0, 0.5, 1000), ("b", "tpe", 0.80, 60.0, 3.0, 20000),
         ("c", "random", 0.91, 400.0, 4.0, 900)]


@pytest.fixture
def store(tmp_path):
    store = Store.open(tmp_path)
    for i, (family, strategy, score, cpu, ms, params) in enumerate(CELLS):
        for seed in (0, 1):
            run_id = store.create_run(search_key=f"k{i}-{seed}", suite="s", dataset="d", dataset_label="d",
                                      model_family=family, model_label=family, strategy=strategy,
                                      strategy_label=strategy, seed=seed, budget_s=60, dataset_options={},
                                      model_options={}, strategy_options={})
            store.update_run(run_id, cpu_seconds=cpu, accelerator_seconds=0.0, best_param_count=params,
                             inference_ms=ms, best_val=score)
            store.finish_run(run_id, test_score=score)
    return store


def _front(points: list[tuple[str, float, float]]) -> set[str]:
    """An independent, brute-force front: no other point at least as good on both and better on one."""
    return {name for name, s, c in points
            if not any(s2 >= s and c2 <= c and (s2 > s or c2 < c) for _, s2, c2 in points)}


def test_the_fronts_equal_a_recomputation_from_the_raw_store(store):
    board = leaderboard.build(store)
    runs = store.runs()
    cells: dict[str, list[dict]] = {}
    for r in runs:
        cells.setdefault(f"{r['model_label']}/{r['strategy_label']}", []).append(r)
    mean = lambda rs, key: sum(r[key] for r in rs) / len(rs)  # noqa: E731
    for column, cost in (("front_cost", "cpu_seconds"), ("front_latency", "inference_ms"),
                         ("front_params", "best_param_count")):
        expected = _front([(name, mean(rs, "test_score"), mean(rs, cost)) for name, rs in cells.items()])
        search = board[board["kind"] == "search"]
        found = {f"{r['model_family']}/{r['strategy']}" for _, r in search.iterrows() if r[column]}
        assert found == expected, column
    # cost: tpe on a is the best score; random on b is the cheapest with a better score than tpe on b
    assert {f"{r['model_family']}/{r['strategy']}" for _, r in board.iterrows() if bool(r["front_cost"])} == {
        "a/tpe", "a/random", "b/random"}


def test_leaderboard_pareto_prints_the_fronts(store, tmp_path):
    out = tunebench("leaderboard", "--results", str(tmp_path), "--pareto")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert text.index("against training cost") < text.index("against inference latency") < text.index(
        "against parameters")
    assert text.split("against training cost")[1].split("\n\n")[1].count("random") == 2
    rows = json.loads(tunebench("leaderboard", "--results", str(tmp_path), "--pareto", "--format", "json").stdout)
    # b/random (0.85, 1000 parameters) is beaten on both by c/random (0.91, 900)
    assert {(r["model_family"], r["strategy"]) for r in rows if r["cost_of"] == "params"} == {
        ("a", "tpe"), ("c", "random")}


def test_the_report_draws_the_fronts_and_names_its_statistics_libraries(store, tmp_path):
    result = tunebench("report", "--results", str(tmp_path), "--out", str(tmp_path / "r.html"))
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "r.html").read_text()
    assert "Cost–accuracy fronts" in page and "scikit-posthocs" in page and "stratified percentile bootstrap" in page
    assert page.count("data:image/png;base64") >= 3  # one front per cost axis


def test_a_multi_objective_search_stores_its_pareto_set_and_tests_by_its_stated_rule(tmp_path):
    store, run_id, _ = run_search(tmp_path, model_family="scripted", strategy="optuna_nsga2", budget_s=60,
                                  max_epochs=1, strategy_options={"objective": "params", "limit": 600,
                                                                  "population_size": 4, "max_trials": 6})
    run = store.run(run_id)
    trials = store.trials([run_id])
    assert run["status"] == "ok" and run["selection"]["metric"] == "params" and run["selection"]["limit"] == 600
    assert "at most 600 parameters" in run["selection"]["rule"]
    admitted = [t for t in trials if t["score"] is not None and t["param_count"] <= 600]
    best = max(admitted, key=lambda t: t["score"])
    assert run["best_trial"] == best["number"]  # the best validation score within the limit, not overall
    points = [(t["number"], t["score"], t["param_count"]) for t in trials if t["score"] is not None]
    assert set(run["pareto"]["trials"]) == _front(points) and run["pareto"]["metric"] == "params"


def test_a_latency_objective_measures_every_trial_before_it_trains(tmp_path):
    store, run_id, _ = run_search(tmp_path, model_family="scripted", strategy="optuna_motpe", budget_s=60,
                                  max_epochs=1, strategy_options={"objective": "latency", "max_trials": 3})
    trials = store.trials([run_id])
    assert all(t["inference_ms"] and t["inference_ms"] > 0 for t in trials[1:])  # the strategy's own trials
    assert store.run(run_id)["pareto"]["metric"] == "latency"


def test_iqm_and_nemenyi_come_from_the_libraries():
    from scipy import stats

    runs = pd.DataFrame({"status": "ok", "strategy_label": ["x"] * 6 + ["y"] * 6,
                         "test_score": [0.1, 0.5, 0.6, 0.7, 0.8, 0.99] * 2})
    iqm = interquartile_mean(runs)
    assert iqm.loc["x", "iqm"] == pytest.approx(stats.trim_mean([0.1, 0.5, 0.6, 0.7, 0.8, 0.99], 0.25))
    assert iqm.loc["x", "low"] <= iqm.loc["x", "iqm"] <= iqm.loc["x", "high"] and iqm.loc["x", "runs"] == 6
    assert nemenyi_cd(3, 4) == pytest.approx(2.343 * math.sqrt(3 * 4 / (6 * 4)), rel=1e-3)


def test_the_comparison_tests_and_diagram_use_scipy_and_scikit_posthocs():
    rows = []
    for cell in range(4):
        for strategy, score in (("random", 0.5), ("tpe", 0.6), ("hyperband", 0.7)):
            rows.append({"dataset_label": "d", "model_label": f"m{cell}", "strategy_label": strategy,
                         "status": "ok", "test_score": score + 0.01 * cell})
    comparison = compare_strategies(pd.DataFrame(rows))
    assert comparison.friedman["test"].startswith("Friedman (scipy")
    assert comparison.friedman["statistic"] == pytest.approx(8.0)  # perfectly consistent ranks, k=3, n=4
    assert comparison.nemenyi is not None and comparison.nemenyi.shape == (3, 3)
