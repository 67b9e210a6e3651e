from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import ROOT, tunebench, write_suite
from tunebench import DataSpec, DefaultHyperParameters, FixedHyperParameters, RandomHyperParameters
from tunebench_plugins.models import backbones
from tunebench_plugins.models.alexnet import AlexNet
from tunebench_plugins.models.feature_extraction import FeatureExtraction
from tunebench_plugins.models.mlp import MLP
from tunebench_plugins.models.scratch_cnn import ScratchCNN
from tunebench_plugins.models.transfer import Transfer

MNIST = DataSpec((28, 28, 1), tuple(str(i) for i in range(10)))
SHARED_WEIGHTS = ROOT.parent / "shared" / "weights" / "mobilenet_2_5_224_tf_no_top.h5"


@pytest.fixture(autouse=True)
def keras_home(tmp_path, monkeypatch):
    """An empty Keras cache per test: nothing is downloaded, nothing leaks between tests."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("TUNEBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "keras"


def train_step(family, hp, spec, n=32):
    model = family.build(hp, spec)
    settings = family.training(hp, spec, max_epochs=1)
    family.compile(model, settings, spec)
    x = np.random.default_rng(0).integers(0, 255, (n, *spec.input_shape), dtype=np.uint8)
    y = (np.arange(n) % spec.num_classes if spec.task == "multiclass"
         else (np.random.default_rng(1).random((n, spec.num_classes)) < 0.4).astype("float32"))
    history = model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    return model


FAMILIES = [MLP(), ScratchCNN(), AlexNet(),
            Transfer(backbones=["mobilenet"], weights="none", resolutions=[32], alpha=0.25),
            FeatureExtraction(backbones=["mobilenet"], weights="none", resolutions=[32], alpha=0.25)]


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_every_family_builds_and_trains_a_step(family, task):
    spec = DataSpec((32, 32, 3), tuple("abcd"), task)
    model = train_step(family, DefaultHyperParameters(), spec)
    activation = model.layers[-1].activation.__name__ if hasattr(model.layers[-1], "activation") else ""
    if family.name != "feature_extraction":  # its head is a nested model
        assert activation == ("softmax" if task == "multiclass" else "sigmoid")
    train_step(family, RandomHyperParameters((3, 1)), spec)


def test_mlp_default_is_the_lecture_network():
    hp = DefaultHyperParameters()
    assert MLP().build(hp, MNIST).count_params() == 407_050
    assert MLP().training(hp, MNIST).optimizer == "rmsprop"


def test_scratch_cnn_reproduces_the_lecture_convnet():
    lecture = {"blocks": 3, "filters_0": 32, "filters_1": 64, "filters_2": 64, "padding": "valid",
               "final_pool": False, "dropout": 0.0, "dense_dropout": 0.0, "dense_units": 64}
    assert ScratchCNN().build(FixedHyperParameters(lecture), MNIST).count_params() == 93_322


def test_scratch_cnn_space_covers_the_reference_experiments():
    hp = RandomHyperParameters(0)
    ScratchCNN().build(hp, DataSpec((128, 128, 3), tuple("ab")))
    assert hp.params["blocks"].high == 6
    assert {"convs_per_block", "kernel_size", "pooling", "batch_norm", "weight_decay", "head", "dense_units",
            "activation", "augment", "dropout"} <= set(hp.params)
    augmented = ScratchCNN().build(FixedHyperParameters({"augment": True}), DataSpec((32, 32, 3), tuple("ab")))
    kinds = {type(layer).__name__ for layer in augmented.layers}
    assert {"RandomFlip", "RandomTranslation", "RandomRotation", "RandomZoom"} <= kinds
    x = np.full((2, 32, 32, 3), 100, np.uint8)
    import keras

    once, twice = (keras.ops.convert_to_numpy(augmented.predict(x, verbose=0)) for _ in range(2))
    np.testing.assert_allclose(once, twice)  # inference: no-op


def test_alexnet_geometries():
    small = AlexNet().build(FixedHyperParameters({"activation": "tanh"}),
                            DataSpec((32, 32, 3), tuple(str(i) for i in range(200))))
    assert small.count_params() == 22_370_760  # the Tiny-ImageNet adaptation, 22.4 M
    assert small.layers[2].kernel_size == (3, 3) and small.layers[2].strides == (2, 2)
    large = AlexNet().build(DefaultHyperParameters(), DataSpec((227, 227, 3), tuple(str(i) for i in range(1000))))
    first = next(layer for layer in large.layers if type(layer).__name__ == "Conv2D")
    assert first.kernel_size == (11, 11) and first.strides == (4, 4)
    assert AlexNet().check(DataSpec((8, 8, 1), tuple("ab")))  # too small: rejected up front


@pytest.mark.parametrize("name", list(backbones.BACKBONES))
def test_every_backbone_builds_without_weights(name):
    family = Transfer(backbones=[name], weights="none", resolutions=[32])
    hp = DefaultHyperParameters()
    model = family.build(hp, DataSpec((32, 32, 1), tuple("abc")))
    assert hp.values["resolution"] == backbones.BACKBONES[name].min_size == max(32, backbones.BACKBONES[name].min_size)
    assert model.get_layer("backbone").trainable is False and model.count_params() > 0


IMAGENET_SCRIPT = """
import json, shutil, sys
import numpy as np
from tunebench import DataSpec, DefaultHyperParameters
from tunebench_plugins.models import backbones
from tunebench_plugins.models.feature_extraction import FeatureExtraction
from tunebench_plugins.models.transfer import Transfer

