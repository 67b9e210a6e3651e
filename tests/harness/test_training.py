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

    from tunebench import training

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
    from tunebench import training

    before = _live_training_graphs()
    for _ in range(2):
        model = _train_once(keras)
        del model
        keras.backend.clear_session()
    assert _live_training_graphs() >= before + 2
    assert training.purge_custom_gradients() >= 2
    assert _live_training_graphs() <= before


MB = 2**20


@pytest.mark.parametrize("policy, backend, accelerator, device, says", [
    ("auto", "torch", ("cuda:0", 4000 * MB), "cuda:0", "placed before the first trial"),
    ("auto", "jax", ("cuda:0", 4000 * MB), "cuda:0", "placed"),
    ("auto", "torch", ("cuda:0", 300 * MB), None, "more than 25% of the 300 MB free on cuda:0"),
    ("auto", "jax", ("cuda:0", None), "cuda:0", "placed"),  # no memory figure: trust it fits
    ("auto", "torch", None, None, "no accelerator"),
    (True, "torch", None, "cpu", "placed"),  # forced, on a CPU-only machine: the backend's CPU tensors
    (True, "torch", ("cuda:0", 300 * MB), "cuda:0", "placed"),  # forced: whatever the size
    (False, "torch", ("cuda:0", 4000 * MB), None, "data_on_device: false"),
    ("auto", "tensorflow", None, None, "tf.data with prefetching"),
    (True, "tensorflow", None, None, "tf.data with prefetching"),
])
def test_data_goes_to_the_accelerator_when_it_fits(policy, backend, accelerator, device, says):
    from tunebench.training import decide_placement

    where, note = decide_placement(policy, backend, 100 * MB, accelerator)
    assert where == device and says in note


def test_placed_data_is_what_fit_gets_and_the_host_arrays_stay():
    keras = pytest.importorskip("keras")
    from tunebench.datasets import ArrayData, DataSpec, split_arrays
    from tunebench.training import place_data

    rng = np.random.default_rng(0)
    spec = DataSpec(input_shape=(8, 8, 1), class_names=tuple("abc"))
    data = split_arrays(ArrayData(rng.integers(0, 255, (90, 8, 8, 1), dtype=np.uint8), np.repeat([0, 1, 2], 30)),
                        spec, 0, validation=0.2, test=0.2)
    placed, note = place_data(data, True)
    assert placed.x_test is data.x_test and placed.x_train is data.x_train  # host arrays untouched
    backend = keras.backend.backend()
    if backend == "tensorflow":
        assert placed.on_device is None and placed.train[0] is data.x_train and "tf.data" in note
        return
    assert note.startswith("cpu (") and placed.on_device is not None
    x, y = placed.train
    assert type(x).__module__.split(".")[0] in ("torch", "jax", "jaxlib")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(x), data.x_train)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(placed.validation[1]), data.y_val)
    assert place_data(data, "auto")[0].on_device is None  # no accelerator here


def test_collapse_counts_the_different_answers_and_needs_a_truth_with_several():
    from tunebench.training import collapse

    assert collapse([2, 2, 2], [0, 1, 2]) == {"predicted_distinct": 1, "collapsed": True}
    assert collapse([2, 2, 2], [2, 2, 2]) == {"predicted_distinct": 1, "collapsed": False}  # one answer is right
    assert collapse([0, 2, 2], [0, 1, 2]) == {"predicted_distinct": 2, "collapsed": False}
    # multilabel: label sets, not labels
    assert collapse([[1, 0], [1, 0]], [[1, 0], [0, 1]]) == {"predicted_distinct": 1, "collapsed": True,
                                                             "trivial": False}
    assert collapse([[1, 0], [0, 1]], [[1, 0], [0, 1]]) == {"predicted_distinct": 2, "collapsed": False,
                                                             "trivial": False}
    # multilabel with one label set for every image: a perfect score says nothing
    assert collapse([[1, 1], [1, 1]], [[1, 1], [1, 1]])["trivial"] is True
