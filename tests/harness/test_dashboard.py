"""`tunebench dashboard`: optuna-dashboard over a tunebench store, checked in a real browser.

Needs optuna-dashboard (the `dashboard` extra, in `dev`) and Debian's `chromium` (installed by
`.ci/run`; the browser test skips without it unless TUNEBENCH_REQUIRE_SERVERS=1)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tunebench.store import Store

pytest.importorskip("optuna_dashboard")


pytestmark = pytest.mark.slow  # a real server (and Chromium): the slow tier (make test-slow)


def _store(results: Path) -> tuple[Store, list[int]]:
    store = Store.open(results)
    ids = []
    for seed, strategy in ((0, "random"), (1, "optuna_tpe")):
        run_id = store.create_run(search_key=f"k{seed}", suite="dash", dataset="digits", dataset_label="digits",
                                  model_family="mlp", model_label="mlp", strategy=strategy, strategy_label=strategy,
                                  seed=seed, budget_s=10, dataset_options={}, model_options={},
                                  strategy_options={}, objective="val_accuracy")
        for number, (units, curve) in enumerate(((32, [0.61, 0.8125]), (64, [0.55]))):
            trial = store.start_trial(run_id, number, started_at=time.time())
            store.update_trial(trial, params={"units": units, "optimizer": "adam", "learning_rate": 0.001 * units})
            for epoch, value in enumerate(curve):
                store.record_epoch(run_id, trial, epoch, {"val_accuracy": value, "loss": 1 - value}, 1.0 + epoch,
                                   score=max(curve[: epoch + 1]), best_epoch=epoch)
            store.finish_trial(trial, status="ok", score=max(curve), finished_at=time.time(), epochs_done=len(curve))
        store.finish_run(run_id, test_score=0.8)
        ids.append(run_id)
    return store, ids


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture
def dashboard(tmp_path):
    store, ids = _store(tmp_path / "r")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tunebench.cli", "dashboard", "--results", str(tmp_path / "r"),
                             "--port", str(port)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            _get(f"{base}/api/studies")
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"the dashboard exited: {proc.stderr.read()[-2000:]}")
            time.sleep(0.3)
    try:
        yield base, store, ids
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail("the dashboard did not stop on SIGTERM within 30 s")


def test_the_dashboard_serves_every_run_as_a_study_with_its_trials_and_epochs(dashboard):
    base, store, ids = dashboard
    studies = _get(f"{base}/api/studies")["study_summaries"]
    names = {s["study_name"] for s in studies}
    assert {"dash · digits · mlp · random · seed 0 (run 1)",
            "dash · digits · mlp · optuna_tpe · seed 1 (run 2)"} <= names
    detail = _get(f"{base}/api/studies/{ids[0]}?after=0")
    trials = detail["trials"]
    assert [t["number"] for t in trials] == [0, 1] and trials[0]["values"] == [0.8125]
    assert [v["value"] for v in trials[0]["intermediate_values"]] == [0.61, 0.8125]
    assert {p["name"] for p in trials[0]["params"]} == {"units", "optimizer", "learning_rate"}
    # live: a run written while the dashboard is up appears without a restart
    run_id = store.create_run(search_key="k9", suite="dash", dataset="digits", dataset_label="digits",
                              model_family="mlp", model_label="mlp", strategy="grid", strategy_label="grid", seed=9,
                              budget_s=10, dataset_options={}, model_options={}, strategy_options={})
    assert any(s["study_id"] == run_id for s in _get(f"{base}/api/studies")["study_summaries"])


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_the_dashboard_page_lists_the_studies_and_a_trials_values_in_a_browser(dashboard, tmp_path):
    browser = _chromium()
    if browser is None:
        if os.environ.get("TUNEBENCH_REQUIRE_SERVERS") == "1":
            pytest.fail("chromium is not installed (Debian's `chromium`; .ci/run installs it)")
        pytest.skip("chromium is not installed")
    base, _, ids = dashboard

    def page(path: str) -> str:
        result = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                                 "--disable-sync", f"--user-data-dir={tmp_path / 'chrome'}",
                                 "--virtual-time-budget=15000", "--dump-dom", f"{base}{path}"],
                                capture_output=True, text=True, timeout=120)
        return result.stdout

    home = page("/dashboard")
    assert "dash · digits · mlp · random · seed 0 (run 1)" in home, home[-2000:]
    assert "optuna_tpe · seed 1" in home
    trials = page(f"/dashboard/studies/{ids[0]}/trials")
    assert "0.8125" in trials, trials[-3000:]
