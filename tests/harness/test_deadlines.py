"""Budgets that serve the search: trials on record from their start, weights that agree with the
record, a deadline checked often enough for any model, the feasibility guard, searches that go on
after a trial is killed, the family default first, and intervals that stay inside a score's range.

Every test here uses the scripted test-double family, whose speed is set by the test (sleeps, or
convolutions of a known cost), or budgets with room: none depends on a real model finishing an
epoch within a few seconds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import TESTING_PLUGINS, tunebench, write_suite
from tunebench import leaderboard
from tunebench.budget import allowed_overshoot
from tunebench.runner import KILL_AT
from tunebench.store import Store
from tunebench.testing import run_search


def _run(tmp_path: Path, text: str, *plugins: str) -> tuple[Store, list[dict], Path]:
    suite = write_suite(tmp_path / "suite.yaml", text)
    results = tmp_path / "results"
    args = [a for p in (TESTING_PLUGINS, *plugins) for a in ("--plugin", p)]
    result = tunebench("run", str(suite), "--results", str(results), *args)
    store = Store.open(results)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return store, store.runs(), results


def test_a_slow_step_model_under_auto_steps_per_execution_stops_at_its_deadline_without_a_kill(tmp_path):
    """Few parameters, many FLOPs, many batches per epoch: the parameter-count rule would have run 26
    slow batches per compiled call (seconds between deadline checks); the measured step keeps calls
    short. The guard is off: this is the deadline's own cooperative stop. The budget leaves room for
    tracing the training step on a loaded machine (it once took most of an 8 s budget), and the
    epoch (525 steps of about 0.05 s or more) cannot end inside it, so no validation pass starts;
    a call of 26 such batches would still overrun the runner's grace."""
    store, runs, _ = _run(tmp_path, """
budget: 12s
max_epochs: 1
first_trial: none
feasibility_guard: false
datasets: [{synthetic: {size: 32, channels: 3, classes: 4, samples: 24000}}]
model_families: [{scripted: {heavy: 3}}]
strategies: [random]
""")
    run = runs[0]
    assert run["stop_reason"] == "budget", run  # stopped by the trial itself, not "killed" by the runner
    assert run["finished_at"] - run["started_at"] <= run["budget_s"] + KILL_AT * allowed_overshoot(run["budget_s"])
    trial = store.trials([run["id"]])[0]
    assert trial["status"] == "timeout" and trial["error_kind"] == "deadline"
    notes = trial["notes"]
    # one compiled call of the chosen size takes about the target, far inside the runner's grace
    assert notes["steps_per_execution"] * notes["step_seconds"] <= 1.0, notes
    assert notes["steps_per_execution"] < 26


def test_the_feasibility_guard_stops_a_trial_that_cannot_finish_its_first_epoch_and_the_next_runs(tmp_path):
    # 33 batches x 1 s = a 33 s first epoch against a 20 s budget: hopeless, and the guard says so early
    store, run_id, _ = run_search(tmp_path, model_family="scripted", budget_s=20, max_epochs=2,
                                  model_options={"script": ["slow"], "batch_sleep": 1.0, "params": {"epochs": 1}},
                                  dataset_options={"limit": 1500}, strategy_options={"max_trials": 2})
    trials = store.trials([run_id])
    first, second = trials[0], trials[1]
    assert first["status"] == "timeout" and first["error_kind"] == "infeasible"
    assert "projected" in first["error"] and "feasibility guard" in first["error"]
    assert first["notes"]["feasibility"]["stopped"] is True
    assert first["notes"]["feasibility"]["first_epoch_s"] > first["notes"]["feasibility"]["left_s"]
    assert first["finished_at"] - first["started_at"] < 10  # stopped after its first steps, not at the deadline
    assert first["params"] and first["param_count"]  # on record although it never finished an epoch
    assert second["status"] == "ok" and second["score"] is not None
    assert store.run(run_id)["status"] == "ok"


