"""LCBench (Zimmer et al., 2021) through YAHPO Gym's surrogate: 34 OpenML tasks, an MLP's
hyperparameters, validation curves for epochs 1-52 with their times.

The surrogate (`lcbench_data/model.onnx`, Apache 2.0, see its NOTICE.md) is evaluated with
onnxruntime the way YAHPO Gym's `BenchmarkSet.objective_function` evaluates it, without the
`yahpo-gym` package (which pins numpy < 2): the task id is integer-encoded (`encoding.json`), the
epoch and the seven hyperparameters go in as floats in the scenario's order, and out come the
cumulative time, validation accuracy (in percent), validation cross-entropy and balanced accuracy,
and the test cross-entropy and balanced accuracy. The surrogate is deterministic: every seed gets
the same curve. Needs `onnxruntime` (`pip install 'tunebench[tables]'`; `make install` has it).
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from tunebench import Curve, Table, hookimpl, require

DATA = Path(__file__).with_name("lcbench_data")
#: The surrogate's inputs, in YAHPO Gym's order (`cont_names` of its lcbench scenario).
INPUTS = ("epoch", "batch_size", "learning_rate", "momentum", "weight_decay", "num_layers", "max_units",
          "max_dropout")
OUTPUTS = ("time", "val_accuracy", "val_cross_entropy", "val_balanced_accuracy", "test_cross_entropy",
           "test_balanced_accuracy")
EPOCHS = 52
#: Configurations the typical cost of a full evaluation is taken over (a fixed sample).
COST_SAMPLE = 64


class LCBench(Table):
    """LCBench (YAHPO Gym surrogate): 34 OpenML tasks, 7 MLP hyperparameters, epochs 1-52."""

    name = "lcbench"
    # balanced accuracy on both sides: several tasks are imbalanced (KDDCup09 appetency, 3945, is 98 %
    # one class), where plain validation accuracy says little and the surrogate has no test accuracy
    objective = "val_balanced_accuracy"
    test_metric = "test balanced accuracy (the surrogate's, after the selected epoch)"
    surrogate = True  # YAHPO Gym's ONNX model of the LCBench runs, not the runs

    @cached_property
    def _config_space(self) -> dict[str, Any]:
        return json.loads((DATA / "config_space.json").read_text())

    @cached_property
    def _encoding(self) -> dict[str, Any]:
        return json.loads((DATA / "encoding.json").read_text())["OpenML_task_id"]

    @cached_property
    def _session(self):
        ort = require("onnxruntime", extra="tables", purpose="table 'lcbench' (YAHPO Gym's surrogate)")
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1  # one search, one core
        return ort.InferenceSession(str(DATA / "model.onnx"), options, providers=["CPUExecutionProvider"])

    def check(self):
        missing = [f for f in ("model.onnx", "config_space.json", "encoding.json") if not (DATA / f).is_file()]
        problems = ([f"the surrogate's {', '.join(missing)} is missing from {DATA}; reinstall tunebench"]
                    if missing else [])
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            problems.append("needs onnxruntime, which is not installed: pip install 'tunebench[tables]'")
        return problems

    def _params(self) -> list[dict[str, Any]]:
        return [p for p in self._config_space["hyperparameters"] if p["name"] not in ("OpenML_task_id", "epoch")]

    def tasks(self):
        return next(p["choices"] for p in self._config_space["hyperparameters"] if p["name"] == "OpenML_task_id")

    def declare(self, hp, task):
        for p in self._params():
            log = bool(p.get("log"))
            if p["type"] == "uniform_int":
                hp.Int(p["name"], int(p["lower"]), int(p["upper"]), log=log, default=int(p["default"]))
            else:
                hp.Float(p["name"], float(p["lower"]), float(p["upper"]), log=log, default=float(p["default"]))

    def default(self, task):
        return {p["name"]: p["default"] for p in self._params()}

    def max_epochs(self, task):
        return EPOCHS

    def identity(self):
        return {"name": self.name, "version": "YAHPO Gym data 1.0.2 (slds-lmu/yahpo_data@efdab90)",
                "source": "LCBench via YAHPO Gym's ONNX surrogate", "licence": "Apache-2.0"}

    def predict(self, task, configs):
        """The surrogate's outputs, (configs, epochs, outputs), for every epoch of each configuration."""
        code = self._encoding[str(task)]
        values = np.array([[float(c[name]) for name in INPUTS[1:]] for c in configs], np.float32)
        grid = np.empty((len(configs), EPOCHS, len(INPUTS)), np.float32)
        grid[:, :, 0] = np.arange(1, EPOCHS + 1, dtype=np.float32)
        grid[:, :, 1:] = values[:, None, :]
        x_cont = grid.reshape(-1, len(INPUTS))
        x_cat = np.full((len(x_cont), 1), code, np.int32)
        out = self._session.run(None, {"x_cat": x_cat, "x_cont": x_cont})[0]
        return out.reshape(len(configs), EPOCHS, len(OUTPUTS))

    def curve(self, task, config, seed):
        out = self.predict(task, [config])[0]
        times = np.maximum.accumulate(np.maximum(out[:, 0], 0.0))  # cumulative seconds, never falling
        epoch_s = np.maximum(np.diff(times, prepend=0.0), 1e-3)
        scores = np.clip(out[:, 3], 0.0, 1.0)  # val_balanced_accuracy
        tests = np.clip(out[:, 5], 0.0, 1.0)
        return Curve(tuple(float(v) for v in scores), tuple(float(v) for v in epoch_s),
                     tests=tuple(float(v) for v in tests))

    def full_evaluation_s(self, task):
        return _cost(self, task)

    def optimum(self, task):
        return None  # a surrogate's best is not known: regret uses the best any run reached


_COSTS: dict[str, float] = {}


def _cost(table: LCBench, task: str) -> float:
    """The median time of a full evaluation over a fixed sample of configurations (cached), to the
    millisecond: the surrogate computes in float32, whose last bits may differ between CPUs, and the
    budget derived from this is part of every search's key (a store recorded on one machine must
    resume, and merge, on another)."""
    if task not in _COSTS:
        from tunebench import RandomHyperParameters

        configs = []
        for i in range(COST_SAMPLE):
            hp = RandomHyperParameters((20250, i))
            table.declare(hp, task)
            configs.append(hp.values)
        out = table.predict(task, configs)
        _COSTS[task] = round(float(np.median(np.maximum.accumulate(out[:, :, 0], axis=1)[:, -1])), 3)
    return _COSTS[task]


@hookimpl
def tunebench_register_tables(registry):
    registry.add(LCBench)
