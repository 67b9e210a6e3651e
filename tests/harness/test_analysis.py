"""Strategy comparison, anytime curves, the HTML report and `compare`, on hand-made and real stores."""

from __future__ import annotations

import base64
import json
import math
import re
import shutil
import subprocess

import pytest

from tests.conftest import tunebench
from tests.harness.test_leaderboard import add_run
from tunebench import analysis, leaderboard, report
from tunebench.store import Store

# score per (cell, strategy); worked out by hand below
CELLS = {"m1": {"random": 0.5, "a": 0.6, "b": 0.7}, "m2": {"random": 0.5, "a": 0.7, "b": 0.6},
         "m3": {"random": 0.6, "a": 0.5, "b": 0.7}, "m4": {"random": 0.4, "a": 0.6, "b": 0.8}}


def add_cell_run(store, model, strategy, test, seed=0, status="ok", trials=()):
    run_id = add_run(store, model=model, strategy=strategy, seed=seed, test=test, status=status, trials=trials,
                     key=f"{model}-{strategy}-{seed}", best_trial=0 if trials else None)
    return run_id


@pytest.fixture
def known(tmp_path):
    store = Store.open(tmp_path)
    for model, scores in CELLS.items():
        for strategy, score in scores.items():
            # two seeds around the cell score: the cell's score is their mean
            add_cell_run(store, model, strategy, score + 0.01, seed=0)
            add_cell_run(store, model, strategy, score - 0.01, seed=1)
    return store


def test_known_ranks_normalised_scores_and_friedman_statistic(known):
    comparison = analysis.compare_strategies(leaderboard.latest_runs(known))
    assert comparison.mean_rank.to_dict() == pytest.approx({"b": 1.25, "a": 2.0, "random": 2.75})
    assert comparison.mean_normalised.to_dict() == pytest.approx({"b": 0.875, "a": 0.25, "random": 0.0})
    assert comparison.normalised.loc[("d", "m3"), "a"] == pytest.approx(-1.0)
    f = comparison.friedman
    assert (f["strategies"], f["cells"]) == (3, 4)
    assert f["statistic"] == pytest.approx(4.5)  # 12N/(k(k+1)) * (sum R^2 - k(k+1)^2/4)
    assert f["p_value"] == pytest.approx(math.exp(-4.5 / 2))  # chi2 with 2 degrees of freedom
    # the studentised range quantile from SciPy; Demšar's table rounds it to 2.343
    assert comparison.critical_difference == pytest.approx(2.343 * math.sqrt(3 * 4 / (6 * 4)), rel=1e-3)


def test_a_cell_where_random_search_ties_the_best_up_to_rounding_has_no_normalised_score(known):
    # means over seeds of equal scores can differ in the last bit: that is no scale to divide by
    add_cell_run(known, "m7", "random", 0.3)
    add_cell_run(known, "m7", "a", 0.1 + 0.2)  # 0.30000000000000004
    add_cell_run(known, "m7", "b", 0.25)
    comparison = analysis.compare_strategies(leaderboard.latest_runs(known))
    assert comparison.normalised.loc[("d", "m7")].isna().all()
    assert comparison.mean_normalised.abs().max() <= 1.0


def test_a_failed_strategy_is_ranked_last_and_the_policy_is_stated(known):
    add_cell_run(known, "m5", "random", 0.5)
    add_cell_run(known, "m5", "a", 0.9)
    add_cell_run(known, "m5", "b", None, status="failed")
    comparison = analysis.compare_strategies(leaderboard.latest_runs(known))
    assert comparison.ranks.loc[("d", "m5")].to_dict() == {"a": 1.0, "b": 3.0, "random": 2.0}
    assert math.isnan(comparison.normalised.loc[("d", "m5"), "b"])
    assert "ranked last" in comparison.policy
    assert comparison.friedman["cells"] == 5  # m5 is complete: b ran there, and failed


def test_a_strategy_never_run_in_a_cell_is_left_out_of_it(known):
    add_cell_run(known, "m6", "random", 0.5)
    add_cell_run(known, "m6", "a", 0.9)
    comparison = analysis.compare_strategies(leaderboard.latest_runs(known))
    assert comparison.ranks.loc[("d", "m6")].to_dict() == {"a": 1.0, "random": 2.0, "b": pytest.approx(math.nan,
                                                                                                        nan_ok=True)}
    assert comparison.friedman["cells"] == 4 and comparison.friedman["statistic"] == pytest.approx(4.5)
    assert any("did not run every strategy" in n for n in comparison.notes)


