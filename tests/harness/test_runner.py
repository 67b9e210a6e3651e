"""The runner through the real command line: child processes, supervision, resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, TESTING_PLUGINS, tunebench, write_suite
from tunebench.budget import allowed_overshoot
from tunebench.store import Store

# 20 s, not 6: the hang must be reached on a loaded machine. With 6 s, the two trials before it once
# took all but a second of the budget on CI, and the feasibility guard turned the hang away unstarted.
TROUBLE = """
name: trouble
budget: 20s
max_epochs: 2
datasets: [digits]
model_families:
  - scripted: {as: hangs, script: [ok, ok, hang]}
  - scripted: {as: crashes, script: [ok, crash], crash_marker: "MARKER"}
  - scripted: {as: always_crashes, script: [], then: crash}
  - scripted: {as: never_works, script: [], then: fail}
strategies: [random]
"""


@pytest.fixture(scope="module")
def trouble(tmp_path_factory):
    """One invocation whose searches hang, crash and fail (three child processes)."""
    tmp = tmp_path_factory.mktemp("trouble")
    # `crashes` crashes once: the fresh process that goes on starts its script again
    suite = write_suite(tmp / "trouble.yaml", TROUBLE.replace("MARKER", str(tmp / "crashed")))
    results = tmp / "results"
    result = tunebench("run", str(suite), "--results", str(results), "--plugin", TESTING_PLUGINS)
    store = Store.open(results)
    runs = {r["model_label"]: r for r in store.runs()}
    return result, store, runs, suite, results


@pytest.mark.slow  # process-level faults (hangs, crashes, kill -9): the slow tier
def test_a_hung_trial_is_killed_and_what_came_before_stays(trouble):
    result, store, runs, _, _ = trouble
    run = runs["hangs"]
    trials = store.trials([run["id"]])
    # the two trials before the hang keep their scores (the second may be cut short by the deadline
    # or the guard, after its first epoch, on a loaded machine); the hang is killed
    assert len(trials) == 3 and all(t["score"] is not None for t in trials[:2])
    assert trials[0]["status"] == "ok" and trials[1]["status"] in ("ok", "timeout")
    assert trials[2]["status"] == "timeout" and "killed by the runner" in trials[2]["error"]
    # measured from the recorded timestamps: within max(2 s, 5 %) of the budget
    assert run["finished_at"] - run["started_at"] <= run["budget_s"] + allowed_overshoot(run["budget_s"])
    assert run["finished_at"] - run["started_at"] >= run["budget_s"]
    # the best configuration found before the hang is still evaluated on test, in a fresh process
    assert run["status"] == "ok" and run["stop_reason"] == "killed" and run["test_score"] is not None
    assert run["best_trial"] in (0, 1)
    assert run["cpu_seconds"] > 0  # measured by the runner before the kill


@pytest.mark.slow  # process-level faults (hangs, crashes, kill -9): the slow tier
def test_a_crashed_search_process_is_recorded_as_failed_with_the_reason(trouble):
    _, store, runs, _, _ = trouble
    run = runs["crashes"]
    trials = store.trials([run["id"]])
    assert [t["status"] for t in trials[:2]] == ["ok", "failed"]
    crashed = trials[1]
    assert crashed["error_kind"] == "crashed" and "SIGKILL" in crashed["error"] and "out of memory" in crashed["error"]
    # the search went on in a fresh process, and its best trial was tested
    assert run["resumes"] >= 1 and run["status"] == "ok" and run["test_score"] is not None
    # a process that dies before any trial ends, again and again, fails its search
    hopeless = runs["always_crashes"]
    assert hopeless["status"] == "failed" and "SIGKILL" in hopeless["error"] + "".join(
        t["error"] or "" for t in store.trials([hopeless["id"]]))
    assert {t["status"] for t in store.trials([hopeless["id"]])} == {"failed"}


@pytest.mark.slow  # process-level faults (hangs, crashes, kill -9): the slow tier
def test_a_search_where_every_trial_fails_is_failed_and_the_suite_goes_on(trouble):
    result, store, runs, _, _ = trouble
    run = runs["never_works"]
    assert run["status"] == "failed" and "no trial finished with a validation score" in run["error"]
    trials = store.trials([run["id"]])
    # every trial failed, but those near the deadline may be ones the feasibility guard did not start
    assert len(trials) >= 2 and {t["status"] for t in trials if t["error_kind"] != "infeasible"} == {"failed"}
    assert all(t["status"] == "timeout" for t in trials if t["error_kind"] == "infeasible")
    assert result.returncode == 1 and "2 search(es) failed" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow  # process-level faults (hangs, crashes, kill -9): the slow tier
def test_a_second_run_skips_finished_and_failed_searches_and_rerun_failed_retries(trouble):
    _, store, runs, suite, results = trouble
    before = len(store.runs())
    again = tunebench("run", str(suite), "--results", str(results), "--plugin", TESTING_PLUGINS)
    assert again.stderr.count("skip") == 4 and len(store.runs()) == before
    retry = tunebench("run", str(suite), "--results", str(results), "--plugin", TESTING_PLUGINS,
                      "--rerun-failed")
    retried = [r for r in store.runs() if r["id"] > max(r["id"] for r in runs.values())]
    assert sorted(r["model_label"] for r in retried) == ["always_crashes", "never_works"]
    assert retry.stderr.count("skip") == 2


@pytest.mark.slow  # process-level faults (hangs, crashes, kill -9): the slow tier
def test_kill_9_of_the_runner_loses_only_the_trial_in_flight(tmp_path):
    suite = write_suite(tmp_path / "long.yaml", """
