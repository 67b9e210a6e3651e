"""The Keras side of a trial: the callback that keeps the clock and the record.

Imported only by code that trains (the search's child process), so Keras loads there and nowhere
else. Deliberately light per batch: one clock read, no tensor access (no device sync).
"""

from __future__ import annotations

import dataclasses
import math
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras

from tunebench.declared import DeclaredSpace, declared_space
from tunebench.errors import SpaceError
from tunebench.vocabulary import FailureKind, failure_kind

if TYPE_CHECKING:
    from tunebench.datasets import DataSpec
    from tunebench.models import ModelFamily, TrialSettings
    from tunebench.settings import ExecutionSettings
    from tunebench.space import HyperParameters


class TrialStopped(Exception):
    """Raised by `TrialCallback` to leave `model.fit` at once: the deadline passed, the guard judged
    the epoch hopeless, or a validation pass could not end in time. Setting `model.stop_training`
    would let Keras validate the partial epoch first (and `evaluate` resets `stop_evaluating`
    before its first batch, which traces the evaluation step): seconds past the deadline. The
    partial epoch is discarded either way. `TrialContext` catches it; the callback's flags say why."""


@dataclass(frozen=True)
class Guard:
    """The feasibility guard of a trial's first epoch (`SearchSettings.feasibility_guard`)."""

    margin: float = 1.0
    #: Wait for this many seconds of steps after the first batch end (tracing) before judging.
    settle_s: float = 0.3


#: A validation image's cost against a training image's (a forward pass against a forward and a
#: backward pass and an update, about a third; a half leaves room).
VALIDATION_COST = 0.5


