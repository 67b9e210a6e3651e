"""Is the simulated clock true to reality? (REFERENCE.md, section G; issue: "the simulator is checked
against reality")

1. Clock fidelity. Each real search of `cifar10_cnn_search` (random and kt_hyperband by default)
   ran its trials on the grid that `benchmarks/tables/cifar10_cnn/` recorded. Its exact trial
   sequence (configurations, epochs, continuations, the strategy's recorded sampler seconds) is
   replayed on that table's simulated clock, and the simulated time from the search's start to the
   end of its last trial that was not cut by the deadline is set against the real one.
   How near any simulator can come is bounded by the machine itself: the same configuration's
   trial, run twice for real, does not take the same time twice. The figures below set the
   durations of every two full, from-scratch runs of one configuration in the real searches
   against each other, and bootstrap how many of the searches an exact simulator would bring within
   5 % of reality when each real trial varies as those pairs do (its noise floor).
2. Ranking fidelity. The strategies' mean test scores in the real searches (3 seeds) are set
   against theirs on the table (`cifar10_cnn_replay`, 30 seeds), as Spearman's and Kendall's rank
   correlations (SciPy).

    python benchmarks/perf/simulator_fidelity.py --real results/fidelity --simulated results/fidelity

Writes results/perf/simulator_fidelity.{json,md}.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
from pathlib import Path

from tunebench import FixedHyperParameters, SearchStrategy, TrialStatus
from tunebench.registry import load_plugins
from tunebench.settings import SearchSettings
from tunebench.simulation import simulate
from tunebench.store import Store

ROOT = Path(__file__).resolve().parents[2]


class Sequence(SearchStrategy):
    """Replays a recorded search's trials in order: its configurations, epochs and continuations."""

    name = "recorded_sequence"
    plan: list = []

    def search(self, ctx):
        for step in self.plan:
            ctx.run_trial(FixedHyperParameters(step["params"]), epochs=step["epochs"], number=step["number"],
                          resume_from=step["resume_from"], checkpoint=step["checkpoint"])


def replay_run(table, task, run, trials):
    """The run's trials on the simulated clock: (real seconds, simulated seconds) to the end of its
    last trial that the deadline did not cut, and the per-trial pairs."""
    continued = {(t["notes"] or {}).get("resumed_from") for t in trials}
    plan = [{"params": dict(t["params"]), "epochs": t["epoch_budget"], "number": t["number"],
             "resume_from": (t["notes"] or {}).get("resumed_from"), "checkpoint": t["number"] in continued}
            for t in trials if t["params"]]
    Sequence.plan = plan
    sampler = {t["number"]: float((t["timings"] or {}).get("sampler") or 0.0) for t in trials}
    outcome = simulate(table, task, Sequence, seed=run["seed"], budget_s=10 * run["budget_s"],
                       settings=SearchSettings(first_trial="none", feasibility_guard=False, sampler_time="apart"),
                       charge_sampler=False)
    # the recorded strategy's own seconds, between trials, added where the real search spent them
    simulated, shift = {}, 0.0
    for row in outcome.trials:
        shift += sampler.get(row["number"], 0.0)
        simulated[row["number"]] = (row["started_at"] + shift, row["finished_at"] + shift)
    whole = [t for t in trials if t["status"] != TrialStatus.TIMEOUT and t["finished_at"]]
    last = max(whole, key=lambda t: t["finished_at"])
    real = last["finished_at"] - run["started_at"]
    pairs = [(t["finished_at"] - t["started_at"], simulated[t["number"]][1] - simulated[t["number"]][0])
             for t in whole if t["number"] in simulated]
    return real, simulated[last["number"]][1], pairs


def repeatability(store, runs) -> list[float]:
    """Real against real: the duration ratio of every two full, from-scratch, scored trials of the
    same configuration and epoch count in the real searches, both ways round."""
    durations: dict[str, list[float]] = {}
    for run in runs:
        for t in store.trials([run["id"]]):
            if (t["status"] == TrialStatus.OK and t["params"] and t["epochs_done"] == t["epoch_budget"]
                    and (t["notes"] or {}).get("resumed_from") is None):
                durations.setdefault(json.dumps([t["params"], t["epoch_budget"]], sort_keys=True), []).append(
                    t["finished_at"] - t["started_at"])
    return [a / b for d in durations.values() for a, b in itertools.permutations(d, 2)]


