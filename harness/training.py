"""The Keras side of a trial: the callback that keeps the clock and the record.

Imported only by code that trains (the search's child process), so Keras loads there and nowhere
else. Deliberately light per batch: one clock read, no tensor access (no device sync).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import keras

from tunebench.errors import SpaceError

if TYPE_CHECKING:
    from tunebench.datasets import DataSpec
    from tunebench.models import ModelFamily, TrainingSettings
    from tunebench.settings import TrainingOptions
    from tunebench.space import HyperParameters


class TrialCallback(keras.callbacks.Callback):
    """Stops training at the trial's deadline and records each completed epoch.

    At the first batch end past `deadline` it sets `model.stop_training`; Keras then ends the
    epoch and would validate the partial epoch, which the callback cuts short
    (`model.stop_evaluating`) and leaves out of the record. A non-finite loss stops the trial.

    Args:
        deadline: `time.monotonic()` value at which training must stop.
        objective: the validation metric to maximise (e.g. `val_accuracy`).
        on_epoch: called with (epoch, metrics, seconds since fit began) after each completed epoch,
            before any pruning decision; it may raise `TrialPruned`.
        beat: only epochs scoring above this keep a copy of their weights (the search's best so
            far), so that the selected configuration can be evaluated on test with the weights
            that earned its validation score.
    """

    def __init__(self, deadline: float, objective: str,
                 on_epoch: Callable[[int, Mapping[str, float], float], None],
                 beat: float | None = None) -> None:
        super().__init__()
        self.deadline = deadline
        self.objective = objective
        self.on_epoch = on_epoch
        self.beat = beat
        self.timed_out = False
        self.non_finite = False
        self.history: list[dict[str, float]] = []
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.best_weights: list[Any] | None = None
        #: The model the snapshot was taken from: the trial's model, or a sub-model of it that
        #: shares its layers (a head trained on cached features).
        self.best_owner: Any = None
        self.epoch_seconds: list[float] = []
        self.eval_seconds = 0.0
        self._fit_start = 0.0
        self._epoch_start = 0.0
        self._eval_start = 0.0
        self._cut = False

    @property
    def stopped(self) -> bool:
        """Training was stopped by the deadline or a non-finite loss."""
        return self.timed_out or self.non_finite

    # -- clock ---------------------------------------------------------------------------------------
    def on_train_begin(self, logs: Any = None) -> None:
        self._fit_start = time.monotonic()

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._epoch_start = time.monotonic()

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        if time.monotonic() >= self.deadline:
            self._cut = True
            self.timed_out = True
            self.model.stop_training = True

    def on_test_begin(self, logs: Any = None) -> None:
        self._eval_start = time.monotonic()
        if self._cut:  # no point validating a partial epoch after the deadline
            self.model.stop_evaluating = True

    def on_test_batch_end(self, batch: int, logs: Any = None) -> None:
        # a long validation pass must not carry the trial past its deadline either
        if not self._cut and time.monotonic() >= self.deadline:
            self._cut = True
            self.timed_out = True
            self.model.stop_training = True
            self.model.stop_evaluating = True

    def on_test_end(self, logs: Any = None) -> None:
        self.eval_seconds += time.monotonic() - self._eval_start

    # -- record --------------------------------------------------------------------------------------
    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        now = time.monotonic()
        if self._cut:
            return
        self.epoch_seconds.append(now - self._epoch_start)
        metrics = {k: float(v) for k, v in (logs or {}).items() if _is_number(v)}
        if not all(math.isfinite(metrics[k]) for k in ("loss", "val_loss") if k in metrics):
            self.non_finite = True
            self.model.stop_training = True
        self.history.append(metrics)
        score = metrics.get(self.objective)
        if score is not None and math.isfinite(score) and not self.non_finite:
            if self.best_score is None or score > self.best_score:
                self.best_score, self.best_epoch = score, epoch
                if self.beat is None or score > self.beat:
                    self.best_weights, self.best_owner = self.model.get_weights(), self.model
        total_epochs = (self.params or {}).get("epochs")
        if now >= self.deadline and total_epochs is not None and epoch + 1 < total_epochs:
            self.timed_out = True
            self.model.stop_training = True
        self.on_epoch(epoch, metrics, now - self._fit_start)


def _is_number(value: Any) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


def save_weights(model: keras.Model, callback: TrialCallback, path: str) -> None:
    """Write the best epoch's weights (or the model's current ones) to a `.weights.h5` file."""
    if callback.best_weights is not None:
        (callback.best_owner or model).set_weights(callback.best_weights)
    model.save_weights(path)


def inference_ms(model: keras.Model, x: Any, *, batch_size: int = 256, limit: int = 2048) -> float:
    """Milliseconds per image of batched prediction on this process's device (after a warm-up)."""
    sample = x[:limit]
    model.predict(sample[:batch_size], batch_size=batch_size, verbose=0)
    start = time.perf_counter()
    model.predict(sample, batch_size=batch_size, verbose=0)
    return 1000 * (time.perf_counter() - start) / max(1, len(sample))


