"""Host memory per build + train cycle of a bare Keras loop, without tunebench.

Used to find where tunebench's per-trial memory growth under TensorFlow comes from (see
RESULTS.md): a small convnet is built, compiled, trained for one epoch and released with
`keras.backend.clear_session()` 22 times, and the slope of the process's RSS over the last 16
cycles is printed. Variants change one thing at a time:

    python benchmarks/perf/keras_fit_memory.py fit        # model.fit (the default)
    python benchmarks/perf/keras_fit_memory.py sgd        # fit with SGD instead of Adam
    python benchmarks/perf/keras_fit_memory.py eager      # fit with run_eagerly=True (no tf.function)
    python benchmarks/perf/keras_fit_memory.py evaluate   # evaluate only, no training step
    python benchmarks/perf/keras_fit_memory.py predict    # predict only
    python benchmarks/perf/keras_fit_memory.py build      # build + compile only
    python benchmarks/perf/keras_fit_memory.py purge      # fit, then tunebench's release (TensorFlow's
                                                          # leaked custom-gradient registrations dropped)

Run it under each backend with KERAS_BACKEND=tensorflow / torch / jax.
"""

from __future__ import annotations

import sys

import numpy as np
import psutil

VARIANTS = ("fit", "sgd", "eager", "evaluate", "predict", "build", "purge")


def main() -> int:
    variant = sys.argv[1] if len(sys.argv) > 1 else "fit"
    if variant not in VARIANTS:
        print(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}", file=sys.stderr)
        return 2
    import keras

    rng = np.random.default_rng(0)
    x = rng.random((1500, 16, 16, 1), dtype="float32")
    y = rng.integers(0, 10, 1500)
    rss = []
    for _ in range(22):
        model = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Conv2D(16, 3, activation="relu"),
                                  keras.layers.MaxPooling2D(), keras.layers.Flatten(),
                                  keras.layers.Dense(32, activation="relu"),
                                  keras.layers.Dense(10, activation="softmax")])
        model.compile("sgd" if variant == "sgd" else "adam", "sparse_categorical_crossentropy", metrics=["accuracy"],
                      run_eagerly=variant == "eager")
        if variant in ("fit", "sgd", "eager", "purge"):
            model.fit(x, y, epochs=1, batch_size=64, verbose=0, validation_split=0.1)
        elif variant == "evaluate":
            model.evaluate(x, y, verbose=0)
        elif variant == "predict":
            model.predict(x, verbose=0)
        if variant == "purge":
            from tunebench import training

            training.release(model)
        del model
        keras.backend.clear_session()
        rss.append(psutil.Process().memory_info().rss / 2**20)
    warm = rss[6:]
    n = len(warm)
    mx, my = (n - 1) / 2, sum(warm) / n
    slope = sum((i - mx) * (v - my) for i, v in enumerate(warm)) / sum((i - mx) ** 2 for i in range(n))
    print(f"{keras.backend.backend()} {variant}: {slope:+.2f} MB per cycle ({rss[0]:.0f} -> {rss[-1]:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
