"""Leaderboards: the store's runs and trials aggregated per dataset, rendered with tabulate.

One row per model family x strategy (x Keras backend) of a dataset, aggregated over seeds. Only the latest run of
each search counts (a resumed or re-run search replaces its earlier attempts). The test score is
that of the configuration selected on validation, evaluated once per run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunebench.budget import format_duration
from tunebench.vocabulary import FailureKind, RunStatus, TrialStatus

if TYPE_CHECKING:
    import pandas as pd

    from tunebench.store import Store

BASELINE = "baseline"
#: The strategy column of a family-default row: each family's default configuration, tried first by
#: every search (`first_trial: defaults`), so a strategy's gain over it can be read off.
FAMILY_DEFAULT = "family default"
#: Fewer seeds than this get no confidence interval (n is shown instead).
MIN_SEEDS_FOR_CI = 3
#: How the leaderboard's columns are computed, printed beneath every table: the score and its
#: interval always, the others only where their column is shown (`legend`).
LEGEND_SCORE = (f"test score: mean ± sd over seeds (the configuration selected on validation, tested once per "
                f"seed); with fewer than {MIN_SEEDS_FOR_CI} seeds, the mean and n. rank: the places a row cannot "
                f"be told apart from: its scores are paired by seed with every other row's (a Friedman test over "
                f"the seeds all rows ran, then Wilcoxon signed-rank tests between rows, Holm-corrected, "
                f"α = 0.05); rows sharing a group letter are not significantly different, and with fewer than "
                f"3 seeds, or no difference found, every row spans every place.")
LEGEND_CI = (f"95% CI: Student's t interval of the mean over seeds, from {MIN_SEEDS_FOR_CI} seeds, clipped to the "
             f"score's range [0, 1].")
LEGEND_VS_DEFAULT = ("vs default: the mean over the row's searches of each one's test score minus its own "
                     "family-default trial's (its first trial).")
LEGEND_INFEASIBLE = ("infeasible: draws the feasibility guard stopped before or in their first epoch because it "
                     "could not end in the time left; counted as timeouts, never trained to a score.")
LEGEND_COLLAPSED = ("collapsed: the runs whose selected model gave every test image the same class (or label set), "
                    "so its score is that answer's share, not a model's.")


def legend(board: pd.DataFrame) -> str:
    """The sentences that explain the columns `display_frame` keeps for this board (and how an
    interval is computed, which also says why fewer than 3 seeds get none)."""
    parts = [LEGEND_SCORE, LEGEND_CI]  # the interval's rule, also where too few seeds leave none
    if "vs_default" in board and board["vs_default"].notna().any():
        parts.append(LEGEND_VS_DEFAULT)
    if "failures" in board and board["failures"].fillna("").astype(str).str.contains("infeasible").any():
        parts.append(LEGEND_INFEASIBLE)
    if "runs_collapsed" in board and (board["runs_collapsed"].fillna(0) > 0).any():
        parts.append(LEGEND_COLLAPSED)
    return " ".join(parts)


#: Numeric columns of a leaderboard, in order (the CSV/JSON export). `kind` is `search`, `baseline`
#: (majority class, random guessing) or `family_default`.
COLUMNS = ["dataset", "model_family", "strategy", "kind", "rank", "rank_range", "group", "seeds", "runs", "runs_ok",
           "runs_failed",
           "runs_collapsed", "test_mean", "test_sd", "test_ci_low", "test_ci_high", "vs_default", "val_mean", "params",
           "inference_ms", "trials_ok", "trials_failed", "trials_timeout", "trials_pruned", "trials_nan", "failures",
           "time_to_best_s", "budget_used", "cpu_hours", "accelerator_hours", "cost_hours", "backend", "weights",
           "front_cost", "front_latency", "front_params"]

#: The cost axes of the Pareto fronts: a leaderboard column each, lower is better.
FRONTS = {"front_cost": ("cost_hours", "training cost (CPU + accelerator hours per search)"),
          "front_latency": ("inference_ms", "inference latency (ms per image)"),
          "front_params": ("params", "parameters of the selected model")}


COUNT_COLUMNS = ["seeds", "runs", "runs_ok", "runs_failed", "runs_collapsed", "trials_ok", "trials_failed",
                 "trials_timeout", "trials_pruned", "trials_nan"]


def latest_runs(store: Store, suite: str | None = None, *, dataset: str | None = None,
                model_family: str | None = None, strategy: str | None = None) -> pd.DataFrame:
    """The newest run of every search (interrupted attempts that were re-run drop out), filtered by
    suite and by dataset / model family / strategy label."""
    import pandas as pd

    rows = store.runs(suite=suite)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame = frame.sort_values("id").groupby("search_key", as_index=False).tail(1).reset_index(drop=True)
    for column, value in (("dataset_label", dataset), ("model_label", model_family), ("strategy_label", strategy)):
        if value is not None:
            frame = frame[frame[column] == value]
    return frame.reset_index(drop=True)


def ci95(values: pd.Series, bounds: tuple[float, float] = (0.0, 1.0)) -> tuple[float, float]:
    """Student's t 95 % confidence interval of the mean, clipped to the score's range (NaN with
    fewer than `MIN_SEEDS_FOR_CI` values: two seeds give an interval wider than the range)."""
    from scipy import stats

    n = len(values)
    if n < MIN_SEEDS_FOR_CI:
        return math.nan, math.nan
    half = float(stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n))
    low, high = float(values.mean()) - half, float(values.mean()) + half
    return max(bounds[0], low), min(bounds[1], high)


def build(store: Store, suite: str | None = None, *, dataset: str | None = None,
          model_family: str | None = None, strategy: str | None = None,
          baselines: bool = True) -> pd.DataFrame:
    """The leaderboard of every dataset as one numeric frame (see `COLUMNS`), with baseline rows."""
    import pandas as pd

    runs = latest_runs(store, suite, dataset=dataset, model_family=model_family, strategy=strategy)
    if runs.empty:
        return pd.DataFrame(columns=COLUMNS)
    trials = store.trial_frame([int(i) for i in runs["id"]],
                               ("run_id", "number", "status", "error_kind", "finished_at"))
    counts = (trials.groupby(["run_id", "status"]).size().unstack(fill_value=0)
              if not trials.empty else pd.DataFrame())
    rows = []
    # one row per backend too: the same model under tensorflow, jax and torch is compared side by side
    runs["backend"] = runs["backend"].fillna("")
    for (dataset, model, strategy, _), group in runs.groupby(
            ["dataset_label", "model_label", "strategy_label", "backend"], sort=False):
        ok = group[group["status"] == RunStatus.OK]
        tests = ok["test_score"].dropna()
        run_ids = [int(i) for i in group["id"]]

        def total(status: str, run_ids: list[int] = run_ids) -> int:
            if counts.empty or status not in counts.columns:
                return 0
            return int(counts.reindex(run_ids, fill_value=0)[status].sum())

        time_to_best = []
        for _, run in ok.iterrows():
            if run["best_trial"] is not None and not _nan(run["best_trial"]) and not trials.empty:
                best = trials[(trials["run_id"] == run["id"]) & (trials["number"] == run["best_trial"])]
                if not best.empty:
                    time_to_best.append(float(best["finished_at"].iloc[0]) - float(run["started_at"]))
        used = [(r["finished_at"] - r["started_at"]) / r["budget_s"] for _, r in group.iterrows()
                if not _nan(r["finished_at"]) and not _nan(r["started_at"])]
        ci_low, ci_high = ci95(tests)
        mine = trials[trials["run_id"].isin(run_ids)] if not trials.empty else trials
        # failures by kind: exceptions, out-of-memory, NaN losses, crashes, interruptions, and the
        # timeouts that were kills or the feasibility guard's stops (not plain deadlines or pruning,
        # which have their own columns)
        failed = (mine[mine["status"].isin(TrialStatus.failures())
                       | ((mine["status"] == TrialStatus.TIMEOUT)
                          & mine["error_kind"].isin([FailureKind.INFEASIBLE, FailureKind.KILLED]))]
                  if not mine.empty else mine)
        kinds = (failed["error_kind"].fillna(failed["status"]).value_counts()
                 if not failed.empty else pd.Series(dtype=int))
        rows.append({
            "dataset": dataset, "model_family": model, "strategy": strategy, "kind": "search",
            "seeds": int(group["seed"].nunique()),
            "runs": len(group), "runs_ok": len(ok), "runs_failed": int((group["status"] == RunStatus.FAILED).sum()),
            "test_mean": float(tests.mean()) if len(tests) else math.nan,
            "test_sd": float(tests.std(ddof=1)) if len(tests) > 1 else math.nan,
            "test_ci_low": ci_low, "test_ci_high": ci_high,
            "params": float(ok["best_param_count"].dropna().median()) if ok["best_param_count"].notna().any()
            else math.nan,
            "inference_ms": float(ok["inference_ms"].dropna().median()) if ok["inference_ms"].notna().any()
            else math.nan,
            "failures": ", ".join(f"{k}: {v}" for k, v in sorted(kinds.items())),
            "cpu_hours": float(group["cpu_seconds"].fillna(0).sum()) / 3600,
            "accelerator_hours": float(group["accelerator_seconds"].fillna(0).sum()) / 3600,
            # what one search of the cell costs, on average: CPU time plus accelerator time
            "cost_hours": float((group["cpu_seconds"].fillna(0)
                                 + group["accelerator_seconds"].fillna(0)).mean()) / 3600,
            "val_mean": float(ok["best_val"].dropna().mean()) if ok["best_val"].notna().any() else math.nan,
            # each search against its own family-default trial (the same configuration trains to a
            # different score in another search: another share of the budget, another machine load)
            "vs_default": _own_default_gain(ok),
            "trials_ok": total(TrialStatus.OK),
            "trials_failed": total(TrialStatus.FAILED) + total(TrialStatus.INTERRUPTED),
            "trials_timeout": total(TrialStatus.TIMEOUT), "trials_pruned": total(TrialStatus.PRUNED),
            "trials_nan": total(TrialStatus.NAN),
            "time_to_best_s": float(pd.Series(time_to_best).median()) if time_to_best else math.nan,
            "budget_used": float(pd.Series(used).mean()) if used else math.nan,
            "backend": ",".join(sorted({str(b) for b in group["backend"].dropna()})),
            # pretrained weights, for families that use them (transfer, feature_extraction)
            "weights": ",".join(sorted({str(o["weights"]) for o in group["model_options"]
                                        if isinstance(o, dict) and o.get("weights")})),
            # runs whose selected model gave every test image the same answer (`training.collapse`)
            "runs_collapsed": int(sum(1 for m in ok["test_metrics"] if isinstance(m, dict) and m.get("collapsed"))
                                  if "test_metrics" in ok else 0),
        })
    board = pd.DataFrame(rows)
    board["rank"] = (board.groupby("dataset")["test_mean"].rank(ascending=False, method="min")
                     .astype("Int64"))
    board = board.sort_values(["dataset", "rank"], na_position="last")
    board["rank_range"], board["group"] = _rank_groups(board, runs)
    for column, (cost, _) in FRONTS.items():
        board[column] = pareto_front(board, cost)
    if baselines:
        board = pd.concat([board, family_default_rows(runs), baseline_rows(runs)], ignore_index=True)
    for column in COUNT_COLUMNS:  # baseline rows have no counts: keep the others integers
        board[column] = board[column].astype("Int64")
    return board[COLUMNS].reset_index(drop=True)


def _rank_groups(board: pd.DataFrame, runs: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Each row's rank as the evidence allows and its rank group, per dataset: the rows' test scores
    are paired by seed (a seed's split is the same for every row of a dataset), a Friedman test
    over the seeds every row ran, then Wilcoxon signed-rank tests between every two rows,
    Holm-corrected (`evidence.pairwise`). Rows no test separates share a letter, and a row's rank
    spans every row it shares a letter with (`1–3`); with fewer than 3 such seeds, or no difference
    found, every row spans them all."""
    from scipy import stats

    from tunebench import evidence

    ranges: dict[int, str] = {}
    groups: dict[int, str] = {}
    ok = runs[(runs["status"] == RunStatus.OK) & runs["test_score"].notna()]
    for dataset, rows in board.groupby("dataset", sort=False):
        ranked = rows[rows["test_mean"].notna()].sort_values("test_mean", ascending=False)
        keys = {i: (r["model_family"], r["strategy"], r["backend"]) for i, r in ranked.iterrows()}
        mine = ok[ok["dataset_label"] == dataset]
        scores = mine.pivot_table(index="seed", columns=["model_label", "strategy_label", "backend"],
                                  values="test_score", aggfunc="mean")
        columns = [f"{i}" for i in keys]
        frame = scores.reindex(columns=list(keys.values()))
        frame.columns = columns
        complete = frame.dropna()
        order = columns
        tests = None
        if len(order) >= 2 and len(complete) >= 3 and (complete.nunique(axis=1) > 1).any():
            p = (stats.friedmanchisquare(*[complete[c] for c in order]).pvalue if len(order) >= 3 else
                 stats.wilcoxon(complete[order[0]], complete[order[1]], zero_method="zsplit").pvalue)
            tests = evidence.pairwise(complete, order)
            if p >= evidence.ALPHA:
                tests.significant.loc[:, :] = False
                tests.groups = evidence.letters(order, tests.significant)
        for i in keys:
            if tests is None:
                ranges[i] = "1" if len(order) == 1 else f"1–{len(order)}"
                groups[i] = "a"
            else:
                ranges[i] = tests.rank_label(f"{i}")
                groups[i] = tests.groups[f"{i}"]
    return [ranges.get(i, "-") for i in board.index], [groups.get(i, "") for i in board.index]


