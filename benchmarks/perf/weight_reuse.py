"""What weight reuse saves Hyperband: `kt_hyperband` with `reuse_weights: true` (a promoted trial
continues the previous round's model) against `false` (every round from scratch), on the same
schedule and seeds, on real photos.

    make perf-reuse                              # = .venv/bin/python benchmarks/perf/weight_reuse.py
    python benchmarks/perf/weight_reuse.py --seeds 0 1 2 --out results/perf

Data: a stratified CIFAR-10 training subset at 32x32 from `$TUNEBENCH_DATA/cifar10` (the JPEG tree
`../shared/data/prepare.sh` builds), tested on its test split; `--data fashion_mnist` uses Keras's
Fashion-MNIST (a local copy) instead. Model: `scratch_cnn` with a small pinned architecture,
searching the learning rate, optimizer, dropout and batch size. Each search runs Hyperband's first
bracket (`max_epochs` 8, `factor` 2: 8 trials of 1 epoch, 4 of 2, 2 of 4, 1 of 8) to completion (a
budget with room, `max_trials` 15), so both arms train the same trials for the same epoch budgets.

Writes `weight_reuse.json` (every search's figures) and `weight_reuse.md` (the table quoted in
`benchmarks/perf/RESULTS.md`) to --out: epochs trained, search wall time, best validation and
test score per arm, medians over seeds, the reuse/scratch ratios measured in the same run, and
the anytime curve: the best validation score each arm had at 25/50/75/100 % of the from-scratch
search's wall time (same seed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.perf.harness_perf import open_store, tunebench, write_suite  # noqa: E402

#: A small CNN (about 0.1 M parameters) so that a bracket fits in minutes on 2 CPU cores.
ARCHITECTURE = {"blocks": 2, "convs_per_block": 1, "filters_0": 32, "filters_1": 64, "kernel_size": 3,
                "padding": "same", "pooling": "max", "pool_size": 2, "final_pool": True, "batch_norm": "none",
                "activation": "relu", "weight_decay": "none", "head": "flatten", "dense_units": 128,
                "augment": False, "class_weight": False}


def dataset(kind: str, limit: int) -> dict[str, Any]:
    if kind == "cifar10":
        data_dir = os.environ.get("TUNEBENCH_DATA")
        if not data_dir or not (Path(data_dir) / "cifar10" / "train").is_dir():
            raise SystemExit("error: set TUNEBENCH_DATA to the folder holding cifar10/{train,test} "
                             "(../shared/data/prepare.sh builds it), or use --data fashion_mnist")
        return {"image_folder": {"as": "cifar10_subset", "path": f"{data_dir}/cifar10", "size": 32, "limit": limit}}
    return {"fashion_mnist": {"limit": limit}}


def one(work: Path, data: dict[str, Any], seed: int, reuse: bool) -> dict[str, Any]:
    name = f"reuse-{'on' if reuse else 'off'}-{seed}"
    suite = write_suite(work / f"{name}.yaml", name=name, budget="30m", first_trial="none", seeds=[seed],
                        datasets=[data], model_families=[{"scratch_cnn": {"params": ARCHITECTURE}}],
                        strategies=[{"kt_hyperband": {"max_epochs": 8, "factor": 2, "max_trials": 15,
                                                      "reuse_weights": reuse}}])
    results = work / name
    tunebench("run", str(suite), "--results", str(results))
    store = open_store(results)
    run = store.runs()[0]
    trials = store.trials([run["id"]])
    return {"seed": seed, "reuse": reuse, "status": run["status"], "trials": len(trials),
            "epochs_trained": sum(t["epochs_done"] or 0 for t in trials),
            "epoch_budgets": sum(t["epoch_budget"] or 0 for t in trials),
            "continued": sum(1 for t in trials if (t["notes"] or {}).get("resumed_from") is not None),
            "search_s": round(run["finished_at"] - run["started_at"], 2),
            "train_s": round(sum((t["timings"] or {}).get("train", 0.0) for t in trials), 2),
            "best_val": run["best_val"], "test": run["test_score"],
            "schedule": [t["epoch_budget"] for t in trials],
            # (seconds since the search started, the trial's score) in the order trials ended
            "curve": sorted((round(t["finished_at"] - run["started_at"], 2), t["score"]) for t in trials
                            if t["finished_at"] is not None and t["score"] is not None)}


FRACTIONS = (0.25, 0.5, 0.75, 1.0)


def best_at(curve: list[list[float]], seconds: float) -> float | None:
    scores = [score for at, score in curve if at <= seconds]
    return max(scores) if scores else None


def anytime(rows: list[dict[str, Any]]) -> dict[str, list[tuple[float | None, float | None]]]:
    """Per seed, at each fraction of the from-scratch search's wall time: (reuse's best val, scratch's)."""
    out = {}
    for seed in sorted({r["seed"] for r in rows}):
        on = next(r for r in rows if r["seed"] == seed and r["reuse"])
        off = next(r for r in rows if r["seed"] == seed and not r["reuse"])
        out[str(seed)] = [(best_at(on["curve"], f * off["search_s"]), best_at(off["curve"], f * off["search_s"]))
                          for f in FRACTIONS]
    return out


