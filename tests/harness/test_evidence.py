"""Claims only with their evidence: rank groups, power notes, regret, profiles, speed-ups, protocols.

Everything is checked on constructed data whose answer is known, or on simulated searches of
`scripted_table`, whose optimum is known in closed form.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tests.conftest import TESTING_PLUGINS, tunebench, write_suite
from tunebench import analysis, evidence, leaderboard, protocols
from tunebench.store import Store


def blocks(n, effects, *, seed=0, noise=0.02):
    """n blocks of scores: each strategy's score is the block's level plus its effect plus noise."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(0.5, 0.8, n)
    return pd.DataFrame({s: level + e + rng.normal(0, noise, n) for s, e in effects.items()})


def test_two_equal_strategies_share_a_rank_group_and_a_clearly_better_one_stands_alone():
    scores = blocks(20, {"best": 0.10, "a": 0.0, "b": 0.0})
    ranked = list(scores.mean().sort_values(ascending=False).index)
    tests = evidence.pairwise(scores, ranked)
    assert ranked[0] == "best"
    assert bool(tests.significant.loc["best", "a"]) and bool(tests.significant.loc["best", "b"])
    assert not bool(tests.significant.loc["a", "b"])
    assert tests.groups["best"] == "a" and tests.groups["a"] == tests.groups["b"] == "b"
    assert tests.rank_label("best") == "1" and {tests.rank_label("a"), tests.rank_label("b")} == {"2–3"}
    # Holm's correction: the smallest raw p is multiplied by the number of pairs
    raw = sorted(tests.p_raw.values[np.triu_indices(3, 1)])
    assert sorted(tests.p_holm.values[np.triu_indices(3, 1)])[0] == pytest.approx(min(1.0, 3 * raw[0]))


def test_rank_groups_follow_the_tests_even_when_a_group_is_not_consecutive():
    # The simulated study at 100 % of the budget: TPE (1st) differs from PBT and Hyperband (2nd,
    # 3rd here) but not from grid (4th); grid differs from none of them.
    order = ["tpe", "pbt", "hyperband", "grid"]
    significant = pd.DataFrame(False, index=order, columns=order)
    for other in ("pbt", "hyperband"):
        significant.loc["tpe", other] = significant.loc[other, "tpe"] = True
    groups = evidence.letters(order, significant)
    for a in order:
        for b in order:
            shared = bool(set(groups[a]) & set(groups[b]))
            assert shared == (not significant.loc[a, b]), (a, b, groups)
    assert groups == {"tpe": "a", "pbt": "b", "hyperband": "b", "grid": "ab"}


def test_with_too_few_blocks_nothing_is_called_different():
    scores = blocks(4, {"best": 0.10, "a": 0.0, "b": 0.0})  # no Wilcoxon test can reach 0.05 with 4
    tests = evidence.pairwise(scores, ["best", "a", "b"])
    assert not tests.significant.values.any()
    assert set(tests.groups.values()) == {"a"} and tests.rank_label("b") == "1–3"


def test_the_power_note_on_a_known_effect_size():
    # d_z = 0.5: a paired t test needs 33.4 pairs at alpha 0.05 with 80 % power; Wilcoxon 3/pi more
    assert evidence.blocks_needed(0.5) == math.ceil(33.367 / (3 / math.pi))
    assert evidence.blocks_needed(1.0) == math.ceil(9.938 / (3 / math.pi))
    assert evidence.blocks_needed(0.0) is None
    diffs = np.array([0.01, 0.03] * 5)  # mean 0.02, sd 0.0105: d_z = 1.897
    scores = pd.DataFrame({"a": 0.5 + diffs, "b": np.full(10, 0.5)})
    note = evidence.power_note(scores, "a", "b", None)
    assert note.effect_size == pytest.approx(0.02 / np.std(diffs, ddof=1))
    assert note.needed == evidence.blocks_needed(note.effect_size) and note.blocks == 10
    assert f"about {note.needed} seeds; there are 10" in note.sentence("seeds")


