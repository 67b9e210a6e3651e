"""The model-family contract and the shared compile/fit path.

A model family builds an uncompiled Keras model for a `DataSpec`, declaring its hyperparameters
through `hp` as it goes. Its training settings (optimizer, learning rate, batch size, epochs) are
hyperparameters too, declared by `training()`; families change their ranges and defaults through
class attributes, or override `training`, `compile` or `fit` (a two-phase fine-tune does).

Keras is imported inside the methods that train, never at module scope.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from tunebench.options import Configurable, Option

if TYPE_CHECKING:
    import keras

    from tunebench.datasets import DataSpec, Splits, Task
    from tunebench.space import HyperParameters


@dataclass(frozen=True)
class TrialSettings:
    """How one trial trains its model (the values its training hyperparameters took)."""

    optimizer: str
    learning_rate: float
    batch_size: int
    epochs: int
    #: Family-specific settings (e.g. a fine-tuning phase's learning rate), for its own `fit`.
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: Keyword arguments the harness adds to every `model.compile` (jit_compile,
    #: steps_per_execution), from the suite's `training:` block. Families that compile
    #: themselves pass them on: `model.compile(..., **settings.compile_options)`.
    compile_options: Mapping[str, Any] = field(default_factory=dict)
    #: The epoch training starts from (a trial that continues an earlier one's model: `model.fit`'s
    #: `initial_epoch`); `epochs` stays the total.
    initial_epoch: int = 0
    #: Epochs are a fidelity here, not a drawn hyperparameter: `epochs` is the most the data calls
    #: for (`ModelFamily.epoch_range`), and the harness assigns each trial its own count (a
    #: multi-fidelity strategy's `epochs=`, the family default's `default_epochs`, or the budget's
    #: share for the rest). False when the suite pins or searches the epochs.
    fidelity: bool = False
    #: The family default's epochs on this data (`ModelFamily.epochs_for`), when `fidelity`.
    default_epochs: int | None = None


#: The name `TrialSettings` had before 0.2; kept for one release.
TrainingSettings = TrialSettings


class ModelFamily(Configurable):
    """The contract for a model-family plugin.

    Subclasses set `name` and implement `build`. `build` must be deterministic given the
    hyperparameter values: the harness rebuilds the selected configuration to evaluate it on test.
    """

    #: Task kinds the family can fit; the suite validator rejects other pairings up front.
    tasks: ClassVar[frozenset[str]] = frozenset({"multiclass"})
    #: Smallest image side the family accepts.
    min_input_size: ClassVar[int] = 1
    #: Whether `fit` honours `settings.initial_epoch`, so that a trial can continue an earlier trial's
    #: model (weights and optimizer state) from the epoch it reached (`run_trial(resume_from=N)`).
    #: An override of `fit` that trains in phases, or another model, sets it False: such trials then
    #: train from scratch.
    continues: ClassVar[bool] = True
    #: Whether the search's cost-aware space may build this family's variants to estimate their
    #: epochs (`tunebench.space_costs`); a family whose builds are slow or stateful sets False.
    cost_model: ClassVar[bool] = True

    #: The family's hyperparameters, most important first (a name may end in `*`, e.g. `filters_*`):
    #: a search of the default space varies the first few and holds the rest at the default
    #: (`focus`, `tunebench.space_costs.focus`). Empty: every search varies the whole space.
    priority: ClassVar[tuple[str, ...]] = ()

    optimizers: ClassVar[Sequence[str]] = ("adam", "rmsprop", "sgd", "nadam")
    default_optimizer: ClassVar[str] = "adam"
    learning_rate_range: ClassVar[tuple[float, float]] = (1e-4, 1e-1)
    default_learning_rate: ClassVar[float] = 1e-3
    batch_sizes: ClassVar[Sequence[int]] = (32, 64, 128, 256)
    default_batch_size: ClassVar[int] = 64
    max_epochs: ClassVar[int] = 50
    default_epochs: ClassVar[int] = 10

    common_options: ClassVar[dict[str, Option]] = {
        "params": Option(dict, None, "hyperparameter values pinned for every trial "
                                     "(e.g. {units: 512, optimizer: rmsprop})"),
        "space": Option(dict, None, "offer only these values of these hyperparameters, e.g. {learning_rate: "
                                    "[0.001, 0.01], blocks: [1, 2]}: a grid to search, or to record as a table; "
                                    "or bound a range: {units: {max: 256}}"),
    }

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        space = self.options.get("space") or {}
        bad = [f"space: '{name}' must list at least one value, or bound a range ({{max: 256}}), not {values!r}"
               for name, values in space.items() if not _restriction_ok(values)]
        if bad:
            from tunebench.errors import OptionsError

            raise OptionsError(f"model family '{self.name}' options are not valid:", bad)

    @property
    def pins(self) -> dict[str, Any]:
        """The suite's pinned values (`params`)."""
        return dict(self.options.get("params") or {})

    @property
    def restrictions(self) -> dict[str, list[Any]]:
        """The suite's restricted hyperparameters (`space`): name -> the values offered."""
        return dict(self.options.get("space") or {})

    @abstractmethod
    def build(self, hp: HyperParameters, spec: DataSpec) -> keras.Model:
        """An uncompiled Keras model taking uint8-range images of `spec.input_shape`."""

    def training(self, hp: HyperParameters, spec: DataSpec, max_epochs: int | None = None) -> TrialSettings:
        """Declare and return the training settings. `max_epochs` is the suite's cap. The defaults
        fit the data's size (`epochs_for`, `batch_size_for`); the epochs are a fidelity
        (`declare_epochs`)."""
        epochs, fidelity = self.declare_epochs(hp, spec, max_epochs)
        low_lr, high_lr = self.learning_rate_range
        return TrialSettings(
            optimizer=hp.Choice("optimizer", list(self.optimizers), default=self.default_optimizer),
            learning_rate=hp.Float("learning_rate", low_lr, high_lr, log=True,
                                   default=self.default_learning_rate),
            batch_size=hp.Choice("batch_size", list(self.batch_sizes), default=self.batch_size_for(spec)),
            epochs=epochs,
            extra={"class_weight": hp.Boolean("class_weight", default=False)},
            fidelity=fidelity, default_epochs=min(self.epochs_for(spec), epochs) if fidelity else None,
        )

    #: The hyperparameters that count a trial's epochs. A suite that pins or restricts (`space:`)
    #: one of them searches the epochs itself, as the reference experiments do; otherwise they are a
    #: fidelity the harness assigns.
    epoch_names: ClassVar[tuple[str, ...]] = ("epochs",)

    @property
    def epochs_searched(self) -> bool:
        """Whether the suite pins or restricts the epochs (then a hyperparameter, not a fidelity)."""
        return any(name in self.pins or name in self.restrictions for name in self.epoch_names)

    def declare_epochs(self, hp: HyperParameters, spec: DataSpec, max_epochs: int | None = None,
                       name: str = "epochs") -> tuple[int, bool]:
        """A trial's epochs, and whether they are a fidelity.

        By default the epochs are not drawn: this returns the most the data calls for
        (`epoch_range`), and the harness gives each trial its own count (a multi-fidelity
        strategy's rung, the family default's calibrated `epochs_for`, or as many as the trial's
        share of the budget fits). A suite that pins `name` or restricts it with `space:` searches
        it as an ordinary hyperparameter (log scale, default `epochs_for`)."""
        top = self.epoch_range(spec, max_epochs)
        if not self.epochs_searched:
            return top, True
        # log scale: a draw of 3 epochs is as likely as one of 30
        return hp.Int(name, 1, top, log=True, default=min(self.epochs_for(spec), top)), False

    #: The training-set size `default_epochs` and `max_epochs` are meant for.
    reference_train_size: ClassVar[int] = 10_000

    def epochs_for(self, spec: DataSpec) -> int:
        """The default number of epochs for data of this size: `default_epochs` at
        `reference_train_size` images, more on smaller sets and fewer on larger ones (by the
        square root of the ratio, so that small sets get enough steps and large ones are not trained
        for hours by default)."""
        n = spec.train_size
        if not n:
            return self.default_epochs
        scaled = self.default_epochs * math.sqrt(self.reference_train_size / n)
        return int(max(1, min(self.max_epochs, round(scaled))))

    def epoch_range(self, spec: DataSpec, max_epochs: int | None = None) -> int:
        """The largest `epochs` a search may draw: `max_epochs` scaled to the data's size like the
        default (at least twice the default), capped by the suite's `max_epochs`."""
        top = self.max_epochs
        if spec.train_size:
            top = max(2 * self.epochs_for(spec), min(self.max_epochs, round(self.max_epochs * math.sqrt(
                self.reference_train_size / spec.train_size))))
            top = min(top, self.max_epochs)
        return top if max_epochs is None else max(1, min(top, max_epochs))

    def batch_size_for(self, spec: DataSpec) -> int:
        """The default batch size: `default_batch_size`, doubled (within `batch_sizes`) from five
        times `reference_train_size` training images on, where fewer, larger steps per epoch pay."""
        size = self.default_batch_size
        if spec.train_size and spec.train_size >= 5 * self.reference_train_size:
            larger = [b for b in self.batch_sizes if b >= 2 * size]
            size = min(larger) if larger else size
        return size

    def default_values(self, spec: DataSpec) -> dict[str, Any]:
        """The family's default configuration, where it is not simply every declared default: values
        that override the defaults in the first trial of every search (`first_trial: defaults`) and in
        `fixed`'s configuration. The suite's pins override these in turn. Empty by default."""
        return {}

    def check(self, spec: DataSpec) -> list[str]:
        """Why this family cannot fit data of `spec`, if it cannot."""
        problems = []
        if spec.task not in self.tasks:
            problems.append(f"model family '{self.name}' does not support {spec.task} datasets "
                            f"(it supports: {', '.join(sorted(self.tasks))})")
        side = min(spec.input_shape[:2])
        if side < self.min_input_size:
            problems.append(f"model family '{self.name}' needs images of at least "
                            f"{self.min_input_size} px; the dataset gives {spec.input_shape[0]}x"
                            f"{spec.input_shape[1]} (resize it with the dataset's size option)")
        return problems

    def check_resources(self) -> list[str]:
        """Problems with what the family needs from outside (pretrained weights), before any training."""
        return []

    def compile(self, model: keras.Model, settings: TrialSettings, spec: DataSpec) -> None:
        """Compile with the settings' optimizer and the task's loss and metrics."""
        model.compile(optimizer=make_optimizer(settings.optimizer, settings.learning_rate),
                      loss=loss_for(spec.task), metrics=metrics_for(spec.task), **settings.compile_options)

    def fit(self, model: keras.Model, data: Splits, settings: TrialSettings,
            callbacks: list[keras.callbacks.Callback], verbose: int = 0) -> Any:
        """Train on the training split, validating on the validation split after every epoch.

        Overrides must pass `callbacks` to every `model.fit` call: they carry the deadline. They
        should train on `data.train` and validate on `data.validation`, which are on the accelerator
        when the harness put them there (`data.x_train` etc. are always the host arrays).
        `settings.extra["class_weight"]`, when true, weights classes by `data.class_weights()`.
        """
        class_weight = class_weight_for(data, settings)
        if settings.extra.get("class_weight") and data.spec.task != "multiclass":
            # positive-class weighting of each label's binary cross-entropy
            weights = data.class_weights()
            model.compile(optimizer=model.optimizer, metrics=metrics_for(data.spec.task), **settings.compile_options,
                          loss=weighted_binary_crossentropy([weights[i] for i in range(len(weights))]))
        return model.fit(*data.train, validation_data=data.validation,
                         epochs=settings.epochs, batch_size=settings.batch_size, class_weight=class_weight,
                         callbacks=callbacks, verbose=verbose, initial_epoch=settings.initial_epoch)


