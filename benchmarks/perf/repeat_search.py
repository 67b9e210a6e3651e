"""Does this machine repeat a real search? (REFERENCE.md, section G: the simulator checked against
reality.) The same search (suite, seed, strategy) run twice for real, one after the other on an
otherwise idle machine, into two results folders: its trials are set side by side, trial by trial,
and at the search level, as the simulator's clock is set against a real search.

    tunebench run SUITE --results results/repeat-a   # then the same into results/repeat-b
    python benchmarks/perf/repeat_search.py results/repeat-a results/repeat-b

A trial's time is its `finished_at - started_at`; the search's time runs from its start to the end
of the last trial of the common prefix (the same configurations and epochs in both runs) that both
runs completed whole (a trial the deadline cut ends at the deadline in both).
Writes results/perf/repeat_search.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from tunebench.store import Store


def _search(results: str) -> tuple[dict, list[dict]]:
    store = Store.open(results, readonly=True)
    runs = [r for r in store.runs() if r["status"] == "ok" and not r.get("simulated")]
    if len(runs) != 1:
        raise SystemExit(f"{results}: expected one finished real search, found {len(runs)}")
    return runs[0], store.trials([runs[0]["id"]])


def _took(trial: dict) -> float:
    return float(trial["finished_at"] - trial["started_at"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first")
    parser.add_argument("second")
    parser.add_argument("--out", default="results/perf")
    args = parser.parse_args()
    (run_a, trials_a), (run_b, trials_b) = _search(args.first), _search(args.second)
    if run_a["search_key"] != run_b["search_key"]:
        raise SystemExit("the two folders hold different searches (their search keys differ)")
    pairs = []
    for a, b in zip(trials_a, trials_b):
        if a["params"] != b["params"] or a["epoch_budget"] != b["epoch_budget"] or a["status"] != b["status"]:
            break
        pairs.append((a, b))
    rows = [{"number": a["number"], "epochs": a["epochs_done"], "status": a["status"],
             "first_s": round(_took(a), 2), "second_s": round(_took(b), 2), "ratio": round(_took(b) / _took(a), 4)}
            for a, b in pairs]
    ratios = [r["ratio"] for r in rows if r["status"] == "ok"]
    whole = [(a, b) for a, b in pairs if a["status"] == "ok"]  # a trial the deadline cut ends at the deadline
    end_a = whole[-1][0]["finished_at"] - run_a["started_at"] if whole else 0.0
    end_b = whole[-1][1]["finished_at"] - run_b["started_at"] if whole else 0.0
    result = {"search_key": run_a["search_key"], "strategy": run_a["strategy_label"], "seed": run_a["seed"],
              "trials": [len(trials_a), len(trials_b)], "common_prefix": len(pairs),
              "search_s": [round(end_a, 2), round(end_b, 2)],
              "search_ratio": round(end_b / end_a, 4) if end_a else None,
              "trial_ratio_median": round(statistics.median(ratios), 4) if ratios else None,
              "trials_within_5_percent": sum(abs(r - 1) <= 0.05 for r in ratios), "full_trials": len(ratios),
              "per_trial": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "repeat_search.json").write_text(json.dumps(result, indent=1))
    lines = ["| trial | epochs | status | first s | second s | ratio |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['number']} | {r['epochs']} | {r['status']} | {r['first_s']} | {r['second_s']} | {r['ratio']} |"
              for r in rows]
    lines += ["", f"{result['strategy']}, seed {result['seed']}: {result['trials'][0]} and {result['trials'][1]} "
                  "trials, "
                  f"the first {len(pairs)} the same; to the end of the last of those that ended whole, "
                  f"{result['search_s'][0]} s "
                  f"and {result['search_s'][1]} s (ratio {result['search_ratio']}). Full trials within 5 % of "
                  f"each other: {result['trials_within_5_percent']} of {result['full_trials']} (median ratio "
                  f"{result['trial_ratio_median']})."]
    (out / "repeat_search.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
