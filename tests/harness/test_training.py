"""The Keras side of a trial: what a finished trial leaves behind."""

from __future__ import annotations

import gc

import numpy as np
import pytest


def _train_once(keras):
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    model.fit(rng.random((64, 8, 8, 1), dtype="float32"), rng.integers(0, 10, 64), epochs=1, batch_size=32,
              validation_split=0.25, verbose=0)
    return model


def _live_training_graphs() -> int:
    from tensorflow.python.framework.func_graph import FuncGraph

    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, FuncGraph) and o.name == "one_step_on_data")


def test_a_released_trial_leaves_no_traced_graph_behind_under_tensorflow():
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the leak and its fix are TensorFlow's")
    from tensorflow.python.framework import ops

    from harness import training

    registry = ops._gradient_registry._registry
    before = _live_training_graphs()  # models other tests still hold
    for _ in range(3):
        model = _train_once(keras)
        assert any(k.startswith("CustomGradient-") for k in registry)  # what tracing registered
        training.release(model)
        del model
    assert not [k for k in registry if k.startswith("CustomGradient-")]
    # TensorFlow's registry held each model's train and test step graphs; released, none survives
    assert _live_training_graphs() <= before


def test_purging_is_what_frees_the_graphs():
    """The control: without the purge, TensorFlow keeps the released models' step graphs."""
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the leak and its fix are TensorFlow's")
    from harness import training

    before = _live_training_graphs()
    for _ in range(2):
        model = _train_once(keras)
        del model
        keras.backend.clear_session()
    assert _live_training_graphs() >= before + 2
    assert training.purge_custom_gradients() >= 2
    assert _live_training_graphs() <= before

