"""A small suite through a real Ray cluster (head + one worker node) and a real PostgreSQL store:
the same leaderboard as a local run, a worker killed mid-search, two runners on one store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import TESTING_PLUGINS, tunebench, write_suite
from tunebench import leaderboard
from tunebench.store import Store

#: Real PostgreSQL and Ray servers: the slow tier (`make test-slow`), run by CI after `make test`.
pytestmark = pytest.mark.slow

SUITE = """name: scale_out
budget: 4s
seeds: [0, 1]
datasets: [{digits: {size: 8}}]
model_families: [{scripted: {params: {epochs: 1}}}]
strategies: [random, {grid: {grid: {units: [4, 8, 16, 32]}}}]
"""


def _structure(store: Store):
    board = leaderboard.build(store, baselines=False)
    return sorted(zip(board["dataset"], board["model_family"], board["strategy"], board["seeds"],
                      board["runs"], board["runs_ok"]))


def test_the_same_suite_gives_the_same_leaderboard_locally_and_on_ray_with_postgres(
        tmp_path, ray_address, postgres_url):
    suite = write_suite(tmp_path / "suite.yaml", SUITE)
    local = tunebench("run", str(suite), "--results", str(tmp_path / "local"), "--plugin", TESTING_PLUGINS)
    assert local.returncode == 0, local.stderr[-2000:]
    remote = tunebench("run", str(suite), "--executor", "ray", "--address", ray_address, "--store", postgres_url,
                       "--results", str(tmp_path / "ray"), "--plugin", TESTING_PLUGINS)
    assert remote.returncode == 0, remote.stderr[-2000:]
    assert "queued" in remote.stderr

    local_store, ray_store = Store.open(tmp_path / "local"), Store(postgres_url)
    assert _structure(ray_store) == _structure(local_store)
    assert [s[3:] for s in _structure(ray_store)] == [(2, 2, 2), (2, 2, 2)]
    runs = ray_store.runs()
    assert {r["executor"] for r in runs} == {"ray"} and {r["status"] for r in runs} == {"ok"}
    for r in runs:  # queueing is recorded apart from the search's own clock
        assert r["created_at"] <= r["dispatched_at"] <= r["started_at"] < r["finished_at"]
        assert r["finished_at"] - r["started_at"] <= r["budget_s"] + 2.0
        assert r["split_fingerprint"] == next(x["split_fingerprint"] for x in local_store.runs()
                                              if x["seed"] == r["seed"])
    # the grid's cells ran in order, none twice (as many as the budget allowed)
    for r in (r for r in runs if r["strategy"] == "grid"):
        units = [t["params"]["units"] for t in ray_store.trials([r["id"]])
                 if not (t["notes"] or {}).get("family_default")]  # trial 0 is the family default
        assert units and units == [4, 8, 16, 32][:len(units)]
    # a re-run finds everything done in the shared store
    again = tunebench("run", str(suite), "--executor", "ray", "--address", ray_address, "--store", postgres_url,
                      "--results", str(tmp_path / "ray"), "--plugin", TESTING_PLUGINS)
    assert again.returncode == 0 and again.stderr.count("skip") == 4
    assert len(Store(postgres_url).runs()) == 4


def test_a_worker_killed_mid_search_loses_only_its_trial_in_flight(tmp_path, ray_address, postgres_url):
    # two quick trials, then trials that crawl (0.2 s per batch), so the kill lands mid-trial
    suite = write_suite(tmp_path / "suite.yaml", """name: kill_worker
