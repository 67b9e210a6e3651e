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
    #: the most important first (the learning rate; then regularisation, width, depth), for `focus`
    priority = ("learning_rate", "head_dropout", "fine_tune_learning_rate", "fine_tune_share", "unfreeze_layers",
                "head_units", "batch_size", "optimizer", "fine_tune_optimizer", "class_weight")
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

    #: A suite that pins or restricts either phase's epochs searches them itself (the reference
    #: experiments do); otherwise the trial's epochs are a fidelity the harness assigns, and
    #: `fine_tune_share` splits them between the two phases.
    epoch_names = ("epochs_frozen", "epochs_fine_tune")
    default_epochs = 6  # 3 frozen + 3 fine-tuning at the reference size, scaled with the data

    def training(self, hp, spec, max_epochs=None):
        if self.epochs_searched:
            top = self.max_epochs if max_epochs is None else max(1, min(self.max_epochs, max_epochs))
            frozen = hp.Int("epochs_frozen", 1, top, default=min(3, top))
            fine = hp.Int("epochs_fine_tune", 0, top, default=min(3, top))
            epochs, fidelity, split = frozen + fine, False, {"epochs_frozen": frozen}
        else:
            epochs, fidelity = self.epoch_range(spec, max_epochs), True
            split = {"fine_tune_share": hp.Float("fine_tune_share", 0.0, 0.8, default=0.5)}
        return TrialSettings(
            optimizer=hp.Choice("optimizer", list(self.optimizers), default=self.default_optimizer),
            learning_rate=hp.Float("learning_rate", 1e-4, 1e-2, log=True, default=1e-3),
            batch_size=hp.Choice("batch_size", [16, 32, 64, 128], default=self.default_batch_size),
            epochs=epochs,
            extra={**split, "unfreeze_layers": hp.values.get("unfreeze_layers", 0),
                   "fine_tune_learning_rate": hp.Float("fine_tune_learning_rate", 1e-5, 1e-3, log=True, default=1e-4),
                   "fine_tune_optimizer": hp.Choice("fine_tune_optimizer", ["sgd", "adam", "rmsprop"], default="sgd"),
                   "class_weight": hp.Boolean("class_weight", default=False)},
            fidelity=fidelity, default_epochs=min(self.epochs_for(spec), epochs) if fidelity else None,
        )

    @staticmethod
    def frozen_epochs(settings):
        """Phase 1's epochs: pinned or searched, or the trial's assigned epochs less its fine-tuning share."""
        extra = settings.extra
        if "epochs_frozen" in extra:
            return min(extra["epochs_frozen"], settings.epochs)
        fine = int(round(settings.epochs * extra.get("fine_tune_share", 0.5)))
        return max(1, settings.epochs - fine) if extra.get("unfreeze_layers", 0) > 0 else settings.epochs

    continues = False  # its fit trains in its own way: a continued trial starts over

    def fit(self, model, data, settings, callbacks, verbose=0):
        import dataclasses

        extra = settings.extra
        frozen = self.frozen_epochs(settings)
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
