"""A dense network: Flatten, then Dense(512, relu) blocks, then softmax (the MNIST lecture baseline)."""

from __future__ import annotations

from tunebench import ModelFamily, hookimpl, output_layer, scaled_inputs


class MLP(ModelFamily):
    """Dense network: Flatten - [Dense(units x taper^i, relu) - Dropout] x layers - softmax."""

    name = "mlp"
    #: the most important first (the learning rate; then regularisation, width, depth), for `focus`
    priority = ("learning_rate", "dropout", "units", "layers", "batch_size", "optimizer", "activation", "taper",
                "class_weight")
    tasks = frozenset({"multiclass", "multilabel"})
    default_optimizer = "rmsprop"
    default_batch_size = 128
    default_epochs = 5
    reference_train_size = 60_000  # the lecture's MNIST: 5 epochs there, more on smaller sets

    def build(self, hp, spec):
        import keras

        layers = hp.Int("layers", 1, 4, default=1)
        units = hp.Int("units", 32, 2048, log=True, default=512)
        taper = hp.Choice("taper", [1.0, 0.5], default=1.0)  # each layer's width x taper (2048-1024-512-256)
        dropout = hp.Float("dropout", 0.0, 0.5, default=0.0)
        activation = hp.Choice("activation", ["relu", "tanh", "elu"], default="relu")
        inputs, x = scaled_inputs(spec)
        x = keras.layers.Flatten()(x)
        for i in range(layers):
            x = keras.layers.Dense(max(1, int(round(units * taper**i))), activation=activation)(x)
            if dropout > 0:
                x = keras.layers.Dropout(dropout)(x)
        return keras.Model(inputs, output_layer(spec, x), name="mlp")


@hookimpl
def tunebench_register_model_families(registry):
    registry.add(MLP)