def _restriction_ok(values: Any) -> bool:
    """A `space:` entry: a non-empty list of values, or a mapping of `min` and/or `max` numbers."""
    if isinstance(values, dict):
        return bool(values) and set(values) <= {"min", "max"} and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values.values())
    return isinstance(values, list) and bool(values)


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    """A Keras optimizer by name; plain `sgd` gets momentum 0.9, as in the reference experiments."""
    import keras

    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.9)
    return keras.optimizers.get({"class_name": name, "config": {"learning_rate": learning_rate}})


DEFAULT_AUGMENTATION = {"flip": "horizontal", "shift": 0.1, "rotation": 0.05, "zoom": 0.1}


def default_augmentation() -> dict[str, Any]:
    """The augmentation strengths `augmentation` uses by default (a fresh copy to change): horizontal
    flips, shifts and zooms of 10 %, rotations of 5 % of a turn."""
    return dict(DEFAULT_AUGMENTATION)


def augmentation(x: Any, strengths: Mapping[str, Any] | None = None) -> Any:
    """Random flip, shift, rotation and zoom as Keras preprocessing layers inside the model: they run
    on the accelerator, only while training (identity at inference)."""
    import keras

    o = {**DEFAULT_AUGMENTATION, **(strengths or {})}
    if o["flip"] != "none":
        x = keras.layers.RandomFlip(o["flip"])(x)
    if o["shift"]:
        x = keras.layers.RandomTranslation(o["shift"], o["shift"])(x)
    if o["rotation"]:
        x = keras.layers.RandomRotation(o["rotation"])(x)
    if o["zoom"]:
        x = keras.layers.RandomZoom(o["zoom"])(x)
    return x


