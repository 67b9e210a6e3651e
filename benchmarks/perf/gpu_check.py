"""The figures only a GPU gives, from one prepared command: time to 99 % on MNIST through the harness
against a bare Keras loop, images/s and the overhead ratio with the data placed on the device and
streamed, GPU utilisation during a search of small CNNs, and what `--trials-per-gpu` packing gains.

    KERAS_BACKEND=torch python benchmarks/perf/gpu_check.py --out results/gpu-check
    python benchmarks/perf/gpu_check.py --dry-run --out results/gpu-check-dry     # CPU, < 2 minutes

Everything runs through the real `tunebench run` (a child process per search, the SQLite store) and,
for the yardsticks, a bare Keras loop in a fresh process on the same device and the same splits.
`--dry-run` takes the same code paths with tiny sizes (bundled digits instead of MNIST, one epoch,
budgets of seconds), so the script works the first time it meets a GPU; `make test` runs it.

Writes `gpu_check.json` (every raw figure) and `gpu_check.md` (the table for
benchmarks/perf/RESULTS.md) to --out. `benchmarks/perf/gpu_check.sh` runs it on the lent machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

#: The MNIST lecture's convnet (93,322 parameters), the configuration both sides train.
CONVNET = {"blocks": 3, "convs_per_block": 1, "filters_0": 32, "filters_1": 64, "filters_2": 64, "kernel_size": 3,
           "padding": "valid", "pooling": "max", "pool_size": 2, "final_pool": False, "batch_norm": "none",
           "activation": "relu", "dropout": 0.0, "weight_decay": "none", "head": "flatten", "dense_units": 64,
           "dense_dropout": 0.0, "augment": False, "optimizer": "rmsprop", "learning_rate": 0.001,
           "class_weight": False, "batch_size": 64}
GOALS = {"mnist_training_s": 10.0, "mnist_wall_s": 30.0, "overhead": 1.05, "gpu_busy": 0.90, "packing_gain": 2.0}


class Plan:
    """Sizes for the real check (a GPU, about 8 minutes) or the dry run (a CPU, under 2 minutes)."""

    def __init__(self, dry_run: bool) -> None:
        self.dry_run = dry_run
        self.dataset: dict[str, Any] = ({"digits": {"size": 28, "validation": 0.1}} if dry_run
                                        else {"mnist": {"validation": 0.1}})
        self.mnist_epochs = 1 if dry_run else 5
        self.search_budget_s = 6 if dry_run else 40
        self.packing = (1, 2) if dry_run else (1, 2, 4)
        self.small_limit = 400 if dry_run else 12_000


# -- running tunebench and a bare loop -------------------------------------------------------------------

def tunebench(*args: str, env: dict[str, str] | None = None, timeout: float = 1200) -> tuple[float, str]:
    """Run the real command line; its wall time from the command's start, and its stderr."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "tunebench.cli", *args], capture_output=True, text=True,
                            cwd=ROOT, env=dict(os.environ, **(env or {})), timeout=timeout)
    wall = time.perf_counter() - start
    if result.returncode not in (0, 1):
        raise RuntimeError(f"tunebench {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return wall, result.stderr


def write_suite(path: Path, **suite: Any) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


def rows(results: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    from tunebench.store import Store

    store = Store.open(results, readonly=True)
    try:
        trials = store.trials()
        return store.runs(), trials, store.epochs([t["id"] for t in trials])
    finally:
        store.close()


BARE = textwrap.dedent('''
    import json, sys, time
    cfg = json.loads(sys.argv[1])
    from tunebench.registry import load_plugins
    catalog = load_plugins()
    name, options = next(iter(cfg["dataset"].items()))
    data = catalog.datasets.get(name)(**options).splits(0)             # the harness's own split, not timed
    import keras
    from keras import layers
    x, y = data.x_train, data.y_train
    if cfg["placed"] and keras.backend.backend() in ("torch", "jax"):   # the same placement the harness makes
        from tunebench.training import place_data
        data, _ = place_data(data, True)
        x, y = data.train
    keras.utils.set_random_seed(0)
    inputs = keras.Input(data.spec.input_shape)
    h = layers.Rescaling(1 / 255)(inputs)
    h = layers.Conv2D(32, 3, activation="relu")(h)
    h = layers.MaxPooling2D(2)(h)
    h = layers.Conv2D(64, 3, activation="relu")(h)
    h = layers.MaxPooling2D(2)(h)
    h = layers.Conv2D(64, 3, activation="relu")(h)
    h = layers.Flatten()(h)
    h = layers.Dense(64, activation="relu")(h)
    model = keras.Model(inputs, layers.Dense(10, activation="softmax")(h))
    model.compile(optimizer=keras.optimizers.RMSprop(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(x, y, epochs=cfg["epochs"], batch_size=64, verbose=0)
    train_s = time.perf_counter() - start
    test = model.evaluate(data.x_test, data.y_test, batch_size=256, verbose=0, return_dict=True)["accuracy"]
    print("RESULT" + json.dumps({"train_s": train_s, "images": cfg["epochs"] * len(data.x_train),
                                 "test_accuracy": float(test), "backend": keras.backend.backend()}))
''')


def bare(plan: Plan, placed: bool) -> dict[str, Any]:
    """The same convnet, epochs and split in plain Keras, in a fresh process on the same device."""
    start = time.perf_counter()
    config = json.dumps({"dataset": plan.dataset, "epochs": plan.mnist_epochs, "placed": placed})
    result = subprocess.run([sys.executable, "-c", BARE, config], capture_output=True, text=True, cwd=ROOT,
                            timeout=1200)
    line = next((row for row in result.stdout.splitlines() if row.startswith("RESULT")), None)
    if line is None:
        raise RuntimeError(f"the bare Keras loop failed:\n{result.stderr[-3000:]}")
    out: dict[str, Any] = json.loads(line[len("RESULT"):])
    out["wall_s"] = time.perf_counter() - start
    out["images_per_s"] = out["images"] / out["train_s"]
    return out


# -- 1 and 2: MNIST to 99 %, and images/s against the bare loop ------------------------------------------

def mnist(plan: Plan, work: Path, placed: bool) -> dict[str, Any]:
    """The lecture convnet through `tunebench run` (`fixed`), and the same in a bare loop."""
    results = work / f"mnist-{'placed' if placed else 'streamed'}"
    suite = write_suite(work / f"mnist-{placed}.yaml", name="gpu_mnist", budget="10m", first_trial="none",
                        seeds=[0], training={"data_on_device": placed},
                        datasets=[plan.dataset], model_families=[{"scratch_cnn": {"params": {
                            **CONVNET, "epochs": plan.mnist_epochs}}}], strategies=["fixed"])
    wall, _ = tunebench("run", str(suite), "--results", str(results))
    runs, trials, epochs = rows(results)
    run, trial = runs[0], trials[0]
    train_s = float(trial["timings"]["train"])
    images = trial["epochs_done"] * run["split_sizes"]["train"]
    reached = [e for e in epochs if e["metrics"].get("val_accuracy", 0) >= 0.99]
    yardstick = bare(plan, placed)
    return {
        "placed": placed, "placement": run["hardware"].get("data_placement"), "gpus": run["hardware"].get("gpus"),
        "wall_s": wall, "train_s": train_s, "epochs": trial["epochs_done"], "test_accuracy": run["test_score"],
        "val_99_after_s": reached[0]["elapsed"] if reached else None, "images_per_s": images / train_s,
        "bare": yardstick, "overhead": train_s / yardstick["train_s"] if yardstick["train_s"] else None,
        "status": run["status"], "error": run["error"],
    }


# -- 3: GPU utilisation during a search of small CNNs ---------------------------------------------------

class GPUSampler:
    """`nvidia-smi` polled in the background: utilisation (%) and memory used (MiB)."""

    def __init__(self, period_s: float = 0.2) -> None:
        self.period_s = period_s
        self.samples: list[tuple[float, float]] = []
        self.available = shutil.which("nvidia-smi") is not None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                                      "--format=csv,noheader,nounits"], capture_output=True, text=True,
                                     timeout=5).stdout
                first = out.strip().splitlines()[0]
                util, mem = (float(v) for v in first.split(",")[:2])
                self.samples.append((util, mem))
            except (OSError, subprocess.SubprocessError, ValueError, IndexError):
                pass
            self._stop.wait(self.period_s)

    def __enter__(self) -> GPUSampler:
        if self.available:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.available:
            self._thread.join(timeout=10)

    def summary(self) -> dict[str, Any]:
        if not self.samples:
            return {"samples": 0, "note": "no nvidia-smi here" if not self.available else "no sample read"}
        util = [u for u, _ in self.samples]
        return {"samples": len(util), "busy_fraction": statistics.mean(util) / 100,
                "busy_median": statistics.median(util) / 100, "memory_max_mib": max(m for _, m in self.samples)}


