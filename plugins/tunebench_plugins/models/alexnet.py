"""AlexNet: five convolutions and three dense layers.

Inputs of up to 64 px get the small-input adaptation used in the Tiny-ImageNet experiments:
Conv(96, 3x3, stride 2) - MaxPool(3, 2) - BN - Conv(256, 5x5) - MaxPool(3, 2) - BN -
Conv(384) - Conv(384) - Conv(256) - MaxPool(3, 2) - BN - Dense - Dropout - Dense - Dropout
(22.4 M parameters with 200 classes at 32 px). Larger inputs are resized to 227 px inside the model
and get the original geometry: Conv(96, 11x11, stride 4), 3x3 stride-2 max pooling, 384/384/256
convolutions, two Dense(4096), with batch norm in place of local response normalisation.
"""

from __future__ import annotations

from tunebench import ModelFamily, hookimpl, output_layer, scaled_inputs


class AlexNet(ModelFamily):
    """AlexNet: original 227 px geometry, or the small-input (32-64 px) adaptation; width multiplier."""

    name = "alexnet"
    #: the most important first (the learning rate; then regularisation, width, depth), for `focus`
    priority = ("learning_rate", "dropout", "width", "batch_size", "dense_units", "optimizer", "activation",
                "class_weight")
    tasks = frozenset({"multiclass", "multilabel"})
    min_input_size = 32
    optimizers = ("sgd", "adam", "rmsprop", "nadam")
    default_optimizer = "sgd"
    default_learning_rate = 0.01
    default_batch_size = 64
    default_epochs = 10

    def build(self, hp, spec):
        import keras
        from keras import layers

        width = hp.Choice("width", [0.25, 0.5, 1.0], default=1.0)
        units = hp.Choice("dense_units", [256, 512, 1024, 2048, 4096], default=4096)
        dropout = hp.Float("dropout", 0.0, 0.7, default=0.5)
        activation = hp.Choice("activation", ["relu", "tanh"], default="relu")

        def filters(n):
            return max(8, int(n * width))

        inputs, x = scaled_inputs(spec)
        small = max(spec.input_shape[:2]) <= 64
        if small:
            x = layers.Conv2D(filters(96), 3, strides=2, padding="same", activation="relu")(x)
        else:
            if spec.input_shape[:2] != (227, 227):
                x = layers.Resizing(227, 227)(x)
            x = layers.Conv2D(filters(96), 11, strides=4, padding="valid", activation="relu")(x)
        x = layers.MaxPooling2D(3, strides=2)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Conv2D(filters(256), 5, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D(3, strides=2)(x)
        x = layers.BatchNormalization()(x)
        for n in (384, 384, 256):
            x = layers.Conv2D(filters(n), 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D(3, strides=2)(x)
        if small:
            x = layers.BatchNormalization()(x)
        x = layers.Flatten()(x)
        for _ in range(2):
            x = layers.Dense(units, activation=activation)(x)
            x = layers.Dropout(dropout)(x)
        return keras.Model(inputs, output_layer(spec, x), name="alexnet")


@hookimpl
def tunebench_register_model_families(registry):
    registry.add(AlexNet)