def class_weight_for(data: Splits, settings: TrialSettings) -> dict[int, float] | None:
    """The `class_weight` argument of `model.fit`: balanced weights when the `class_weight`
    hyperparameter is on and the task is multiclass (multilabel weighting goes into the loss)."""
    if settings.extra.get("class_weight") and data.spec.task == "multiclass":
        return data.class_weights()
    return None


def stopped(callbacks: Sequence[Any]) -> bool:
    """Whether the harness's callback stopped training (deadline or NaN): a multi-phase `fit`
    must not start its next phase then."""
    return any(getattr(cb, "stopped", False) for cb in callbacks)


def weighted_binary_crossentropy(pos_weight: Sequence[float]) -> Any:
    """Binary cross-entropy with each label's positive term weighted (written with keras.ops)."""
    import keras
    from keras import ops

    weights = ops.convert_to_tensor(list(pos_weight), dtype="float32")

    def loss(y_true: Any, y_pred: Any) -> Any:
        eps = keras.config.epsilon()
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.clip(y_pred, eps, 1 - eps)
        terms = weights * y_true * ops.log(y_pred) + (1 - y_true) * ops.log(1 - y_pred)
        return -ops.mean(terms, axis=-1)

    return loss


def loss_for(task: Task) -> str:
    """The Keras loss for a task: sparse categorical cross-entropy (integer labels) or binary
    cross-entropy (multi-hot labels)."""
    return "sparse_categorical_crossentropy" if task == "multiclass" else "binary_crossentropy"