budget: 15s
datasets: [{digits: {size: 8}}]
model_families: [{scripted: {script: [ok, ok], then: slow, batch_sleep: 0.2}}]
strategies: [random]
""")
    driver = subprocess.Popen([sys.executable, "-m", "tunebench.cli", "run", str(suite), "--executor", "ray",
                               "--address", ray_address, "--store", postgres_url, "--results", str(tmp_path / "r"),
                               "--plugin", TESTING_PLUGINS, "--max-retries", "1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    store = Store(postgres_url)
    victim = None
    deadline = time.time() + 120
    while time.time() < deadline and victim is None:
        time.sleep(0.3)
        runs = store.runs()
        if not runs or not runs[0]["pid"]:
            continue
        trials = store.trials([runs[0]["id"]])
        if sum(t["status"] == "ok" for t in trials) >= 2 and any(t["status"] == "running" for t in trials):
            victim = runs[0]
    assert victim is not None, "the search never reached its third trial"
    import psutil

    search_process = psutil.Process(victim["pid"])
    ray_worker = search_process.parent()
    assert ray_worker is not None and ray_worker.pid != driver.pid
    os.kill(ray_worker.pid, signal.SIGKILL)  # the worker (and with it the search) dies
    out, err = driver.communicate(timeout=180)
    assert driver.returncode == 0, err[-3000:]
    assert "RETRY" in err

    first, second = store.runs()
    assert first["status"] == "interrupted" and "died" in first["error"]
    assert second["status"] == "ok" and second["attempt"] == 2 and second["retry_of"] == first["id"]
    kept = store.trials([first["id"]])
    # the finished trials are all still there; only the one in flight is lost
    assert [t["status"] for t in kept].count("ok") >= 2
    assert [t["status"] for t in kept].count("interrupted") == 1
    assert all(t["status"] in ("ok", "interrupted") for t in kept)
    numbers = [t["number"] for t in kept]
    assert numbers == sorted(set(numbers))
    assert store.claim_of(first["search_key"])["run_id"] == second["id"]
    board = leaderboard.build(store, baselines=False)
    assert list(board["runs_ok"]) == [1]


def test_one_optuna_search_spreads_its_trials_over_two_ray_nodes_through_postgres(
        tmp_path, ray_address, postgres_url):
    """parallel_trials: 2 on Ray: lane 0 and lane 1 are separate tasks (each node has one CPU, so
    they land on different raylets), asking one Optuna study kept in the store's PostgreSQL."""
    import optuna

    suite = write_suite(tmp_path / "suite.yaml", """name: shared_study
budget: 60s
datasets: [{digits: {size: 8}}]
model_families: [{scripted: {then: slow, batch_sleep: 0.03, params: {epochs: 1}}}]
strategies: [{optuna_tpe: {max_trials: 8, n_startup_trials: 2, parallel_trials: 2}}]
""")
    result = tunebench("run", str(suite), "--executor", "ray", "--address", ray_address, "--store", postgres_url,
                       "--results", str(tmp_path / "r"), "--plugin", TESTING_PLUGINS)
    assert result.returncode == 0, result.stderr[-3000:]
    store = Store(postgres_url)
    (run,) = store.runs()
    trials = store.trials([run["id"]])
    assert run["status"] == "ok" and run["lanes"] == 2 and run["executor"] == "ray"
    assert sorted(t["number"] for t in trials) == list(range(8)) and run["n_trials"] == 8
    assert {t["lane"] for t in trials} == {0, 1}  # both tasks ran trials of the one search
    assert (Path(run["artifact_dir"]) / "log.lane1.txt").exists()  # lane 1 ran as its own Ray task
    storage = optuna.storages.RDBStorage(postgres_url, engine_kwargs={
        "connect_args": {"options": "-csearch_path=tunebench_optuna"}})
    study = optuna.load_study(study_name=f"tunebench-run-{run['id']}", storage=storage)
    assert len(study.trials) == 8  # one study trial per harness trial, whichever lane asked
    complete = sorted(t.value for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE)
    assert complete == pytest.approx(sorted(t["score"] for t in trials if t["status"] == "ok"))
    # Optuna's tables live in their own schema, beside (not inside) the results store's
    assert "trials" in sa.inspect(store.engine).get_table_names(schema="tunebench_optuna")
    assert run["finished_at"] - run["started_at"] <= run["budget_s"] + 3.0


def test_two_runners_on_one_store_share_the_work_without_duplicates(tmp_path, postgres_url):
    suite = write_suite(tmp_path / "suite.yaml", SUITE.replace("seeds: [0, 1]", "seeds: [0, 1, 2]"))
    command = [sys.executable, "-m", "tunebench.cli", "run", str(suite), "--store", postgres_url,
               "--plugin", TESTING_PLUGINS]
    runners = [subprocess.Popen(command + ["--results", str(tmp_path / f"r{i}")], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for i in range(2)]
    results = [r.communicate(timeout=300) for r in runners]
    assert [r.returncode for r in runners] == [0, 0], [e[-2000:] for _, e in results]
    store = Store(postgres_url)
    runs = store.runs()
    keys = [r["search_key"] for r in runs]
    assert len(keys) == len(set(keys)) == 6  # every search ran exactly once
    assert {r["status"] for r in runs} == {"ok"}
    assert {Path(r["artifact_dir"]).parent.parent.name for r in runs} == {"r0", "r1"}  # both did work
    trials = store.trials()
    assert len({(t["run_id"], t["number"]) for t in trials}) == len(trials)
    assert sum(r["n_trials"] for r in runs) == len(trials)
    for r in runs:
        assert r["n_trials"] == len(store.trials([r["id"]])) > 0


def test_ray_missing_is_a_clear_error(tmp_path):
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "ray.py").write_text("raise ImportError('No module named ray')\n")
    suite = write_suite(tmp_path / "suite.yaml", SUITE)
    result = tunebench("run", str(suite), "--executor", "ray", "--results", str(tmp_path / "r"),
                       "--plugin", TESTING_PLUGINS,
                       env={"PYTHONPATH": os.pathsep.join([str(fake), os.environ.get("PYTHONPATH", "")])})
    assert result.returncode != 0
    assert "pip install 'tunebench[ray]'" in result.stderr and "Traceback" not in result.stderr


def test_an_unreachable_cluster_is_a_clear_error_at_once(tmp_path):
    suite = write_suite(tmp_path / "suite.yaml", SUITE)
    started = time.time()
    result = tunebench("run", str(suite), "--executor", "ray", "--address", "127.0.0.1:1",
                       "--results", str(tmp_path / "r"), "--plugin", TESTING_PLUGINS, timeout=120)
    assert result.returncode == 1 and "cannot reach the Ray cluster at '127.0.0.1:1'" in result.stderr
    assert "Traceback" not in result.stderr
    assert time.time() - started < 60  # Ray alone retries for minutes