def model_bytes(model: keras.Model) -> int:
    """Size of the model's weights in bytes."""
    import numpy as np

    return int(sum(int(np.prod(w.shape)) * np.dtype(w.dtype).itemsize for w in model.weights))


def test_report(model: keras.Model, x: Any, y: Any, task: str, class_names: tuple[str, ...],
                batch_size: int) -> dict[str, Any]:
    """Per-class precision/recall/F1 (and a confusion matrix for multiclass) on the test split."""
    import numpy as np
    from sklearn.metrics import classification_report, confusion_matrix

    scores = model.predict(x, batch_size=batch_size, verbose=0)
    if task == "multiclass":
        predicted = scores.argmax(axis=1)
        labels = list(range(len(class_names)))
        report = classification_report(y, predicted, labels=labels, target_names=list(class_names),
                                       output_dict=True, zero_division=0)
        return {"per_class": report, "confusion_matrix": confusion_matrix(y, predicted, labels=labels).tolist()}
    predicted = (scores >= 0.5).astype(int)
    report = classification_report(np.asarray(y).astype(int), predicted, target_names=list(class_names),
                                   output_dict=True, zero_division=0)
    return {"per_class": report}


def release(model: Any) -> None:
    """Free what a finished trial holds (Keras's global state; `clear_session` also runs the
    garbage collector). Under TensorFlow, also the traced graphs TensorFlow itself would keep."""
    del model
    keras.backend.clear_session()
    if keras.backend.backend() == "tensorflow":
        purge_custom_gradients()


