"""Trial continuation: `run_trial(resume_from=N)` continues trial N's model (weights and optimizer
state) from the epoch it reached; Hyperband promotes trials that way, as KerasTuner's own does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tunebench.testing import run_search


def _hyperband(tmp_path: Path, reuse: bool, family: str = "mlp"):
    return run_search(tmp_path / ("reuse" if reuse else "scratch"), model_family=family, strategy="kt_hyperband",
                      budget_s=120, max_epochs=9, search_options={"first_trial": "none"},
                      strategy_options={"max_epochs": 9, "factor": 3, "reuse_weights": reuse, "max_trials": 13})


def test_a_checkpoint_restores_weights_and_optimizer_state_but_keeps_the_new_learning_rate(tmp_path):
    import keras

    from tunebench import training

    def model(rate):
        m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(2, activation="softmax")])
        m.compile(optimizer=keras.optimizers.Adam(rate), loss="sparse_categorical_crossentropy")
        return m

    x, y = np.random.default_rng(0).normal(size=(64, 4)).astype("float32"), np.arange(64) % 2
    first = model(1e-2)
    first.fit(x, y, epochs=2, batch_size=16, verbose=0)
    training.save_checkpoint(first, tmp_path / "trial-0", epoch=2)
    assert training.has_checkpoint(tmp_path / "trial-0")

    second = model(1e-4)  # PBT's explore: the same model, another learning rate
    epoch, restored = training.load_checkpoint(second, tmp_path / "trial-0")
    assert epoch == 2 and restored == len(second.optimizer.variables) > 2
    assert int(second.optimizer.iterations) == int(first.optimizer.iterations) == 8
    for a, b in zip(first.get_weights(), second.get_weights(), strict=True):
        np.testing.assert_allclose(a, b)
    moments = [v for v in second.optimizer.variables if "momentum" in v.path or "/m_" in v.path or "velocity" in v.path]
    assert moments and any(np.abs(keras.ops.convert_to_numpy(v)).sum() > 0 for v in moments)
    assert float(second.optimizer.learning_rate) == pytest.approx(1e-4)


@pytest.mark.slow  # about 60 s of Hyperband brackets (the slow tier keeps make test near 20 min)
def test_hyperband_continues_promoted_trials_and_trains_fewer_epochs_on_the_same_schedule(tmp_path):
    store, run_id, _ = _hyperband(tmp_path, reuse=True)
    rows = store.trials([run_id])
    continued = [t for t in rows if (t["notes"] or {}).get("resumed_from") is not None]
    assert continued, [t["notes"] for t in rows]
    by_number = {t["number"]: t for t in rows}
    for t in continued:
        source = by_number[t["notes"]["resumed_from"]]
        # it starts where its source ended, and trains only the rest of its epoch budget
        reached = source["notes"].get("initial_epoch", 0) + source["epochs_done"]
        assert t["notes"]["initial_epoch"] == source["epoch_budget"] == reached
        assert t["epochs_done"] == t["epoch_budget"] - t["notes"]["initial_epoch"]
        assert source["notes"].get("checkpoint") is True
        assert t["status"] == "ok" and t["score"] is not None
    run = store.run(run_id)
    assert run["status"] == "ok" and run["test_score"] is not None
    assert not (Path(run["artifact_dir"]) / "checkpoints").exists()  # cleaned up at the search's end

    scratch, scratch_id, _ = _hyperband(tmp_path, reuse=False)
    plain = scratch.trials([scratch_id])
    # the same oracle, seed and schedule: the same trials, each promoted one from scratch
    assert [t["epoch_budget"] for t in plain] == [t["epoch_budget"] for t in rows]
    assert not any((t["notes"] or {}).get("checkpoint") for t in plain)
    saved = sum(t["epoch_budget"] for t in rows) - sum(t["epochs_done"] for t in rows)
    assert saved == sum(t["notes"]["initial_epoch"] for t in continued) > 0
    assert sum(t["epochs_done"] for t in plain) == sum(t["epoch_budget"] for t in plain)


def test_a_family_that_cannot_continue_trains_from_scratch_and_says_why(tmp_path, monkeypatch):
    from tunebench.testing.scripted import Scripted

    monkeypatch.setattr(Scripted, "continues", False)
    store, run_id, _ = _hyperband(tmp_path, reuse=True, family="scripted")
    rows = store.trials([run_id])
    skipped = [t for t in rows if "resume_skipped" in (t["notes"] or {})]
    assert skipped and all("cannot continue" in t["notes"]["resume_skipped"] for t in skipped)
    assert all(t["epochs_done"] == t["epoch_budget"] for t in skipped)
    assert not any("resumed_from" in (t["notes"] or {}) for t in rows)


def test_asha_promotes_each_trial_once_to_the_next_rung_continuing_its_model(tmp_path):
    store, run_id, _ = run_search(tmp_path, model_family="mlp", strategy="asha", budget_s=120, max_epochs=9,
                                  search_options={"first_trial": "none"},
                                  strategy_options={"min_epochs": 1, "max_epochs": 9, "eta": 3, "max_trials": 14})
    rows = store.trials([run_id])
    by_number = {t["number"]: t for t in rows}
    rungs = [1, 3, 9]
    assert {t["epoch_budget"] for t in rows} <= set(rungs)
    continued = [t for t in rows if (t["notes"] or {}).get("resumed_from") is not None]
    assert continued
    sources = [t["notes"]["resumed_from"] for t in continued]
    assert len(sources) == len(set(sources))  # promoted once
    for t in continued:
        source = by_number[t["notes"]["resumed_from"]]
        assert rungs.index(t["epoch_budget"]) == rungs.index(source["epoch_budget"]) + 1
        assert t["notes"]["initial_epoch"] == source["epoch_budget"]
        assert t["epochs_done"] == t["epoch_budget"] - source["epoch_budget"]
        # promoted from its rung's top third among the trials that rung had when it was promoted
        rung = [r for r in rows if r["epoch_budget"] == source["epoch_budget"] and r["score"] is not None
                and r["finished_at"] <= t["started_at"]]
        better = [r for r in rung if r["score"] > source["score"]]
        assert len(better) < len(rung) // 3, (source["number"], len(better), len(rung))
    assert store.run(run_id)["status"] == "ok"


@pytest.mark.slow  # two processes training for a minute and a half
def test_asha_with_two_lanes_promotes_each_trial_once_across_the_lanes(tmp_path):
    from tests.conftest import tunebench, write_suite
    from tunebench.store import Store

    suite = write_suite(tmp_path / "asha.yaml", """name: asha2
