"""One suite, several Keras backends: each search's process runs under its own backend, the run
records it, and the leaderboard keeps the backends apart."""

from __future__ import annotations

import json

import pytest

from tests.conftest import tunebench, write_suite
from tunebench import leaderboard
from tunebench.store import Store


@pytest.mark.slow  # about 45 s: two backends' workers start and train (the slow tier keeps make test near 20 min)
def test_a_suite_compares_backends_on_one_model(tmp_path):
    suite = write_suite(tmp_path / "backends.yaml", """name: backends
budget: 120s
backend: [torch, jax]
training: {data_on_device: true}
datasets: [{digits: {size: 8}}]
model_families: [{mlp: {params: {layers: 1, units: 32, epochs: 1}}}]
strategies: [{random: {max_trials: 2}}]
""")
    result = tunebench("run", str(suite), "--results", str(tmp_path / "r"))
    assert result.returncode == 0, result.stderr[-3000:]
    store = Store.open(tmp_path / "r")
    runs = {r["backend"]: r for r in store.runs()}
    assert set(runs) == {"torch", "jax"}
    for backend, run in runs.items():
        assert run["status"] == "ok" and run["test_score"] is not None, (backend, run["error"])
        assert backend in run["versions"]  # the backend's own version is recorded with the run
        # the splits went in as the backend's own tensors (there is no GPU here), once per search
        assert run["hardware"]["data_placement"].startswith("cpu ("), run["hardware"]
        assert [t["status"] for t in store.trials([run["id"]])] == ["ok", "ok"]
    board = leaderboard.build(store, baselines=False)
    assert sorted(board["backend"]) == ["jax", "torch"]
    exported = json.loads(tunebench("runs", "--results", str(tmp_path / "r"), "--format", "json").stdout)
    assert sorted(r["backend"] for r in exported) == ["jax", "torch"]
