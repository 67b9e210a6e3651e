"""Comparing search strategies fairly, across cells and over time.

A *cell* is a dataset x model family. In each cell every strategy gets one score: the mean test
score of its runs over seeds (latest run per search). From those:

- **ranks** within each cell (1 = best, ties share the mean rank) and each strategy's mean rank;
- a **normalised score** per cell: 0 is random search's score there and 1 the best score any
  strategy reached there;
- a **Friedman test** over the cells (with at least 2 strategies and 3 complete cells), and the
  Nemenyi critical difference for the critical-difference diagram;
- **anytime curves**: best-so-far validation score against wall-clock time, median and
  inter-quartile band over seeds, plus each strategy's score at fixed fractions of the budget and
  the time it needed to reach random search's final score.

`MISSING_POLICY` says how failed or missing runs are ranked; every report states it.
"""

from __future__ import annotations

import bisect
import math
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tunebench.vocabulary import RunStatus, TrialStatus

if TYPE_CHECKING:
    import pandas as pd

RANDOM = "random"
FRACTIONS = (0.10, 0.25, 0.50, 1.00)
MISSING_POLICY = ("A strategy whose runs in a cell all failed is ranked last in that cell (tied with any other "
                  "such strategy) and gets no normalised score there. A strategy that was never run in a cell "
                  "is left out of that cell: its mean rank is over the cells it ran in. The Friedman test uses "
                  "only complete cells, where every strategy ran. Cells where no strategy succeeded are left out.")
#: Which library computes what, as the report says it.
LIBRARIES = ("Friedman test: scipy.stats.friedmanchisquare (Wilcoxon signed-rank, scipy.stats.wilcoxon, for two "
             "strategies). Nemenyi post-hoc p-values and the critical-difference diagram: scikit-posthocs "
             "(posthoc_nemenyi_friedman, critical_difference_diagram). Critical difference: the studentised range "
             "distribution, scipy.stats.studentized_range. Interquartile mean and its 95 % interval: "
             "scipy.stats.trim_mean and scipy.stats.bootstrap (percentile, 2,000 resamples). Student's t intervals "
             "on the leaderboard: scipy.stats.t.")


def nemenyi_cd(k: int, n: int, alpha: float = 0.05) -> float:
    """The Nemenyi critical difference of mean ranks for `k` strategies over `n` cells (Demšar 2006):
    the studentised range quantile over sqrt(2), times sqrt(k(k+1)/6n)."""
    from scipy import stats

    q = float(stats.studentized_range.ppf(1 - alpha, k, math.inf)) / math.sqrt(2)
    return q * math.sqrt(k * (k + 1) / (6 * n))


def nemenyi(ranks: pd.DataFrame) -> pd.DataFrame | None:
    """Pairwise Nemenyi p-values over cells (rows) x strategies (columns), from scikit-posthocs."""
    try:
        import scikit_posthocs as sp
    except ImportError:
        return None
    return sp.posthoc_nemenyi_friedman(ranks.reset_index(drop=True).astype(float))


def interquartile_mean(runs: pd.DataFrame, resamples: int = 2000) -> pd.DataFrame:
    """Each strategy's interquartile mean (IQM) of test scores over all its runs (seeds x cells),
    with a 95 % percentile bootstrap interval: the aggregate rliable recommends for few runs, robust
    to an outlying seed where the mean is not."""
    import numpy as np
    import pandas as pd
    from scipy import stats

    rows = []
    ok = runs[(runs["status"] == RunStatus.OK) & runs["test_score"].notna()] if not runs.empty else runs
    for strategy, group in ok.groupby("strategy_label"):
        scores = group["test_score"].to_numpy(dtype=float)
        iqm = float(stats.trim_mean(scores, 0.25))
        low = high = math.nan
        if len(scores) >= 3 and np.ptp(scores) > 0:
            ci = stats.bootstrap((scores,), lambda x, axis: stats.trim_mean(x, 0.25, axis=axis),
                                 n_resamples=resamples, method="percentile", random_state=0).confidence_interval
            low, high = float(ci.low), float(ci.high)
        rows.append({"strategy": strategy, "iqm": iqm, "low": low, "high": high, "runs": len(scores)})
    return pd.DataFrame(rows, columns=["strategy", "iqm", "low", "high", "runs"]).set_index("strategy")