def utilisation(plan: Plan, work: Path, per_gpu: int) -> dict[str, Any]:
    """A random search of small CNNs (`per_gpu` of them at once), with the GPU sampled throughout."""
    results = work / f"util-{per_gpu}"
    dataset = {name: {**options, "limit": plan.small_limit} for name, options in plan.dataset.items()}
    suite = write_suite(work / f"util-{per_gpu}.yaml", name=f"gpu_util_{per_gpu}", budget=plan.search_budget_s,
                        max_epochs=2, seeds=list(range(per_gpu)), datasets=[dataset],
                        model_families=[{"scratch_cnn": {"params": {"blocks": 2, "convs_per_block": 1,
                                                                    "batch_norm": "none"}}}],
                        strategies=["random"])
    args = ["run", str(suite), "--results", str(results), "--workers", str(per_gpu)]
    if per_gpu > 1:
        args += ["--trials-per-gpu", str(per_gpu)]
    with GPUSampler() as sampler:
        wall, _ = tunebench(*args)
    runs, trials, _ = rows(results)
    scored = [t for t in trials if t["score"] is not None]
    search_s = sum((r["finished_at"] or 0) - (r["started_at"] or 0) for r in runs) / max(1, len(runs))
    return {"per_gpu": per_gpu, "searches": len(runs), "wall_s": wall, "trials": len(trials),
            "trials_per_hour": 3600 * len(trials) / max(search_s, 1e-9),
            "best_val": max((t["score"] for t in scored), default=None),
            "statuses": sorted({r["status"] for r in runs}), "gpu": sampler.summary()}