def metrics_for(task: Task) -> list[Any]:
    """Accuracy for multiclass; binary accuracy and micro/macro F1 (threshold 0.5) for multilabel."""
    if task == "multiclass":
        return ["accuracy"]
    import keras

    return ["binary_accuracy", keras.metrics.F1Score(average="micro", threshold=0.5, name="f1_micro"),
            keras.metrics.F1Score(average="macro", threshold=0.5, name="f1_macro")]


def scaled_inputs(spec: DataSpec) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """An input for uint8-range images and the same images scaled to [0, 1] inside the model."""
    import keras

    inputs = keras.Input(shape=spec.input_shape)
    return inputs, keras.layers.Rescaling(1.0 / 255)(inputs)


def output_layer(spec: DataSpec, x: keras.KerasTensor) -> keras.KerasTensor:
    """The classification head's last layer: softmax (multiclass) or sigmoid (multilabel)."""
    import keras

    activation = "softmax" if spec.task == "multiclass" else "sigmoid"
    # float32 even under mixed precision: a float16 softmax loses the small probabilities
    return keras.layers.Dense(spec.num_classes, activation=activation, name="predictions", dtype="float32")(x)


def objective_for(task: Task) -> str:
    """The validation metric strategies maximise, as Keras names it in the fit history."""
    return "val_accuracy" if task == "multiclass" else "val_f1_macro"