def test_a_draw_estimated_hopeless_at_build_time_is_not_trained_and_the_next_runs(tmp_path, monkeypatch):
    # The step time timed at build time (a forward pass) says the first draw needs far more than the
    # search has: it is stopped before `fit` (no tracing, no steps) with its estimate and reason.
    from tunebench import training

    real, calls = training.estimate_step_seconds, []

    def estimate(model, sample, batch_size):
        calls.append(batch_size)
        return 5.0 if len(calls) == 1 else real(model, sample, batch_size)

    monkeypatch.setattr(training, "estimate_step_seconds", estimate)
    store, run_id, _ = run_search(tmp_path, model_family="scripted", budget_s=30, max_epochs=1,
                                  model_options={"params": {"epochs": 1, "batch_size": 32}},
                                  dataset_options={"limit": 1500}, strategy_options={"max_trials": 2},
                                  # the cost model would time the first step (the estimate patched here)
                                  search_options={"first_trial": "none", "cost_aware_space": False})
    first, second = store.trials([run_id])[:2]
    assert first["status"] == "timeout" and first["error_kind"] == "infeasible"
    assert "before training" in first["error"] and "estimated" in first["error"]
    feasibility = first["notes"]["feasibility"]
    assert feasibility["before_training"] is True and feasibility["stopped"] is True
    assert feasibility["estimated_epoch_s"] > training.PREFIT_FACTOR * feasibility["left_s"]
    assert first["epochs_done"] == 0 and "train" not in first["timings"]  # never traced nor stepped
    assert first["params"] and first["param_count"]
    assert second["status"] == "ok" and second["score"] is not None
    assert calls[0] == 32


def test_a_draw_turned_away_in_the_searchs_tail_ends_the_search(tmp_path, monkeypatch):
    # Two trials train (a quick one, then a slow one: their first epochs set the median), and every
    # later draw is estimated hopeless at build time. Draws are turned away while the search has at
    # least the median first epoch left; the first one turned away with less ends the search, where
    # before the search went on drawing (and counting against the strategy) until the quickest first
    # epoch no longer fit. The check holds however fast this machine trains.
    from tunebench import training

    real, calls = training.estimate_step_seconds, []

    def estimate(model, sample, batch_size):
        calls.append(batch_size)
        return real(model, sample, batch_size) if len(calls) <= 2 else 1000.0

    monkeypatch.setattr(training, "estimate_step_seconds", estimate)
    store, run_id, _ = run_search(tmp_path, model_family="scripted", budget_s=40, max_epochs=1,
                                  model_options={"script": ["ok", "slow"], "batch_sleep": 0.25,
                                                 "params": {"epochs": 1}},
                                  dataset_options={"limit": 1500},
                                  search_options={"first_trial": "none", "cost_aware_space": False})
    run, trials = store.run(run_id), store.trials([run_id])
    trained = [t for t in trials if t["epochs_done"]]
    away = [t for t in trials if t["error_kind"] == "infeasible"]
    assert len(trained) == 2 and away, [(t["status"], t["error_kind"]) for t in trials]
    median = sorted(t["timings"]["build"] + t["timings"]["first_epoch"] for t in trained)
    median = (median[0] + median[1]) / 2
    deadline = run["started_at"] + run["budget_s"]
    # 0.5 s of slack for the clock's start against the run's recorded start
    tail = [t for t in away if deadline - t["finished_at"] < median - 0.5]
    assert len(tail) <= 1 and (not tail or tail[0]["number"] == trials[-1]["number"])
    assert run["status"] == "ok"


def test_the_verdict_before_training_leaves_room_for_an_estimate_that_runs_high():
    from tunebench.training import PREFIT_FACTOR, prefit_verdict

    assert prefit_verdict(None, 1000, 32, 10.0) is None
    epoch_s, reason = prefit_verdict(0.5, 1000, 100, 10.0)  # 10 steps of 0.5 s: 5 s, fits
    assert epoch_s == pytest.approx(5.0) and reason is None
    # up to PREFIT_FACTOR times the time left is still left to the first steps to judge
    assert prefit_verdict(0.5, 1000, 100, 5.0 / PREFIT_FACTOR)[1] is None
    epoch_s, reason = prefit_verdict(0.5, 1001, 100, 2.0)  # 11 steps: 5.5 s against 2 s
    assert epoch_s == pytest.approx(5.5) and "estimated 6 s" in reason and "2 s were left for it" in reason
    assert prefit_verdict(0.5, 1000, 100, 3.0, margin=1.5)[1] is not None  # 7.5 > 2 x 3


def test_the_guard_can_be_switched_off(tmp_path):
    store, run_id, _ = run_search(tmp_path, model_family="scripted", budget_s=4, max_epochs=1,
                                  model_options={"script": ["slow"], "batch_sleep": 0.5, "params": {"epochs": 1}},
                                  dataset_options={"limit": 1500}, search_options={"feasibility_guard": False})
    first = store.trials([run_id])[0]
    assert first["status"] == "timeout" and first["error_kind"] == "deadline"
    assert "feasibility" not in (first["notes"] or {})