# -- the whole check ------------------------------------------------------------------------------------

def run(plan: Plan, out: Path) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"dry_run": plan.dry_run, "machine": _machine(), "backend": _backend(),
                              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "goals": GOALS}
    with tempfile.TemporaryDirectory(prefix="tunebench-gpu-check-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        report["mnist"] = [mnist(plan, work, placed) for placed in (True, False)]
        packing = [utilisation(plan, work, k) for k in plan.packing]
        base = packing[0]["trials_per_hour"] or 1e-9
        for row in packing:
            row["gain"] = row["trials_per_hour"] / base
        report["packing"] = packing
        report["seconds"] = time.perf_counter() - started
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "gpu_check.md").write_text(markdown(report))
    return report


def markdown(r: dict[str, Any]) -> str:
    def num(v: Any, fmt: str = ".2f") -> str:
        return "-" if v is None else format(v, fmt)

    lines = [f"# GPU check ({'dry run, ' if r['dry_run'] else ''}{r['backend']}, {r['machine']}, {r['date']})", "",
             "| figure | measured | goal |", "|---|---|---|"]
    for m in r["mnist"]:
        where = "data placed on the device" if m["placed"] else "data streamed from the host"
        goal = f"< {GOALS['mnist_training_s']:g} s training, < {GOALS['mnist_wall_s']:g} s wall"
        lines += [
            f"| MNIST convnet, {m['epochs']} epochs, {where} ({m['placement']}) | test "
            f"{num(m['test_accuracy'], '.4f')}; training {num(m['train_s'])} s, wall {num(m['wall_s'])} s from the "
            f"command's start; val 99 % after {num(m['val_99_after_s'])} s | {goal} |",
            f"| images/s, one trial against the bare loop ({where}) | {num(m['images_per_s'], '.0f')} vs "
            f"{num(m['bare']['images_per_s'], '.0f')}: overhead x{num(m['overhead'], '.3f')} (bare test "
            f"{num(m['bare']['test_accuracy'], '.4f')}, {num(m['bare']['train_s'])} s) | <= {GOALS['overhead']:g} |"]
    for p in r["packing"]:
        gpu = p["gpu"]
        busy = (f"GPU busy {num(gpu.get('busy_fraction'), '.0%')} (median {num(gpu.get('busy_median'), '.0%')}), "
                f"{num(gpu.get('memory_max_mib'), '.0f')} MiB at most" if gpu.get("samples") else gpu.get("note", ""))
        lines.append(f"| random search of small CNNs, --trials-per-gpu {p['per_gpu']} ({p['searches']} search(es)) | "
                     f"{num(p['trials_per_hour'], '.0f')} trials/h (x{num(p['gain'])}), best val "
                     f"{num(p['best_val'], '.4f')}; {busy} | busy >= {GOALS['gpu_busy']:.0%}; "
                     f"x{GOALS['packing_gain']:g} at 4 per GPU |")
    lines.append(f"\nThe whole check took {r['seconds']:.0f} s.")
    return "\n".join(lines) + "\n"


def _backend() -> str:
    return os.environ.get("KERAS_BACKEND", "tensorflow")


def _machine() -> str:
    gpus = ""
    if shutil.which("nvidia-smi"):
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True).stdout.strip()
        gpus = ", ".join(out.splitlines())
    return f"{gpus or 'no GPU'}; {os.cpu_count()} CPU cores; {platform.platform()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "results" / "gpu-check"), help="folder for the JSON and Markdown")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes, on any machine (CPU), under 2 minutes")
    args = parser.parse_args(argv)
    report = run(Plan(args.dry_run), Path(args.out))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