def pareto_front(board: pd.DataFrame, cost: str) -> pd.Series:
    """Which rows no other row of the same dataset beats on both test score (higher) and `cost`
    (lower): the cost-accuracy front. A row that another equals on one and beats on the other is
    dominated; rows without a test score or a cost are off the front."""
    import pandas as pd

    from tunebench.fronts import non_dominated

    on = pd.Series(False, index=board.index)
    for _, group in board.groupby("dataset"):
        front = non_dominated(list(zip(group["test_mean"], group[cost])))
        on[group.index[front]] = True
    return on


def fronts(board: pd.DataFrame) -> pd.DataFrame:
    """The cells on each dataset's cost-accuracy fronts, one row per (dataset, front, cell), best
    score first: what `tunebench leaderboard --pareto` prints and the report draws."""
    import pandas as pd

    rows = []
    search = board[board["kind"] == "search"]
    for column, (cost, meaning) in FRONTS.items():
        for _, r in search[search[column].fillna(False).astype(bool)].iterrows():
            rows.append({"dataset": r["dataset"], "front": meaning, "model_family": r["model_family"],
                         "strategy": r["strategy"], "test_mean": r["test_mean"], "cost": r[cost], "cost_of": cost})
    frame = pd.DataFrame(rows, columns=["dataset", "front", "model_family", "strategy", "test_mean", "cost", "cost_of"])
    order = {meaning: i for i, (_, meaning) in enumerate(FRONTS.values())}  # training cost first
    frame = frame.sort_values(["dataset", "front", "test_mean"], ascending=[True, True, False],
                              key=lambda c: c.map(order) if c.name == "front" else c)
    return frame.reset_index(drop=True)