def purge_custom_gradients() -> int:
    """Drop the gradient functions TensorFlow registers for `tf.custom_gradient` ops; returns how many.

    Each time a training step is traced, every `tf.custom_gradient` in it registers its gradient
    function under a fresh name (`CustomGradient-N`) in TensorFlow's global gradient registry, and
    nothing ever removes it. The function's closure holds tensors of the traced graph, so every
    trained model's training graph stays alive: about 6 MB per `fit` of a small convnet, the whole
    of the per-trial memory growth tunebench saw under TensorFlow (TensorFlow issues #97697 and
    #27492, keras #20245). A gradient function is only looked up while a graph that uses it is
    traced and differentiated; a later trace registers fresh ones, so after `clear_session` they are
    dead weight. The registry is private, so this does nothing if TensorFlow changes its layout.
    """
    try:
        from tensorflow.python.framework import ops

        registry = ops._gradient_registry._registry
    except (ImportError, AttributeError):
        return 0
    stale = [name for name in list(registry) if isinstance(name, str) and name.startswith("CustomGradient-")]
    for name in stale:
        registry.pop(name, None)
    return len(stale)


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether an exception is an accelerator or host out-of-memory error, on any backend."""
    text = f"{type(exc).__name__} {exc}"
    return any(s in text for s in ("ResourceExhausted", "RESOURCE_EXHAUSTED", "OutOfMemory",
                                   "out of memory", "MemoryError", "OOM when allocating"))


# -- where the data lives ------------------------------------------------------------------------------

#: The training and validation splits are copied to the accelerator up front when they take at most
#: this share of the accelerator memory free to the search (the rest is for models and activations).
DEVICE_DATA_SHARE = 0.25


def accelerator_memory() -> tuple[str, int | None] | None:
    """`(device, bytes free to this search)` of the accelerator the Keras backend trains on, or
    None when it trains on the CPU. Under TensorFlow always None: Keras feeds TensorFlow models
    through a tf.data pipeline, which reads host memory whatever device the arrays are on, and
    prefetches (so there the data is streamed, never placed)."""
    import os

    from tunebench.job import GPU_SHARE_ENV

    backend = keras.backend.backend()
    share = max(1, int(os.environ.get(GPU_SHARE_ENV) or 1))
    if backend == "torch":
        import torch

        if not torch.cuda.is_available():
            return None
        free, total = torch.cuda.mem_get_info()
        return f"cuda:{torch.cuda.current_device()}", min(free, total // share)
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform == "cpu":
            return None
        stats = device.memory_stats() or {}
        limit = stats.get("bytes_limit")
        return str(device), (None if limit is None else (limit - stats.get("bytes_in_use", 0)) // share)
    return None


def place_data(data: Any, policy: object = "auto") -> tuple[Any, str]:
    """Copy a search's training and validation splits into accelerator memory once, before its first
    trial, so that no trial copies a batch from the host; returns the splits and a note on where
    they are, for the run's record. `policy` is the suite's `training: data_on_device` (see
    `decide_placement`). A copy that fails for lack of memory leaves the data on the host and says so.
    """
    import dataclasses

    backend = keras.backend.backend()
    arrays = {"x_train": data.x_train, "y_train": data.y_train, "x_val": data.x_val, "y_val": data.y_val}
    size = sum(int(a.nbytes) for a in arrays.values())
    device, note = decide_placement(policy, backend, size, accelerator_memory())
    if device is None:
        return data, note
    try:
        placed = {name: _to_device(a, backend, device) for name, a in arrays.items()}
    except Exception as exc:  # out of accelerator memory: train from the host instead
        if not is_out_of_memory(exc):
            raise
        return data, f"host (copying {size / 2**20:.0f} MB to {device} failed: {type(exc).__name__})"
    return dataclasses.replace(data, on_device=placed), note


def decide_placement(policy: object, backend: str, size: int,
                     accelerator: tuple[str, int | None] | None) -> tuple[str | None, str]:
    """Where `size` bytes of training data should live: `(device, note)`, device None for the host.

    `auto` places the data when there is an accelerator and the data takes at most
    `DEVICE_DATA_SHARE` of the memory free to this search there; otherwise it stays on the host,
    from where Keras streams it with prefetching. `true` places it whenever the backend can (on a
    CPU-only machine, as the backend's own CPU tensors), `false` never. TensorFlow always streams
    (see `accelerator_memory`).
    """
    mb = size / 2**20
    if policy is False:
        return None, "host (data_on_device: false)"
    if backend not in ("torch", "jax"):
        return None, f"host, streamed by tf.data with prefetching ({backend} reads input from host memory)"
    forced = policy is True
    if accelerator is None and not forced:
        return None, "host (no accelerator)"
    device, free = accelerator or ("cpu", None)
    if not forced and free is not None and size > DEVICE_DATA_SHARE * free:
        return None, (f"host, streamed with prefetching ({mb:.0f} MB is more than "
                      f"{DEVICE_DATA_SHARE:.0%} of the {free / 2**20:.0f} MB free on {device})")
    return device, f"{device} ({mb:.1f} MB placed before the first trial)"


def _to_device(array: Any, backend: str, device: str) -> Any:
    import numpy as np

    array = np.ascontiguousarray(array)
    if backend == "torch":
        import torch

        return torch.from_numpy(array).to(device)
    import jax

    # the accelerator is jax's default device (see `accelerator_memory`)
    return jax.device_put(array, jax.devices("cpu")[0] if device == "cpu" else jax.devices()[0])


# -- how a trial's model is built and compiled -------------------------------------------------------------

#: Models up to this many parameters get several batches per compiled call (`steps_per_execution`).
SMALL_MODEL_PARAMS = 2_000_000


def set_precision(options: TrainingOptions) -> None:
    """Apply the suite's `mixed_precision` setting (Keras's global dtype policy)."""
    keras.mixed_precision.set_global_policy(options.dtype_policy)


def compile_options(options: TrainingOptions, backend: str, model: Any, steps_per_epoch: int) -> dict[str, Any]:
    """`model.compile` arguments from the suite's `training:` block.

    `steps_per_execution: auto` runs several batches per compiled call for small models (up to
    `SMALL_MODEL_PARAMS`), where the per-call dispatch would dominate: about 20 calls per epoch, at
    most 32 batches each. PyTorch's trainer supports only 1. `jit_compile: auto` leaves Keras's
    own default (XLA where it is known to work).
    """
    compiled: dict[str, Any] = {}
    if options.jit_compile != "auto":
        compiled["jit_compile"] = bool(options.jit_compile)
    spe = options.steps_per_execution
    if spe == "auto":
        try:
            small = int(model.count_params()) <= SMALL_MODEL_PARAMS
        except Exception:  # not built yet: leave Keras's default
            small = False
        spe = max(1, min(32, steps_per_epoch // 20)) if small else 1
    if backend == "torch":
        spe = 1
    if int(spe) > 1:
        compiled["steps_per_execution"] = int(spe)
    return compiled


def build_trial_model(family: ModelFamily, hp: HyperParameters, spec: DataSpec, options: TrainingOptions, *,
                      max_epochs: int | None, train_size: int, epochs: int | None = None,
                      weights: str | None = None) -> tuple[Any, TrainingSettings]:
    """Build one configuration's model, declare its training settings and compile it, as every
    trial and the test evaluation do.

    Args:
        epochs: a strategy's epoch count instead of the `epochs` hyperparameter (capped by `max_epochs`).
        train_size: images in the training split, for the batches of an epoch.
        weights: a `.weights.h5` file to load before compiling (the test evaluation).

    Raises:
        SpaceError: the suite pins a hyperparameter the family never declares.
    """
    model = family.build(hp, spec)
    settings = family.training(hp, spec, max_epochs)
    if epochs is not None:
        settings = dataclasses.replace(settings, epochs=int(epochs))
    if max_epochs is not None:
        settings = dataclasses.replace(settings, epochs=min(settings.epochs, max_epochs))
    unused = hp.unused_pins()
    if unused:
        declared = ", ".join(hp.params) or "none"
        raise SpaceError(f"pinned hyperparameter(s) {', '.join(unused)} not declared by model "
                         f"family '{family.name}' (it declares: {declared})")
    settings = dataclasses.replace(settings, compile_options=compile_options(
        options, keras.backend.backend(), model, train_size // settings.batch_size))
    if weights is not None:
        model.load_weights(weights)  # before compiling: the file holds no optimizer state we need
    family.compile(model, settings, spec)
    return model, settings
