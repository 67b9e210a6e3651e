"""Searches on the simulated clock: a table answers, the clock advances by what it recorded.

Everything here runs against `scripted_table` (tunebench.testing.scripted), whose curves and times
are known in closed form, so every assertion is arithmetic on the simulated clock: nothing depends
on how fast this machine is.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import TESTING_PLUGINS, tunebench, write_suite
from tunebench.registry import load_plugins
from tunebench.settings import SearchSettings
from tunebench.simulation import GUARD_SHARE, simulate
from tunebench.space import FixedHyperParameters
from tunebench.strategies import SearchStrategy
from tunebench.vocabulary import TrialStatus

CATALOG = load_plugins([TESTING_PLUGINS])
#: Every built-in single-objective strategy, with options that suit a 5-epoch table.
STRATEGIES = {
    "random": {}, "grid": {}, "optuna_random": {}, "optuna_tpe": {"n_startup_trials": 3},
    "optuna_cmaes": {"n_startup_trials": 3}, "optuna_gp": {"n_startup_trials": 3}, "kt_random": {},
    "kt_bayesian": {"num_initial_points": 3}, "kt_hyperband": {"max_epochs": 5, "hyperband_iterations": 20},
    "asha": {"min_epochs": 1, "max_epochs": 5}, "pbt": {"population": 3, "max_epochs": 5},
}


def table(**options):
    return CATALOG.tables.get("scripted_table")(**options)


def run(strategy="random", options=None, *, seed=0, budget_s=600.0, settings=None, lanes=1, tbl=None,
        task="bowl", **kw):
    cls = CATALOG.strategies.get(strategy)
    opts = dict(options or {}, **({"parallel_trials": lanes} if lanes > 1 else {}))
    return simulate(tbl or table(), task, lambda: cls(**opts), seed=seed, budget_s=budget_s,
                    settings=settings or SearchSettings(first_trial="none", sampler_time="apart"), lanes=lanes,
                    charge_sampler=False, **kw)


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_every_strategy_runs_unchanged_on_the_simulated_clock_and_keeps_its_budget(strategy):
    tbl = table(nan=[8], fail=[9])
    budget = 300.0 if strategy in ("kt_bayesian", "optuna_gp") else 900.0  # their own fits cost seconds a trial
    result = run(strategy, STRATEGIES[strategy], tbl=tbl, budget_s=budget)
    assert result.error is None, result.error
    rows = result.trials
    assert len(rows) >= 5, f"{strategy} ran {len(rows)} trials"
    assert [r["number"] for r in rows] == list(range(len(rows)))
    assert all(r["finished_at"] <= budget + 1e-9 for r in rows)  # nothing past the deadline
    assert all(r["status"] in TrialStatus.__members__.values() and r["status"] != TrialStatus.RUNNING for r in rows)
    for r in rows:  # each trial's time is what the table says it costs, for the epochs it ran
        cost = 10.0 * (1 + r["params"]["x"] / 10)
        if r["status"] == TrialStatus.OK:
            initial = r["notes"].get("initial_epoch", 0)
            assert r["finished_at"] - r["started_at"] == pytest.approx(2.0 + cost * (r["epochs_done"]), abs=1e-6)
            assert r["epochs_done"] == r["epoch_budget"] - initial
        if r["params"]["x"] == 8 and r["status"] != TrialStatus.TIMEOUT and r["epoch_budget"] > 2:
            assert r["status"] == TrialStatus.NAN and r["epochs_done"] == max(0, 2 - r["notes"].get("initial_epoch", 0))
        if r["params"]["x"] == 9 and r["status"] != TrialStatus.TIMEOUT:
            assert r["status"] == TrialStatus.FAILED and r["epochs_done"] == 0
    assert result.run["best_val"] == max(r["score"] for r in rows if r["score"] is not None
                                         and r["status"] in TrialStatus.selectable())


@pytest.mark.parametrize("strategy", ["random", "optuna_tpe", "kt_hyperband", "asha", "pbt", "grid"])
def test_the_same_seed_gives_the_same_trials(strategy):
    keep = ("number", "params", "status", "score", "started_at", "finished_at", "epoch_budget")
    first = [{k: r[k] for k in keep} for r in run(strategy, STRATEGIES[strategy], seed=3).trials]
    again = [{k: r[k] for k in keep} for r in run(strategy, STRATEGIES[strategy], seed=3).trials]
    other = [{k: r[k] for k in keep} for r in run(strategy, STRATEGIES[strategy], seed=4).trials]
    assert first == again
    assert first != other


class Fixed(SearchStrategy):
    """Runs the given configurations in order (with their epochs and continuations)."""

    name = "fixed_sequence"
    plan: list = []

    def search(self, ctx):
        for values, kwargs in self.plan:
            ctx.run_trial(FixedHyperParameters(values), **kwargs)


def sequence(plan, budget_s, *, settings=None, tbl=None):
    Fixed.plan = plan
    return simulate(tbl or table(), "bowl", Fixed, seed=0, budget_s=budget_s,
                    settings=settings or SearchSettings(first_trial="none", sampler_time="apart"),
                    charge_sampler=False)


def test_the_deadline_cuts_a_trial_at_the_last_epoch_that_fits_and_keeps_its_epochs():
    # x = 0: 2 s to start, 10 s an epoch. 30 s: the first trial runs 2 + 5 x 10 = 52 s, cut after 2 epochs.
    result = sequence([({"x": 0, "lr": 0.01, "kind": "a"}, {})], 30.0,
                      settings=SearchSettings(first_trial="none", feasibility_guard=False))
    (row,) = result.trials
    assert row["status"] == TrialStatus.TIMEOUT and row["error_kind"] == "deadline"
    assert row["epochs_done"] == 2 and row["score"] == pytest.approx(table().curve("bowl", row["params"], 0).scores[1])
    assert row["finished_at"] == pytest.approx(30.0)  # the third epoch ran until the deadline stopped it
    guarded = sequence([({"x": 0, "lr": 0.01, "kind": "a"}, {})], 30.0).trials[0]
    assert guarded["epochs_done"] == 2 and guarded["finished_at"] == pytest.approx(22.0)  # not started: it cannot end


def test_continuation_pays_only_its_new_epochs():
    config = {"x": 0, "lr": 0.01, "kind": "a"}
    result = sequence([(config, {"epochs": 2, "checkpoint": True}), (config, {"epochs": 5, "resume_from": 0}),
                       (config, {"epochs": 5, "resume_from": 7})], 10_000.0)
    first, second, missing = result.trials
    assert first["finished_at"] - first["started_at"] == pytest.approx(2.0 + 2 * 10.0)
    assert second["notes"]["initial_epoch"] == 2 and second["epochs_done"] == 3
    assert second["finished_at"] - second["started_at"] == pytest.approx(2.0 + 3 * 10.0)  # start-up, then 3 epochs
    assert second["score"] == pytest.approx(table().curve("bowl", config, 0).scores[4])
    assert "resume_skipped" in missing["notes"] and missing["epochs_done"] == 5  # no checkpoint: from scratch


def test_the_feasibility_guard_turns_away_a_first_epoch_that_cannot_end_and_charges_its_first_steps():
    config = {"x": 9, "lr": 0.01, "kind": "a"}  # 19 s an epoch
    result = sequence([({"x": 0, "lr": 0.01, "kind": "a"}, {"epochs": 1}), (config, {})], 25.0)
    turned = result.trials[1]
    assert turned["status"] == TrialStatus.TIMEOUT and turned["error_kind"] == "infeasible"
    assert turned["epochs_done"] == 0
    assert turned["finished_at"] - turned["started_at"] == pytest.approx(2.0 + GUARD_SHARE * 19.0)


def test_a_draw_turned_away_in_the_tail_ends_the_search_as_on_the_real_clock():
    # First epochs of 12 s (x = 0) and 21 s (x = 9): median 16.5 s, least 12 s. At 52 s the third
    # trial (x = 9 again) has 19 s and is turned away, leaving 16.05 s: under the median, the search
    # ends. Without the rule two more x = 9 draws were turned away until 12 s no longer fit.
    quick, slow = {"x": 0, "lr": 0.01, "kind": "a"}, {"x": 9, "lr": 0.01, "kind": "a"}
    result = sequence([(quick, {"epochs": 1}), (slow, {"epochs": 1})] + [(slow, {"epochs": 1})] * 4, 52.0)
    statuses = [(t["status"], t["error_kind"]) for t in result.trials]
    assert statuses == [(TrialStatus.OK, None), (TrialStatus.OK, None), (TrialStatus.TIMEOUT, "infeasible")]
    assert 52.0 - result.trials[-1]["finished_at"] == pytest.approx(16.05)


def test_min_trials_caps_each_trial_at_its_share_of_the_time_left():
    config = {"x": 0, "lr": 0.01, "kind": "a"}
    result = sequence([(config, {})] * 3, 120.0, settings=SearchSettings(first_trial="none", min_trials=3))
    first = result.trials[0]
    assert first["notes"]["min_trials_cap_s"] == pytest.approx(40.0)
    assert first["epochs_done"] == 3 and first["status"] == TrialStatus.TIMEOUT  # 2 + 3 x 10 fits in 40, not 4


def test_the_tables_default_configuration_runs_first():
    result = run("random", budget_s=300.0, settings=SearchSettings(first_trial="defaults", sampler_time="apart"))
    first = result.trials[0]
    assert first["notes"].get("family_default") and first["params"] == table().default("bowl")
    assert result.run["default_trial"] == 0 and result.run["default_val"] == first["score"]
    assert result.run["default_test_score"] == pytest.approx(first["notes"]["test_score"])


def test_parallel_lanes_overlap_in_simulated_time_and_share_one_search():
    serial = run("random", budget_s=300.0)
    two = run("random", budget_s=300.0, lanes=2)
    assert {r["lane"] for r in two.trials} == {0, 1}
    assert len(two.trials) >= 1.8 * len(serial.trials)
    spans = sorted((r["started_at"], r["finished_at"]) for r in two.trials)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:]))  # two trials in flight at once
    # random proposes by trial number: the same configurations as the serial search, only sooner
    by_number = {r["number"]: r["params"] for r in two.trials}
    assert all(by_number[r["number"]] == r["params"] for r in serial.trials if r["number"] in by_number)


def test_asha_lanes_see_each_others_trials_and_promote_each_once():
    result = run("asha", {"min_epochs": 1, "max_epochs": 5, "eta": 2}, budget_s=2_000.0, lanes=3)
    promoted = [r["notes"].get("resumed_from") for r in result.trials if r["notes"].get("resumed_from") is not None]
    assert promoted and len(promoted) == len(set(promoted))  # claimed once across the lanes
    lanes_of = {r["number"]: r["lane"] for r in result.trials}
    assert any(lanes_of[p] != r["lane"] for r in result.trials if (p := r["notes"].get("resumed_from")) is not None)


def test_a_strategys_sampler_time_is_charged_to_the_clock_or_reported_apart():
    import time

    class Slow(SearchStrategy):
        name = "slow"

        def search(self, ctx):
            while True:
                time.sleep(0.05)  # a sampler that thinks for 50 ms
                ctx.run_trial(FixedHyperParameters({"x": 0, "lr": 0.01, "kind": "a"}), epochs=1)

    settings = SearchSettings(first_trial="none")
    charged = simulate(table(), "bowl", Slow, seed=0, budget_s=60.0, settings=settings, charge_sampler=True)
    apart = simulate(table(), "bowl", Slow, seed=0, budget_s=60.0, settings=settings, charge_sampler=False)
    gaps = [b["started_at"] - a["finished_at"] for a, b in zip(charged.trials, charged.trials[1:])]
    assert all(g >= 0.05 for g in gaps) and charged.run["sampler_seconds"] >= 0.05 * len(gaps)
    assert [b["started_at"] - a["finished_at"] for a, b in zip(apart.trials, apart.trials[1:])] == [0.0] * (
        len(apart.trials) - 1)
    assert all(r["timings"]["sampler"] >= 0.05 for r in apart.trials[1:])  # measured, not charged


SUITE = """
name: tiny_simulated
budget: rule
seeds: 2
sampler_time: apart
tables:
  - scripted_table: {{tasks: [bowl, ridge], nan: [8]}}
