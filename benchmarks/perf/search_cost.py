"""What a search costs besides its own time, and the same fixed CNN through four tools, in one run.

    make perf-search                 # = .venv/bin/python benchmarks/perf/search_cost.py
    python benchmarks/perf/search_cost.py --only side_by_side --out results/perf

Parts:
- `fixed_cost`: 20 consecutive searches of one suite (a small mlp on digits, 3 s each) through
  `tunebench run`. Per search: set-up (created -> clock start), test evaluation (clock stop ->
  completed), the fixed cost (created -> completed minus the search's own time), the runner's gap
  to the next search, and the warm worker's resident memory after each (host RSS over 20 searches
  must stay flat, or the worker is recycled). Goal: fixed cost <= 1.5 s.
- `bench_wall`: the default suite (`benchmarks/smoke.yaml`, what `make bench` runs) in a fresh
  results folder: the command's wall time over the sum of its searches' budgets. Goal: <= 1.1.
- `side_by_side`: one fixed convnet, 6 trials of 2 epochs on the same generated data, through a
  bare Keras loop, KerasTuner (GridSearch over a dummy value), Optuna (`study.optimize`) and
  tunebench (`fixed` strategy), each a fresh Python process: the median trial against the bare
  loop's (goal <= 1.02), the whole process against the bare one's (goal <= 1.05; each ends with one
  test evaluation of its best model), and host memory per trial (the RSS slope over trials 2-6).

Writes `search_cost.json` and `search_cost.md` to --out. Medians: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.perf.harness_perf import run_steps, write_suite  # noqa: E402
from benchmarks.perf.harness_perf import tunebench as _tunebench  # noqa: E402


def tunebench(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """`harness_perf.tunebench`, and its wall time (the command's whole process)."""
    started = time.perf_counter()
    result = _tunebench(*args)
    return result, time.perf_counter() - started


def slope(values: list[float]) -> float:
    n = len(values)
    if n < 2:
        return 0.0
    mx, my = (n - 1) / 2, sum(values) / n
    return sum((x - mx) * (y - my) for x, y in enumerate(values)) / sum((x - mx) ** 2 for x in range(n))


# -- 1. the fixed cost of a search ----------------------------------------------------------------------

def fixed_cost(work: Path, searches: int, budget_s: float) -> dict[str, Any]:
    from tunebench.store import Store

    results = work / "fixed"
    suite = write_suite(work / "fixed.yaml", name="fixedcost", budget=f"{budget_s:g}s", max_epochs=2,
                        seeds=list(range(searches)), datasets=["digits"], model_families=["mlp"],
                        strategies=["random"])
    _, wall = tunebench("run", str(suite), "--results", str(results))
    store = Store.open(results)
    runs = sorted(store.runs(), key=lambda r: r["id"])
    store.close()
    rows = []
    for i, r in enumerate(runs):
        own = r["finished_at"] - r["started_at"]
        nxt = runs[i + 1]["created_at"] - r["completed_at"] if i + 1 < len(runs) else None
        worker = (r["hardware"] or {}).get("worker") or {}
        rows.append({"run": r["id"], "status": r["status"], "setup_s": r["started_at"] - r["created_at"],
                     "search_s": own, "finalize_s": r["completed_at"] - r["finished_at"],
                     "fixed_s": (r["completed_at"] - r["created_at"]) - own, "gap_to_next_s": nxt,
                     "pid": worker.get("pid"), "job": worker.get("job"), "rss_mb": worker.get("rss_mb")})
    warm = rows[1:]
    rss = [r["rss_mb"] for r in rows if r["rss_mb"] is not None]
    gaps = [r["gap_to_next_s"] for r in rows if r["gap_to_next_s"] is not None]
    return {
        "searches": len(rows), "budget_s": budget_s, "wall_s": wall, "rows": rows,
        "workers": len({r["pid"] for r in rows}),
        "first_fixed_s": rows[0]["fixed_s"],
        "median_fixed_s": statistics.median(r["fixed_s"] for r in warm),
        "max_fixed_s": max(r["fixed_s"] for r in warm),
        "median_setup_s": statistics.median(r["setup_s"] for r in warm),
        "median_finalize_s": statistics.median(r["finalize_s"] for r in warm),
        "median_gap_s": statistics.median(gaps) if gaps else None,
        "rss_first_mb": rss[0] if rss else None, "rss_last_mb": rss[-1] if rss else None,
        "rss_slope_mb_per_search": slope(rss[1:]),
        "wall_over_budgets": wall / (budget_s * len(rows)),
    }


# -- 2. make bench's wall time ---------------------------------------------------------------------------

def bench_wall(work: Path) -> dict[str, Any]:
    from tunebench.store import Store

    results = work / "bench"
    _, wall = tunebench("run", str(ROOT / "benchmarks" / "smoke.yaml"), "--results", str(results))
    store = Store.open(results)
    runs = store.runs()
    store.close()
    budgets = sum(r["budget_s"] for r in runs)
    own = sum(r["finished_at"] - r["started_at"] for r in runs)
    return {"searches": len(runs), "ok": sum(r["status"] == "ok" for r in runs), "wall_s": wall,
            "sum_of_budgets_s": budgets, "sum_of_search_time_s": own, "ratio": wall / budgets,
            "first_setup_s": min(runs, key=lambda r: r["id"])["started_at"]
            - min(runs, key=lambda r: r["id"])["created_at"]}


# -- 3. one fixed CNN through four tools -------------------------------------------------------------------

#: The lecture convnet's shape, pinned for every tool.
CNN = """
def build():
    import keras
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.MaxPooling2D(2)(keras.layers.Conv2D(32, 3, activation="relu")(x))
    x = keras.layers.MaxPooling2D(2)(keras.layers.Conv2D(64, 3, activation="relu")(x))
    x = keras.layers.Conv2D(64, 3, activation="relu")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(64, activation="relu")(x)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    model.compile(optimizer=keras.optimizers.RMSprop(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model
"""

COMMON = """
import json, os, sys, time
T0 = time.perf_counter()
import numpy as np
import psutil
data = np.load(sys.argv[1])
xtr, ytr, xva, yva, xte, yte = (data[k] for k in ("xtr", "ytr", "xva", "yva", "xte", "yte"))
TRIALS, EPOCHS, BATCH = int(sys.argv[2]), int(sys.argv[3]), 64
trials, rss = [], []
def rss_mb():
    return psutil.Process().memory_info().rss / 2**20
""" + CNN

BARE = COMMON + """
import keras
best = None
for i in range(TRIALS):
    t = time.perf_counter()
    keras.utils.set_random_seed(i)
    model = build()
    h = model.fit(xtr, ytr, validation_data=(xva, yva), epochs=EPOCHS, batch_size=BATCH, verbose=0)
    score = max(h.history["val_accuracy"])
    if best is None or score > best[0]:
        best = (score, model)
    else:
        del model
    trials.append(time.perf_counter() - t)
    rss.append(rss_mb())
test = best[1].evaluate(xte, yte, batch_size=256, verbose=0, return_dict=True)["accuracy"]
print(json.dumps({"trials_s": trials, "rss_mb": rss, "test": test, "in_process_s": time.perf_counter() - T0}))
"""

KERAS_TUNER = COMMON + """
import keras, keras_tuner as kt
class Timed(kt.GridSearch):
    def run_trial(self, trial, *args, **kwargs):
        t = time.perf_counter()
        out = super().run_trial(trial, *args, **kwargs)
        trials.append(time.perf_counter() - t)
        rss.append(rss_mb())
        return out
def model_fn(hp):
    hp.Int("repeat", 0, TRIALS - 1)  # six distinct trials of the same model
    return build()
tuner = Timed(model_fn, objective="val_accuracy", max_trials=TRIALS, directory=sys.argv[4],
              project_name="kt", overwrite=True, seed=0)
tuner.search(xtr, ytr, validation_data=(xva, yva), epochs=EPOCHS, batch_size=BATCH, verbose=0)
test = tuner.get_best_models(1)[0].evaluate(xte, yte, batch_size=256, verbose=0, return_dict=True)["accuracy"]
print(json.dumps({"trials_s": trials, "rss_mb": rss, "test": test, "in_process_s": time.perf_counter() - T0}))
"""

OPTUNA = COMMON + """
import keras, optuna
optuna.logging.set_verbosity(optuna.logging.WARNING)
models = {}
def objective(trial):
    t = time.perf_counter()
    keras.utils.set_random_seed(trial.number)
    model = build()
    h = model.fit(xtr, ytr, validation_data=(xva, yva), epochs=EPOCHS, batch_size=BATCH, verbose=0)
    score = max(h.history["val_accuracy"])
    if not models or score > max(models):
        models.clear()
        models[score] = model
    trials.append(time.perf_counter() - t)
    rss.append(rss_mb())
    return score
study = optuna.create_study(direction="maximize")
study.optimize(objective, n_trials=TRIALS)
test = models[max(models)].evaluate(xte, yte, batch_size=256, verbose=0, return_dict=True)["accuracy"]
print(json.dumps({"trials_s": trials, "rss_mb": rss, "test": test, "in_process_s": time.perf_counter() - T0}))
"""

#: scratch_cnn pinned to the convnet above (93,322 parameters at 28x28x1).
CONVNET = {"blocks": 3, "convs_per_block": 1, "filters_0": 32, "filters_1": 64, "filters_2": 64, "kernel_size": 3,
           "padding": "valid", "pooling": "max", "pool_size": 2, "final_pool": False, "batch_norm": "none",
           "activation": "relu", "dropout": 0.0, "weight_decay": "none", "head": "flatten", "dense_units": 64,
           "dense_dropout": 0.0, "augment": False, "optimizer": "rmsprop", "learning_rate": 0.001,
           "class_weight": False}


def side_by_side(work: Path, trials: int, epochs: int, samples: int, rounds: int) -> dict[str, Any]:
    import numpy as np

    from tunebench_plugins.datasets.synthetic import Synthetic

    data = Synthetic(size=28, channels=1, classes=10, noise=0.35, samples=samples).splits(0)
    arrays = work / "data.npz"
    np.savez(arrays, xtr=data.x_train, ytr=data.y_train, xva=data.x_val, yva=data.y_val, xte=data.x_test,
             yte=data.y_test)
    tools = ["bare Keras", "KerasTuner", "Optuna", "tunebench"]
    out: dict[str, Any] = {"trials": trials, "epochs": epochs, "train_images": len(data.x_train), "rounds": rounds,
                           **{name: {"rounds": []} for name in tools}}
    for k in range(rounds):  # the order turns each round: no tool always runs first or last
        for name in tools[k % len(tools):] + tools[: k % len(tools)]:
            row = _tunebench_fixed(work, k, trials, epochs, samples) if name == "tunebench" else \
                _script(work, name, arrays, trials, epochs)
            out[name]["rounds"].append(row)
            print(f"  round {k + 1} {name}: {row['wall_s']:.1f} s", file=sys.stderr, flush=True)
    for name in tools:
        r = out[name]
        # trial 1 traces the step functions: trials 2.. of every round
        r["median_trial_s"] = statistics.median(t for row in r["rounds"] for t in row["trials_s"][1:])
        r["wall_s"] = statistics.median(row["wall_s"] for row in r["rounds"])
        r["test"] = r["rounds"][0]["test"]
        r["rss_slope_mb_per_trial"] = statistics.median(
            slope([v for v in row["rss_mb"][1:] if v is not None]) for row in r["rounds"])
    bare = out["bare Keras"]
    for name in tools:
        out[name]["per_trial_ratio"] = out[name]["median_trial_s"] / bare["median_trial_s"]
        out[name]["end_to_end_ratio"] = out[name]["wall_s"] / bare["wall_s"]
    return out


def _script(work: Path, name: str, arrays: Path, trials: int, epochs: int) -> dict[str, Any]:
    script = {"bare Keras": BARE, "KerasTuner": KERAS_TUNER, "Optuna": OPTUNA}[name]
    (work / "script.py").write_text(textwrap.dedent(script))
    started = time.perf_counter()
    result = subprocess.run([sys.executable, str(work / "script.py"), str(arrays), str(trials), str(epochs),
                             str(work / "kt")], capture_output=True, text=True,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{result.stderr[-3000:]}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]), wall_s=wall)


