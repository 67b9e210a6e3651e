"""A convolutional network trained from scratch, over the space the reference experiments explored.

1-6 conv blocks (as many as the image size allows), each of 1-3 convolutions with their filters,
kernel size and padding; max or average pooling; batch norm before or after the activation, or
none; dropout; L1/L2 weight decay; a flatten or global-average-pooling head with a dense layer;
activation, optimizer, learning rate, batch size and class weights. Optional augmentation (flip,
shift, rotation, zoom) runs as Keras preprocessing layers inside the model, so it runs on the
accelerator and only while training.
"""

from __future__ import annotations

import math

from tunebench import ModelFamily, Option, augmentation, default_augmentation, hookimpl, output_layer, scaled_inputs


class ScratchCNN(ModelFamily):
    """CNN from scratch: 1-6 conv blocks, pooling, batch norm, dropout, L1/L2, flatten/GAP head, augmentation."""

    name = "scratch_cnn"
    #: the most important first (the learning rate; then regularisation, width, depth), for `focus`
    priority = ("learning_rate", "dropout", "dense_dropout", "batch_size", "filters_*", "blocks", "dense_units",
                "optimizer", "weight_decay", "batch_norm", "kernel_size", "convs_per_block", "head", "activation",
                "augment", "pooling", "pool_size", "padding", "final_pool", "class_weight")
    tasks = frozenset({"multiclass", "multilabel"})
    min_input_size = 8
    default_optimizer = "adam"
    default_batch_size = 64
    default_epochs = 6
    options_schema = {
        "augmentation": Option(dict, default_augmentation(),
                               "strengths used when the `augment` hyperparameter is on: flip (horizontal, "
                               "vertical, horizontal_and_vertical or none), shift, rotation, zoom"),
    }

    def build(self, hp, spec):
        import keras

        side = min(spec.input_shape[:2])
        max_blocks = max(1, min(6, int(math.log2(side)) - 1))  # each block halves the image
        # The default configuration (3 blocks of 32-64-128 filters where the image allows, dense 128,
        # dropout 0.2 / 0.3, Adam 1e-3, batch 64, 7 epochs on 8,500 images) is a good model on its
        # own: about 0.55 test accuracy on a 10,000-image CIFAR-10 subset in about 70 s on 2 CPU cores
        # (0.61 with 12 epochs; batch norm did worse in the same time); benchmarks/REFERENCE.md.
        blocks = hp.Int("blocks", 1, max_blocks, default=min(3, max_blocks))
        convs = hp.Int("convs_per_block", 1, 3, default=1)
        kernel = hp.Choice("kernel_size", [3, 5], default=3)
        padding = hp.Choice("padding", ["same", "valid"], default="same")
        pooling = hp.Choice("pooling", ["max", "avg"], default="max")
        pool_size = hp.Choice("pool_size", [2, 3], default=2)
        final_pool = hp.Boolean("final_pool", default=True)
        batch_norm = hp.Choice("batch_norm", ["none", "before_activation", "after_activation"], default="none")
        activation = hp.Choice("activation", ["relu", "elu", "selu", "tanh"], default="relu")
        dropout = hp.Float("dropout", 0.0, 0.5, default=0.2)
        regularizer = self._regularizer(hp)
        augment = hp.Boolean("augment", default=False)

        inputs, x = scaled_inputs(spec)
        if augment:
            x = augmentation(x, self.options["augmentation"])
        size = side
        for i in range(blocks):
            filters = hp.Choice(f"filters_{i}", [16, 32, 64, 128, 256], default=min(256, 32 * 2**i))
            for _ in range(convs):
                pad = padding if size > kernel else "same"  # never shrink an image below the kernel
                x = keras.layers.Conv2D(filters, kernel, padding=pad, use_bias=batch_norm == "none",
                                        kernel_regularizer=regularizer)(x)
                size = size - kernel + 1 if pad == "valid" else size
                if batch_norm == "before_activation":
                    x = keras.layers.BatchNormalization()(x)
                x = keras.layers.Activation(activation)(x)
                if batch_norm == "after_activation":
                    x = keras.layers.BatchNormalization()(x)
            if (i < blocks - 1 or final_pool) and size >= pool_size:
                pool = keras.layers.MaxPooling2D if pooling == "max" else keras.layers.AveragePooling2D
                x = pool(pool_size)(x)
                size //= pool_size
            if dropout > 0:
                x = keras.layers.Dropout(dropout)(x)
        head = hp.Choice("head", ["flatten", "gap"], default="flatten")
        x = keras.layers.Flatten()(x) if head == "flatten" else keras.layers.GlobalAveragePooling2D()(x)
        units = hp.Choice("dense_units", [32, 64, 128, 256, 512], default=128)
        x = keras.layers.Dense(units, activation=activation, kernel_regularizer=regularizer)(x)
        dense_dropout = hp.Float("dense_dropout", 0.0, 0.5, default=0.3)
        if dense_dropout > 0:
            x = keras.layers.Dropout(dense_dropout)(x)
        return keras.Model(inputs, output_layer(spec, x), name="scratch_cnn")

    @staticmethod
    def _regularizer(hp):
        import keras

        kind = hp.Choice("weight_decay", ["none", "l1", "l2", "l1_l2"], default="none")
        if kind == "none":
            return None
        strength = hp.Float("weight_decay_strength", 1e-6, 1e-2, log=True, default=1e-4)
        if kind == "l1":
            return keras.regularizers.L1(strength)
        if kind == "l2":
            return keras.regularizers.L2(strength)
        return keras.regularizers.L1L2(l1=strength, l2=strength)


@hookimpl
def tunebench_register_model_families(registry):
    registry.add(ScratchCNN)
