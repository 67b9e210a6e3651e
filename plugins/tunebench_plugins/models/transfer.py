"""Transfer learning from a keras.applications backbone, in two phases inside one trial.

Phase 1 trains a new head (global average pooling, dense, dropout) on the frozen backbone. Phase 2
unfreezes the top `unfreeze_layers` layers of the backbone and trains on at a lower learning
rate, as in the reference experiments (e.g. InceptionV3's top two blocks, VGG16 from block5_conv1).
The backbone always runs in inference mode, so its batch-norm statistics stay as they were
pretrained. Both phases share the trial's deadline. Images are resized inside the model to the
`resolution` hyperparameter, never below the backbone's minimum (75 px for InceptionV3), and get
the backbone's own preprocessing.
"""

from __future__ import annotations

from tunebench import (
    TrialSettings,
    class_weight_for,
    hookimpl,
    loss_for,
    make_optimizer,
    metrics_for,
    output_layer,
    stopped,
)
from tunebench_plugins.models import backbones


class Transfer(backbones.BackboneFamily):
    """Pretrained backbone + new head, trained frozen then fine-tuned (VGG16, InceptionV3, ResNet50, MobileNets...)."""

    name = "transfer"
    optimizers = ("adam", "rmsprop", "sgd", "nadam")
    default_optimizer = "rmsprop"
    default_batch_size = 32

    def build(self, hp, spec):
        import keras
        from keras import layers

        inputs, x, base = self.frozen_base(hp, spec, augment=True)
        x = layers.GlobalAveragePooling2D()(x)
        x = layers.Dense(hp.Choice("head_units", [128, 256, 512, 1024], default=256), activation="relu")(x)
        x = layers.Dropout(hp.Float("head_dropout", 0.0, 0.6, default=0.3))(x)
        hp.Int("unfreeze_layers", 0, len(base.layers), default=min(20, len(base.layers)))
        return keras.Model(inputs, output_layer(spec, x), name="transfer")

    def training(self, hp, spec, max_epochs=None):
        top = self.max_epochs if max_epochs is None else max(1, min(self.max_epochs, max_epochs))
        frozen = hp.Int("epochs_frozen", 1, top, default=min(3, top))
        fine = hp.Int("epochs_fine_tune", 0, top, default=min(3, top))
        return TrialSettings(
            optimizer=hp.Choice("optimizer", list(self.optimizers), default=self.default_optimizer),
            learning_rate=hp.Float("learning_rate", 1e-4, 1e-2, log=True, default=1e-3),
            batch_size=hp.Choice("batch_size", [16, 32, 64, 128], default=self.default_batch_size),
            epochs=frozen + fine,
            extra={"epochs_frozen": frozen, "unfreeze_layers": hp.values.get("unfreeze_layers", 0),
                   "fine_tune_learning_rate": hp.Float("fine_tune_learning_rate", 1e-5, 1e-3, log=True, default=1e-4),
                   "fine_tune_optimizer": hp.Choice("fine_tune_optimizer", ["sgd", "adam", "rmsprop"], default="sgd"),
                   "class_weight": hp.Boolean("class_weight", default=False)},
        )

    continues = False  # its fit trains in its own way: a continued trial starts over

    def fit(self, model, data, settings, callbacks, verbose=0):
        import dataclasses

        extra = settings.extra
        frozen = min(extra["epochs_frozen"], settings.epochs)
        phase1 = dataclasses.replace(settings, epochs=frozen)
        history = super().fit(model, data, phase1, callbacks, verbose)
        if settings.epochs <= frozen or extra["unfreeze_layers"] <= 0 or stopped(callbacks):
            return history
        base = model.get_layer("backbone")
        base.trainable = True
        cut = len(base.layers) - extra["unfreeze_layers"]
        for i, layer in enumerate(base.layers):
            layer.trainable = i >= cut and not isinstance(layer, _batch_norm())
        model.compile(optimizer=make_optimizer(extra["fine_tune_optimizer"], extra["fine_tune_learning_rate"]),
                      loss=loss_for(data.spec.task), metrics=metrics_for(data.spec.task),
                      **settings.compile_options)
        return model.fit(*data.train, validation_data=data.validation,
                         initial_epoch=frozen, epochs=settings.epochs, batch_size=settings.batch_size,
                         class_weight=class_weight_for(data, settings), callbacks=callbacks, verbose=verbose)


def _batch_norm():
    import keras

    return keras.layers.BatchNormalization


@hookimpl
def tunebench_register_model_families(registry):
    registry.add(Transfer)