def markdown(report: dict[str, Any]) -> str:
    rows = report["runs"]

    def med(reuse: bool, key: str) -> float:
        return statistics.median(r[key] for r in rows if r["reuse"] == reuse and r[key] is not None)

    lines = [f"Hyperband weight reuse, {report['date']}, {report['machine']}, data {report['data']}, "
             f"seeds {report['seeds']} (medians; ratios of medians, same run)", "",
             "| arm | epochs trained | search wall s | training s | best val | test |", "|---|---|---|---|---|---|"]
    for reuse in (True, False):
        lines.append(f"| {'reuse (continue)' if reuse else 'from scratch'} | {med(reuse, 'epochs_trained'):.0f} | "
                     f"{med(reuse, 'search_s'):.1f} | {med(reuse, 'train_s'):.1f} | {med(reuse, 'best_val'):.4f} | "
                     f"{med(reuse, 'test'):.4f} |")
    lines.append(f"| reuse / scratch | {med(True, 'epochs_trained') / med(False, 'epochs_trained'):.2f} | "
                 f"{med(True, 'search_s') / med(False, 'search_s'):.2f} | "
                 f"{med(True, 'train_s') / med(False, 'train_s'):.2f} | | |")
    curves = anytime(rows)
    lines += ["", "Best validation score at a fraction of the from-scratch search's wall time (reuse / scratch):",
              "", "| seed | " + " | ".join(f"{f:.0%}" for f in FRACTIONS) + " |",
              "|---|" + "---|" * len(FRACTIONS)]
    for seed, points in curves.items():
        cells = [f"{_f(a)} / {_f(b)}" for a, b in points]
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    lines += ["", "Per search: " + "; ".join(
        f"seed {r['seed']} {'reuse' if r['reuse'] else 'scratch'}: {r['epochs_trained']} epochs, "
        f"{r['search_s']:.0f} s, val {r['best_val']:.4f}, test {r['test']:.4f}" for r in rows
        if r["best_val"] is not None and r["test"] is not None)]
    return "\n".join(lines) + "\n"


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "results" / "perf"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--data", choices=("cifar10", "fashion_mnist"), default="cifar10")
    parser.add_argument("--limit", type=int, default=5000, help="training images (a stratified subset)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tunebench-reuse-"))
    from tunebench.provenance import hardware

    data = dataset(args.data, args.limit)
    machine = f"{hardware()['cpu']}, {os.cpu_count()} cores"
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "machine": machine, "seeds": args.seeds,
                              "data": f"{args.data} ({args.limit} training images)", "runs": []}
    for seed in args.seeds:
        for reuse in (True, False):  # alternated, so that drift in the machine's speed hits both arms
            t0 = time.time()
            report["runs"].append(one(work, data, seed, reuse))
            print(f"seed {seed} reuse {reuse}: {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
            (out / "weight_reuse.json").write_text(json.dumps(report, indent=1, default=float))
    report["anytime"] = anytime(report["runs"])
    (out / "weight_reuse.json").write_text(json.dumps(report, indent=1, default=float))
    md = markdown(report)
    (out / "weight_reuse.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
