"""Where searches run: GPU slots for packed searches, and the split-fingerprint check that keeps a
worker with other data from joining a suite."""

from __future__ import annotations

import pytest

from tunebench.errors import TunebenchError
from tunebench.provenance import check_fingerprint
from tunebench.runner import Runner, accelerator_env, visible_gpus
from tunebench.store import Store
from tunebench.suite import parse_suite


def test_gpus_come_from_cuda_visible_devices_and_packing_shares_memory(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,2")
    assert visible_gpus() == ["0", "2"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert visible_gpus() == []
    assert accelerator_env("2") == {"CUDA_VISIBLE_DEVICES": "2"}
    shared = accelerator_env("2", share=3)
    assert shared["TF_FORCE_GPU_ALLOW_GROWTH"] == "true" and shared["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    assert shared["TUNEBENCH_GPU_SHARE"] == "3"  # each counts on a third of the memory for its data


def test_trials_per_gpu_makes_k_slots_per_gpu(tmp_path, catalog):
    suite = parse_suite({"budget": "5s", "datasets": ["digits"], "model_families": ["mlp"],
                         "strategies": ["random"]}, catalog)
    runner = Runner(suite, Store.open(tmp_path), tmp_path, gpus=["0", "1"], trials_per_gpu=3)
    assert runner.slots == ["0", "0", "0", "1", "1", "1"]
    assert Runner(suite, Store.open(tmp_path), tmp_path).slots == []


def test_a_worker_whose_data_gives_another_split_is_refused(tmp_path):
    store = Store.open(tmp_path)
    common = dict(search_key="k", suite="s", dataset="mnist", dataset_options={"validation": 0.1},
                  model_family="mlp", model_options={}, strategy="random", strategy_options={}, budget_s=5)
    first = store.create_run(seed=0, split_fingerprint="aaaa", host="node-1", **common)
    same = store.create_run(seed=0, **common)
    other_seed = store.create_run(seed=1, **common)
    check_fingerprint(store, same, "aaaa")
    check_fingerprint(store, other_seed, "bbbb")  # another seed: another split, as it should be
    with pytest.raises(TunebenchError, match=f"run {first} on node-1 had aaaa"):
        check_fingerprint(store, same, "cccc")


def test_a_search_just_claimed_by_a_live_runner_is_not_taken_over(tmp_path, catalog):
    import os
    import subprocess
    import sys

    suite = parse_suite({"budget": "5s", "datasets": ["digits"], "model_families": ["mlp"],
                         "strategies": ["random"]}, catalog)
    search = suite.searches()[0]
    first, second = (Runner(suite, Store.open(tmp_path), tmp_path) for _ in range(2))
    assert first.claim(search) is None
    run_id = first.create_run(search, executor="local", attempt=1)
    # before its search process starts, the run carries the runner's own pid
    assert first.store.run(run_id)["pid"] == os.getpid()
    # a live runner process (its command line names tunebench) holds it: no takeover
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "tunebench"])
    try:
        first.store.update_run(run_id, pid=holder.pid)
        assert second.claim(search) == f"running elsewhere (run {run_id} on {first.store.run(run_id)['host']})"
    finally:
        holder.kill()
        holder.wait()
    # once that process is gone the claim is stale: the second runner takes it, and the run is interrupted
    assert second.claim(search) is None
    assert second.store.run(run_id)["status"] == "interrupted"