@dataclass
class Comparison:
    """The strategy comparison across cells."""

    scores: pd.DataFrame  # rows: cells (dataset, model_family); columns: strategies; mean test score
    ranks: pd.DataFrame  # same shape, 1 = best
    normalised: pd.DataFrame  # same shape; NaN where undefined
    mean_rank: pd.Series
    mean_normalised: pd.Series
    friedman: dict[str, Any] | None = None
    critical_difference: float | None = None
    notes: list[str] = field(default_factory=list)
    policy: str = MISSING_POLICY
    #: Mean ranks over the complete cells only: what the Friedman test and the CD diagram use.
    complete_mean_rank: pd.Series | None = None
    #: Pairwise Nemenyi p-values between strategies (scikit-posthocs), over the complete cells.
    nemenyi: pd.DataFrame | None = None
    #: Interquartile mean of each strategy's test scores over every seed and cell, with a 95 %
    #: bootstrap interval (SciPy): `iqm`, `low`, `high`, `runs`.
    iqm: pd.DataFrame | None = None
    #: What a row (a block of the Friedman test) is: "cells" (dataset x model family, each
    #: strategy's mean over seeds) or "seeds" (dataset x model family x seed, each run's own score).
    blocks: str = "cells"

    def test_sentence(self, alpha: str = "α", cd_unit: str = "") -> str | None:
        """The Friedman (or Wilcoxon) test in one sentence, for the report and the terminal; None
        when no test was run."""
        f = self.friedman
        if not f:
            return None
        verdict = ("the strategies differ significantly (p < 0.05)" if f["p_value"] < 0.05
                   else "no significant difference between the strategies at p = 0.05")
        return (f"{f['test']} over {f['cells']} {self.blocks} and {f['strategies']} strategies: statistic "
                f"{f['statistic']:.3f}, p = {f['p_value']:.4f}: {verdict}. Nemenyi critical difference at "
                f"{alpha} = 0.05: {self.critical_difference or float('nan'):.3f}{cd_unit}.")


#: Fewer complete cells than this and `blocks="auto"` compares seed by seed.
MIN_CELLS = 3


def compare_strategies(runs: pd.DataFrame, blocks: str = "auto") -> Comparison:
    """Compare strategies from the latest runs (one row per run, as `leaderboard.select_runs` gives).

    Args:
        blocks: the rows that are ranked and tested: "cells" (dataset x model family, each
            strategy's mean test score over seeds), "seeds" (dataset x model family x seed: the
            seeds' splits are the same for every strategy, so each seed is a paired problem), or
            "auto": cells when at least `MIN_CELLS` of them ran every strategy, else seeds (a study
            of one dataset and one family still gets a Friedman test and a CD diagram).
    """
    if blocks not in ("auto", "cells", "seeds"):
        raise ValueError(f"blocks must be auto, cells or seeds, not {blocks!r}")
    if blocks == "auto":
        by_cell = _compare(runs, ("dataset_label", "model_label"))
        if by_cell.friedman is not None or runs.empty:
            return by_cell
        by_seed = _compare(runs, ("dataset_label", "model_label", "seed"))
        if by_seed.friedman is None:
            return by_cell
        by_seed.notes.insert(0, f"Fewer than {MIN_CELLS} cells ran every strategy, so each seed of a cell is a "
                                f"block: the seeds' splits are the same for every strategy, which makes each "
                                f"seed a paired problem.")
        return by_seed
    return _compare(runs, ("dataset_label", "model_label") + (("seed",) if blocks == "seeds" else ()))


