"""What the harness costs: overhead against bare Keras, fixed cost per trial, budget overshoot,
trials per hour, memory per trial, each strategy's proposal latency and (under torch and jax) what
placing the data on the device up front gains, in one run.

    make perf                                  # = .venv/bin/python benchmarks/perf/harness_perf.py
    python benchmarks/perf/harness_perf.py --quick --out results/perf

Writes `harness_perf.json` (every raw figure) and `harness_perf.md` (the table quoted in
`benchmarks/perf/RESULTS.md`) to --out. Everything runs on generated or bundled data, through the
real `tunebench run` (a child process per search, the SQLite store), on whatever Keras backend
$KERAS_BACKEND names. Medians of repeated runs: the machine is shared and noisy. Nothing here is
a pass/fail test; the goals are printed beside the figures.
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

#: The lecture convnet (93,322 parameters at 28x28x1), pinned: the configuration both sides train.
CONVNET = {"blocks": 3, "convs_per_block": 1, "filters_0": 32, "filters_1": 64, "filters_2": 64, "kernel_size": 3,
           "padding": "valid", "pooling": "max", "pool_size": 2, "final_pool": False, "batch_norm": "none",
           "activation": "relu", "dropout": 0.0, "weight_decay": "none", "head": "flatten", "dense_units": 64,
           "dense_dropout": 0.0, "augment": False, "optimizer": "rmsprop", "learning_rate": 0.001,
           "class_weight": False}
DATA = {"size": 28, "channels": 1, "classes": 10, "noise": 0.35}


def tunebench(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "tunebench.cli", *args], capture_output=True, text=True, cwd=cwd)
    if result.returncode not in (0, 1):
        raise RuntimeError(f"tunebench {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result


def write_suite(path: Path, **suite: Any) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


def open_store(results: Path) -> Any:
    from tunebench.store import Store

    return Store.open(results)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# -- 1. overhead against a bare Keras script --------------------------------------------------------------

BARE = textwrap.dedent('''
    import json, sys, time
    cfg = json.loads(sys.argv[1])
    from tunebench.registry import load_plugins
    from tunebench.settings import ExecutionSettings
    from tunebench.training import compile_options
    data = load_plugins().datasets.get("synthetic")(**cfg["data"]).splits(0)   # not timed
    import keras
    from keras import layers
    keras.utils.set_random_seed(0)
    t0 = time.perf_counter()
    inputs = keras.Input(data.spec.input_shape)
    x = layers.Rescaling(1 / 255)(inputs)
    x = layers.Conv2D(32, 3, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(64, activation="relu")(x)
    model = keras.Model(inputs, layers.Dense(10, activation="softmax")(x))
    # the same steps_per_execution the harness picks for this model (its rule, not a copy of it)
    options = compile_options(ExecutionSettings(), keras.backend.backend(), model,
                              len(data.x_train) // cfg["batch_size"])
    spe = options.get("steps_per_execution", 1)
    model.compile(optimizer=keras.optimizers.RMSprop(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], **options)
    built = time.perf_counter() - t0
    ends = []
    class Clock(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            ends.append(time.perf_counter())
    t1 = time.perf_counter()
    model.fit(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val), epochs=cfg["epochs"],
              batch_size=cfg["batch_size"], callbacks=[Clock()], verbose=0)
    fit = time.perf_counter() - t1
    epochs = [b - a for a, b in zip([t1] + ends[:-1], ends)]
    print(json.dumps({"build_s": built, "fit_s": fit, "epoch_s": epochs, "params": model.count_params(),
                      "steps_per_execution": spe}))
''')


def fixed_trial(work: Path, name: str, data: dict[str, Any], params: dict[str, Any], **suite: Any) -> dict[str, Any]:
    """One `fixed` search of `scratch_cnn` pinned to `params` through `tunebench run`: its run and
    trial rows, and the seconds of each epoch."""
    results = work / name
    path = write_suite(work / f"{name}.yaml", name=name.replace("-", ""), budget="30m", **suite,
                       datasets=[{"synthetic": data}], model_families=[{"scratch_cnn": {"params": params}}],
                       strategies=["fixed"])
    tunebench("run", str(path), "--results", str(results))
    store = open_store(results)
    run = store.runs()[0]
    trial = store.trials([run["id"]])[0]
    elapsed = [e["elapsed"] for e in store.epochs([trial["id"]])]
    store.close()
    return {"run": run, "trial": trial, "epoch_s": [b - a for a, b in zip([0.0] + elapsed[:-1], elapsed)]}


def overhead(work: Path, reps: int, samples: int, epochs: int) -> dict[str, Any]:
    """The same convnet, data and settings: bare `model.fit` vs a one-trial `fixed` search."""
    data = dict(DATA, samples=samples)
    batch = 64
    params = dict(CONVNET, batch_size=batch, epochs=epochs)
    bare_runs, harness_runs = [], []
    for rep in range(reps):
        cfg = {"data": data, "epochs": epochs, "batch_size": batch}
        out = subprocess.run([sys.executable, "-c", BARE, json.dumps(cfg)], capture_output=True, text=True,
                             cwd=ROOT, check=True)
        bare_runs.append(json.loads(out.stdout.strip().splitlines()[-1]))

        one = fixed_trial(work, f"overhead-{rep}", data, params)
        run, trial = one["run"], one["trial"]
        harness_runs.append({"trial_s": trial["finished_at"] - trial["started_at"], "timings": trial["timings"],
                             "epoch_s": one["epoch_s"], "params": trial["param_count"],
                             "search_s": run["finished_at"] - run["started_at"]})

    def steady(runs: list[dict[str, Any]]) -> float:
        return statistics.median(e for r in runs for e in r["epoch_s"][1:])

    bare_steady, harness_steady = steady(bare_runs), steady(harness_runs)
    bare_trial = statistics.median(r["build_s"] + r["fit_s"] for r in bare_runs)
    harness_trial = statistics.median(r["trial_s"] for r in harness_runs)
    bare_fit = statistics.median(r["fit_s"] for r in bare_runs)
    harness_fit = statistics.median(r["timings"]["train"] for r in harness_runs)
    parts = {k: statistics.median(r["timings"].get(k, 0.0) for r in harness_runs)
             for k in ("build", "first_epoch", "eval", "checkpoint")}
    fixed = [r["trial_s"] - r["timings"]["train"] for r in harness_runs]
    return {
        "config": {"model": "lecture convnet", "params_bare": bare_runs[0]["params"],
                   "params_tunebench": harness_runs[0]["params"], "samples": samples, "epochs": epochs,
                   "batch_size": batch, "steps_per_execution": bare_runs[0]["steps_per_execution"],
                   "reps": reps},
        "bare": bare_runs, "tunebench": harness_runs,
        "steady_epoch_s": {"bare": bare_steady, "tunebench": harness_steady},
        "ratio_steady_state": harness_steady / bare_steady,
        "ratio_fit": harness_fit / bare_fit,
        "ratio_trial": harness_trial / bare_trial,
        "fixed_cost_per_trial_s": statistics.median(fixed),
        "fixed_cost_parts_s": {"build_and_compile": parts["build"], "checkpoint": parts["checkpoint"],
                               "other (store writes, bookkeeping)":
                                   statistics.median(fixed) - parts["build"] - parts["checkpoint"]},
        "first_epoch_s": {"bare": statistics.median(r["epoch_s"][0] for r in bare_runs),
                          "tunebench": parts["first_epoch"]},
    }


# -- 2. budget overshoot ----------------------------------------------------------------------------------

def overshoot(work: Path, searches: int, budget_s: float) -> dict[str, Any]:
    results = work / "overshoot"
    suite = write_suite(work / "overshoot.yaml", name="overshoot", budget=f"{budget_s}s",
                        seeds=list(range(searches)),
                        datasets=[{"synthetic": dict(DATA, samples=3000)}],
                        model_families=["scratch_cnn"], strategies=["random"])
    t0 = time.time()
    tunebench("run", str(suite), "--results", str(results))
    wall = time.time() - t0
    store = open_store(results)
    runs = store.runs()
    over = [r["finished_at"] - r["started_at"] - r["budget_s"] for r in runs if r["finished_at"]]
    killed = sum(r["stop_reason"] == "killed" for r in runs)
    store.close()
    allowed = max(2.0, 0.05 * budget_s)
    return {"searches": len(runs), "budget_s": budget_s, "allowed_s": allowed, "overshoot_s": over,
            "p50": pct(over, 0.5), "p95": pct(over, 0.95), "max": max(over), "killed": killed,
            "within_goal": sum(o <= allowed for o in over), "suite_wall_s": wall}


# -- 3. trials per hour -----------------------------------------------------------------------------------

def trials_per_hour(work: Path, budget_s: float) -> dict[str, Any]:
    results = work / "throughput"
    suite = write_suite(work / "throughput.yaml", name="throughput", budget=f"{budget_s}s",
                        datasets=["digits"], model_families=["scratch_cnn"], strategies=["random"])
    tunebench("run", str(suite), "--results", str(results))
    store = open_store(results)
    run = store.runs()[0]
    trials = store.trials([run["id"]])
    store.close()
    span = run["finished_at"] - run["started_at"]
    done = [t for t in trials if t["status"] in ("ok", "pruned", "nan", "failed")]
    return {"budget_s": budget_s, "trials": len(trials), "finished_trials": len(done),
            "trials_per_hour": len(trials) / span * 3600,
            "median_trial_s": statistics.median(t["finished_at"] - t["started_at"] for t in trials),
            "median_epochs": statistics.median(t["epochs_done"] or 0 for t in trials)}


# -- 3b. parallel trials ------------------------------------------------------------------------------------

def parallel_throughput(work: Path, budget_s: float, lanes: tuple[int, ...] = (1, 2)) -> dict[str, Any]:
    """Trials per hour of one random search of a small model (mlp on 8x8 digits) run serially and
    with `parallel_trials`, in one invocation: the throughput gain of trials at once in one search."""
    strategies = [{"random": {"as": f"lanes_{n}", "parallel_trials": n}} for n in lanes]
    suite = write_suite(work / "parallel.yaml", name="parallel", budget=f"{budget_s}s", max_epochs=2,
                        datasets=[{"digits": {"size": 8}}], model_families=[{"mlp": {"params": {"epochs": 2}}}],
                        strategies=strategies)
    results = work / "parallel"
    tunebench("run", str(suite), "--results", str(results))
    store = open_store(results)
    out: dict[str, Any] = {"budget_s": budget_s, "cores": os.cpu_count(), "lanes": {}}
    for run in store.runs():
        trials = store.trials([run["id"]])
        span = run["finished_at"] - run["started_at"]
        out["lanes"][str(run["lanes"] or 1)] = {
            "trials": len(trials), "trials_per_hour": len(trials) / span * 3600,
            "median_trial_s": statistics.median(t["finished_at"] - t["started_at"] for t in trials) if trials else None,
            "best_val": run["best_val"], "cpu_seconds": run["cpu_seconds"]}
    store.close()
    base = out["lanes"].get("1", {}).get("trials_per_hour")
    for row in out["lanes"].values():
        row["gain"] = row["trials_per_hour"] / base if base else None
    return out


# -- 4. memory per trial ------------------------------------------------------------------------------------

def memory_growth(work: Path, n_trials: int) -> dict[str, Any]:
    results = work / "memory"
    # One configuration trained n times: growth is then a leak, not the high-water mark of the
    # largest model a random search happened to draw.
    suite = write_suite(work / "memory.yaml", name="memory", budget="30m", max_epochs=1,
                        datasets=[{"digits": {"size": 16}}], model_families=["scratch_cnn"],
                        strategies=[{"fixed": {"repeats": n_trials}}])
    tunebench("run", str(suite), "--results", str(results))
    store = open_store(results)
    run = store.runs()[0]
    rss = [t["timings"]["rss_mb"] for t in store.trials([run["id"]]) if t["timings"] and "rss_mb" in t["timings"]]
    store.close()
    warm = rss[10:] if len(rss) > 20 else rss[len(rss) // 2:]
    n = len(warm)
    xs = list(range(n))
    mx, my = sum(xs) / n, sum(warm) / n
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, warm)) / max(1e-9, sum((x - mx) ** 2 for x in xs))
    return {"trials": len(rss), "rss_mb": rss, "slope_mb_per_trial": slope, "first_mb": rss[0], "last_mb": rss[-1],
            "growth_after_warmup_mb": warm[-1] - warm[0]}


# -- 5. proposal latency ----------------------------------------------------------------------------------

PROPOSERS = ["random", "grid", "optuna_tpe", "optuna_random", "optuna_cmaes", "optuna_gp",
             "kt_random", "kt_bayesian", "kt_hyperband"]


def proposal_latency(work: Path, checkpoints: tuple[int, ...], cap_s: float) -> dict[str, Any]:
    """Each strategy against a stand-in for training that answers at once with a made-up score:
    the time between a trial's end and the next trial's start is the strategy's own."""
    import numpy as np

    from tunebench.budget import Budget
    from tunebench.errors import BudgetExhausted
    from tunebench.registry import load_plugins
    from tunebench.space import DefaultHyperParameters
    from tunebench.strategies import SearchContext, TrialRecord
    from tunebench.vocabulary import TrialStatus

    catalog = load_plugins()
    family = catalog.model_families.get("scratch_cnn")()
    dataset = catalog.datasets.get("digits")()
    spec = dataset.spec
    hp0 = DefaultHyperParameters()
    family.build(hp0, spec)
    family.training(hp0, spec, None)
    space = hp0.params

    class Clocked(SearchContext):
        objective, direction = "val_accuracy", "max"

        def __init__(self, limit: int, workdir: Path) -> None:
            self.seed, self.spec, self.max_epochs, self.workdir = 0, spec, 10, workdir
            self.search_key = "latency"
            self.budget = Budget(cap_s)
            self.limit = limit
            self._trials: list[TrialRecord] = []
            self.gaps: list[float] = []
            self._ended: float | None = None
            self.rng = np.random.default_rng(0)

        @property
        def trials(self) -> tuple[TrialRecord, ...]:
            return tuple(self._trials)

        def space(self, hp: Any = None) -> dict[str, Any]:
            if hp is not None:  # declared through the strategy's adapter, as a real build would (KerasTuner
                for p in space.values():  # oracles learn their space this way; Hyperband stops on an empty one)
                    hp._declare(p)
            return dict(space)

        def run_trial(self, hp: Any, *, epochs: int | None = None, report: Any = None,
                      number: int | None = None) -> TrialRecord:
            if len(self._trials) >= self.limit or self.budget.expired:
                raise BudgetExhausted()
            for p in space.values():  # the family's declarations (define-by-run samplers sample here)
                hp._declare(p)
            proposed = time.perf_counter()
            if self._ended is not None:
                self.gaps.append(proposed - self._ended)
            score = float(self.rng.uniform(0.5, 1.0))
            n_epochs = int(epochs or hp.values.get("epochs", 1))
            history = tuple({"val_accuracy": score, "loss": 1 - score} for _ in range(max(1, n_epochs)))
            if report is not None:
                for i, m in enumerate(history):
                    report(i, m)
            record = TrialRecord(number=len(self._trials), status=TrialStatus.OK, params=hp.values, score=score,
                                 history=history, epochs=len(history))
            self._trials.append(record)
            self._ended = time.perf_counter()
            return record

    out: dict[str, Any] = {}
    limit = max(checkpoints)
    for name in PROPOSERS:
        schema = catalog.strategies.get(name).full_schema()
        options: dict[str, Any] = {"max_trials": limit} if "max_trials" in schema else {}
        if name == "grid":  # 600 cells
            options["grid"] = {"blocks": [1, 2, 3, 4, 5], "kernel_size": [3, 5], "dropout": [0.0, 0.1, 0.2, 0.3, 0.4],
                               "batch_size": [32, 64, 128, 256], "optimizer": ["adam", "rmsprop", "sgd"]}
        try:
            strategy = catalog.strategies.get(name)(**options)
        except Exception as exc:  # an option this strategy lacks
            strategy = catalog.strategies.get(name)()
            out[name] = {"note": f"default options ({exc})"}
        ctx = Clocked(limit, Path(tempfile.mkdtemp(dir=work)))
        t0 = time.perf_counter()
        try:
            strategy.search(ctx)
        except BudgetExhausted:
            pass
        gaps = ctx.gaps
        row: dict[str, Any] = {"trials": len(ctx.trials), "seconds": time.perf_counter() - t0}
        for c in checkpoints:  # the median gap over the trials just before the checkpoint
            window = gaps[max(0, c - max(3, c // 10)) - 1:c - 1] if len(gaps) >= c - 1 else []
            row[f"ms_at_{c}"] = statistics.median(window) * 1000 if window else None
        out[name] = {**out.get(name, {}), **row}
    return out


# -- 7. data on the device ------------------------------------------------------------------------------

def placement(work: Path, reps: int, samples: int, epochs: int) -> dict[str, Any]:
    """The overhead convnet trained through tunebench with its data copied to the device up front
    (`data_on_device: true`) and streamed from host arrays (`false`), alternating, in one run.
    Under TensorFlow both stream (tf.data reads host memory), so the part says so and stops."""
    import keras

    if keras.backend.backend() not in ("torch", "jax"):
        return {"skipped": f"{keras.backend.backend()}: data is always streamed from the host"}
    data = dict(DATA, samples=samples)
    params = dict(CONVNET, batch_size=64, epochs=epochs)
    runs: dict[str, list[dict[str, Any]]] = {"device": [], "host": []}
    notes: dict[str, str] = {}
    for rep in range(reps):
        for where, policy in (("device", True), ("host", False)):
            one = fixed_trial(work, f"placement-{where}-{rep}", data, params, training={"data_on_device": policy})
            run, trial = one["run"], one["trial"]
            notes[where] = (run["hardware"] or {}).get("data_placement", "?")
            train_images = (run["split_sizes"] or {}).get("train", samples)
            runs[where].append({"epoch_s": one["epoch_s"], "train_s": trial["timings"]["train"],
                                "score": trial["score"]})
    steady = {w: statistics.median(e for r in rs for e in r["epoch_s"][1:]) for w, rs in runs.items()}
    return {"samples": samples, "epochs": epochs, "reps": reps, "placement": notes, "runs": runs,
            "steady_epoch_s": steady, "images_per_s": {w: train_images / v for w, v in steady.items()},
            "speedup_device_over_host": steady["host"] / steady["device"]}


# -- report ---------------------------------------------------------------------------------------------------

def markdown(r: dict[str, Any]) -> str:
    o, s, t, m, p = r["overhead"], r["overshoot"], r["throughput"], r["memory"], r["proposal_latency"]
    lines = [
        f"Machine: {r['machine']['cpu']} ({r['machine']['cores']} cores), backend {r['backend']}, "
        f"Keras {r['machine']['keras']}, {r['date']}. Mode: {r['mode']}.", "",
        "| measure | figure | goal |", "|---|---|---|",
        f"| harness overhead, steady-state epochs (median epoch, tunebench / bare Keras) | "
        f"{o['ratio_steady_state']:.3f} ({o['steady_epoch_s']['tunebench']:.3f} s / "
        f"{o['steady_epoch_s']['bare']:.3f} s) | <= 1.05 |",
        f"| harness overhead, whole `fit` | {o['ratio_fit']:.3f} | |",
        f"| harness overhead, whole trial (build + fit + bookkeeping) | {o['ratio_trial']:.3f} | |",
        f"| fixed cost per trial (trial - training) | {o['fixed_cost_per_trial_s']:.3f} s: "
        + ", ".join(f"{k} {v:.3f} s" for k, v in o["fixed_cost_parts_s"].items()) + " | |",
        f"| first epoch (tracing / compilation included) | tunebench {o['first_epoch_s']['tunebench']:.2f} s, "
        f"bare {o['first_epoch_s']['bare']:.2f} s | |",
        f"| budget overshoot over {s['searches']} searches of {s['budget_s']:g} s | p50 {s['p50']:.2f} s, "
        f"p95 {s['p95']:.2f} s, max {s['max']:.2f} s ({s['within_goal']}/{s['searches']} within goal, "
        f"{s['killed']} killed) | <= {s['allowed_s']:.1f} s |",
        f"| trials per hour, scratch_cnn + random on digits ({t['budget_s']:g} s search) | "
        f"{t['trials_per_hour']:.0f} ({t['trials']} trials, median {t['median_trial_s']:.1f} s, "
        f"{t['median_epochs']:g} epochs) | |",
        f"| host memory growth, one configuration trained {m['trials']} times (slope after trial 10) | "
        f"{m['slope_mb_per_trial']:+.2f} MB/trial "
        f"({m['first_mb']:.0f} -> {m['last_mb']:.0f} MB) | flat, < 5 MB/trial |",
    ]
    if "placement" in r and "skipped" not in r["placement"]:
        pl = r["placement"]
        lines.append(f"| steady-state epoch, data on the device up front vs streamed from host arrays "
                     f"({pl['samples']} images, {pl['reps']} reps) | {pl['steady_epoch_s']['device']:.3f} s "
                     f"({pl['placement']['device']}) vs {pl['steady_epoch_s']['host']:.3f} s: "
                     f"x{pl['speedup_device_over_host']:.2f} | |")
    if "parallel" in r:
        par = r["parallel"]
        cells = ", ".join(f"{n} lane(s): {row['trials_per_hour']:.0f}/h ({row['trials']} trials, median "
                          f"{row['median_trial_s']:.1f} s, x{row['gain']:.2f})"
                          for n, row in sorted(par["lanes"].items()))
        lines.append(f"| trials per hour, one random search of a small mlp on 8x8 digits, serial vs `parallel_trials` "
                     f"({par['budget_s']:g} s each, {par['cores']} cores) | {cells} | |")
    lines += [
        "", "Proposal latency (ms per trial, the strategy's own time between trials):", "",
        "| strategy | " + " | ".join(f"at {c}" for c in r["checkpoints"]) + " | trials reached |",
        "|---|" + "---|" * (len(r["checkpoints"]) + 1)]
    for name, row in p.items():
        cells = [f"{row[f'ms_at_{c}']:.2f}" if row.get(f"ms_at_{c}") is not None else "-" for c in r["checkpoints"]]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {row['trials']} |")
    return "\n".join(lines) + "\n"


def run_steps(steps: list[tuple[str, Any]], only: list[str] | None, report: dict[str, Any], path: Path) -> None:
    """Run each (name, callable) step that `only` selects into `report`, writing it to `path` after each."""
    for name, step in steps:
        if only and name not in only:
            continue
        t0 = time.time()
        print(f"{name} ...", file=sys.stderr, flush=True)
        report[name] = step()
        print(f"{name}: {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
        path.write_text(json.dumps(report, indent=1, default=float))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "results" / "perf"), help="where the JSON and Markdown go")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and smaller runs (a smoke check)")
    parser.add_argument("--only", action="append", choices=("overhead", "overshoot", "throughput", "parallel",
                                                            "memory", "proposal_latency", "placement"),
                        help="run only these parts")
    args = parser.parse_args()
    quick = args.quick
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tunebench-perf-"))
    import keras

    from tunebench.provenance import hardware

    checkpoints = (10, 50) if quick else (10, 100, 500)
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"), "backend": keras.backend.backend(), "mode": "quick" if quick else "full",
        "machine": {"cpu": hardware()["cpu"], "cores": os.cpu_count(), "python": platform.python_version(),
                    "keras": keras.__version__},
        "checkpoints": list(checkpoints),
    }
    steps = [
        ("overhead", lambda: overhead(work, reps=1 if quick else 3, samples=4000 if quick else 8000,
                                      epochs=2 if quick else 3)),
        ("overshoot", lambda: overshoot(work, searches=4 if quick else 20, budget_s=3.0)),
        ("throughput", lambda: trials_per_hour(work, budget_s=20.0 if quick else 60.0)),
        ("parallel", lambda: parallel_throughput(work, budget_s=20.0 if quick else 60.0)),
        ("memory", lambda: memory_growth(work, n_trials=12 if quick else 50)),
        ("proposal_latency", lambda: proposal_latency(work, checkpoints, cap_s=10.0 if quick else 25.0)),
        ("placement", lambda: placement(work, reps=1 if quick else 3, samples=4000 if quick else 8000,
                                        epochs=2 if quick else 3)),
    ]
    run_steps(steps, args.only, report, out / "harness_perf.json")
    if args.only:
        print(json.dumps({k: report[k] for k in args.only}, indent=1, default=float)[:3000])
        return 0
    md = markdown(report)
    (out / "harness_perf.md").write_text(md)
    print(md)
    print(f"written: {out / 'harness_perf.json'}, {out / 'harness_perf.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