spec = DataSpec((32, 32, 3), ("a", "b"))
options = {"backbones": ["mobilenet"], "alpha": 0.25, "resolutions": [96], "download_weights": False}
out = {"missing": Transfer(**options).check_resources()}
target = backbones.keras_models_dir()
target.mkdir(parents=True)
shutil.copy(sys.argv[1], target)
out["after_copy"] = Transfer(**options).check_resources()
# 128 px has a file of its own in Keras (mobilenet_2_5_128_tf_no_top.h5), which is not here: the
# 224 file's weights, which do not depend on the input size, serve it.
out["after_copy_128"] = Transfer(**{**options, "resolutions": [128]}).check_resources()
at_96 = backbones.build_base("mobilenet", (96, 96, 3), "imagenet", 0.25).get_weights()
at_128 = backbones.build_base("mobilenet", (128, 128, 3), "imagenet", 0.25).get_weights()
out["same_at_128"] = len(at_96) == len(at_128) and all(np.array_equal(a, b) for a, b in zip(at_96, at_128))
x = np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)

def features(weights):
    import keras
    model = FeatureExtraction(**{**options, "weights": weights}).build(DefaultHyperParameters(), spec)
    return keras.Model(model.input, model.get_layer("features").output).predict(x, verbose=0)

pretrained, random_init = features("imagenet"), features("none")
out["shape"] = list(pretrained.shape)
out["differ"] = bool(not np.allclose(pretrained, random_init, atol=1e-3))
out["cache"] = str(target)
print("RESULT" + json.dumps(out))
"""


def test_imagenet_weights_load_from_the_keras_cache_through_the_real_path(tmp_path):
    """A fresh process whose Keras cache is a temporary folder holding the shared MobileNet weights."""
    if not SHARED_WEIGHTS.is_file():
        pytest.skip(f"the shared MobileNet weights are not at {SHARED_WEIGHTS} (shared/ beside the checkout)")
    import os
    import subprocess
    import sys

    env = dict(os.environ, KERAS_HOME=str(tmp_path / "keras"))
    result = subprocess.run([sys.executable, "-c", IMAGENET_SCRIPT, str(SHARED_WEIGHTS)], capture_output=True,
                            text=True, env=env, cwd=ROOT, timeout=300)
    line = next((row for row in result.stdout.splitlines() if row.startswith("RESULT")), None)
    assert line, result.stderr[-2000:]
    out = json.loads(line[len("RESULT"):])
    assert out["cache"] == str(tmp_path / "keras" / "models")
    assert len(out["missing"]) == 1 and "mobilenet_2_5_224_tf_no_top.h5" in out["missing"][0]
    assert out["after_copy"] == [] and out["after_copy_128"] == [] and out["same_at_128"]
    assert out["shape"] == [4, 256] and out["differ"]  # pretrained features are not random ones


def test_missing_weights_stop_the_suite_before_training(tmp_path):
    suite = write_suite(tmp_path / "tl.yaml", """
