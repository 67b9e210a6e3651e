"""One search in-process: what gets recorded, and how the selected configuration is tested."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tunebench import FixedHyperParameters, SearchStrategy, hookimpl
from tunebench.budget import allowed_overshoot
from tunebench.testing import run_search


@pytest.fixture(scope="module")
def scripted_run(tmp_path_factory):
    """A search through every trial outcome: ok, a raising trial, a NaN loss, then ok."""
    results = tmp_path_factory.mktemp("results")
    store, run_id, events = run_search(results, model_family="scripted",
                                       model_options={"script": ["ok", "fail", "nan", "ok", "ok"]},
                                       strategy_options={"max_trials": 5}, budget_s=60, max_epochs=2)
    return store, run_id, events, results


def test_every_trial_outcome_is_recorded_and_the_search_goes_on(scripted_run):
    store, run_id, _, _ = scripted_run
    trials = store.trials([run_id])
    assert [t["status"] for t in trials] == ["ok", "failed", "nan", "ok", "ok"]
    failed, nan = trials[1], trials[2]
    assert failed["error"] == "ScriptedFailure: scripted failure" and failed["error_kind"] == "exception"
    assert nan["error_kind"] == "nan" and nan["score"] is None
    run = store.run(run_id)
    assert run["status"] == "ok" and run["stop_reason"] == "completed" and run["n_trials"] == 5


def test_epochs_params_and_timings_are_recorded(scripted_run):
    store, run_id, _, _ = scripted_run
    trials = store.trials([run_id])
    epochs = store.epochs([t["id"] for t in trials])
    for t in trials:
        mine = [e for e in epochs if e["trial_id"] == t["id"]]
        assert len(mine) == t["epochs_done"]
        assert set(t["params"]) >= {"units", "optimizer", "learning_rate", "batch_size"}
        assert "epochs" not in t["params"]  # a fidelity the harness assigns, not a drawn hyperparameter
        assert t["epoch_budget"] <= 2  # the suite's cap
        if t["status"] == "ok":
            assert t["epochs_done"] == t["epoch_budget"] or t["notes"].get("stopped") in ("share", "plateau")
            assert t["score"] == max(e["metrics"]["val_accuracy"] for e in mine)
            assert t["best_epoch"] == max(mine, key=lambda e: e["metrics"]["val_accuracy"])["epoch"]
            assert t["param_count"] > 0
            assert {"build", "first_epoch", "train", "eval"} <= set(t["timings"])
            assert t["started_at"] < t["finished_at"]


def test_the_selected_configuration_is_the_best_on_validation_and_is_tested_once(scripted_run):
    store, run_id, events, results = scripted_run
    trials = store.trials([run_id])
    run = store.run(run_id)
    best = max((t for t in trials if t["status"] in ("ok", "timeout") and t["score"] is not None),
               key=lambda t: t["score"])
    assert run["best_trial"] == best["number"] and run["best_val"] == best["score"]
    assert run["best_params"] == best["params"]
    assert set(run["test_metrics"]) == {"accuracy", "loss", "per_class", "confusion_matrix", "predicted_distinct",
                                        "collapsed"}
    matrix = run["test_metrics"]["confusion_matrix"]
    assert len(matrix) == 10 and sum(map(sum, matrix)) == run["split_sizes"]["test"]
    correct = sum(matrix[i][i] for i in range(10))
    assert correct / run["split_sizes"]["test"] == pytest.approx(run["test_score"], abs=1e-6)
    assert run["test_score"] == run["test_metrics"]["accuracy"]
    assert run["split_fingerprint"] and run["backend"] == os.environ.get("KERAS_BACKEND", "tensorflow")
    assert {"python", "keras", "tensorflow", "keras-tuner", "autokeras", "optuna", "tunebench"} <= set(run["versions"])
    assert run["hardware"]["cpu"] and run["hardware"]["cpu_count"] and run["host"]
    assert [e["event"] for e in events.sent].count("search_done") == 1


def test_stored_test_score_is_what_the_saved_weights_give(scripted_run):
    """Recompute the test score from the saved best weights and the same split."""
    import keras

    from tunebench.testing.scripted import Scripted
    from tunebench_plugins.datasets.digits import Digits

    store, run_id, _, results = scripted_run
    run = store.run(run_id)
    data = Digits().splits(run["seed"])
    family = Scripted()
    hp = FixedHyperParameters(run["best_params"])
    model = family.build(hp, data.spec)
    model.load_weights(str(Path(run["artifact_dir"]) / "best.weights.h5"))
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    predictions = model.predict(data.x_test, verbose=0).argmax(axis=1)
    assert np.mean(predictions == data.y_test) == pytest.approx(run["test_score"], abs=1e-6)
    keras.backend.clear_session()


def test_trials_past_the_budget_are_stopped_at_a_batch_end_with_partial_metrics(tmp_path):
    # 40 batches x 0.05 s = 2 s per epoch, 5 epochs per trial: the 3 s budget ends inside the first.
    # The feasibility guard is off: with it, whether the last trial is cut at the deadline or turned
    # away as infeasible depends on how loaded the machine is (the guard has its own tests).
    store, run_id, _ = run_search(tmp_path, model_family="scripted",
                                  model_options={"then": "slow", "params": {"epochs": 5}},
                                  budget_s=3.0, max_epochs=5, strategy_options={},
                                  search_options={"feasibility_guard": False})
    run = store.run(run_id)
    trials = store.trials([run_id])
    assert run["stop_reason"] == "budget"
    assert run["finished_at"] - run["started_at"] <= 3.0 + allowed_overshoot(3.0)
    last = trials[-1]
    assert last["status"] == "timeout" and last["error_kind"] == "deadline"
    assert last["finished_at"] - run["started_at"] <= 3.0 + 1.0  # stopped within ~a batch
    timed_out = [t for t in trials if t["status"] == "timeout"]
    assert timed_out and all(t["epochs_done"] < t["params"]["epochs"] for t in timed_out)


def test_pins_apply_to_every_trial_and_a_misspelt_pin_fails_the_search(tmp_path):
    store, run_id, _ = run_search(tmp_path / "a", model_family="mlp", budget_s=30,
                                  model_options={"params": {"units": 7, "layers": 1, "epochs": 1}},
                                  strategy_options={"max_trials": 3})
    trials = store.trials([run_id])
    assert len(trials) == 3 and {t["params"]["units"] for t in trials} == {7}
    assert {t["param_count"] for t in trials} == {64 * 7 + 7 + 7 * 10 + 10}

    store, run_id, _ = run_search(tmp_path / "b", model_family="mlp", budget_s=30,
                                  model_options={"params": {"unitz": 7}}, strategy_options={"max_trials": 3})
    run = store.run(run_id)
    assert run["status"] == "failed"
    assert "unitz" in run["error"] and "declares: layers, units" in run["error"]
    assert len(store.trials([run_id])) == 1  # stopped at once, not once per trial


class Greedy(SearchStrategy):
    """Ignores the clock entirely."""

    name = "greedy"

    def search(self, ctx):
        while True:
            ctx.run_trial(FixedHyperParameters({}), epochs=1)


class Broken(SearchStrategy):
    """Raises after two trials."""

    name = "broken"

    def search(self, ctx):
        for _ in range(2):
            ctx.run_trial(FixedHyperParameters({}), epochs=1)
        raise KeyError("internal state")


class _Plugin:
    @hookimpl
    def tunebench_register_search_strategies(self, registry):
        registry.add(Greedy)
        registry.add(Broken)


def test_a_strategy_that_ignores_the_clock_is_stopped_by_the_budget(tmp_path, monkeypatch):
    import tunebench.registry

    real = tunebench.registry.load_plugins
    monkeypatch.setattr(tunebench.registry, "load_plugins", lambda extra=(), **kw: real([*extra, _Plugin()], **kw))
    store, run_id, _ = run_search(tmp_path / "g", model_family="mlp", strategy="greedy", budget_s=3)
    run = store.run(run_id)
    assert run["status"] == "ok" and run["stop_reason"] == "budget"
    assert run["finished_at"] - run["started_at"] <= 3 + allowed_overshoot(3)

    store, run_id, _ = run_search(tmp_path / "b", model_family="mlp", strategy="broken", budget_s=30)
    run = store.run(run_id)
    assert run["status"] == "failed" and "strategy 'broken' raised KeyError" in run["error"]
    # nothing lost: the family default's trial, then the strategy's two
    assert [t["status"] for t in store.trials([run_id])] == ["ok", "ok", "ok"]


def test_trials_run_with_the_setup_frozen_out_of_the_collector_and_the_search_gives_it_back(tmp_path, monkeypatch):
    """The full collection each trial ends with skips what existed before the first trial; after
    the search, the process's collector is as it was (this process runs other searches after it)."""
    import gc

    from tunebench.context import TrialContext

    frozen: list[int] = []
    real = TrialContext.run_trial

    def counting(self, *args, **kwargs):
        frozen.append(gc.get_freeze_count())
        return real(self, *args, **kwargs)

    monkeypatch.setattr(TrialContext, "run_trial", counting)
    before = gc.get_freeze_count()
    store, run_id, _ = run_search(tmp_path, model_family="mlp", model_options={"params": {"layers": 1, "units": 8}},
                                  dataset_options={"size": 8}, strategy_options={"max_trials": 2}, budget_s=30,
                                  max_epochs=1)
    assert store.run(run_id)["status"] == "ok" and len(frozen) == 2
    assert all(n > 10_000 for n in frozen)  # the frameworks' modules and the data, at least
    assert gc.get_freeze_count() == before