strategies:
  - random
  - optuna_tpe: {{n_startup_trials: 3, seeds: [0, 1, 2]}}
  - asha: {{min_epochs: 1, max_epochs: 5}}
"""


def test_a_suite_of_tables_runs_from_the_command_line_into_one_store_and_the_leaderboard(tmp_path):
    suite = write_suite(tmp_path / "sim.yaml", SUITE.format())
    checked = tunebench("validate", str(suite), "--plugin", TESTING_PLUGINS)
    assert checked.returncode == 0, checked.stderr
    assert "14 simulated searches" in checked.stdout  # 2 tasks x (2 + 3 + 2 seeds)
    done = tunebench("run", str(suite), "--results", str(tmp_path / "r"), "--plugin", TESTING_PLUGINS, "--workers", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    runs = json.loads(tunebench("runs", "--results", str(tmp_path / "r"), "--format", "json").stdout)
    assert len(runs) == 14 and all(r["status"] == "ok" and r["simulated"] for r in runs)
    assert {r["dataset_label"] for r in runs} == {"scripted_table/bowl", "scripted_table/ridge"}
    rule = 90  # ⌈20 + 40·√3⌉ full evaluations of the 3-dimensional space
    assert {round(r["budget_s"], 6) for r in runs} == {round(table().full_evaluation_s("bowl") * rule, 6)}
    assert all(r["table"]["name"] == "scripted_table" and r["table"]["optimum"] for r in runs)
    again = tunebench("run", str(suite), "--results", str(tmp_path / "r"), "--plugin", TESTING_PLUGINS)
    assert again.returncode == 0 and "simulated search" not in again.stderr  # finished: nothing runs again
    board = tunebench("leaderboard", "--results", str(tmp_path / "r"))
    assert "scripted_table/bowl" in board.stdout and "optuna_tpe" in board.stdout


STUCK = '''
import time

from tunebench import SearchStrategy, hookimpl


class Stuck(SearchStrategy):
    """A sampler that never answers (a model fit that takes hours)."""

    name = "stuck"

    def search(self, ctx):
        open(STARTED, "a").close()
        while True:
            time.sleep(0.1)


@hookimpl
def tunebench_register_search_strategies(registry):
    registry.add(Stuck)
'''


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_signal_stops_simulated_searches_now_not_after_every_search_queued(tmp_path, sig):
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT

    started = tmp_path / "started"
    (tmp_path / "stuck_plugin.py").write_text(f"STARTED = {str(started)!r}\n" + STUCK)
    suite = write_suite(tmp_path / "stuck.yaml", "name: stuck\nbudget: 1h\nseeds: 6\ntables:\n  - scripted_table\n"
                                                 "strategies:\n  - stuck\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-m", "tunebench.cli", "run", str(suite), "--results",
                             str(tmp_path / "r"), "--plugin", TESTING_PLUGINS, "--plugin", "stuck_plugin",
                             "--workers", "2"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True,
                            # as from a terminal: a job started in the background of a script inherits
                            # SIGINT ignored, and Python then leaves it ignored
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        for _ in range(1200):  # room for a loaded machine: up to 2 minutes to load and start
            if started.exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert started.exists(), proc.communicate(timeout=5)
        proc.send_signal(getattr(signal, sig))  # only the parent: a scheduler's `kill`
        _, err = proc.communicate(timeout=120)  # 12 queued searches of an hour each: it must not wait for them
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0
    assert "run the same command again to resume" in err


def test_at_bounds_counts_the_searched_numbers_at_an_end_of_their_range():
    from tunebench.tables import at_bounds

    assert at_bounds(table(), "bowl", {"x": 9, "lr": 0.1, "kind": "a"}) == (2, 2)  # a corner
    assert at_bounds(table(), "bowl", {"x": 0, "lr": 0.010000000000000002, "kind": "b"}) == (1, 2)
    assert at_bounds(table(), "bowl", {"x": 4, "lr": 0.05, "kind": "b"}) == (0, 2)
    assert at_bounds(table(params={"x": 9}), "bowl", {"x": 9, "lr": 0.05, "kind": "a"}) == (0, 1)  # x is pinned


def test_a_surrogate_tables_run_records_where_its_selection_sits_in_the_box():
    surrogate = CATALOG.tables.get("scripted_surrogate")()

    class Picks(SearchStrategy):
        name = "picks"
        configs: list = []

        def search(self, ctx):
            for config in self.configs:
                ctx.run_trial(FixedHyperParameters(config))

    Picks.configs = [{"x": 9, "lr": 0.1, "kind": "b"}, {"x": 5, "lr": 0.02, "kind": "b"}]  # the corner scores best
    done = simulate(surrogate, "bowl", Picks, seed=0, budget_s=600.0,
                    settings=SearchSettings(first_trial="none", sampler_time="apart"), charge_sampler=False)
    assert done.run["best_params"]["x"] == 9
    assert done.run["table"]["surrogate"] is True and done.run["table"]["selected_at_bounds"] == [2, 2]
    Picks.configs = [{"x": 5, "lr": 0.1, "kind": "b"}]
    assert simulate(surrogate, "bowl", Picks, seed=0, budget_s=600.0,
                    settings=SearchSettings(first_trial="none", sampler_time="apart"),
                    charge_sampler=False).run["table"]["selected_at_bounds"] == [1, 2]
    plain = simulate(table(), "bowl", Picks, seed=0, budget_s=600.0,
                     settings=SearchSettings(first_trial="none", sampler_time="apart"), charge_sampler=False)
    assert "surrogate" not in plain.run["table"] and "selected_at_bounds" not in plain.run["table"]


def test_two_runners_on_one_store_never_run_a_simulated_search_twice(tmp_path, monkeypatch):
    """Simulated searches take the store's claims as real ones do: a live runner's claim is left to
    it, a dead one's is taken over, and a search finished by another runner is skipped."""
    import subprocess
    import sys

    from tunebench import simulation
    from tunebench.store import Store
    from tunebench.suite import load_suite

    suite = write_suite(tmp_path / "two.yaml", "name: two\nbudget: 10m\nseeds: 3\nfirst_trial: none\ntables:\n"
                                               "  - scripted_table: {tasks: [bowl]}\nstrategies:\n  - random\n")
    first, second, third = load_suite(suite, CATALOG).searches()
    store = Store.open(tmp_path / "r")
    monkeypatch.setattr(simulation, "_WORKER", {"catalog": CATALOG, "store": store, "tables": {}})
    host = simulation.socket.gethostname()

    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert store.claim(first.key, f"{host}:{alive.pid}:1")  # a runner at work on it
        held = simulation.run_one(first)
        assert held.status == "skipped" and "being run by another runner" in held.note
        assert store.runs() == []
    finally:
        alive.kill()
        alive.wait()
    taken = simulation.run_one(first)  # that runner died: its claim is taken over
    assert taken.status == "ok" and len(store.runs()) == 1
    assert store.claim_of(first.key)["run_id"] == taken.run_id  # kept, bound to the finished run

    assert simulation.run_one(first).status == "skipped"  # finished by another runner: not again
    assert store.claim(second.key, "elsewhere:123:1")  # another machine, claimed just now
    assert simulation.run_one(second).status == "skipped"
    monkeypatch.setattr(simulation, "FOREIGN_CLAIM_S", -1.0)  # ... and long ago: stale
    assert simulation.run_one(second).status == "ok"
    assert simulation.run_one(third).status == "ok"
    runs = store.runs()
    assert sorted(r["search_key"] for r in runs) == sorted(s.key for s in (first, second, third))