budget: 30s
datasets: [{digits: {size: 32, channels: 3}}]
model_families: [{transfer: {backbones: [inception_v3], download_weights: false}}]
strategies: [random]
""")
    result = tunebench("run", str(suite), "--results", str(tmp_path / "r"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5" in result.stderr
    assert "models/" in result.stderr and not (tmp_path / "r").exists()


def test_filters_check_weights_only_for_the_families_that_will_run(tmp_path, catalog):
    """`--model-family` runs a suite's stand-in row where the original's weights are missing."""
    from tunebench.errors import SuiteError
    from tunebench.suite import load_suite

    suite = write_suite(tmp_path / "tl.yaml", """
budget: 30s
datasets: [{digits: {size: 32, channels: 3}}]
model_families:
  - transfer: {as: original, backbones: [inception_v3], download_weights: false}
  - mlp: {as: stand_in}
strategies: [random]
""")
    with pytest.raises(SuiteError, match="inception_v3_weights"):
        load_suite(suite, catalog)
    selected = load_suite(suite, catalog, model_families_only=["stand_in"]).select(model_families=["stand_in"])
    assert [s.model_family.label for s in selected.searches()] == ["stand_in"]


def test_fine_tuning_unfreezes_the_top_layers_but_keeps_batch_norm_frozen():
    import keras

    from tunebench.datasets import ArrayData, split_arrays

    spec = DataSpec((32, 32, 3), tuple("ab"))
    family = Transfer(backbones=["mobilenet"], weights="none", resolutions=[32], alpha=0.25,
                      params={"epochs_frozen": 1, "epochs_fine_tune": 1})  # pinned: searched, not a fidelity
    hp = FixedHyperParameters({"epochs_frozen": 1, "epochs_fine_tune": 1, "unfreeze_layers": 12})
    model = family.build(hp, spec)
    settings = family.training(hp, spec)
    family.compile(model, settings, spec)
    rng = np.random.default_rng(0)
    data = split_arrays(ArrayData(rng.integers(0, 255, (60, 32, 32, 3), dtype=np.uint8), np.arange(60) % 2), spec, 0)
    history = keras.callbacks.History()
    family.fit(model, data, settings, [history])
    base = model.get_layer("backbone")
    top = base.layers[-12:]
    assert all(layer.trainable != isinstance(layer, keras.layers.BatchNormalization) for layer in top)
    assert not any(layer.trainable for layer in base.layers[:-12])
    assert history.epoch == [1]  # phase 2 continued the epoch count


def test_multilabel_end_to_end_records_f1(tmp_path):
    from tunebench.testing import run_search

    store, run_id, _ = run_search(tmp_path, dataset="synthetic", model_family="scratch_cnn", budget_s=60,
                                  dataset_options={"task": "multilabel", "classes": 5, "samples": 300, "size": 16},
                                  model_options={"params": {"class_weight": True}},
                                  strategy_options={"max_trials": 2})
    run = store.run(run_id)
    assert run["status"] == "ok" and run["objective"] == "val_f1_macro"
    assert {"f1_micro", "f1_macro", "binary_accuracy", "per_class"} <= set(run["test_metrics"])
    assert run["test_score"] == run["test_metrics"]["f1_macro"]
    assert set(run["test_metrics"]["per_class"]) >= {"class_0", "class_4", "micro avg", "macro avg"}
    epochs = store.epochs([t["id"] for t in store.trials([run_id])])
    assert all({"val_f1_micro", "val_f1_macro"} <= set(e["metrics"]) for e in epochs)


def test_feature_extraction_computes_features_once(tmp_path):
    from tunebench.testing import run_search

    store, run_id, _ = run_search(tmp_path, model_family="feature_extraction", budget_s=90,
                                  dataset_options={"size": 32, "channels": 3},
                                  model_options={"backbones": ["mobilenet"], "weights": "none", "alpha": 0.25,
                                                 "resolutions": [32]},
                                  strategy_options={"max_trials": 3})
    trials = store.trials([run_id])
    assert [t["status"] for t in trials] == ["ok", "ok", "ok"]
    cached = sorted((tmp_path / "cache" / "features").glob("*.npy"))
    assert len(cached) == 2  # train and validation features, shared by all three trials
    assert trials[2]["timings"]["train"] < trials[0]["timings"]["train"] + 5
    assert store.run(run_id)["test_score"] is not None


def test_parameter_count_and_model_size_are_recorded(tmp_path):
    from tunebench.testing import run_search

    store, run_id, _ = run_search(tmp_path, model_family="mlp", budget_s=60, strategy_options={"max_trials": 2},
                                  model_options={"params": {"units": 32, "layers": 1}})
    for t in store.trials([run_id]):
        assert t["param_count"] == 64 * 32 + 32 + 32 * 10 + 10
        assert t["model_bytes"] == 4 * t["param_count"]


def test_every_family_runs_in_a_suite_and_reaches_the_leaderboard(tmp_path):
    suite = write_suite(tmp_path / "models.yaml", """