def noise_floor(pairs, ratios, draws=10_000, seed=0) -> float:
    """The chance that an exact simulator brings this search within 5 % of a real run whose trials
    each vary by a ratio drawn from `ratios` (real run against real run)."""
    import numpy as np

    simulated = np.array([s for _, s in pairs])
    noise = np.random.default_rng(seed).choice(np.array(ratios), size=(draws, len(simulated)))
    ratio = simulated.sum() / (noise * simulated).sum(axis=1)
    return float(np.mean(np.abs(ratio - 1) <= 0.05))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real", default="results/fidelity", help="results folder of cifar10_cnn_search")
    parser.add_argument("--simulated", default="results/fidelity", help="results folder of cifar10_cnn_replay")
    parser.add_argument("--table", default=str(ROOT / "benchmarks" / "tables" / "cifar10_cnn"))
    parser.add_argument("--strategies", nargs="+", default=["random", "kt_hyperband"])
    parser.add_argument("--out", default="results/perf")
    args = parser.parse_args()

    from scipy import stats

    table = load_plugins().tables.get("replay")(path=args.table)
    task = table.tasks()[0]
    real_store = Store.open(args.real, readonly=True)
    runs = [r for r in real_store.runs(suite="cifar10_cnn_search") if r["status"] == "ok"]
    clock = []
    repeats = repeatability(real_store, runs)
    for run in runs:
        if run["strategy_label"] not in args.strategies:
            continue
        trials = real_store.trials([run["id"]])
        real, simulated, pairs = replay_run(table, task, run, trials)
        per_trial = [s / r for r, s in pairs if r > 0]
        clock.append({"strategy": run["strategy_label"], "seed": run["seed"], "trials": len(trials),
                      "real_s": round(real, 2), "simulated_s": round(simulated, 2),
                      "ratio": round(simulated / real, 4),
                      "per_trial_ratio_median": round(statistics.median(per_trial), 4) if per_trial else None,
                      "noise_floor_p_within_5": round(noise_floor(pairs, repeats), 3) if repeats and pairs else None})
    real_scores: dict[str, list[float]] = {}
    for run in runs:
        real_scores.setdefault(run["strategy_label"], []).append(run["test_score"])
    sim_store = Store.open(args.simulated, readonly=True)
    sim_scores: dict[str, list[float]] = {}
    for run in sim_store.runs(suite="cifar10_cnn_replay"):
        if run["status"] == "ok":
            sim_scores.setdefault(run["strategy_label"], []).append(run["test_score"])
    names = sorted(set(real_scores) & set(sim_scores))
    real_mean = [statistics.mean(real_scores[n]) for n in names]
    sim_mean = [statistics.mean(sim_scores[n]) for n in names]
    spearman = stats.spearmanr(real_mean, sim_mean)
    kendall = stats.kendalltau(real_mean, sim_mean)
    ranking = {"strategies": names, "real_mean_test": [round(v, 4) for v in real_mean],
               "real_seeds": [len(real_scores[n]) for n in names],
               "simulated_mean_test": [round(v, 4) for v in sim_mean],
               "simulated_seeds": [len(sim_scores[n]) for n in names],
               "spearman": round(float(spearman.statistic), 3), "spearman_p": round(float(spearman.pvalue), 3),
               "kendall": round(float(kendall.statistic), 3), "kendall_p": round(float(kendall.pvalue), 3)}
    floor = [c["noise_floor_p_within_5"] for c in clock if c["noise_floor_p_within_5"] is not None]
    quantiles = statistics.quantiles(repeats, n=20) if len(repeats) >= 2 else [None] * 19
    agree = sum(abs(r - 1) <= 0.05 for r in repeats)
    repeat = {"pairs": len(repeats), "within_5_percent": round(agree / len(repeats), 3) if repeats else None,
              "ratio_5th_percentile": quantiles[0] and round(quantiles[0], 3),
              "ratio_95th_percentile": quantiles[-1] and round(quantiles[-1], 3),
              "expected_searches_within_5_percent": round(sum(floor), 1)}
    ratios = [c["ratio"] for c in clock]
    result = {"clock": clock, "clock_ratio_median": statistics.median(ratios) if ratios else None,
              "clock_within_5_percent": sum(abs(r - 1) <= 0.05 for r in ratios), "clock_runs": len(ratios),
              "repeatability": repeat, "ranking": ranking}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "simulator_fidelity.json").write_text(json.dumps(result, indent=1))
    lines = ["| strategy | seed | trials | real s | simulated s | ratio | per-trial ratio (median) | "
             "noise floor: P(within 5 %) |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {c['strategy']} | {c['seed']} | {c['trials']} | {c['real_s']} | {c['simulated_s']} | "
              f"{c['ratio']} | {c['per_trial_ratio_median']} | {c['noise_floor_p_within_5']} |" for c in clock]
    lines += ["", f"Within 5 %: {result['clock_within_5_percent']} of {len(ratios)} searches. Real against real, the "
                  f"same configuration's full trial: {repeat['pairs']} ordered pairs, {repeat['within_5_percent']} "
                  f"within 5 %, ratio {repeat['ratio_5th_percentile']}-{repeat['ratio_95th_percentile']} (5th-95th "
                  f"percentile); an exact simulator would bring {repeat['expected_searches_within_5_percent']} "
                  f"searches within 5 % (expected)."]
    lines += ["", "| strategy | real mean test (seeds) | simulated mean test (seeds) |", "|---|---|---|"]
    lines += [f"| {n} | {r:.4f} ({rs}) | {s:.4f} ({ss}) |" for n, r, rs, s, ss in
              zip(names, real_mean, ranking["real_seeds"], sim_mean, ranking["simulated_seeds"])]
    lines += ["", f"Spearman {ranking['spearman']} (p = {ranking['spearman_p']}), Kendall {ranking['kendall']} "
                  f"(p = {ranking['kendall_p']})"]
    (out / "simulator_fidelity.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
