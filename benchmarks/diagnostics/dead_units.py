"""Does a configuration's network die? Trains one pinned configuration of a model family on one
seed's split and prints, every few steps, the running loss and the share of *dead* units in the
first dense layer: units whose ReLU output is zero on every one of 500 validation images. A network
whose dense units are all dead predicts one class whatever the image.

    python benchmarks/diagnostics/dead_units.py DATASET 'DATASET_OPTIONS_JSON' FAMILY 'PINS_JSON' [EVERY]

Example (REFERENCE.md, section B, the batch-size study's batch 1):

    python benchmarks/diagnostics/dead_units.py image_folder \\
        '{"path": "/data/cifar10", "size": 32, "validation": 0.25, "limit": 10000}' scratch_cnn \\
        '{"blocks": 3, "filters_0": 32, "filters_1": 64, "filters_2": 128, "dropout": 0.0,
          "dense_dropout": 0.0, "dense_units": 256, "optimizer": "sgd", "learning_rate": 0.01,
          "epochs": 1, "batch_size": 1}' 500
"""

from __future__ import annotations

import json
import sys
import time


def main(argv: list[str]) -> int:
    if len(argv) not in (4, 5):
        print(__doc__, file=sys.stderr)
        return 2
    import keras
    import numpy as np

    from tunebench.registry import load_plugins
    from tunebench.space import DefaultHyperParameters

    dataset, options, family_name, pins = argv[0], json.loads(argv[1]), argv[2], json.loads(argv[3])
    every = int(argv[4]) if len(argv) == 5 else 100
    catalog = load_plugins(())
    data = catalog.datasets.get(dataset)(**options).splits(0)
    family = catalog.model_families.get(family_name)()
    hp = DefaultHyperParameters().pin(pins)
    keras.utils.set_random_seed(0)
    model = family.build(hp, data.spec)
    settings = family.training(hp, data.spec)
    family.compile(model, settings, data.spec)
    dense = next(layer for layer in model.layers if isinstance(layer, keras.layers.Dense))
    probe = keras.Model(model.input, dense.output)
    sample = data.x_val[:500]

    def dead() -> float:
        return float((np.asarray(probe.predict(sample, verbose=0)).max(axis=0) <= 0).mean())

    class Log(keras.callbacks.Callback):
        epoch = 0

        def on_epoch_begin(self, epoch: int, logs: object = None) -> None:
            self.epoch = epoch

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            if batch % every == 0:
                print(f"epoch {self.epoch} step {batch}: loss {(logs or {})['loss']:.3f}, dead units {dead():.2f}",
                      flush=True)

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            print(f"epoch {epoch} done: " + ", ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items()), flush=True)

    print(settings, flush=True)
    start = time.perf_counter()
    family.fit(model, data, settings, [Log()], 0)
    print(f"dead units at the end: {dead():.2f} ({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