name: models
budget: 90s
max_epochs: 1
datasets: [{digits: {size: 32, channels: 3, limit: 400}}]
model_families:
  - alexnet: {params: {width: 0.25, dense_units: 256}}
  - transfer: {backbones: [mobilenet], weights: none, alpha: 0.25, resolutions: [32]}
  - feature_extraction: {backbones: [mobilenet], weights: none, alpha: 0.25, resolutions: [32]}
strategies: [{optuna_tpe: {n_startup_trials: 2, max_trials: 1}}]   # the family default's trial alone
""")
    results = tmp_path / "results"
    result = tunebench("run", str(suite), "--results", str(results), env={"KERAS_HOME": str(tmp_path / "k")})
    assert result.returncode == 0, result.stderr
    board = [r for r in json.loads(tunebench("leaderboard", "--results", str(results), "--format", "json").stdout)
             if r["kind"] == "search"]
    assert {r["model_family"] for r in board} == {"alexnet", "transfer", "feature_extraction"}
    assert all(r["runs_ok"] == 1 for r in board)
    assert {r["weights"] for r in board} == {"", "none"}


def test_a_pinned_conditional_hyperparameter_is_fine_where_a_draw_does_not_reach_it():
    """`filters_2` pinned while `blocks` is searched: a 2-block draw trains (its pin is simply not
    reached); a name the family never declares is still an error."""
    from tunebench.errors import SpaceError
    from tunebench.settings import ExecutionSettings
    from tunebench.training import build_trial_model

    spec = DataSpec((32, 32, 3), tuple("ab"), train_size=100)
    from tunebench.space import DefaultHyperParameters

    family = ScratchCNN()
    built_for_reference = []
    build = family.build
    family.build = lambda hp, spec: (built_for_reference.append(1) if isinstance(hp, DefaultHyperParameters)
                                     else None, build(hp, spec))[1]
    pins = {"filters_2": 128, "filters_0": 16, "convs_per_block": 1, "kernel_size": 3}
    reached = set()
    for seed in range(12):  # random draws of `blocks` (1-4 on 32x32), some with fewer than 3 blocks
        hp = RandomHyperParameters((seed, 0)).pin(pins)
        model, _ = build_trial_model(family, hp, spec, ExecutionSettings(), max_epochs=None, train_size=100)
        assert model.count_params() > 0 and hp.values["filters_0"] == 16
        reached.add("filters_2" in hp.values)
        assert ("filters_2" in hp.values) == (hp.values["blocks"] >= 3)
    assert reached == {True, False}
    assert len(built_for_reference) == 1  # the pinned defaults are built once, not once per draw
    typo = RandomHyperParameters((0, 0)).pin({**pins, "filterz_1": 16})
    with pytest.raises(SpaceError, match="filterz_1"):
        build_trial_model(family, typo, spec, ExecutionSettings(), max_epochs=None, train_size=100)


def test_a_grid_that_pins_a_conditional_parent_keeps_the_suites_conditional_pins():
    """A grid pins every value it sets (`blocks: 1`): the suite's pin of `filters_2`, which only 3
    blocks reach, is still fine (the reference is the suite's pinned defaults, not the draw's)."""
    from tunebench.errors import SpaceError
    from tunebench.settings import ExecutionSettings
    from tunebench.space import FixedHyperParameters
    from tunebench.training import build_trial_model

    spec = DataSpec((32, 32, 3), tuple("ab"), train_size=100)
    family = ScratchCNN(params={"filters_1": 64, "filters_2": 128}, space={"blocks": [1, 2, 3]})
    hp = FixedHyperParameters({"blocks": 1, "learning_rate": 0.01}).pin(family.pins).restrict(family.restrictions)
    model, _ = build_trial_model(family, hp, spec, ExecutionSettings(), max_epochs=None, train_size=100)
    assert model.count_params() > 0 and "filters_2" not in hp.values
    typo = FixedHyperParameters({"blocks": 1, "filterz_2": 8}).pin(family.pins)
    with pytest.raises(SpaceError, match="filterz_2"):
        build_trial_model(family, typo, spec, ExecutionSettings(), max_epochs=None, train_size=100)