def render_fronts(board: pd.DataFrame, fmt: str = "table") -> str:
    """The fronts as text (`--pareto`): per dataset and cost axis, the cells nothing beats on both."""
    from tabulate import tabulate

    frame = fronts(board)
    if fmt in ("csv", "json"):
        return str(frame.to_csv(index=False)) if fmt == "csv" else frame.to_json(orient="records", indent=2)
    if frame.empty:
        return "No cell has both a test score and a cost yet."
    style = "github" if fmt == "md" else "simple"
    parts = []
    for (dataset, front), group in frame.groupby(["dataset", "front"], sort=False):
        shown = group[["model_family", "strategy", "test_mean", "cost"]].rename(
            columns={"test_mean": "test score", "cost": front.split(" (")[0]})
        parts.append(f"{'## ' if fmt == 'md' else ''}{dataset}: test score against {front}\n\n"
                     + tabulate(shown, headers="keys", tablefmt=style, showindex=False, floatfmt=".4g"))
    return "\n\n".join(parts) + ("\n\nEach row is a model family x strategy that no other beats on both the test "
                                  "score (higher) and the cost (lower), on this dataset.\n")


def baseline_rows(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per dataset and baseline (majority class, random guessing), averaged over the runs'
    test splits, so that the leaderboard's numbers have a reference."""
    import pandas as pd

    rows = []
    for dataset, group in runs.groupby("dataset_label"):
        values: dict[str, list[float]] = {}
        for b in group["baselines"].dropna():
            for name, value in (b or {}).items():
                values.setdefault(name, []).append(value)
        for name, vals in values.items():
            rows.append({"dataset": dataset, "model_family": BASELINE, "strategy": name, "kind": "baseline",
                         "test_mean": sum(vals) / len(vals), "seeds": len(vals)})
    return pd.DataFrame(rows, columns=COLUMNS)


def family_default_rows(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per dataset and model family: the test score of the family's default configuration,
    the first trial of each of its searches (`first_trial: defaults`), averaged over seeds. Every
    strategy of a seed tried the same configuration, so a seed counts once (its searches' mean)."""
    import pandas as pd

    rows = []
    if "default_test_score" not in runs or runs["default_test_score"].isna().all():
        return pd.DataFrame(columns=COLUMNS)
    scored = runs[runs["default_test_score"].notna()]
    for (dataset, family), group in scored.groupby(["dataset_label", "model_label"]):
        per_seed = group.groupby("seed")["default_test_score"].mean()
        low, high = ci95(per_seed)
        rows.append({"dataset": dataset, "model_family": family, "strategy": FAMILY_DEFAULT, "kind": "family_default",
                     "test_mean": float(per_seed.mean()), "seeds": len(per_seed),
                     "test_sd": float(per_seed.std(ddof=1)) if len(per_seed) > 1 else math.nan,
                     "test_ci_low": low, "test_ci_high": high,
                     "val_mean": float(group.groupby("seed")["default_val"].mean().mean())})
    return pd.DataFrame(rows, columns=COLUMNS)


def _own_default_gain(ok: pd.DataFrame) -> float:
    """The mean over a row's searches of each one's test score minus its own family-default trial's
    (NaN when none of them ran the default)."""
    if "default_test_score" not in ok:
        return math.nan
    both = ok[ok["default_test_score"].notna() & ok["test_score"].notna()]
    return float((both["test_score"] - both["default_test_score"]).mean()) if len(both) else math.nan


def _nan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _pm(mean: float, sd: float, n: int) -> str:
    if _nan(mean):
        return "-"
    if n < MIN_SEEDS_FOR_CI or _nan(sd):
        return f"{mean:.4f} (n={n})"
    return f"{mean:.4f} ± {sd:.4f}"


def display_frame(board: pd.DataFrame) -> pd.DataFrame:
    """The human columns of one dataset's leaderboard."""
    import pandas as pd

    rows: list[dict[str, Any]] = []
    for _, r in board.iterrows():
        if r["kind"] == "baseline":
            rows.append({"rank": "", "model family": f"({BASELINE})", "strategy": str(r["strategy"]).replace("_", " "),
                         "test score (mean ± sd)": f"{r['test_mean']:.4f}"})
            continue
        if r["kind"] == "family_default":
            ci = ("" if _nan(r["test_ci_low"]) else f"[{r['test_ci_low']:.3f}, {r['test_ci_high']:.3f}]")
            rows.append({"rank": "", "model family": r["model_family"], "strategy": f"({FAMILY_DEFAULT})",
                         "test score (mean ± sd)": _pm(r["test_mean"], r["test_sd"], int(r["seeds"])),
                         "95% CI": ci, "best val": "-" if _nan(r["val_mean"]) else f"{r['val_mean']:.4f}"})
            continue
        ci = ("" if _nan(r["test_ci_low"]) else f"[{r['test_ci_low']:.3f}, {r['test_ci_high']:.3f}]")
        rows.append({
            "rank": r["rank_range"] if r.get("rank_range") not in (None, "", "-") and not _nan(r["rank_range"])
            else ("-" if _nan(r["rank"]) or pd.isna(r["rank"]) else str(int(r["rank"]))),
            "group": r.get("group") or "",
            "model family": r["model_family"], "strategy": r["strategy"],
            "test score (mean ± sd)": _pm(r["test_mean"], r["test_sd"], r["runs_ok"]),
            "95% CI": ci,
            "vs default": "" if _nan(r["vs_default"]) else f"{r['vs_default']:+.4f}",
            "best val": "-" if _nan(r["val_mean"]) else f"{r['val_mean']:.4f}",
            "runs ok/all": f"{r['runs_ok']}/{r['runs']}",
            "trials ok/failed/timeout/pruned": (f"{r['trials_ok']}/{r['trials_failed'] + r['trials_nan']}/"
                                                f"{r['trials_timeout']}/{r['trials_pruned']}"),
            "time to best": format_duration(None if _nan(r["time_to_best_s"]) else r["time_to_best_s"]),
            "budget used": "-" if _nan(r["budget_used"]) else f"{100 * r['budget_used']:.0f}%",
            "params": "-" if _nan(r["params"]) else f"{int(r['params']):,}",
            "ms/image": "-" if _nan(r["inference_ms"]) else f"{r['inference_ms']:.3f}",
            "CPU h": f"{r['cpu_hours']:.3f}", "GPU h": f"{r['accelerator_hours']:.3f}",
            "failures": r["failures"] or "",
            "collapsed": f"{int(r['runs_collapsed'])}/{r['runs_ok']}" if r.get("runs_collapsed") else "",
            "weights": r.get("weights") or "",
        })
    frame = pd.DataFrame(rows).fillna("")
    for column in ("weights", "failures", "collapsed", "95% CI", "vs default"):
        if column in frame and not frame[column].astype(bool).any():
            frame = frame.drop(columns=column)
    return frame


def render(board: pd.DataFrame, fmt: str = "table") -> str:
    """The leaderboard as text: `table` or `md` (one table per dataset), `csv` or `json`."""
    from tabulate import tabulate

    if fmt == "csv":
        return str(board.to_csv(index=False))
    if fmt == "json":
        records = json.loads(board.to_json(orient="records"))
        return json.dumps(records, indent=2)
    if board.empty:
        return "No finished runs in this results store yet. Run a suite with `tunebench run SUITE`."
    if fmt == "latex":
        return "\n\n".join(display_frame(group).to_latex(index=False, caption=f"Leaderboard: {dataset}")
                            for dataset, group in board.groupby("dataset", sort=True))
    style = "github" if fmt == "md" else "simple"
    parts = []
    for dataset, group in board.groupby("dataset", sort=True):
        title = f"## {dataset}" if fmt == "md" else f"Dataset: {dataset}"
        table = tabulate(display_frame(group), headers="keys", tablefmt=style, showindex=False,
                         disable_numparse=True)
        parts.append(f"{title}\n\n{table}")
    return "\n\n".join(parts) + f"\n\n{legend(board)}\n"


def write_files(board: pd.DataFrame, results_dir: str | Path) -> list[Path]:
    """Write `leaderboard.md` and `leaderboard.csv` into the results directory."""
    from tunebench.atomic import write_text_atomic

    results_dir = Path(results_dir)
    md, csv = results_dir / "leaderboard.md", results_dir / "leaderboard.csv"
    write_text_atomic(md, "# Leaderboard\n\n" + render(board, "md"))
    write_text_atomic(csv, render(board, "csv"))
    return [md, csv]


def compare_stores(a: Store, b: Store) -> pd.DataFrame:
    """Two results stores side by side, per (dataset, model family, strategy) cell they share or not."""
    import pandas as pd

    left, right = build(a, baselines=False), build(b, baselines=False)
    keys = ["dataset", "model_family", "strategy"]
    merged = left.merge(right, on=keys, how="outer", suffixes=("_a", "_b"), indicator=True)
    out = pd.DataFrame({
        **{k: merged[k] for k in keys},
        "in": merged["_merge"].map({"both": "both", "left_only": "A only", "right_only": "B only"}),
        "runs_a": merged["runs_ok_a"], "runs_b": merged["runs_ok_b"],
        "test_a": merged["test_mean_a"], "test_b": merged["test_mean_b"],
        "delta": merged["test_mean_b"] - merged["test_mean_a"],
        "val_a": merged["val_mean_a"], "val_b": merged["val_mean_b"],
        "trials_a": merged["trials_ok_a"], "trials_b": merged["trials_ok_b"],
        "backend_a": merged["backend_a"], "backend_b": merged["backend_b"],
    })
    for column in ("runs_a", "runs_b", "trials_a", "trials_b"):
        out[column] = out[column].astype("Int64")
    out = out.astype(object).where(out.notna(), None)
    return out.sort_values(keys).reset_index(drop=True)


def kinds(runs: pd.DataFrame, *, mix: bool = False) -> list[tuple[str, pd.DataFrame]]:
    """The runs split into real and simulated ones, which are never ranked together unless asked
    (`mix`): each kind gets its own comparison. One kind alone (or `mix`) is one part."""
    simulated = runs["simulated"].fillna(False).astype(bool) if "simulated" in runs else None
    if simulated is None or mix or simulated.all() or not simulated.any():
        label = ("simulated runs (tables)" if simulated is not None and simulated.all() and not runs.empty
                 else "all runs" if mix and simulated is not None and simulated.any() and not simulated.all()
                 else "real runs")
        return [(label, runs)]
    return [("real runs", runs[~simulated]), ("simulated runs (tables)", runs[simulated])]


def strategy_tables(store: Store, runs: pd.DataFrame) -> dict[str, Any]:
    """Everything a strategy comparison shows, for one kind of runs: the final comparison (test
    scores, tests, rank groups, power), the anytime study (regret, tests at 25/50/100 %, profiles,
    speed-ups over random search), the costs, and the protocol the results meet."""
    import pandas as pd

    from tunebench import analysis, protocols

    trials = store.trial_frame([int(i) for i in runs["id"]])
    comparison = analysis.compare_strategies(runs)
    corners = analysis.surrogate_corners(runs)
    if corners:
        comparison.notes.append(corners)
    study = analysis.anytime_study(runs, trials)
    summary = pd.DataFrame(index=comparison.mean_rank.index)
    if len(summary.index):
        summary["rank"] = [comparison.rank_label(s) for s in summary.index]
        summary["group"] = [(comparison.pairwise.groups.get(s, "") if comparison.pairwise else "–")
                            for s in summary.index]
        summary["mean rank"] = comparison.mean_rank
        summary["mean normalised score"] = comparison.mean_normalised
        if comparison.iqm is not None and not comparison.iqm.empty:
            iqm = comparison.iqm.reindex(summary.index)
            summary["IQM" + (" (normalised)" if bool(iqm["normalised"].any()) else "")] = iqm["iqm"]
            summary["IQM 95% CI"] = [f"[{lo:.3f}, {hi:.3f}]" if not math.isnan(lo) else "-"
                                     for lo, hi in zip(iqm["low"], iqm["high"])]
        if study is not None:
            for column in study.at_fraction.columns:
                summary[f"regret at {column}"] = study.at_fraction[column].reindex(summary.index)
            if not study.speedup.empty:
                sp = study.speedup.reindex(summary.index)
                summary["speed-up vs random"] = [
                    "-" if math.isnan(m) else f"{m:.2f}x [{q1:.2f}, {q3:.2f}]"
                    for m, q1, q3 in zip(sp["speedup_median"], sp["speedup_q25"], sp["speedup_q75"])]
                summary["reached random's final"] = [
                    f"{int(r)}/{int(c)}" if not math.isnan(c) else "-"
                    for r, c in zip(sp["reached"].fillna(0), sp["cells"].fillna(math.nan))]
        summary.index.name = "strategy"
    return {"comparison": comparison, "study": study, "summary": summary,
            "costs": analysis.costs(runs, trials), "protocol": protocols.statement(runs), "trials": trials}


def render_strategies(store: Store, fmt: str = "table", *, mix: bool = False, **filters: Any) -> str:
    """The strategy comparison as text (`--strategies`), one part per kind of runs (real, simulated):
    the protocol the results meet; the ranking with rank groups, normalised scores, the IQM, regret
    at 25/50/100 % of the budget and the speed-up over random search; what the tests say (and the
    power note); the tests at each budget fraction; the performance profile; the costs; and, for a
    few cells, each cell's scores and anytime table."""
    from tabulate import tabulate

    from tunebench import analysis

    style = "github" if fmt == "md" else "simple"
    head = "### " if fmt == "md" else ""
    runs = latest_runs(store, filters.get("suite"), dataset=filters.get("dataset"),
                       model_family=filters.get("model_family"), strategy=filters.get("strategy"))
    if runs.empty:
        return "No runs match."
    out = []
    for label, chosen in kinds(runs, mix=mix):
        tables = strategy_tables(store, chosen)
        comparison, study = tables["comparison"], tables["study"]
        parts = [f"{'## ' if fmt == 'md' else ''}Strategies compared: {label} ({len(chosen)} runs)",
                 tables["protocol"]]
        if len(tables["summary"].index):
            per = "seed" if comparison.blocks == "seeds" else "cell"
            parts.append(f"{head}Ranking by test score (rank: the places a strategy cannot be told apart from; "
                         f"strategies sharing a group letter are not significantly different; normalised score: 0 = "
                         f"random search, 1 = the best any strategy reached, per {per}; regret: normalised, 0 = "
                         f"{study.optimum if study else 'the best known'}, median over "
                         f"{study.unit if study else per + 's'})"
                         f"\n\n" + tabulate(tables["summary"], headers="keys", tablefmt=style, floatfmt=".3f"))
        lines = list(comparison.notes) + comparison.claims()
        sentence = comparison.test_sentence(alpha="alpha", cd_unit=" (mean ranks)")
        if sentence:
            lines.append(sentence)
        parts.append("\n".join(lines))
        if study is not None:
            rows = []
            for f, test in study.tests.items():
                if test is None:
                    rows.append(f"at {f:.0%} of the budget: too few {study.unit} for a test")
                    continue
                groups = " · ".join(f"{s} {test.mean_rank[s]:.2f}"
                                    + (f" ({test.pairwise.groups[s]})" if test.pairwise else "")
                                    for s in test.mean_rank.index)
                verdict = (f"{test.friedman['test'].split(' (')[0]} p = {test.friedman['p_value']:.3g}, critical "
                           f"difference {test.critical_difference:.2f}" if test.friedman else "no differences")
                rows.append(f"at {f:.0%} of the budget ({verdict}; mean rank of normalised regret over "
                            f"{test.blocks} {study.unit}): {groups}")
            parts.append(f"{head}Ranks and tests at fractions of the budget\n\n" + "\n".join(rows))
            profile = study.profile.loc[[t for t in analysis.PROFILE_TAUS if t in study.profile.index]]
            profile.index = [f"tau = {t:g}" for t in profile.index]
            parts.append(f"{head}Performance profile: share of the {study.cells} cells where a strategy's final "
                         f"normalised regret is within tau of the best strategy's\n\n"
                         + tabulate(profile, headers="keys", tablefmt=style, floatfmt=".2f"))
        if not tables["costs"].empty:
            parts.append(f"{head}Costs (per strategy, over its runs: the sampler's own seconds per trial, and the "
                         f"shares of the budget spent training, in the sampler, and in draws the feasibility guard "
                         f"turned away)\n\n" + tabulate(tables["costs"], headers="keys", tablefmt=style,
                                                        floatfmt=".4g"))
        if 0 < len(comparison.scores) <= 30:
            scores = comparison.scores.copy()
            scores.index = [" · ".join(map(str, i)) for i in scores.index]
            parts.append(f"{head}Test score per {comparison.blocks[:-1]}\n\n"
                         + tabulate(scores, headers="keys", tablefmt=style, floatfmt=".4f"))
        cells = chosen.groupby(["dataset_label", "model_label"]).ngroups
        if cells <= 4:
            trials = tables["trials"]
            for curve in analysis.anytime(chosen, trials) if not trials.empty else []:
                if curve.at_fraction.isna().all().all():
                    parts.append(f"Anytime: {' · '.join(curve.cell)}: no run of this cell scored a trial.")
                    continue
                table = curve.at_fraction.copy()
                table["time to random's final (s)"] = curve.time_to_random
                table.index.name = "strategy"
                parts.append(f"{head}Anytime: {' · '.join(curve.cell)} (median best validation score so far at "
                             f"each fraction of the {curve.budget_s:.0f} s budget)\n\n"
                             + tabulate(table, headers="keys", tablefmt=style, floatfmt=".4f"))
        out.append("\n\n".join(parts))
    return "\n\n".join(out) + "\n"