class TrialCallback(keras.callbacks.Callback):
    """Stops training at the trial's deadline and records each completed epoch.

    At the first batch end past `deadline` it leaves `model.fit` at once (`TrialStopped`, which the
    harness catches), so that Keras does not validate the partial epoch; the partial epoch is left
    out of the record. A non-finite loss stops the trial at the end of its epoch.
    With the `guard`, an epoch that cannot end before the deadline is not trained at all: the first
    epoch is judged from its first steps (`infeasible`), later ones at their start from the epochs
    so far (a partial epoch would be thrown away at the deadline anyway).

    Args:
        deadline: `time.monotonic()` value at which training must stop.
        objective: the validation metric to maximise (e.g. `val_accuracy`).
        on_epoch: called with (epoch, metrics, seconds since fit began, saved) after each completed
            epoch, before any pruning decision; it may raise `TrialPruned`. `saved` says that
            `save` wrote this epoch's weights.
        beat: an epoch whose score beats this (the search's best so far) is the new best, and its
            weights are written by `save` before `on_epoch` records it, so that the record never
            names weights that are not on disk.
        save: writes the trial model's weights of epoch `epoch` (called with the epoch index).
        guard: stop the first epoch early when it is projected to end past the deadline.
        on_progress: called at most once a second while batches end (the runner's hang detection).
        val_ratio: validation images per training image, for the validation pass's expected time.
        share_end: `deadline` is the trial's share of the budget (its epochs are the harness's to
            assign): an epoch that cannot end before it is not started, and the trial ends there as
            an ordinary end (`ended == "share"`), not a timeout.
        patience: stop after this many epochs without a better score (`ended == "plateau"`), counted
            within each `fit` call; None or 0: never.
    """

    def __init__(self, deadline: float, objective: str,
                 on_epoch: Callable[[int, Mapping[str, float], float, bool], None],
                 beat: float | None = None, *, save: Callable[[int], None] | None = None,
                 guard: Guard | None = None, on_progress: Callable[[], None] | None = None,
                 val_ratio: float | None = None, share_end: bool = False, patience: int | None = None) -> None:
        super().__init__()
        self.share_end = share_end
        self.patience = patience or None
        #: Why training ended before its epochs without a fault: "share" or "plateau".
        self.ended: str | None = None
        self._since_best = 0
        self.val_ratio = val_ratio
        self.deadline = deadline
        self.objective = objective
        self.on_epoch = on_epoch
        self.beat = beat
        self.save = save
        self.guard = guard
        self.on_progress = on_progress
        self.timed_out = False
        self.non_finite = False
        #: Why the feasibility guard stopped the trial, when it did.
        self.infeasible: str | None = None
        #: The guard's last projection: first-epoch seconds and the time that was left.
        self.projection: dict[str, float] | None = None
        self.history: list[dict[str, float]] = []
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.epoch_seconds: list[float] = []
        self.eval_seconds = 0.0
        self._fit_start = 0.0
        self._epoch_start = 0.0
        self._eval_start = 0.0
        self._cut = False
        self._epoch = 0
        self._settled: tuple[float, int] | None = None  # (time, steps) at the first batch end of epoch 0
        self._last_beat = 0.0
        #: Seconds from the start of `fit` to its first batch end: building the step and tracing it.
        self.first_step_s: float | None = None
        self._train_s = 0.0  # training time of the epoch in progress, up to its last batch end

    @property
    def stopped(self) -> bool:
        """Training was stopped by the deadline, the feasibility guard or a non-finite loss."""
        return self.timed_out or self.non_finite

    # -- clock ---------------------------------------------------------------------------------------
    def on_train_begin(self, logs: Any = None) -> None:
        self._fit_start = time.monotonic()
        self._since_best = 0  # a second `fit` (a fine-tuning phase) gets its own patience

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._epoch_start = time.monotonic()
        self._epoch = epoch
        if (self.guard is not None or self.share_end) and self.epoch_seconds:
            # a later epoch that cannot end before the deadline would be cut there and thrown away:
            # stop now, and leave its time to the search (the epochs done so far are kept)
            typical = sum(self.epoch_seconds) / len(self.epoch_seconds)
            margin = self.guard.margin if self.guard is not None else 1.0
            if self._epoch_start + typical * margin > self.deadline:
                if self.share_end:  # the trial has had its share: an ordinary end
                    self.ended, self._cut = "share", True
                    self.model.stop_training = True
                    raise TrialStopped()
                self._stop()

    def _stop(self) -> None:
        self._cut = True
        self.timed_out = True
        self.model.stop_training = True
        raise TrialStopped()

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        now = time.monotonic()
        if self.first_step_s is None:
            self.first_step_s = now - self._fit_start
        self._train_s = now - self._epoch_start
        if now >= self.deadline:
            self._stop()
            return
        if self.on_progress is not None and now - self._last_beat >= 1.0:
            self._last_beat = now
            self.on_progress()
        if self.guard is not None and not self.history:  # the first epoch of this fit (a continued trial's too)
            self._judge(batch + 1, now)

    def _judge(self, steps_done: int, now: float) -> None:
        """Project the first epoch's end from its steps so far; stop it if that is past the deadline."""
        total = (self.params or {}).get("steps")
        if not total or steps_done >= total:
            return
        if self._settled is None:  # the first call includes tracing and compilation: measure from here
            self._settled = (now, steps_done)
            return
        t0, s0 = self._settled
        if steps_done - s0 < 1 or now - t0 < self.guard.settle_s:  # type: ignore[union-attr]
            return
        per_step = (now - t0) / (steps_done - s0)
        # its first score comes after the validation pass: an epoch that ends with no time to
        # validate is as lost as one that does not end
        validation = self._validation_estimate(per_step * total)
        epoch_s = (now - self._epoch_start) + per_step * (total - steps_done) + validation
        left = self.deadline - self._epoch_start
        self.projection = {"first_epoch_s": round(epoch_s, 2), "left_s": round(left, 2),
                           "validation_s": round(validation, 2), "margin": self.guard.margin}  # type: ignore[union-attr]
        remaining = (per_step * (total - steps_done) + validation) * self.guard.margin  # type: ignore[union-attr]
        if now + remaining > self.deadline:
            self.infeasible = (f"projected {epoch_s:.0f} s for its first epoch and validation, {left:.0f} s were "
                               f"left (feasibility guard, margin {self.guard.margin:g})")  # type: ignore[union-attr]
            self._stop()

    def on_test_begin(self, logs: Any = None) -> None:
        now = self._eval_start = time.monotonic()
        if self._cut or now >= self.deadline or now + self._validation_estimate() > self.deadline:
            # a validation pass that cannot end in time (the first one also traces the evaluation
            # step, a long stretch with no batch end to look at the clock) would be cut anyway
            self._stop()

    def _validation_estimate(self, train_s: float | None = None) -> float:
        """Seconds the validation pass should take after `train_s` of training (default: the epoch
        so far): the last one's, or for the first, about half the training step's tracing plus the
        training time scaled by the validation images per training image, at `VALIDATION_COST` of a
        training image each (a forward pass, no update); a sixth of it where the ratio is unknown."""
        if self.epoch_seconds and self.eval_seconds:
            return self.eval_seconds / len(self.epoch_seconds)
        train_s = self._train_s if train_s is None else train_s
        share = VALIDATION_COST * self.val_ratio if self.val_ratio is not None else 1 / 6
        return 0.5 * (self.first_step_s or 0.0) + train_s * share

    def on_test_batch_end(self, batch: int, logs: Any = None) -> None:
        # a long validation pass must not carry the trial past its deadline either
        now = time.monotonic()
        if not self._cut and now >= self.deadline:
            self._stop()
        elif self.on_progress is not None and now - self._last_beat >= 1.0:
            self._last_beat = now
            self.on_progress()

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
        saved = False
        self._since_best += 1
        if score is not None and math.isfinite(score) and not self.non_finite:
            if self.best_score is None or score > self.best_score:
                self.best_score, self.best_epoch = score, epoch
                self._since_best = 0
                if self.beat is None or score > self.beat:
                    if self.save is not None:
                        self.save(epoch)
                        saved = True
                    self.beat = score
        total_epochs = (self.params or {}).get("epochs")
        if now >= self.deadline and total_epochs is not None and epoch + 1 < total_epochs:
            if self.share_end:
                self.ended = "share"
            else:
                self.timed_out = True
            self.model.stop_training = True
        elif self.patience and self._since_best >= self.patience and not self.non_finite:
            self.ended = "plateau"
            self.model.stop_training = True
        self.on_epoch(epoch, metrics, now - self._fit_start, saved)


