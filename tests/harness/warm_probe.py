"""A test plugin for the warm worker: a model family that writes down the global state it finds
when it builds, then spoils it (environment, Keras's configuration, dtype policy), and a dataset
that counts its loads in a file. Loaded by the child processes with `--plugin tests.harness.warm_probe`."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tunebench import hookimpl
from tunebench.datasets import ArrayData, Dataset, DataSpec
from tunebench.options import Option
from tunebench_plugins.models.mlp import MLP

PROBE_OUT = "TUNEBENCH_PROBE_OUT"
PROBE_COUNT = "TUNEBENCH_PROBE_COUNT"


class Probe(MLP):
    name = "probe"

    def build(self, hp, spec):
        import keras
        import numpy as np

        model = super().build(hp, spec)
        record = {"pid": os.getpid(), "leak": os.environ.get("TUNEBENCH_PROBE_LEAK"),
                  "floatx": keras.config.floatx(), "layout": keras.config.image_data_format(),
                  "policy": keras.config.dtype_policy().name, "layer": model.layers[-1].name,
                  "draw": float(np.random.random())}
        with open(os.environ[PROBE_OUT], "a") as f:
            f.write(json.dumps(record) + "\n")
        if "TUNEBENCH_EVENT_FD" not in os.environ:  # the command line checking the space: not a search
            return model
        # spoil everything a later search could inherit
        os.environ["TUNEBENCH_PROBE_LEAK"] = "1"
        keras.config.set_image_data_format("channels_first")
        keras.config.set_floatx("float64")
        keras.config.set_dtype_policy("mixed_bfloat16")
        return model


class CountedDigits(Dataset):
    """scikit-learn's digits, each `load()` appended to the file $TUNEBENCH_PROBE_COUNT. `source`
    names a file that stands for the data on disk (its contents are not read)."""

    name = "counted_digits"
    options_schema = {"source": Option(str, None, "a file standing for the data on disk")}

    @property
    def spec(self):
        return DataSpec((8, 8, 1), tuple(str(i) for i in range(10)))

    def load(self):
        from sklearn.datasets import load_digits

        with Path(os.environ[PROBE_COUNT]).open("a") as f:
            f.write(f"{os.getpid()}\n")
        d = load_digits()
        return ArrayData(x=(d.images * 16).clip(0, 255).astype("uint8")[..., None], y=d.target)


@hookimpl
def tunebench_register_model_families(registry):
    registry.add(Probe)


@hookimpl
def tunebench_register_datasets(registry):
    registry.add(CountedDigits)
