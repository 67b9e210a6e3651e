from __future__ import annotations

import numpy as np
import pytest

from harness import DataSpec, DefaultHyperParameters, FixedHyperParameters, RandomHyperParameters
from plugins.models.mlp import MLP
from plugins.models.scratch_cnn import ScratchCNN

MNIST = DataSpec((28, 28, 1), tuple(str(i) for i in range(10)))


def train_step(family, hp, spec, n=32):
    model = family.build(hp, spec)
    settings = family.training(hp, spec, max_epochs=1)
    family.compile(model, settings, spec)
    x = np.random.default_rng(0).integers(0, 255, (n, *spec.input_shape), dtype=np.uint8)
    y = np.arange(n) % spec.num_classes
    history = model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    return model


def test_mlp_default_is_the_lecture_network():
    # Dense(512, relu) + Dense(10, softmax) on 28x28: 407,050 parameters, RMSprop, batch 128.
    hp = DefaultHyperParameters()
    model = MLP().build(hp, MNIST)
    settings = MLP().training(hp, MNIST)
    assert model.count_params() == 407_050
    assert (settings.optimizer, settings.batch_size) == ("rmsprop", 128)


@pytest.mark.parametrize("family", [MLP(), ScratchCNN()])
@pytest.mark.parametrize("spec", [DataSpec((8, 8, 1), tuple("0123456789")), DataSpec((32, 32, 3), tuple("abc"))])
def test_every_family_builds_and_trains_a_step_under_random_configurations(family, spec):
    for i in range(2):
        train_step(family, RandomHyperParameters((5, i)), spec)


def test_scratch_cnn_depth_follows_the_image_size():
    deep = ScratchCNN().build(FixedHyperParameters({"blocks": 4}), DataSpec((32, 32, 1), tuple("ab")))
    convs = [layer for layer in deep.layers if layer.__class__.__name__ == "Conv2D"]
    assert len(convs) == 4
    hp = RandomHyperParameters(0)
    ScratchCNN().build(hp, DataSpec((8, 8, 1), tuple("ab")))
    assert hp.params["blocks"].high == 2  # 8 px allows two halvings


def test_training_settings_respect_the_epoch_cap():
    hp = RandomHyperParameters(1)
    settings = MLP().training(hp, MNIST, max_epochs=3)
    assert 1 <= settings.epochs <= 3 and hp.params["epochs"].high == 3