def _tunebench_fixed(work: Path, k: int, trials: int, epochs: int, samples: int) -> dict[str, Any]:
    from tunebench.store import Store

    results = work / f"tb{k}"
    suite = write_suite(work / "tb.yaml", name="sidebyside", budget="30m", max_epochs=epochs, first_trial="none",
                        datasets=[{"synthetic": {"size": 28, "channels": 1, "classes": 10, "noise": 0.35,
                                                 "samples": samples}}],
                        model_families=[{"scratch_cnn": {"params": dict(CONVNET, epochs=epochs, batch_size=64)}}],
                        strategies=[{"fixed": {"repeats": trials}}], training={"steps_per_execution": 1})
    _, wall = tunebench("run", str(suite), "--results", str(results))
    store = Store.open(results)
    run = store.runs()[0]
    rows = store.trials([run["id"]])
    store.close()
    return {"trials_s": [t["finished_at"] - t["started_at"] for t in rows],
            "rss_mb": [(t["timings"] or {}).get("rss_mb") for t in rows], "test": run["test_score"], "wall_s": wall}


def markdown(r: dict[str, Any]) -> str:
    lines = [f"# What a search costs (`benchmarks/perf/search_cost.py`), {r['date']}", "",
             f"{r['machine']['cpu']}, {r['machine']['cores']} cores, Python {r['machine']['python']}, "
             f"Keras {r['machine']['keras']} ({r['backend']}).", ""]
    if "fixed_cost" in r:
        f = r["fixed_cost"]
        lines += ["| measure | figure | goal |", "|---|---|---|",
                  "| fixed cost per search (created -> completed minus its own time), median of searches "
                  f"2-{f['searches']} "
                  f"| {f['median_fixed_s']:.2f} s (max {f['max_fixed_s']:.2f} s): set-up {f['median_setup_s']:.2f} s, "
                  f"test evaluation {f['median_finalize_s']:.2f} s | <= 1.5 s |",
                  f"| the first search (starts the warm worker) | {f['first_fixed_s']:.2f} s | |",
                  f"| runner's gap between searches (median) | {f['median_gap_s']:.2f} s | |",
                  f"| worker processes for {f['searches']} searches | {f['workers']} | |",
                  f"| worker memory after each search | {f['rss_first_mb']:.0f} -> {f['rss_last_mb']:.0f} MB, "
                  f"slope {f['rss_slope_mb_per_search']:+.2f} MB/search | flat |",
                  f"| suite wall / sum of budgets ({f['searches']} x {f['budget_s']:g} s) "
                  f"| {f['wall_over_budgets']:.3f} | |"]
    if "bench_wall" in r:
        b = r["bench_wall"]
        lines += [f"| `make bench`'s suite: wall / sum of budgets | {b['ratio']:.3f} ({b['wall_s']:.0f} s for "
                  f"{b['searches']} searches, {b['sum_of_budgets_s']:.0f} s of budgets, {b['ok']} ok) | <= 1.1 |"]
    if "side_by_side" in r:
        s = r["side_by_side"]
        lines += ["", f"One fixed convnet, {s['trials']} trials of {s['epochs']} epochs on {s['train_images']} "
                      f"generated 28x28 images, each tool in a fresh process, {s['rounds']} rounds (the order "
                      "turning; medians):", "",
                  "| tool | median trial (trials 2-6) | per trial vs bare | whole process | end to end vs bare "
                  "| memory per trial | test accuracy |", "|---|---|---|---|---|---|---|"]
        for name in ("bare Keras", "KerasTuner", "Optuna", "tunebench"):
            t = s[name]
            lines.append(f"| {name} | {t['median_trial_s']:.2f} s | {t['per_trial_ratio']:.3f} | {t['wall_s']:.1f} s "
                         f"| {t['end_to_end_ratio']:.3f} | {t['rss_slope_mb_per_trial']:+.1f} MB | {t['test']:.4f} |")
        lines += ["", "Goals for tunebench: <= 1.02 per trial, <= 1.05 end to end."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "results" / "perf"))
    parser.add_argument("--only", action="append", choices=("fixed_cost", "bench_wall", "side_by_side"))
    parser.add_argument("--searches", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2, help="side by side: rounds, the tools' order turning")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tunebench-cost-"))
    import keras

    from tunebench.provenance import hardware

    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "backend": keras.backend.backend(),
                              "machine": {"cpu": hardware()["cpu"], "cores": os.cpu_count(),
                                          "python": platform.python_version(), "keras": keras.__version__}}
    steps = [("fixed_cost", lambda: fixed_cost(work, args.searches, 3.0)),
             ("bench_wall", lambda: bench_wall(work)),
             ("side_by_side", lambda: side_by_side(work, trials=6, epochs=2, samples=8000, rounds=args.rounds))]
    run_steps(steps, args.only, report, out / "search_cost.json")
    md = markdown(report)
    (out / "search_cost.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
