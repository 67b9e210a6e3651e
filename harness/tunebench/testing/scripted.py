"""A model family that misbehaves on cue, for testing strategies and the runner.

`scripted` is a tiny dense network whose successive `fit` calls follow a script, e.g.
`script: [ok, fail, nan, hang]`: `ok` trains normally, `fail` raises, `nan` trains with NaN
weights (a NaN loss), `hang` sleeps forever like a plugin stuck in a native op, `slow` sleeps
`batch_sleep` seconds after every batch, `weak` trains at a learning rate too small to learn
anything (a poor trial, deterministically), `dead` trains from all-zero weights (its ReLU units
never fire, so it answers one class for every image: a collapsed model, deterministically),
`hang_after_epoch` completes its first epoch and hangs in its second, and `crash` kills its own
process (as the kernel's out-of-memory killer would). Calls past the end of the script do `then`. Counting `fit` calls
(not builds) keeps the test evaluation, which only rebuilds, unaffected. The option `heavy: N`
puts N full-resolution 3x3 convolutions of 32 filters before the dense layer: few parameters, many
FLOPs, so each step is slow whatever the parameter count says.
"""

from __future__ import annotations

import time
from typing import Any

from tunebench import (
    DataSpec,
    HyperParameters,
    ModelFamily,
    Option,
    Registry,
    Splits,
    TrialSettings,
    hookimpl,
    output_layer,
    scaled_inputs,
)

BEHAVIOURS = ("ok", "fail", "nan", "hang", "slow", "crash", "weak", "hang_after_epoch", "dead")


class ScriptedFailure(RuntimeError):
    """The failure a `fail` step raises."""


class Scripted(ModelFamily):
    """Test double: a tiny dense network whose fits succeed, fail, go NaN, hang or crawl on cue."""

    name = "scripted"
    tasks = frozenset({"multiclass", "multilabel"})
    default_batch_size = 32
    default_epochs = 2
    options_schema = {
        "script": Option(list, [], "behaviour of each successive fit: ok, fail, nan, hang, slow"),
        "then": Option(str, "ok", "behaviour once the script is used up", choices=BEHAVIOURS),
        "batch_sleep": Option(float, 0.05, "seconds slept after each batch by `slow`", minimum=0.0),
        "heavy": Option(int, 0, "full-resolution 3x3 convolutions (32 filters) before the dense layer", minimum=0),
    }

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        bad = [b for b in self.options["script"] if b not in BEHAVIOURS]
        if bad:
            from tunebench.errors import OptionsError

            raise OptionsError("scripted options are not valid:", [f"unknown behaviour(s) {bad}; "
                                                                    f"use {', '.join(BEHAVIOURS)}"])
        self.fits = 0

    def build(self, hp: HyperParameters, spec: DataSpec) -> Any:
        import keras

        units = hp.Int("units", 4, 64, log=True, default=16)
        inputs, x = scaled_inputs(spec)
        for _ in range(self.options["heavy"]):
            x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
        if self.options["heavy"]:
            x = keras.layers.MaxPooling2D(4)(x)
        x = keras.layers.Flatten()(x)
        x = keras.layers.Dense(units, activation="relu")(x)
        return keras.Model(inputs, output_layer(spec, x), name="scripted")

    def behaviour(self) -> str:
        script = self.options["script"]
        step: str = script[self.fits] if self.fits < len(script) else self.options["then"]
        self.fits += 1
        return step

    def fit(self, model: Any, data: Splits, settings: TrialSettings, callbacks: list[Any],
            verbose: int = 0) -> Any:
        import keras
        import numpy as np

        step = self.behaviour()
        if step == "fail":
            raise ScriptedFailure("scripted failure")
        if step == "crash":
            import os
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
        if step == "hang":
            while True:  # like a plugin stuck in a native call: only the supervisor can stop it
                time.sleep(3600)
        if step == "nan":
            model.set_weights([np.full(w.shape, np.nan, dtype=w.dtype) for w in model.get_weights()])
        if step == "dead":  # no unit ever fires and no gradient reaches the kernels: only the output bias learns
            model.set_weights([np.zeros(w.shape, dtype=w.dtype) for w in model.get_weights()])
        if step == "weak":
            model.optimizer.learning_rate = 1e-7
        if step == "hang_after_epoch":
            def hang(epoch: int, logs: Any) -> None:
                while epoch >= 1:
                    time.sleep(3600)

            callbacks = [*callbacks, keras.callbacks.LambdaCallback(on_epoch_begin=hang)]
        if step == "slow":
            pause = self.options["batch_sleep"]
            callbacks = [*callbacks, keras.callbacks.LambdaCallback(
                on_train_batch_end=lambda batch, logs: time.sleep(pause))]
        return super().fit(model, data, settings, callbacks, verbose)


@hookimpl
def tunebench_register_model_families(registry: Registry[ModelFamily]) -> None:
    registry.add(Scripted)