def test_too_little_data_gets_a_plain_sentence(known):
    runs = leaderboard.latest_runs(known)
    two_cells = runs[runs["model_label"].isin(["m1", "m2"])]
    comparison = analysis.compare_strategies(two_cells, blocks="cells")
    assert comparison.friedman is None
    assert any("Too little data for a Friedman test" in n and "2 complete cells" in n for n in comparison.notes)
    by_seed = analysis.compare_strategies(two_cells)  # auto: 2 cells x 2 seeds are 4 paired blocks
    assert by_seed.blocks == "seeds" and by_seed.friedman["cells"] == 4
    one_seed = two_cells[two_cells["seed"] == 0]  # 2 blocks either way: the sentence stays
    assert analysis.compare_strategies(one_seed).friedman is None


def test_one_cell_with_three_seeds_compares_seed_by_seed(tmp_path):
    """A study of one dataset and one family (the common case) gets its Friedman test and CD diagram
    from the seeds, which share their split across strategies."""
    from scipy import stats

    store = Store.open(tmp_path)
    raw = {"random": [0.50, 0.60, 0.55], "a": [0.60, 0.70, 0.65], "b": [0.70, 0.65, 0.58]}
    for strategy, scores in raw.items():
        for seed, score in enumerate(scores):
            add_cell_run(store, "m1", strategy, score, seed=seed)
    runs = leaderboard.latest_runs(store)
    by_cell = analysis.compare_strategies(runs, blocks="cells")
    assert by_cell.friedman is None and by_cell.blocks == "cells"
    comparison = analysis.compare_strategies(runs)
    assert comparison.blocks == "seeds" and comparison.friedman["cells"] == 3
    expected = stats.friedmanchisquare(raw["a"], raw["b"], raw["random"])
    assert comparison.friedman["statistic"] == pytest.approx(expected.statistic)
    assert comparison.friedman["p_value"] == pytest.approx(expected.pvalue)
    assert comparison.ranks.loc[("d", "m1", 2)].to_dict() == {"a": 1.0, "b": 2.0, "random": 3.0}
    assert comparison.normalised.loc[("d", "m1", 2), "b"] == pytest.approx((0.58 - 0.55) / (0.65 - 0.55))
    assert any("each seed of a cell is a block" in n for n in comparison.notes)
    text = report.write(store, tmp_path / "r.html", figures_dir=tmp_path / "f").read_text()
    assert "Ranks per seed" in text and (tmp_path / "f" / "critical-difference-diagram.png").is_file()


def test_anytime_best_so_far_from_raw_trials(tmp_path):
    store = Store.open(tmp_path)
    # (status, seconds after the run's start); scores set below
    for seed, scores in enumerate([(0.5, 0.7, 0.6), (0.4, 0.5, 0.9)]):
        run_id = add_cell_run(store, "m", "random", 0.7, seed=seed,
                              trials=[("ok", 2.0), ("ok", 5.0), ("ok", 9.0)])
        for trial, score in zip(store.trials([run_id]), scores):
            store.finish_trial(trial["id"], score=score)
    run_id = add_cell_run(store, "m", "fast", 0.9, trials=[("ok", 1.0)])
    store.finish_trial(store.trials([run_id])[0]["id"], score=0.95)
    runs = leaderboard.latest_runs(store)
    import pandas as pd

    trials = pd.DataFrame(store.trials())
    (curve,) = analysis.anytime(runs, trials)
    table = curve.at_fraction
    # random: seed 0 best-so-far .5 @2s, .7 @5s; seed 1 .4 @2s, .5 @5s, .9 @9s -> medians
    assert math.isnan(table.loc["random", "10%"])
    assert table.loc["random", "25%"] == pytest.approx(0.45)
    assert table.loc["random", "50%"] == pytest.approx(0.6)
    assert table.loc["random", "100%"] == pytest.approx(0.8)
    assert table.loc["fast", "10%"] == pytest.approx(0.95)
    assert curve.time_to_random["fast"] <= 1.0 + curve.budget_s / 59  # on the curve's time grid
    assert curve.time_to_random["random"] >= 9.0 - 1e-9