def _compare(runs: pd.DataFrame, keys: tuple[str, ...]) -> Comparison:
    import numpy as np
    import pandas as pd
    from scipy import stats

    names = {"dataset_label": "dataset", "model_label": "model_family", "seed": "seed"}
    ok = runs[(runs["status"] == RunStatus.OK) & runs["test_score"].notna()] if not runs.empty else runs
    strategies = sorted(runs["strategy_label"].unique()) if not runs.empty else []
    cells = sorted({tuple(row) for row in runs[list(keys)].itertuples(index=False)}) if not runs.empty else []
    scores = pd.DataFrame(index=pd.MultiIndex.from_tuples(cells, names=[names[k] for k in keys]),
                          columns=strategies, dtype=float)
    for key, group in ok.groupby([*keys, "strategy_label"]):
        scores.loc[tuple(key[:-1]), key[-1]] = float(group["test_score"].mean())
    notes: list[str] = []
    ran = pd.DataFrame(False, index=scores.index, columns=strategies)
    for key, _ in runs.groupby([*keys, "strategy_label"]):
        ran.loc[tuple(key[:-1]), key[-1]] = True
    keep = scores.notna().any(axis=1)
    scores, ran = scores[keep], ran[keep]
    if scores.empty:
        empty = pd.Series(dtype=float)
        return Comparison(scores, scores.copy(), scores.copy(), empty, empty,
                          notes=["No successful runs to compare yet."])
    # Failed everywhere in a cell: ranked last there. Never run there: not ranked there.
    ranks = scores.fillna(-np.inf).where(ran).rank(axis=1, ascending=False, method="average")
    normalised = pd.DataFrame(index=scores.index, columns=scores.columns, dtype=float)
    if RANDOM in scores.columns:
        for cell, row in scores.iterrows():
            base, best = row[RANDOM], row.max()
            if math.isnan(base) or best == base:
                continue
            normalised.loc[cell] = (row - base) / (best - base)
        if normalised.isna().all().all():
            notes.append("Normalised scores are undefined: random search failed or scored best in every cell.")
    else:
        notes.append("Normalised scores need random search ('random') in each cell as the zero point; "
                     "this selection has none.")
    comparison = Comparison(scores, ranks, normalised, ranks.mean().sort_values(),
                            normalised.mean().reindex(ranks.mean().sort_values().index), notes=notes,
                            blocks="seeds" if "seed" in keys else "cells")
    comparison.iqm = interquartile_mean(runs)
    complete = ranks[ran.all(axis=1)]
    k, n = len(scores.columns), len(complete)
    unit = "seed" if "seed" in keys else "cell"
    if len(complete) < len(ranks):
        notes.append(f"{len(ranks) - len(complete)} of {len(ranks)} {unit}s did not run every strategy; the "
                     f"Friedman test uses the {n} complete {unit}{'' if n == 1 else 's'}.")
    if k >= 2 and n >= 3 and not (complete.nunique(axis=1) > 1).any():
        notes.append(f"Every strategy scored the same in each of the {n} complete {unit}s: there is nothing for "
                     f"a Friedman test to tell apart.")
    elif k >= 2 and n >= 3:
        columns = [complete[c].to_numpy() for c in complete.columns]
        if k >= 3:  # SciPy's Friedman test (with its correction for ties)
            statistic, p = stats.friedmanchisquare(*columns)
            test = "Friedman (scipy.stats.friedmanchisquare)"
        else:  # two strategies: the paired test the Friedman test reduces to
            statistic, p = stats.wilcoxon(columns[0], columns[1], zero_method="zsplit")
            test = "Wilcoxon signed-rank (scipy.stats.wilcoxon)"
        comparison.friedman = {"statistic": float(statistic), "p_value": float(p), "strategies": k, "cells": n,
                               "test": test}
        comparison.complete_mean_rank = complete.mean().sort_values()
        comparison.critical_difference = nemenyi_cd(k, n)
        comparison.nemenyi = nemenyi(complete)
    else:
        notes.append(f"Too little data for a Friedman test: it needs at least 2 strategies and 3 complete "
                     f"{unit}s; this selection has {k} strateg{'y' if k == 1 else 'ies'} and {n} complete "
                     f"{unit}{'' if n == 1 else 's'}. Ranks and normalised scores are descriptive only.")
    return comparison