budget: 90s
max_epochs: 9
first_trial: none
seeds: [0]
datasets: [digits]
model_families: [mlp]
strategies: [{asha: {min_epochs: 1, max_epochs: 9, eta: 3, max_trials: 16, parallel_trials: 2}}]
""")
    result = tunebench("run", str(suite), "--results", str(tmp_path / "results"))
    assert result.returncode == 0, result.stderr[-3000:]
    store = Store.open(tmp_path / "results")
    run_id = store.runs()[0]["id"]
    rows = store.trials([run_id])
    by_number = {t["number"]: t for t in rows}
    assert {t["lane"] for t in rows} == {0, 1}
    continued = [t for t in rows if (t["notes"] or {}).get("resumed_from") is not None]
    assert continued
    sources = [t["notes"]["resumed_from"] for t in continued]
    assert len(sources) == len(set(sources))  # promoted once, whichever lane promoted it
    for t in continued:
        source = by_number[t["notes"]["resumed_from"]]
        assert t["epoch_budget"] > source["epoch_budget"] and t["notes"]["initial_epoch"] == source["epoch_budget"]
        assert t["epochs_done"] == t["epoch_budget"] - source["epoch_budget"]
    run = store.run(run_id)
    assert run["status"] == "ok" and run["lanes"] == 2


def test_pbt_exploits_a_better_members_model_and_explores_its_learning_rate(tmp_path):
    store, run_id, _ = run_search(tmp_path, model_family="mlp", strategy="pbt", budget_s=120, max_epochs=4,
                                  search_options={"first_trial": "none"},
                                  strategy_options={"population": 4, "interval": 1, "max_epochs": 4,
                                                    "max_trials": 16})
    rows = store.trials([run_id])
    by_number = {t["number"]: t for t in rows}
    assert [t["epoch_budget"] for t in rows] == [1] * 4 + [2] * 4 + [3] * 4 + [4] * 4
    assert all((t["notes"] or {}).get("resumed_from") is not None for t in rows[4:])
    exploited = [t for t in rows[4:] if by_number[t["notes"]["resumed_from"]]["params"] != t["params"]]
    assert exploited  # a bottom member took a top member's model with a perturbed learning rate
    for t in exploited:
        source = by_number[t["notes"]["resumed_from"]]
        ratio = t["params"]["learning_rate"] / source["params"]["learning_rate"]
        assert 0.8 - 1e-9 <= ratio <= 1.2 + 1e-9  # x0.8 or x1.2, within the declared range
        assert {k: v for k, v in t["params"].items() if k != "learning_rate"} == \
            {k: v for k, v in source["params"].items() if k != "learning_rate"}
    for t in rows[4:]:
        assert t["epochs_done"] == 1 and t["notes"]["initial_epoch"] == t["epoch_budget"] - 1
    assert store.run(run_id)["status"] == "ok"