def test_the_anytime_median_never_falls_when_a_weaker_seed_scores_late(tmp_path):
    """A seed with no score yet counts as the worst: the median of seeds 0.8 / 0.7 / (none yet) is
    0.7, not 0.75, so the late 0.3 of the third seed cannot pull the curve down."""
    import pandas as pd

    store = Store.open(tmp_path)
    for seed, (score, at) in enumerate([(0.8, 1.0), (0.7, 1.0), (0.3, 9.0)]):
        run_id = add_cell_run(store, "m", "random", score, seed=seed, trials=[("ok", at)])
        store.finish_trial(store.trials([run_id])[0]["id"], score=score)
    (curve,) = analysis.anytime(leaderboard.latest_runs(store), pd.DataFrame(store.trials()))
    medians = [v for v in curve.curves["random"]["median"] if not math.isnan(v)]
    assert medians and all(b >= a for a, b in zip(medians, medians[1:]))
    assert curve.at_fraction.loc["random", "25%"] == pytest.approx(0.7)
    assert curve.at_fraction.loc["random", "100%"] == pytest.approx(0.7)


def test_report_is_one_self_contained_file_with_plots(known, tmp_path):
    for cell in CELLS:  # trials, so that anytime curves exist
        for strategy in ("random", "a"):
            add_cell_run(known, cell, strategy, 0.5, seed=7, trials=[("ok", 1.0), ("ok", 4.0)])
    out = report.write(known, tmp_path / "report.html", figures_dir=tmp_path / "figures")
    text = out.read_text()
    written = {p.name: p.read_bytes() for p in (tmp_path / "figures").iterdir()}
    assert "critical-difference-diagram.png" in written  # each plot as a file too, the same bytes as inline
    assert {base64.b64encode(data).decode() for data in written.values()} == set(
        re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", text))
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)  # nothing fetched from anywhere
    assert "http://" not in text and "https://" not in text
    images = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", text)
    assert len(images) >= 2  # the critical-difference diagram and at least one anytime plot
    for data in images:
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
    assert "Friedman (scipy.stats.friedmanchisquare) over" in text and "Ranking policy" in text
    assert "(baseline)" not in text  # the hand-made runs record no baselines: none may be invented


@pytest.mark.skipif(not shutil.which("chromium"), reason="Debian's chromium package is not installed")
def test_report_renders_in_headless_chromium(known, tmp_path):
    import numpy as np
    from PIL import Image

    out = report.write(known, tmp_path / "report.html")
    shot = tmp_path / "shot.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,1600",
                    out.as_uri()], check=True, capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.std() > 10  # text and tables, not a blank page
    assert (pixels < 128).mean() > 0.005


def test_report_and_compare_from_the_command_line(known, tmp_path):
    results = tmp_path  # `known` lives in tmp_path/tunebench.db
    result = tunebench("report", "--results", str(results), "--strategy", "a", "--out", str(tmp_path / "a.html"))
    assert result.returncode == 0 and (tmp_path / "a.html").stat().st_size > 1000
    other = tmp_path / "other"
    store = Store.open(other)
    add_cell_run(store, "m1", "a", 0.9)
    rows = json.loads(tunebench("compare", str(results), str(other), "--format", "json").stdout)
    both = [r for r in rows if r["in"] == "both"]
    assert len(both) == 1 and both[0]["model_family"] == "m1" and both[0]["strategy"] == "a"
    assert both[0]["test_a"] == pytest.approx(0.6) and both[0]["delta"] == pytest.approx(0.3)
    assert sum(r["in"] == "A only" for r in rows) == 11
    ranking = tunebench("leaderboard", "--results", str(results), "--strategies", "--format", "md")
    assert ranking.returncode == 0, ranking.stderr
    rows = {line.split("|")[1].strip(): line for line in ranking.stdout.splitlines() if line.startswith("| ")}
    assert "1.250" in rows["b"] and "2.750" in rows["random"]  # the mean ranks of the known cells
    assert "Friedman (scipy.stats.friedmanchisquare) over 4 cells" in ranking.stdout
    assert tunebench("leaderboard", "--results", str(results), "--strategies", "--format", "csv").returncode == 2
    latex = tunebench("leaderboard", "--results", str(results), "--format", "latex").stdout
    assert "\\begin{tabular}" in latex
