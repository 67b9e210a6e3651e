"""AutoKeras's image-classifier search space as a model family.

The architecture and its hyperparameters are AutoKeras's own (`ImageClassifier`'s graph: vanilla
conv, ResNet, Xception or EfficientNet blocks, normalisation, augmentation, optimizer, learning
rate). Its declarations go through `tunebench.space.as_keras_tuner`, so any strategy drives them, and
the `autokeras` strategy drives them with AutoKeras's own tuners. Training, the deadline and the
record are the harness's, as for every family. AutoKeras's `pretrained` choices need ImageNet
weights in the Keras cache; offline, such trials fail with the download error and are recorded.
"""

from __future__ import annotations

import tempfile

from tunebench import ModelFamily, TrialSettings, as_keras_tuner, hookimpl, loss_for, metrics_for, require


class AutoKerasImage(ModelFamily):
    """AutoKeras's ImageClassifier search space (its blocks, optimizer and learning rate)."""

    name = "autokeras"
    tasks = frozenset({"multiclass", "multilabel"})
    default_batch_size = 32
    default_epochs = 10

    def build(self, hp, spec):
        ak = require("autokeras", extra="autokeras", purpose="model family 'autokeras'")
        graph = self._graph(ak, spec)
        return graph.build(as_keras_tuner(hp))

    @staticmethod
    def _graph(ak, spec):
        import numpy as np

        k = spec.num_classes
        multilabel = spec.task == "multilabel"
        clf = ak.ImageClassifier(num_classes=k, multi_label=multilabel, overwrite=True, max_trials=1,
                                 loss=None if multilabel else "categorical_crossentropy",
                                 directory=tempfile.mkdtemp(prefix="tunebench-autokeras-"))
        # AutoKeras learns input and label properties from data before it can build: show it a
        # stand-in batch of the right shape and classes.
        x = np.zeros((2 * k, *spec.input_shape), np.float32)
        y = (np.eye(k)[np.arange(2 * k) % k] if multilabel else np.arange(2 * k) % k)
        # private to AutoKeras 3.0.0 (pinned in constraints.txt; tests/test_package.py::
        # test_the_private_internals_we_use_exist fails on an upgrade that drops it): what `fit`
        # does before it builds, without training
        clf._analyze_data((x, y))
        graph = clf.tuner.hypermodel
        graph.inputs[0].shape = tuple(spec.input_shape)
        graph.outputs[0].in_blocks[0].shape = (k,)
        graph.num_samples, graph.epochs = 1000, 10  # only sizes the adam_weight_decay schedule
        return graph

    def default_values(self, spec):
        # AutoKeras's own first candidate (a small vanilla CNN), not each declaration's default, which
        # together make a ResNet50 from scratch
        require("autokeras", extra="autokeras", purpose="model family 'autokeras'")
        from autokeras.tuners import task_specific

        return dict(task_specific.IMAGE_CLASSIFIER[0])

    def training(self, hp, spec, max_epochs=None):
        # AutoKeras declares `optimizer` and `learning_rate` itself while building.
        epochs, fidelity = self.declare_epochs(hp, spec, max_epochs)  # a fidelity unless the suite pins or searches it
        return TrialSettings(optimizer="autokeras", learning_rate=float(hp.values.get("learning_rate", 0.0)),
                             batch_size=hp.Choice("batch_size", [16, 32, 64], default=self.default_batch_size),
                             epochs=epochs, fidelity=fidelity,
                             default_epochs=min(self.epochs_for(spec), epochs) if fidelity else None)

    def compile(self, model, settings, spec):
        # Keep AutoKeras's optimizer; use the harness's loss and metrics (integer labels, `accuracy`).
        model.compile(optimizer=model.optimizer, loss=loss_for(spec.task), metrics=metrics_for(spec.task),
                      **settings.compile_options)

    continues = False  # its fit trains in its own way: a continued trial starts over
    cost_model = False  # AutoKeras's graph: no variants built to estimate costs

    def fit(self, model, data, settings, callbacks, verbose=0):
        import numpy as np

        # AutoKeras's preprocessing layers (normalisation) learn from the training images first.
        x = data.x_train.astype(np.float32)
        for layer in model.layers:
            if hasattr(layer, "adapt") and type(layer).__name__ != "InputLayer" and not layer.built:
                layer.adapt(x)
        return super().fit(model, data, settings, callbacks, verbose)


@hookimpl
def tunebench_register_model_families(registry):
    registry.add(AutoKerasImage)