@dataclass
class Anytime:
    """Best-so-far validation score against time for one cell."""

    cell: tuple[str, str]
    budget_s: float
    grid: list[float]
    curves: dict[str, dict[str, list[float]]]  # strategy -> median / q25 / q75 (NaN before a first score)
    at_fraction: pd.DataFrame  # strategy x fraction of the budget -> median best-so-far
    time_to_random: pd.Series  # strategy -> median seconds to reach random's final score (NaN: never)


def best_so_far(run: dict[str, Any], trials: pd.DataFrame, times: list[float]) -> list[float]:
    """A run's best validation score among trials finished by each time (seconds since its start)."""
    mine = trials[(trials["run_id"] == run["id"]) & trials["score"].notna()
                  & (trials["status"] != TrialStatus.RUNNING)]
    points = sorted((float(t - run["started_at"]), float(s)) for t, s in zip(mine["finished_at"], mine["score"]))
    finish = [p[0] for p in points]
    prefix, best = [], math.nan
    for _, score in points:
        best = score if math.isnan(best) else max(best, score)
        prefix.append(best)
    out = []
    for when in times:  # any order
        i = bisect.bisect_right(finish, when + 1e-9)
        out.append(prefix[i - 1] if i else math.nan)
    return out


def _percentile(values: Any, pct: float) -> list[float]:
    """Per column (time), the percentile over seeds (rows), counting a seed with no score yet as the
    worst: NaN until enough seeds have one, and never falling as time goes on (a median over only the
    seeds that have scored could fall when a weaker seed got its first score)."""
    import numpy as np

    worst = np.where(np.isnan(values), -np.inf, values)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # -inf + inf while interpolating
        out = np.percentile(worst, pct, axis=0)
    return [float(v) if np.isfinite(v) else math.nan for v in np.atleast_1d(out)]


def anytime(runs: pd.DataFrame, trials: pd.DataFrame, points: int = 60) -> list[Anytime]:
    """Anytime curves and tables for every cell of `runs` (latest runs; any status with a start)."""
    import numpy as np
    import pandas as pd

    results = []
    usable = runs[runs["started_at"].notna()] if not runs.empty else runs
    for (d, m), cell in usable.groupby(["dataset_label", "model_label"]):
        budget = float(cell["budget_s"].max())
        grid = [budget * i / (points - 1) for i in range(points)]
        marks = [budget * f for f in FRACTIONS]
        curves, at, finals = {}, {}, {}
        per_strategy: dict[str, list[list[float]]] = {}
        for s, group in cell.groupby("strategy_label"):
            series = [best_so_far(r, trials, grid + marks) for r in group.to_dict("records")]
            per_strategy[s] = series
            values = np.array([row[:points] for row in series], dtype=float)
            ends = np.array([row[points:] for row in series], dtype=float)
            curves[s] = {q: _percentile(values, pct) if values.size else []
                         for q, pct in (("median", 50), ("q25", 25), ("q75", 75))}
            at[s] = _percentile(ends, 50)
            finals[s] = at[s][-1]
        table = pd.DataFrame(at, index=[f"{int(f * 100)}%" for f in FRACTIONS]).T
        target = finals.get(RANDOM, math.nan)
        reach = {}
        for s, series in per_strategy.items():
            times = []
            for row in series:
                hit = next((t for t, v in zip(grid, row[:points]) if not math.isnan(v) and not math.isnan(target)
                            and v >= target - 1e-12), math.nan)
                times.append(hit)
            reached = [t for t in times if not math.isnan(t)]
            reach[s] = float(np.median(reached)) if reached else math.nan
        results.append(Anytime((d, m), budget, grid, curves, table, pd.Series(reach)))
    return results