def _store_with(tmp_path, effects, seeds=12):
    """A store of one cell: each strategy's test score per seed, as a search's run would record it."""
    from tests.harness.test_leaderboard import add_run

    store = Store.open(tmp_path)
    scores = blocks(seeds, effects, seed=1)
    for strategy in effects:
        for seed in range(seeds):
            add_run(store, model="m", strategy=strategy, seed=seed, test=float(scores[strategy][seed]),
                    key=f"{strategy}-{seed}")
    return store


def test_the_reports_words_change_when_significance_changes(tmp_path):
    clear = leaderboard.render_strategies(_store_with(tmp_path / "a", {"random": 0.0, "good": 0.2, "same": 0.0}))
    assert "The strategies differ" in clear and "good is significantly better than random and same" in clear
    murky = leaderboard.render_strategies(_store_with(tmp_path / "b", {"random": 0.0, "good": 0.001, "same": 0.0}))
    assert "do not differ significantly" in murky and "significantly better" not in murky
    assert "To tell" in murky and "more)" in murky  # the power note says how many more seeds
    board = leaderboard.build(_store_with(tmp_path / "c", {"random": 0.0, "good": 0.001, "same": 0.0}))
    assert set(board.loc[board["kind"] == "search", "rank_range"]) == {"1–3"}  # no bare 1, 2, 3
    board = leaderboard.build(_store_with(tmp_path / "d", {"random": 0.0, "good": 0.2, "same": 0.0}))
    top = board[board["kind"] == "search"].set_index("strategy")
    assert top.loc["good", "rank_range"] == "1" and top.loc["random", "rank_range"] == "2–3"


def _simulated_store(tmp_path, strategies, seeds=3, tasks=("bowl", "ridge")):
    tasks_list = ", ".join(tasks)
    suite = write_suite(tmp_path / "s.yaml", f"""
budget: rule
seeds: {seeds}
first_trial: none
sampler_time: apart
tables:
  - scripted_table: {{tasks: [{tasks_list}]}}
strategies: [{", ".join(strategies)}]
""")
    done = tunebench("run", str(suite), "--results", str(tmp_path / "r"), "--plugin", TESTING_PLUGINS)
    assert done.returncode == 0, done.stderr[-2000:]
    return Store.open(tmp_path / "r", readonly=True)


def test_regret_is_normalised_by_the_tables_known_optimum(tmp_path):
    from tunebench.testing.scripted import ScriptedTable

    store = _simulated_store(tmp_path, ["random"], seeds=2)
    runs = leaderboard.latest_runs(store)
    trials = store.trial_frame([int(i) for i in runs["id"]])
    study = analysis.anytime_study(runs, trials)
    assert study is not None and study.optimum == "the table's optimum"
    for task in ("bowl", "ridge"):
        mine = runs[runs["dataset_label"] == f"scripted_table/{task}"]
        optimum = ScriptedTable().optimum(task)
        assert all(r["table"]["optimum"] == pytest.approx(optimum) for r in mine.to_dict("records"))
        ids = [int(i) for i in mine["id"]]
        low = float(trials[trials["run_id"].isin(ids) & trials["score"].notna()]["score"].min())
        finals = [(optimum - float(r["best_val"])) / (optimum - low) for r in mine.to_dict("records")]
        assert min(finals) >= 0
    # the regret at 100 % is the median over cells of each cell's median over seeds
    per_cell = []
    for task in ("bowl", "ridge"):
        mine = runs[runs["dataset_label"] == f"scripted_table/{task}"]
        ids = [int(i) for i in mine["id"]]
        low = float(trials[trials["run_id"].isin(ids) & trials["score"].notna()]["score"].min())
        optimum = ScriptedTable().optimum(task)
        per_cell.append(np.median([(optimum - b) / (optimum - low) for b in mine["best_val"]]))
    assert study.at_fraction.loc["random", "100%"] == pytest.approx(np.median(per_cell), abs=1e-9)


