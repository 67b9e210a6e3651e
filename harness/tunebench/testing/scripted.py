"""A model family that misbehaves on cue, for testing strategies and the runner.

`scripted` is a tiny dense network whose successive `fit` calls follow a script, e.g.
`script: [ok, fail, nan, hang]`: `ok` trains normally, `fail` raises, `nan` trains with NaN
weights (a NaN loss), `hang` sleeps forever like a plugin stuck in a native op, `slow` sleeps
`batch_sleep` seconds after every batch, `weak` trains at a learning rate too small to learn
anything (a poor trial, deterministically), `dead` trains from all-zero weights (its ReLU units
never fire, so it answers one class for every image: a collapsed model, deterministically),
`hang_after_epoch` completes its first epoch and hangs in its second, and `crash` kills its own
process (as the kernel's out-of-memory killer would). Calls past the end of the script do `then`.
Counting `fit` calls (not builds) keeps the test evaluation, which only rebuilds, unaffected;
`hang_compile` hangs in the `compile` before its `fit` (after the trial's values are drawn; with
`hang_marker`, once; `crash` with `crash_marker` too). The option `heavy: N` puts N full-resolution
3x3 convolutions of 32 filters before the dense layer: few parameters, many FLOPs, so each step is
slow whatever the parameter count says. `costly: true` declares `filters` (8, 64 or 512, default 8)
for one full-resolution convolution: a choice whose largest value costs about 60 times the default's
FLOPs. `build_sleep` sleeps in every build of a trial.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tunebench import (
    Curve,
    DataSpec,
    HyperParameters,
    ModelFamily,
    Option,
    Registry,
    Splits,
    Table,
    TrialSettings,
    hookimpl,
    output_layer,
    scaled_inputs,
)

BEHAVIOURS = ("ok", "fail", "nan", "hang", "slow", "crash", "weak", "hang_after_epoch", "dead", "hang_compile")


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
        "costly": Option(bool, False, "declare `filters` (8, 64, 512) for one full-resolution convolution"),
        "build_sleep": Option(float, 0.0, "seconds slept in every build", minimum=0.0),
        "hang_marker": Option(str, "", "a file `hang_compile` creates: it hangs only while the file is absent"),
        "crash_marker": Option(str, "", "a file `crash` creates: it crashes only while the file is absent (a "
                                        "fresh process, whose script starts again, then goes on)"),
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
        if self.options["costly"]:
            x = keras.layers.Conv2D(hp.Choice("filters", [8, 64, 512], default=8), 3, padding="same",
                                    activation="relu")(x)
        if self.options["build_sleep"]:
            time.sleep(self.options["build_sleep"])
        x = keras.layers.Flatten()(x)
        x = keras.layers.Dense(units, activation="relu")(x)
        return keras.Model(inputs, output_layer(spec, x), name="scripted")

    def compile(self, model: Any, settings: TrialSettings, spec: DataSpec) -> None:
        script = self.options["script"]
        upcoming = script[self.fits] if self.fits < len(script) else self.options["then"]
        marker = self.options["hang_marker"]
        if upcoming == "hang_compile" and not (marker and Path(marker).exists()):
            if marker:  # once only: a fresh process after the kill (and its test evaluation) goes on
                Path(marker).touch()
            while True:  # its values are drawn and on record; the runner's hang detection must end it
                time.sleep(3600)
        super().compile(model, settings, spec)

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
        marker = self.options["crash_marker"]
        if step == "crash" and not (marker and Path(marker).exists()):
            import os
            import signal

            if marker:
                Path(marker).touch()
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


class ScriptedTable(Table):
    """Test double: a synthetic table (a smooth bowl over three hyperparameters) whose curves,
    times and failures are known in closed form, for testing strategies on the simulated clock."""

    name = "scripted_table"
    options_schema = {
        "epochs": Option(int, 5, "the table's epochs (its highest fidelity)", minimum=1),
        "epoch_s": Option(float, 10.0, "seconds of one epoch at x = 0 (x adds 10 % per unit)", minimum=0.0),
        "startup_s": Option(float, 2.0, "seconds before each trial's first epoch", minimum=0.0),
        "nan": Option(list, [], "values of x whose loss goes NaN in their third epoch"),
        "fail": Option(list, [], "values of x whose trial fails in its first epoch"),
    }

    def tasks(self) -> list[str]:
        return ["bowl", "ridge"]

    def declare(self, hp: HyperParameters, task: str) -> None:
        hp.Int("x", 0, 9, default=3)
        hp.Float("lr", 1e-3, 1e-1, log=True, default=0.01)
        hp.Choice("kind", ["a", "b"], default="a")

    def default(self, task: str) -> dict[str, Any]:
        return {"x": 3, "lr": 0.01, "kind": "a"}

    def max_epochs(self, task: str) -> int:
        return int(self.options["epochs"])

    def quality(self, task: str, config: Any) -> float:
        """The score a configuration tends to: 1 at x = 6, lr = 0.01, kind b ('bowl'; 'ridge' is flatter)."""
        import math

        width = 9.0 if task == "bowl" else 18.0
        q = 0.95 - 0.5 * ((config["x"] - 6) / width) ** 2 - 0.1 * (math.log10(config["lr"]) + 2) ** 2
        return float(max(0.05, q + (0.05 if config["kind"] == "b" else 0.0)))

    def curve(self, task: str, config: Any, seed: int) -> Curve:
        import math

        q = self.quality(task, config)
        epochs = self.max_epochs(task)
        scores = tuple(q * (1 - math.exp(-(e + 1) / 2)) for e in range(epochs))
        cost = self.options["epoch_s"] * (1 + config["x"] / 10)
        failed_at, status = None, "ok"
        if config["x"] in self.options["fail"]:
            failed_at, status = 0, "failed"
        elif config["x"] in self.options["nan"]:
            failed_at, status = 2, "nan"
        return Curve(scores, (cost,) * epochs, startup_s=self.options["startup_s"], test=scores[-1] - 0.01,
                     status=status, failed_at=failed_at, error="scripted failure" if status == "failed" else None)

    def full_evaluation_s(self, task: str) -> float:
        return float(self.options["startup_s"] + self.options["epoch_s"] * 1.45 * self.max_epochs(task))

    def optimum(self, task: str) -> float:
        import math

        return self.quality(task, {"x": 6, "lr": 0.01, "kind": "b"}) * (1 - math.exp(-self.max_epochs(task) / 2))


class ScriptedSurrogate(ScriptedTable):
    """Test double: `scripted_table` as a surrogate (`Table.surrogate`) whose scores rise towards the
    corner x = 9, lr = 0.1 of its box, as a surrogate's extrapolation can."""

    name = "scripted_surrogate"
    surrogate = True

    def quality(self, task: str, config: Any) -> float:
        import math

        return float(0.5 + 0.04 * config["x"] + 0.05 * (math.log10(config["lr"]) + 3)
                     + (0.01 if config["kind"] == "b" else 0.0))

    def optimum(self, task: str) -> None:  # type: ignore[override]
        return None  # a surrogate's best is not known


@hookimpl
def tunebench_register_tables(registry: Registry[Table]) -> None:
    registry.add(ScriptedTable)
    registry.add(ScriptedSurrogate)