def _is_number(value: Any) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


def save_weights(model: keras.Model, path: str | Path) -> None:
    """Write the model's weights to a `.weights.h5` file atomically: to a temporary name first, then
    renamed, so that a process killed while writing never leaves a partial file under the real name."""
    from tunebench.atomic import atomic_file

    with atomic_file(path, suffix=".tmp.weights.h5") as tmp:  # Keras wants the suffix
        model.save_weights(str(tmp))


def save_checkpoint(model: keras.Model, path: str | Path, epoch: int) -> None:
    """Write what a later trial needs to continue this model from `epoch` (the epochs it has
    completed): `<path>.weights.h5`, which under Keras 3 holds the optimizer's variables too
    (moments, the step counter), and `<path>.json` with the epoch, both atomically."""
    import json

    from tunebench.atomic import write_text_atomic

    path = Path(path)
    save_weights(model, path.with_name(path.name + ".weights.h5"))
    write_text_atomic(path.with_name(path.name + ".json"), json.dumps({"epoch": int(epoch)}))


def has_checkpoint(path: str | Path) -> bool:
    path = Path(path)
    return path.with_name(path.name + ".weights.h5").is_file() and path.with_name(path.name + ".json").is_file()


def load_checkpoint(model: keras.Model, path: str | Path) -> tuple[int, int]:
    """Load a `save_checkpoint` into a freshly built and compiled model of the same configuration.

    The optimizer is built first, so that Keras loads its saved state along with the weights; the
    learning rate is then put back as the new trial compiled it (a strategy such as PBT may have
    changed it). Another optimizer than the saved one starts afresh (Keras skips its variables,
    with a warning). Returns the epoch the checkpoint reached and the optimizer's variable count.
    """
    import json
    import warnings

    path = Path(path)
    optimizer = model.optimizer
    optimizer.build(model.trainable_variables)
    rates = [(v, keras.ops.convert_to_numpy(v)) for v in optimizer.variables if "learning_rate" in _variable_name(v)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.load_weights(str(path.with_name(path.name + ".weights.h5")))
    skipped = any("Skipping variable loading for optimizer" in str(w.message) for w in caught)
    for variable, value in rates:
        variable.assign(value)
    epoch = int(json.loads(path.with_name(path.name + ".json").read_text())["epoch"])
    return epoch, 0 if skipped else len(optimizer.variables)


def _variable_name(variable: Any) -> str:
    return str(getattr(variable, "path", None) or getattr(variable, "name", ""))


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


def evaluate_once(model: keras.Model, x: Any, y: Any, batch_size: int) -> tuple[dict[str, float], Any]:
    """The compiled loss and metrics of `model` on `(x, y)`, and its predictions, from one
    `predict` pass: what `model.evaluate` returns (the same figures: the loss is the mean over the
    images plus the regularisation terms), without tracing a second step function for it."""
    import numpy as np

    scores = model.predict(x, batch_size=batch_size, verbose=0)
    y_pred = keras.ops.convert_to_tensor(scores)
    for metric in model.metrics:
        metric.reset_state()
    loss = model.compute_loss(x=None, y=y, y_pred=y_pred, training=False)
    metrics = {k: float(np.asarray(v)) for k, v in model.compute_metrics(None, y, y_pred, None).items()}
    metrics["loss"] = float(np.asarray(loss))
    return metrics, scores


def test_report(scores: Any, y: Any, task: str, class_names: tuple[str, ...]) -> dict[str, Any]:
    """Per-class precision/recall/F1 (and a confusion matrix for multiclass) on the test split,
    from the model's predicted `scores`."""
    import numpy as np
    from sklearn.metrics import classification_report, confusion_matrix

    scores = np.asarray(scores)
    if task == "multiclass":
        predicted = scores.argmax(axis=1)
        labels = list(range(len(class_names)))
        report = classification_report(y, predicted, labels=labels, target_names=list(class_names),
                                       output_dict=True, zero_division=0)
        return {"per_class": report, "confusion_matrix": confusion_matrix(y, predicted, labels=labels).tolist(),
                **collapse(predicted, np.asarray(y))}
    predicted = (scores >= 0.5).astype(int)
    truth = np.asarray(y).astype(int)
    report = classification_report(truth, predicted, target_names=list(class_names),
                                   output_dict=True, zero_division=0)
    return {"per_class": report, **collapse(predicted, truth)}


def collapse(predicted: Any, truth: Any) -> dict[str, Any]:
    """How many different answers a model gave on the test split: classes (multiclass) or label
    sets (multilabel). `collapsed` when it gave one answer to every image while the truth has
    several: the model ignores its input (a network whose ReLU units all died does this; REFERENCE.md,
    section B, the batch-1 row), and its score is only that answer's share."""
    import numpy as np

    predicted, truth = np.asarray(predicted), np.asarray(truth)
    distinct = len(np.unique(predicted, axis=0)) if len(predicted) else 0
    found = {"predicted_distinct": int(distinct),
             "collapsed": bool(distinct == 1 and len(np.unique(truth, axis=0)) > 1)}
    if truth.ndim == 2 and len(truth):
        # multilabel: a label set the same on every test image lets a constant answer score perfectly
        found["trivial"] = bool(len(np.unique(truth, axis=0)) == 1)
    return found


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
        if failure_kind(exc) != FailureKind.OOM:
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

#: `steps_per_execution: auto` groups batches into compiled calls of at most this many seconds, so
#: that the deadline (checked between calls) is seen several times a second whatever the model.
EXECUTION_TARGET_S = 0.2
#: At most this many batches per compiled call, and at least about 20 calls per epoch.
MAX_STEPS_PER_EXECUTION = 32


def set_precision(options: ExecutionSettings) -> None:
    """Apply the suite's `mixed_precision` setting (Keras's global dtype policy)."""
    keras.mixed_precision.set_global_policy(options.dtype_policy)


def estimate_step_seconds(model: Any, sample: Any, batch_size: int) -> float:
    """Seconds one training step of `batch_size` images is expected to take, from a forward pass.

    Two eager forward passes of a whole batch where `sample` has one (the second is timed), times
    three for the backward pass and the update. A full batch keeps eager dispatch a small part of
    the figure (timing 16 images and scaling up to 256 multiplied it by 16: up to 7 times the real
    step on CIFAR-10-sized nets); what remains makes it an overestimate for tiny models, which errs
    on the side of checking the deadline more often. (Timing a second batch size to separate the
    dispatch made a later `fit` of a convolutional net stall at its start now and then, under
    TensorFlow on CPU: one shape only.)
    """
    import numpy as np

    n = max(1, min(len(sample), batch_size))
    x = np.asarray(sample[:n])
    model(x, training=False)
    start = time.perf_counter()
    model(x, training=False)
    return 3.0 * (time.perf_counter() - start) * batch_size / n


#: The verdict before training rejects a draw only when its estimated first epoch is this many times
#: the time left: on 14 draws of `scratch_cnn`'s space on the CIFAR-10 subset (2 CPU cores) the
#: full-batch estimate was 0.60-1.74 times the measured epoch (benchmarks/REFERENCE.md, section E).
PREFIT_FACTOR = 2.0


def prefit_verdict(step_seconds: float | None, train_size: int, batch_size: int, left_s: float,
                   margin: float = 1.0) -> tuple[float, str | None] | None:
    """The feasibility guard's verdict before training, from the forward pass timed at build time.

    Returns None without an estimate, else (estimated first-epoch seconds, the reason to stop, or
    None when the trial may start). A draw is stopped only when the estimate is `PREFIT_FACTOR`
    times past the time left (times `margin`), so that an estimate that runs high does not turn a
    feasible trial away; the first steps of `fit` judge the rest (`TrialCallback`). This saves the
    tracing and first steps (several seconds) of a hopeless draw.
    """
    if step_seconds is None or step_seconds <= 0 or batch_size <= 0:
        return None
    epoch_s = step_seconds * math.ceil(train_size / batch_size)
    if epoch_s * margin <= PREFIT_FACTOR * left_s:
        return epoch_s, None
    return epoch_s, (f"estimated {epoch_s:.0f} s for its first epoch, {max(left_s, 0):.0f} s were left for it "
                     f"(feasibility guard before training, margin {margin:g})")


def compile_options(options: ExecutionSettings, backend: str, model: Any, steps_per_epoch: int,
                    step_seconds: float | None = None) -> dict[str, Any]:
    """`model.compile` arguments from the suite's `training:` block.

    `steps_per_execution: auto` runs several batches per compiled call where the per-call dispatch
    would dominate: as many as fit in `EXECUTION_TARGET_S` given the measured (or estimated) time
    of one step, at most 32 and at most a twentieth of an epoch. The deadline is checked between
    calls, so this keeps it checked several times a second for any model (a convolutional net with
    few parameters but many FLOPs gets 1). Without a step time it stays at 1. PyTorch's trainer
    supports only 1. `jit_compile: auto` leaves Keras's own default (XLA where it is known to work).
    """
    compiled: dict[str, Any] = {}
    if options.jit_compile != "auto":
        compiled["jit_compile"] = bool(options.jit_compile)
    spe = options.steps_per_execution
    if spe == "auto":
        spe = 1
        if step_seconds is not None and step_seconds > 0:
            spe = int(max(1, min(MAX_STEPS_PER_EXECUTION, steps_per_epoch // 20,
                                 EXECUTION_TARGET_S // step_seconds)))
    if backend == "torch":
        spe = 1
    if int(spe) > 1:
        compiled["steps_per_execution"] = int(spe)
    return compiled


#: Per model family object: the reference build of its pinned defaults, by (pins, spec, max_epochs).
_REFERENCE: weakref.WeakKeyDictionary[Any, dict[str, DeclaredSpace]] = weakref.WeakKeyDictionary()


def _reference(family: ModelFamily, pins: Mapping[str, Any], spec: DataSpec,
               max_epochs: int | None) -> DeclaredSpace:
    """The space the family declares at its defaults with `pins` applied (`declared_space`), built
    once per family, pins and spec: a pin it never reaches is not declared by the family at all (a
    conditional one is reached by the defaults)."""
    key = repr((sorted(pins.items()), spec, max_epochs))
    known = _REFERENCE.setdefault(family, {})
    if key not in known:
        known[key] = declared_space(family, spec, pins, max_epochs)  # with the family's own `space`
    return known[key]


def build_trial_model(family: ModelFamily, hp: HyperParameters, spec: DataSpec, options: ExecutionSettings, *,
                      max_epochs: int | None, train_size: int, epochs: int | None = None,
                      weights: str | None = None, sample: Any = None,
                      on_built: Callable[[], None] | None = None) -> tuple[Any, TrialSettings]:
    """Build one configuration's model, declare its training settings and compile it, as every
    trial and the test evaluation do.

    Args:
        epochs: a strategy's epoch count instead of the `epochs` hyperparameter (capped by `max_epochs`).
        train_size: images in the training split, for the batches of an epoch.
        weights: a `.weights.h5` file to load before compiling (the test evaluation).
        sample: a few training images, to time a step for `steps_per_execution: auto` (the
            measurement is recorded in `settings.extra["step_seconds"]`).
        on_built: called once the model is built and its hyperparameters all have their values
            (before the step is timed and the model compiled).

    Raises:
        SpaceError: the suite pins a hyperparameter the family never declares.
    """
    model = family.build(hp, spec)
    settings = family.training(hp, spec, max_epochs)
    if on_built is not None:
        on_built()
    if epochs is not None:
        settings = dataclasses.replace(settings, epochs=int(epochs))
    if max_epochs is not None:
        settings = dataclasses.replace(settings, epochs=min(settings.epochs, max_epochs))
    unused = hp.unused_pins()
    if unused:
        # A value this draw does not reach (a conditional hyperparameter: `filters_2` with 2 blocks)
        # is fine if the family declares it at the suite's pinned defaults; a name it never declares
        # there is a typo. The reference is built with the suite's pins, not the draw's (a grid
        # pins every value it sets, `blocks: 1` among them).
        reference = _reference(family, family.pins, spec, max_epochs)
        never = [name for name in unused if name not in reference.params]
        if never:
            raise SpaceError("; ".join(reference.problems(family.name, never)))
    backend = keras.backend.backend()
    step_seconds = None
    if options.steps_per_execution == "auto" and backend != "torch" and sample is not None and len(sample):
        try:
            step_seconds = estimate_step_seconds(model, sample, settings.batch_size)
        except Exception:  # a model that cannot run before `fit` (layers adapted there): one step a call
            step_seconds = None
    settings = dataclasses.replace(
        settings, extra={**settings.extra, "step_seconds": step_seconds},
        compile_options=compile_options(options, backend, model, train_size // settings.batch_size, step_seconds))
    if weights is not None:
        model.load_weights(weights)  # before compiling: the file holds no optimizer state we need
    family.compile(model, settings, spec)
    return model, settings
