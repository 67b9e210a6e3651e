"""What the simulated clock costs the harness (issue: "measure 100,000 simulated random-search trials").

    python benchmarks/perf/simulated_perf.py                 # writes results/perf/simulated_perf.{json,md}
    python benchmarks/perf/simulated_perf.py --trials 20000  # a quicker look

Parts, each repeated (`--repeats`, median reported), in this process, on this machine:
- `per_trial`: one random search of `--trials` trials on NAS-Bench-201 (CIFAR-10) and on the
  scripted synthetic table, with a budget no search reaches. The harness's own share per trial is
  the search's wall time less what the table took to answer (`surrogate_seconds`, the lookup or the
  surrogate's inference) and less the strategy's own computing (`sampler_seconds`, the random
  draws); then the same search written to a SQLite store in one transaction (`record_simulated`).
- `per_search`: `--searches` searches of one trial each through `simulation.run_one` (the table
  loaded once per process, as a suite's pool does), store write included: the fixed cost of a
  simulated search is its wall time less its one trial's.
Goals (issue #27): <= 1 ms of harness per simulated trial, <= 20 ms of fixed cost per simulated search.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tunebench.registry import load_plugins  # noqa: E402
from tunebench.settings import SearchSettings  # noqa: E402
from tunebench.simulation import simulate  # noqa: E402
from tunebench.store import Store  # noqa: E402

SETTINGS = SearchSettings(first_trial="none", sampler_time="apart")


def per_trial(catalog, table_name: str, options: dict, task: str | None, trials: int) -> dict:
    table = catalog.tables.get(table_name)(**options)
    task = task or table.tasks()[0]
    random = catalog.strategies.get("random")
    started = time.perf_counter()
    outcome = simulate(table, task, lambda: random(max_trials=trials), seed=0, budget_s=1e12, settings=SETTINGS,
                       charge_sampler=False)
    wall = time.perf_counter() - started
    n = len(outcome.trials)
    table_s = outcome.run["table"]["surrogate_seconds"]
    sampler_s = outcome.run["sampler_seconds"]
    with tempfile.TemporaryDirectory() as folder:
        store = Store.open(folder)
        t0 = time.perf_counter()
        store.record_simulated({**outcome.run, "search_key": "perf", "suite": "perf", "dataset": task,
                                "model_family": table_name, "strategy": "random", "seed": 0, "budget_s": 1e12,
                                "status": "ok"}, outcome.trials)
        write = time.perf_counter() - t0
        store.close()
    return {"table": table_name, "task": task, "trials": n, "wall_s": wall, "table_s": table_s,
            "sampler_s": sampler_s, "harness_ms_per_trial": 1000 * (wall - table_s - sampler_s) / n,
            "store_ms_per_trial": 1000 * write / n, "wall_ms_per_trial": 1000 * wall / n}


def per_search(searches: int) -> dict:
    """`searches` one-trial searches through `run_one`, as `tunebench run` runs a suite's."""
    from tunebench import simulation
    from tunebench.suite import Entry, Search

    with tempfile.TemporaryDirectory() as folder:
        store = Store.open(folder)
        simulation._start_worker(store.url, ())
        table = Entry("nas_bench_201", {"tasks": ["cifar10"]}, "nas_bench_201")
        walls, trial_walls = [], []
        for seed in range(searches):
            strategy = Entry("random", {"max_trials": 1}, "random")
            search = Search("perf", Entry("cifar10", {}, "cifar10"), table, strategy, seed, 1e9, None, None,
                            options=SETTINGS, simulated=True)
            t0 = time.perf_counter()
            done = simulation.run_one(search)
            walls.append(time.perf_counter() - t0)
            run = store.run(done.run_id)
            trial_walls.append(run["cpu_seconds"] / max(1, run["n_trials"]))
        store.close()
    fixed = [w - t for w, t in zip(walls, trial_walls)]
    return {"searches": searches, "wall_ms_median": 1000 * statistics.median(walls),
            "fixed_ms_median": 1000 * statistics.median(fixed),
            "fixed_ms_p90": 1000 * sorted(fixed)[int(0.9 * len(fixed))]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=100_000)
    parser.add_argument("--searches", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="results/perf")
    args = parser.parse_args()
    catalog = load_plugins(("tunebench.testing.scripted",))
    result: dict = {"machine": f"{platform.node()} {platform.processor() or platform.machine()}",
                    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "per_trial": [], "per_search": []}
    for _ in range(args.repeats):
        result["per_trial"].append(per_trial(catalog, "nas_bench_201", {"tasks": ["cifar10"]}, "cifar10", args.trials))
        result["per_trial"].append(per_trial(catalog, "scripted_table", {}, None, args.trials))
        result["per_search"].append(per_search(args.searches))

    def med(rows, key, where=None):
        return statistics.median(r[key] for r in rows if where is None or r["table"] == where)

    summary = {name: {k: med(result["per_trial"], k, name) for k in
                      ("wall_ms_per_trial", "harness_ms_per_trial", "store_ms_per_trial", "wall_s")}
               for name in ("nas_bench_201", "scripted_table")}
    summary["per_search"] = {k: med(result["per_search"], k) for k in ("wall_ms_median", "fixed_ms_median")}
    result["summary"] = summary
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "simulated_perf.json").write_text(json.dumps(result, indent=1))
    lines = [f"Simulated clock, {args.trials:,} random-search trials per search, median of {args.repeats} "
             f"({result['machine']}, {result['date']})", "",
             "| table | wall ms / trial | harness ms / trial | store write ms / trial | whole search s |",
             "|---|---|---|---|---|"]
    for name in ("nas_bench_201", "scripted_table"):
        s = summary[name]
        lines.append(f"| {name} | {s['wall_ms_per_trial']:.3f} | {s['harness_ms_per_trial']:.3f} | "
                     f"{s['store_ms_per_trial']:.3f} | {s['wall_s']:.1f} |")
    ps = summary["per_search"]
    lines += ["", f"Per simulated search ({args.searches} one-trial searches through run_one, store write "
                  f"included): {ps['wall_ms_median']:.2f} ms wall, {ps['fixed_ms_median']:.2f} ms fixed cost "
                  f"(median)."]
    (out / "simulated_perf.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