name: long
budget: 8s
max_epochs: 2
datasets: [digits]
model_families: [{scripted: {then: slow, batch_sleep: 0.01}}]
strategies: [random]
""")
    results = tmp_path / "results"
    runner = subprocess.Popen([sys.executable, "-m", "tunebench.cli", "run", str(suite), "--results", str(results),
                               "--plugin", TESTING_PLUGINS], cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    db = results / "tunebench.db"
    deadline = time.time() + 60
    finished: list[dict] = []
    while time.time() < deadline:
        if db.exists():
            store = Store.open(results)
            finished = [t for t in store.trials() if t["status"] == "ok"]
            if len(finished) >= 2:
                break
        time.sleep(0.2)
    assert len(finished) >= 2, "the search never got going"
    child = store.runs()[0]["pid"]
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait()
    for _ in range(50):  # the child notices its parent is gone and dies with it
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the search's child process outlived the killed runner")
    snapshot = {t["id"]: t for t in store.trials() if t["status"] == "ok"}
    assert len(snapshot) >= 2

    result = tunebench("run", str(suite), "--results", str(results), "--plugin", TESTING_PLUGINS)
    assert result.returncode == 0, result.stderr
    first, second = store.runs()
    assert first["status"] == "interrupted" and second["status"] == "ok"
    old = store.trials([first["id"]])
    for t in old:
        if t["id"] in snapshot:
            assert t == snapshot[t["id"]]  # every finished trial survived unchanged
    assert len([t for t in old if t["status"] != "ok"]) <= 1  # at most the one in flight
    assert all(t["status"] in ("ok", "interrupted") for t in old)


@pytest.mark.slow  # process-level faults (hangs, crashes, kill -9): the slow tier
def test_a_run_ends_with_the_leaderboard_and_where_the_report_and_dashboard_are(trouble):
    result, _, _, _, results = trouble
    assert "hangs" in result.stdout and "test" in result.stdout  # the leaderboard, on stdout
    last = result.stderr.strip().splitlines()
    hint = next(line for line in last if line.startswith("next:"))
    assert f"tunebench report --results {results}" in hint and f"tunebench dashboard --results {results}" in hint