def test_profiles_speedups_and_costs_from_a_simulated_study(tmp_path):
    store = _simulated_store(tmp_path, ["random", "optuna_tpe", "grid"])
    runs = leaderboard.latest_runs(store)
    trials = store.trial_frame([int(i) for i in runs["id"]])
    study = analysis.anytime_study(runs, trials)
    assert study.profile.index[0] == 0.0 and (study.profile.loc[1.0] == 1.0).all()  # every cell within 1
    best_share = study.profile.loc[0.0]
    assert best_share.max() > 0  # someone is best somewhere
    assert study.speedup.loc["random", "speedup_median"] == pytest.approx(1.0)  # random against itself
    costs = analysis.costs(runs, trials)
    assert set(costs.index) == {"random", "optuna_tpe", "grid"}
    assert (costs["training_share"] <= 1.0 + 1e-9).all() and costs["sampler_s_per_trial"].notna().all()
    assert costs.loc["optuna_tpe", "sampler_s_per_trial"] > costs.loc["random", "sampler_s_per_trial"]
    text = leaderboard.render_strategies(store)
    assert "Performance profile" in text and "speed-up vs random" in text and "at 25% of the budget" in text
    assert "Surrogate corners" not in text  # scripted_table is not a surrogate


def test_the_leaderboard_flags_selections_at_a_corner_of_a_surrogates_box(tmp_path):
    from tunebench.tables import at_bounds
    from tunebench.testing.scripted import ScriptedSurrogate

    suite = write_suite(tmp_path / "s.yaml", """
budget: rule
seeds: 2
first_trial: none
sampler_time: apart
tables:
  - scripted_surrogate: {tasks: [bowl]}
strategies: [random, grid]
""")
    done = tunebench("run", str(suite), "--results", str(tmp_path / "r"), "--plugin", TESTING_PLUGINS)
    assert done.returncode == 0, done.stderr[-2000:]
    store = Store.open(tmp_path / "r", readonly=True)
    runs = leaderboard.latest_runs(store).to_dict("records")
    corners = {"random": 0, "grid": 0}
    for r in runs:  # what each run recorded is what its selection says
        hit, numeric = at_bounds(ScriptedSurrogate(), "bowl", r["best_params"])
        assert r["table"]["selected_at_bounds"] == [hit, numeric] and numeric == 2
        corners[r["strategy_label"]] += hit == numeric
    assert corners["grid"] == 2  # the grid's ends include the corner the surrogate rises to
    text = leaderboard.render_strategies(store)
    assert "Surrogate corners" in text and "(scripted_surrogate)" in text
    assert "grid 2 of 2" in text and f"random {corners['random']} of 2" in text


def test_a_suite_declaring_the_benchmark_protocol_is_told_what_it_lacks(tmp_path):
    suite = write_suite(tmp_path / "p.yaml", """
protocol: benchmark
budget: 1h
seeds: 3
tables: [scripted_table]
strategies: [random]
""")
    checked = tunebench("validate", str(suite), "--plugin", TESTING_PLUGINS)
    assert checked.returncode == 2 and "Traceback" not in checked.stderr
    assert "2 task(s)" in checked.stderr and "needs at least 20" in checked.stderr
    assert "fewer than 10 seeds" in checked.stderr and "budget: rule" in checked.stderr
    store = _simulated_store(tmp_path, ["random"], seeds=2)
    met, lacks = protocols.results_meet(leaderboard.latest_runs(store), protocols.PROTOCOLS["benchmark"])
    assert not met and any("2 tasks" in x for x in lacks) and any("2 seeds" in x for x in lacks)


def test_the_corner_note_counts_selections_with_all_but_one_number_at_a_bound():
    def run(strategy, hit, numeric=7, surrogate=True):
        return {"strategy_label": strategy,
                "table": {"name": "lcbench", "surrogate": surrogate, "selected_at_bounds": [hit, numeric]}}

    rows = [run("gp", 7), run("gp", 6), run("gp", 3), run("bayes", 6), run("bayes", 6), run("random", 2),
            run("random", 7, surrogate=False)]
    note = analysis.surrogate_corners(pd.DataFrame(rows))
    assert note is not None and "(or all but one)" in note
    assert "gp 1 of 3 (+1 with all but one) · bayes 0 of 2 (+2 with all but one) · random 0 of 1." in note
    assert analysis.surrogate_corners(pd.DataFrame([run("gp", 5), run("gp", 1, numeric=2)])) is None