def test_a_model_that_gives_every_image_one_answer_is_called_collapsed(scripted_run, tmp_path):
    from tunebench import leaderboard
    from tunebench.runner import COLLAPSED, _warning

    store, run_id, _, _ = scripted_run
    trained = store.run(run_id)["test_metrics"]
    assert trained["collapsed"] is False and trained["predicted_distinct"] > 1
    # all-zero weights: no ReLU unit ever fires, only the output bias learns, so one class for all
    store, run_id, _ = run_search(tmp_path, model_family="scripted", strategy="fixed", budget_s=60, max_epochs=1,
                                  model_options={"then": "dead"})
    run = store.run(run_id)
    metrics = run["test_metrics"]
    assert run["status"] == "ok" and metrics["collapsed"] is True and metrics["predicted_distinct"] == 1
    confusion = np.array(metrics["confusion_matrix"])
    assert (confusion.sum(axis=0) > 0).sum() == 1  # one predicted column holds every test image
    # its score is that class's share of the test split, recomputed from the confusion matrix
    answer = int(np.flatnonzero(confusion.sum(axis=0))[0])
    assert run["test_score"] == pytest.approx(confusion[answer, answer] / confusion.sum())
    assert _warning(run) == COLLAPSED
    board = leaderboard.build(store, baselines=False)
    assert board["runs_collapsed"].tolist() == [1]
    assert leaderboard.display_frame(board)["collapsed"].tolist() == ["1/1"]
    assert leaderboard.LEGEND_COLLAPSED in leaderboard.render(board, "table")
