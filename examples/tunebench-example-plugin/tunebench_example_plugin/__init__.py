"""A tunebench plugin adding the model family `tiny_dense`."""

from tunebench import ModelFamily, hookimpl, output_layer, scaled_inputs


class TinyDense(ModelFamily):
    """One small hidden layer: a fast baseline that shows how a model family is written."""

    name = "tiny_dense"
    tasks = frozenset({"multiclass", "multilabel"})
    default_epochs = 3

    def build(self, hp, spec):
        import keras  # inside the method: `tunebench --help` must not import Keras

        units = hp.Int("units", 8, 128, log=True, default=32)
        dropout = hp.Float("dropout", 0.0, 0.5, default=0.1)
        inputs, x = scaled_inputs(spec)  # uint8 images in, scaled to [0, 1] inside the model
        x = keras.layers.Flatten()(x)
        x = keras.layers.Dense(units, activation="relu")(x)
        x = keras.layers.Dropout(dropout)(x)
        return keras.Model(inputs, output_layer(spec, x))


@hookimpl
def tunebench_register_model_families(registry):
    registry.add(TinyDense)
