"""A convolutional network trained from scratch: conv blocks with pooling, dropout and batch norm."""

from __future__ import annotations

import math

from harness import ModelFamily, hookimpl, output_layer, scaled_inputs


class ScratchCNN(ModelFamily):
    """CNN from scratch: 1-4 conv blocks (filters, kernel, batch norm, dropout), pooling, dense head."""

    name = "scratch_cnn"
    tasks = frozenset({"multiclass", "multilabel"})
    min_input_size = 8
    default_optimizer = "adam"
    default_batch_size = 64
    default_epochs = 10

    def build(self, hp, spec):
        import keras

        side = min(spec.input_shape[:2])
        # Each block halves the image; stop before it falls below 2 px.
        max_blocks = max(1, min(4, int(math.log2(side)) - 1))
        blocks = hp.Int("blocks", 1, max_blocks, default=min(2, max_blocks))
        kernel = hp.Choice("kernel_size", [3, 5], default=3)
        batch_norm = hp.Boolean("batch_norm", default=False)
        dropout = hp.Float("dropout", 0.0, 0.5, default=0.25)
        inputs, x = scaled_inputs(spec)
        for i in range(blocks):
            filters = hp.Choice(f"filters_{i}", [16, 32, 64, 128], default=min(128, 32 * 2**i))
            x = keras.layers.Conv2D(filters, kernel, padding="same", use_bias=not batch_norm)(x)
            if batch_norm:
                x = keras.layers.BatchNormalization()(x)
            x = keras.layers.Activation("relu")(x)
            x = keras.layers.MaxPooling2D(2)(x)
            if dropout > 0:
                x = keras.layers.Dropout(dropout)(x)
        head = hp.Choice("head", ["flatten", "gap"], default="flatten")
        x = keras.layers.Flatten()(x) if head == "flatten" else keras.layers.GlobalAveragePooling2D()(x)
        units = hp.Choice("dense_units", [32, 64, 128, 256], default=64)
        x = keras.layers.Dense(units, activation="relu")(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout)(x)
        return keras.Model(inputs, output_layer(spec, x), name="scratch_cnn")


@hookimpl
def tunebench_register_model_families(registry):
    registry.add(ScratchCNN)
