"""Feature extraction: a frozen backbone runs once over the data, and trials train only a head.

The backbone's pooled features of each split are computed once and cached on disk, keyed by
backbone, resolution, weights, alpha and the split's fingerprint, so every later trial (and every
later search on the same split) trains a small dense head in seconds. The model a trial returns is
the whole network (backbone + head): the selected configuration is evaluated on test images
like any other.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tunebench import Option, cache_dir, class_weight_for, hookimpl, loss_for, make_optimizer, metrics_for, output_layer
from tunebench_plugins.models import backbones


class FeatureExtraction(backbones.BackboneFamily):
    """Frozen pretrained backbone, features cached once on disk; trials search only the dense head."""

    name = "feature_extraction"
    #: the most important first (the learning rate; then regularisation, width, depth), for `focus`
    priority = ("learning_rate", "head_dropout", "head_layers", "head_units_*", "batch_size", "optimizer",
                "class_weight")
    default_optimizer = "adam"
    default_batch_size = 64
    default_epochs = 20
    options_schema = {**backbones.OPTIONS,
                      "resolutions": Option(list, [96], "input resolutions to choose from (raised to each "
                                                        "backbone's minimum)")}

    def build(self, hp, spec):
        import keras
        from keras import layers

        inputs, x, _ = self.frozen_base(hp, spec)  # sets self._built, what `fit` keys the feature cache on
        features = layers.GlobalAveragePooling2D(name="features")(x)
        head_in = keras.Input(shape=features.shape[1:])
        h = head_in
        for i in range(hp.Int("head_layers", 0, 2, default=1)):
            h = layers.Dense(hp.Choice(f"head_units_{i}", [64, 128, 256, 512], default=256), activation="relu")(h)
            h = layers.Dropout(hp.Float("head_dropout", 0.0, 0.6, default=0.5))(h)
        head = keras.Model(head_in, output_layer(spec, h), name="head")
        return keras.Model(inputs, head(features), name="feature_extraction")

    continues = False  # its fit trains in its own way: a continued trial starts over

    def fit(self, model, data, settings, callbacks, verbose=0):
        import keras

        extractor = keras.Model(model.input, model.get_layer("features").output)
        head = model.get_layer("head")
        f_train = self._features(extractor, data.x_train, data, "train")
        f_val = self._features(extractor, data.x_val, data, "validation")
        head.compile(optimizer=make_optimizer(settings.optimizer, settings.learning_rate),
                     loss=loss_for(data.spec.task), metrics=metrics_for(data.spec.task),
                     **settings.compile_options)
        class_weight = class_weight_for(data, settings)
        return head.fit(f_train, data.y_train, validation_data=(f_val, data.y_val), epochs=settings.epochs,
                        batch_size=settings.batch_size, class_weight=class_weight, callbacks=callbacks,
                        verbose=verbose)

    def _features(self, extractor, x, data, split):
        import numpy as np

        weights = self.options["weights"]
        if weights not in ("imagenet", "none"):
            weights = f"{Path(weights).resolve()}:{Path(weights).stat().st_mtime_ns}"
        backbone, resolution = self._built
        identity = [backbone, resolution, weights, self.options["alpha"], data.fingerprint, split, len(x)]
        key = hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:32]
        path = cache_dir() / "features" / f"{key}.npy"
        if path.exists():
            return np.load(path)
        features = extractor.predict(x, batch_size=64, verbose=0)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, features)
        tmp.replace(path)
        return features


@hookimpl
def tunebench_register_model_families(registry):
    registry.add(FeatureExtraction)
