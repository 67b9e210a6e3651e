"""One search running several trials at once (`parallel_trials`): lanes in separate processes share
the trial numbers, the run's best and (Optuna) one study, under the search's one deadline."""

from __future__ import annotations

import pytest

from tests.conftest import TESTING_PLUGINS, tunebench, write_suite
from tunebench.budget import allowed_overshoot
from tunebench.job import weights_path
from tunebench.store import Store

pytestmark = pytest.mark.slow  # two suites of 60 s searches: the slow tier (make test-slow)

SUITE = """name: lanes
budget: 60s
first_trial: none
seeds: [0]
datasets: [{{digits: {{size: 8}}}}]
model_families: [{{scripted: {{then: slow, batch_sleep: 0.02, params: {{epochs: 1}}}}}}]
strategies:
  - random: {{max_trials: 6, parallel_trials: {lanes}}}
  - grid: {{grid: {{units: [4, 8, 16, 32]}}, parallel_trials: {lanes}}}
"""
MORE = """  - optuna_tpe: {{max_trials: 6, n_startup_trials: 2, parallel_trials: {lanes}}}
  - random: {{as: budgeted, budget: 5s, parallel_trials: {lanes}}}
"""


def _run(tmp_path, lanes: int) -> Store:
    text = SUITE + (MORE if lanes > 1 else "")  # the serial run is the yardstick for random and grid only
    suite = write_suite(tmp_path / f"lanes{lanes}.yaml", text.format(lanes=lanes))
    results = tmp_path / f"results{lanes}"
    result = tunebench("run", str(suite), "--results", str(results), "--plugin", TESTING_PLUGINS)
    assert result.returncode == 0, result.stderr[-3000:]
    return Store.open(results)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lanes")
    return _run(tmp, 1), _run(tmp, 2)


def _by_label(store: Store) -> dict[str, tuple[dict, list[dict]]]:
    return {r["strategy_label"]: (r, store.trials([r["id"]])) for r in store.runs()}


def test_parallel_trials_run_at_once_in_two_processes_and_share_the_run(stores):
    _, parallel = stores
    for label, (run, trials) in _by_label(parallel).items():
        assert run["status"] == "ok" and run["lanes"] == 2 and run["test_score"] is not None, label
        assert {t["lane"] for t in trials} == {0, 1}, label
        numbers = sorted(t["number"] for t in trials)
        assert numbers == list(range(len(trials))), label  # each number handed out once, none skipped
        assert run["n_trials"] == len(trials)
        # the two lanes really overlapped: a lane-1 trial started before a lane-0 trial ended
        assert any(a["started_at"] < b["finished_at"] and b["started_at"] < a["finished_at"]
                   for a in trials if a["lane"] == 1 for b in trials if b["lane"] == 0), label
        # the run's best is the best over both lanes, recomputed from the rows, with its weights on disk
        scored = [t for t in trials if t["score"] is not None]
        best = max(scored, key=lambda t: t["score"])
        assert run["best_val"] == pytest.approx(best["score"]) and run["best_trial"] == best["number"]
        assert weights_path(run["artifact_dir"]).exists()


def test_parallel_trials_propose_what_a_serial_search_proposes(stores):
    """Random (seeded per trial number) and grid hand out the same configurations, whichever lane
    runs them: the same structure as a serial run."""
    serial, parallel = (_by_label(s) for s in stores)
    for label in ("random", "grid"):
        assert serial[label][0]["lanes"] == 1 and {t["lane"] for t in serial[label][1]} == {0}
        proposals = [{t["number"]: t["params"] for t in trials} for _, trials in (serial[label], parallel[label])]
        assert proposals[0] == proposals[1], label
    assert sorted(t["params"]["units"] for t in parallel["grid"][1]) == [4, 8, 16, 32]


def test_lanes_of_an_optuna_search_share_one_study(stores):
    import optuna
    from optuna.storages.journal import JournalFileBackend

    _, parallel = stores
    run, trials = _by_label(parallel)["optuna_tpe"]
    journal = optuna.storages.JournalStorage(JournalFileBackend(f"{run['artifact_dir']}/strategy/optuna.journal"))
    study = optuna.load_study(study_name=f"tunebench-run-{run['id']}", storage=journal)
    assert len(study.trials) == len(trials) == 6
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(t.value for t in complete) == pytest.approx(sorted(t["score"] for t in trials if t["status"] == "ok"))


def test_lanes_keep_the_search_budget(stores):
    _, parallel = stores
    run, trials = _by_label(parallel)["budgeted"]
    # `killed` when a lane's last trial was still compiling at the deadline: the runner's hard stop
    assert run["budget_s"] == 5.0 and run["stop_reason"] in ("budget", "killed") and run["status"] == "ok"
    took = run["finished_at"] - run["started_at"]
    assert took <= run["budget_s"] + allowed_overshoot(5.0)
    # It may end a moment early, but only when what was left could not take another trial like
    # the ones it ran (the guard does not start a trial that would reach its first step past the
    # deadline): the time left is less than the longest trial's.
    longest = max(t["finished_at"] - t["started_at"] for t in trials)
    assert run["budget_s"] - took < longest
    assert all(t["finished_at"] <= run["started_at"] + 5.0 + allowed_overshoot(5.0) for t in trials)
    assert {t["lane"] for t in trials} == {0, 1}


def test_a_strategy_that_cannot_share_a_search_says_so(tmp_path):
    suite = write_suite(tmp_path / "kt.yaml", "name: kt\nbudget: 5s\ndatasets: [digits]\nmodel_families: [mlp]\n"
                                              "strategies: [{kt_hyperband: {parallel_trials: 2}}]\n")
    result = tunebench("validate", str(suite))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "parallel_trials: 2" in result.stderr and "one trial at a time" in result.stderr