def test_min_trials_gives_each_trial_its_share_of_the_time_left(tmp_path):
    """Every draw wants 20 epochs of about 3.5 s (sleeps) in a 30 s search: without a cap the first
    would take it all. With min_trials: 3 each trial may use the time left over the scored trials
    still wanted, keeps its best epoch when cut, and the search ends with three scored trials."""
    store, run_id, _ = run_search(tmp_path, model_family="scripted", budget_s=30, max_epochs=20,
                                  model_options={"then": "slow", "batch_sleep": 0.1, "params": {"epochs": 20}},
                                  dataset_options={"limit": 1500},
                                  search_options={"min_trials": 3, "first_trial": "none"})
    run, trials = store.run(run_id), store.trials([run_id])
    scored = [t for t in trials if t["score"] is not None]
    assert len(scored) >= 3
    first, second = trials[0], trials[1]
    budget_end = run["started_at"] + run["budget_s"]
    for trial, wanted in ((first, 3), (second, 2)):
        cap = trial["notes"]["min_trials_cap_s"]
        # the time left when it started, over the scored trials still wanted (clock start to trial start: < 2 s)
        assert abs(cap - (budget_end - trial["started_at"]) / wanted) < 2.0
        assert trial["finished_at"] - trial["started_at"] <= cap + allowed_overshoot(cap)
        assert trial["status"] == "timeout" and trial["error_kind"] == "deadline" and trial["epochs_done"] >= 1
    assert "min_trials_cap_s" not in (trials[2]["notes"] or {})  # the last one wanted runs to the deadline


@pytest.mark.slow  # process-level faults (hangs, crashes, kill -9): the slow tier
@pytest.mark.parametrize("cause", ["trial_budget", "hang_timeout"])
def test_a_trial_killed_before_the_deadline_keeps_its_parameters_and_the_search_goes_on(tmp_path, cause):
    limit = "trial_budget: 3s" if cause == "trial_budget" else "hang_timeout: 3s"
    store, runs, _ = _run(tmp_path, f"""
budget: 60s
{limit}
max_epochs: 1
first_trial: none
datasets: [{{digits: {{limit: 600}}}}]
model_families: [{{scripted: {{script: [ok, hang]}}}}]
strategies: [{{random: {{max_trials: 3}}}}]
""")
    run = runs[0]
    trials = store.trials([run["id"]])
    assert [t["number"] for t in trials] == [0, 1, 2]
    killed = trials[1]
    assert killed["status"] == "timeout" and "killed by the runner" in killed["error"]
    assert ("trial budget" if cause == "trial_budget" else "no progress") in killed["error"]
    assert killed["params"].get("units") and killed["param_count"] and killed["epoch_budget"] == 1
    # a fresh process took over (where the scripted family's script starts again: ok)
    assert trials[2]["status"] == "ok"
    assert run["resumes"] == 1 and run["status"] == "ok" and run["stop_reason"] == "completed"
    assert run["test_score"] is not None


FAULT = '''
"""Fault injection: the search process dies right after trial 1's weights are written, before the
epoch that earned them is recorded."""
import os
import signal

from tunebench import training

_save = training.save_weights


def save_then_die(model, path):
    _save(model, path)
    if path.name.startswith("1-"):
        os.kill(os.getpid(), signal.SIGKILL)


training.save_weights = save_then_die
'''


@pytest.mark.slow  # process-level faults (hangs, crashes, kill -9): the slow tier
def test_the_test_evaluation_uses_the_recorded_best_when_a_better_trial_dies_before_its_record(
        tmp_path, monkeypatch):
    """Trial 1 beats trial 0 and has another architecture (64 units, not 4); its weights reach the
    disk but its process dies before the epoch is recorded. The store's best is trial 0, and the test
    evaluation must load trial 0's weights (a 64-unit file in a 4-unit model would not even load)."""
    (tmp_path / "die_after_write.py").write_text(FAULT)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    store, runs, results = _run(tmp_path, """
budget: 60s
max_epochs: 1
first_trial: none
datasets: [{digits: {limit: 600}}]
model_families: [{scripted: {script: [weak, ok]}}]
strategies: [{grid: {grid: {units: [4, 64]}}}]
""", "die_after_write")
    run = runs[0]
    trials = store.trials([run["id"]])
    assert [t["status"] for t in trials] == ["ok", "failed"], [(t["status"], t["error"]) for t in trials]
    assert trials[1]["error_kind"] == "crashed" and "SIGKILL" in trials[1]["error"]
    assert trials[1]["params"]["units"] == 64 and trials[1]["epochs_done"] == 0
    assert run["best_trial"] == 0 and run["best_params"]["units"] == 4
    assert run["status"] == "ok" and run["test_score"] is not None, run["error"]
    assert run["best_param_count"] == trials[0]["param_count"]
    artifacts = Path(run["artifact_dir"])
    assert (artifacts / "best.weights.h5").is_file() and not (artifacts / "trials").exists()


def test_every_search_starts_with_the_family_default_and_it_is_tested(tmp_path):
    store, run_id, _ = run_search(tmp_path, model_family="scripted", strategy="grid", budget_s=60, max_epochs=1,
                                  strategy_options={"grid": {"units": [4, 8]}})
    run = store.run(run_id)
    trials = store.trials([run_id])
    assert run["default_trial"] == 0 and trials[0]["notes"]["family_default"] is True
    assert trials[0]["params"]["units"] == 16  # the scripted family's declared default
    assert [t["params"]["units"] for t in trials[1:]] == [4, 8]  # the grid's cells all ran, after it
    assert run["default_val"] == trials[0]["score"] and run["default_test_score"] is not None
    board = leaderboard.build(store)
    default = board[board["kind"] == "family_default"].iloc[0]
    assert default["test_mean"] == pytest.approx(run["default_test_score"])
    search = board[board["kind"] == "search"].iloc[0]
    assert search["vs_default"] == pytest.approx(run["test_score"] - run["default_test_score"])


def test_fixed_counts_the_family_default_as_its_first_repeat(tmp_path):
    store, run_id, _ = run_search(tmp_path, model_family="scripted", strategy="fixed", budget_s=60, max_epochs=1,
                                  strategy_options={"repeats": 2}, model_options={"params": {"units": 8}})
    trials = store.trials([run_id])
    assert [t["params"]["units"] for t in trials] == [8, 8]


@pytest.mark.slow  # process-level faults (hangs, crashes, kill -9): the slow tier
def test_a_killed_trial_keeps_its_completed_epochs_and_its_best_epoch_counts(tmp_path):
    """Epoch 1 is recorded with its score as it ends; the trial is then killed inside epoch 2 (a hang
    in the middle of training): it keeps the score, and is the search's tested best."""
    store, runs, _ = _run(tmp_path, """
budget: 12s
max_epochs: 3
first_trial: none
datasets: [{digits: {limit: 600}}]
model_families: [{scripted: {then: hang_after_epoch, params: {epochs: 3}}}]
strategies: [{random: {max_trials: 1}}]
""")
    run = runs[0]
    trial = store.trials([run["id"]])[0]
    assert trial["status"] == "timeout" and trial["epochs_done"] == 1 and trial["score"] is not None
    assert trial["params"] and trial["best_epoch"] == 0
    assert run["status"] == "ok" and run["best_trial"] == 0 and run["test_score"] is not None


# -- intervals --------------------------------------------------------------------------------------------

def test_intervals_never_leave_a_bounded_score_and_few_seeds_show_n():
    assert all(math.isnan(v) for v in leaderboard.ci95(pd.Series([0.2, 0.9])))  # two seeds: no interval
    low, high = leaderboard.ci95(pd.Series([0.99, 0.5, 0.98]))
    assert 0.0 <= low < high == 1.0  # the t interval reaches past 1: clipped
    low, high = leaderboard.ci95(pd.Series([0.01, 0.6, 0.02]))
    assert low == 0.0 and high <= 1.0


def test_the_leaderboard_shows_n_below_three_seeds_and_says_how_intervals_are_computed(tmp_path):
    store = Store.open(tmp_path)
    common = dict(suite="s", dataset="d", dataset_label="d", model_family="m", model_label="m", strategy="s",
                  strategy_label="s", budget_s=10, dataset_options={}, model_options={}, strategy_options={})
    for seed, score in ((0, 0.2), (1, 0.9)):
        run_id = store.create_run(search_key=f"k{seed}", seed=seed, **common)
        store.finish_run(run_id, test_score=score, best_val=score)
    board = leaderboard.build(store)
    row = board[board["kind"] == "search"].iloc[0]
    assert math.isnan(row["test_ci_low"]) and math.isnan(row["test_ci_high"])
    text = leaderboard.render(board, "table")
    assert "0.5500 (n=2)" in text and "95% CI" not in text.split("Dataset: d")[1].splitlines()[2]
    assert "Student's t interval" in text and "clipped to the score's range [0, 1]" in text
    exported = json.loads(leaderboard.render(board, "json"))
    assert exported[0]["test_ci_low"] is None
