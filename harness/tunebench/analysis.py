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

import math
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tunebench import evidence
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
             "distribution, scipy.stats.studentized_range. Pairwise tests: scipy.stats.wilcoxon, Holm-corrected by "
             "statsmodels.stats.multitest.multipletests; the power note: statsmodels.stats.power.TTestPower. "
             "Interquartile mean: scipy.stats.trim_mean, its 95 % interval a stratified percentile bootstrap "
             "(2,000 resamples within each cell, rliable's method, written on NumPy because rliable does not "
             "import beside pandas 3). Student's t intervals on the leaderboard: scipy.stats.t. Written here, as "
             "no maintained library offers them as public functions: the rank groups (compact letter display), "
             "normalised regret, performance profiles and speed-ups over random search.")


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
    """Each strategy's interquartile mean (IQM) of test scores over all its runs (seeds x cells), with
    a 95 % stratified bootstrap interval: the aggregate rliable recommends for few runs, robust to an
    outlying seed where the mean is not. Runs are resampled within each cell (the strata), as
    rliable's `get_interval_estimates` does; rliable itself does not import beside pandas 3 (its
    dependency arch 7.2 fails), so the resampling is written here on NumPy, the trimmed mean is
    SciPy's. Over several cells the scores are first normalised per cell (0 = the cell's worst run,
    1 = its best), so that no cell's scale outweighs another's; `normalised` says so."""
    import numpy as np
    import pandas as pd
    from scipy import stats

    rows = []
    ok = runs[(runs["status"] == RunStatus.OK) & runs["test_score"].notna()] if not runs.empty else runs
    cells = [c for c in ("dataset_label", "model_label") if c in ok.columns]  # none: one cell
    several = bool(cells) and not ok.empty and ok.groupby(cells).ngroups > 1
    if several:
        span = ok.groupby(cells)["test_score"].agg(["min", "max"])
        low_high = span.reindex(pd.MultiIndex.from_frame(ok[cells])).to_numpy()
        width = np.where(low_high[:, 1] > low_high[:, 0], low_high[:, 1] - low_high[:, 0], 1.0)
        ok = ok.assign(value=(ok["test_score"].to_numpy(dtype=float) - low_high[:, 0]) / width)
    else:
        ok = ok.assign(value=ok["test_score"].astype(float))
    rng = np.random.default_rng(0)
    for strategy, group in ok.groupby("strategy_label"):
        scores = group["value"].to_numpy(dtype=float)
        iqm = float(stats.trim_mean(scores, 0.25))
        low = high = math.nan
        if len(scores) >= 3 and np.ptp(scores) > 0:
            strata = ([g["value"].to_numpy(dtype=float) for _, g in group.groupby(cells)] if cells
                      else [scores])
            draws = np.concatenate([s[rng.integers(0, len(s), size=(resamples, len(s)))] for s in strata], axis=1)
            boot = stats.trim_mean(draws, 0.25, axis=1)
            low, high = (float(v) for v in np.percentile(boot, [2.5, 97.5]))
        rows.append({"strategy": strategy, "iqm": iqm, "low": low, "high": high, "runs": len(scores),
                     "normalised": several})
    return pd.DataFrame(rows, columns=["strategy", "iqm", "low", "high", "runs", "normalised"]).set_index("strategy")


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
    #: Every pair of strategies tested over the complete blocks (Wilcoxon signed-rank, Holm-corrected),
    #: and the rank groups that follow; after a Friedman test that finds no difference, no pair is
    #: called significant (a post-hoc test is read only after its omnibus test).
    pairwise: evidence.Pairwise | None = None
    #: How many blocks would tell the first two strategies apart (`evidence.power_note`).
    power: evidence.PowerNote | None = None

    @property
    def unit(self) -> str:
        return "seeds" if self.blocks == "seeds" else "cells"

    def claims(self) -> list[str]:
        """What the ranking says, in sentences the tests support and no more (the report's and the
        terminal's "what this says"), with the power note."""
        ranked = self.complete_mean_rank if self.complete_mean_rank is not None else self.mean_rank
        order = list(ranked.index)
        lines = evidence.claims(order, self.pairwise, self.friedman, self.unit)
        if self.power is not None:
            lines.append(self.power.sentence(self.unit))
        return lines

    def rank_label(self, strategy: str) -> str:
        """A strategy's place as the evidence allows: its rank group's span (`1–3`), not a bare rank."""
        if self.pairwise is None or strategy not in self.pairwise.groups:
            return "–"
        return self.pairwise.rank_label(strategy)

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
            # random search as good as the best, up to the rounding of a mean over seeds (30 seeds
            # of equal scores differ by 1e-16): no scale to normalise by (it gave -2.8e11)
            if math.isnan(base) or best - base <= 1e-9 * max(1.0, abs(best)):
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
        # pairwise on the scores themselves; a strategy that failed in a block scores below every other there
        paired = scores[ran.all(axis=1)]
        paired = paired.apply(lambda row: row.fillna(row.min() - 1.0 if row.notna().any() else 0.0), axis=1)
        order = list(comparison.complete_mean_rank.index)
        tests = evidence.pairwise(paired, order)
        if p >= evidence.ALPHA:  # no omnibus difference: no pair is called different
            tests.significant.loc[:, :] = False
            tests.groups = evidence.letters(order, tests.significant)
        comparison.pairwise = tests
        comparison.power = evidence.power_note(paired, order[0], order[1], tests)
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


def run_curves(trials: pd.DataFrame) -> dict[int, tuple[Any, Any]]:
    """Each run's best validation score so far: `(finish times, best-so-far scores)` as arrays, the
    times in seconds since the run's clock started, from the trials that finished with a score. One
    sort and one pass over the trials, however many runs (a simulated study has millions of trials)."""
    import numpy as np

    if trials.empty:
        return {}
    scored = trials[trials["score"].notna() & (trials["status"] != TrialStatus.RUNNING)
                    & trials["finished_at"].notna()]
    if scored.empty:
        return {}
    run_ids = scored["run_id"].to_numpy()
    finished = scored["finished_at"].to_numpy(dtype=float)
    score = scored["score"].to_numpy(dtype=float)
    order = np.lexsort((finished, run_ids))
    run_ids, finished, score = run_ids[order], finished[order], score[order]
    cuts = np.flatnonzero(np.diff(run_ids)) + 1
    curves = {}
    for ids, times, values in zip(np.split(run_ids, cuts), np.split(finished, cuts), np.split(score, cuts)):
        curves[int(ids[0])] = (times, np.maximum.accumulate(values))
    return curves


def curve_at(curve: tuple[Any, Any] | None, started: float, times: Any) -> Any:
    """A run's best score so far at each of `times` (seconds since its start); NaN before its first."""
    import numpy as np

    times = np.asarray(times, dtype=float)
    if curve is None:
        return np.full(len(times), np.nan)
    finish, best = curve
    i = np.searchsorted(finish - started, times + 1e-9, side="right")
    out = np.where(i > 0, best[np.maximum(i - 1, 0)], np.nan)
    return out


def best_so_far(run: dict[str, Any], trials: pd.DataFrame, times: list[float]) -> list[float]:
    """A run's best validation score among trials finished by each time (seconds since its start)."""
    mine = trials[trials["run_id"] == run["id"]]
    return [float(v) for v in curve_at(run_curves(mine).get(int(run["id"])), float(run["started_at"]), times)]


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
    curves = run_curves(trials)
    for (d, m), cell in usable.groupby(["dataset_label", "model_label"]):
        budget = float(cell["budget_s"].max())
        grid = [budget * i / (points - 1) for i in range(points)]
        marks = [budget * f for f in FRACTIONS]
        medians, at, finals = {}, {}, {}
        per_strategy: dict[str, Any] = {}
        for s, group in cell.groupby("strategy_label"):
            series = np.array([curve_at(curves.get(int(r["id"])), float(r["started_at"]), grid + marks)
                               for r in group.to_dict("records")], dtype=float)
            per_strategy[s] = series
            values, ends = series[:, :points], series[:, points:]
            medians[s] = {q: _percentile(values, pct) if values.size else []
                          for q, pct in (("median", 50), ("q25", 25), ("q75", 75))}
            at[s] = _percentile(ends, 50)
            finals[s] = at[s][-1]
        table = pd.DataFrame(at, index=[f"{int(f * 100)}%" for f in FRACTIONS]).T
        target = finals.get(RANDOM, math.nan)
        reach = {}
        for s, series in per_strategy.items():
            times = []
            for row in series[:, :points]:
                hit = next((t for t, v in zip(grid, row) if not math.isnan(v) and not math.isnan(target)
                            and v >= target - 1e-12), math.nan)
                times.append(hit)
            reached = [t for t in times if not math.isnan(t)]
            reach[s] = float(np.median(reached)) if reached else math.nan
        results.append(Anytime((d, m), budget, grid, medians, table, pd.Series(reach)))
    return results


# -- the benchmark standard: tests at several budget fractions, regret, profiles, speed-ups, costs -------

#: The fractions of the budget at which strategies are ranked and tested (CD diagrams).
CD_FRACTIONS = (0.25, 0.50, 1.00)
#: The thresholds at which the performance profiles are tabled (regret above the best strategy's).
PROFILE_TAUS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2)


@dataclass
class RankTest:
    """Strategies ranked over blocks (lower rank is better), with the Friedman test, Nemenyi's
    critical difference and p-values, the pairwise Wilcoxon-Holm tests and the rank groups."""

    mean_rank: pd.Series
    blocks: int
    unit: str
    friedman: dict[str, Any] | None = None
    critical_difference: float | None = None
    nemenyi: pd.DataFrame | None = None
    pairwise: evidence.Pairwise | None = None
    power: evidence.PowerNote | None = None

    def claims(self) -> list[str]:
        lines = evidence.claims(list(self.mean_rank.index), self.pairwise, self.friedman, self.unit)
        if self.power is not None:
            lines.append(self.power.sentence(self.unit))
        return lines


def rank_test(values: pd.DataFrame, *, higher_is_better: bool, unit: str) -> RankTest | None:
    """Rank the columns (strategies) of `values` over its complete rows (blocks) and test them;
    None with fewer than 2 strategies or 3 complete blocks."""
    from scipy import stats

    complete = values.dropna()
    k, n = complete.shape[1], len(complete)
    if k < 2 or n < 3:
        return None
    better = complete if higher_is_better else -complete
    ranks = better.rank(axis=1, ascending=False, method="average")
    mean_rank = ranks.mean().sort_values()
    test = RankTest(mean_rank, n, unit)
    if not (ranks.nunique(axis=1) > 1).any():
        return test
    if k >= 3:
        statistic, p = stats.friedmanchisquare(*[ranks[c].to_numpy() for c in ranks.columns])
        name = "Friedman (scipy.stats.friedmanchisquare)"
    else:
        statistic, p = stats.wilcoxon(better.iloc[:, 0], better.iloc[:, 1], zero_method="zsplit")
        name = "Wilcoxon signed-rank (scipy.stats.wilcoxon)"
    test.friedman = {"statistic": float(statistic), "p_value": float(p), "strategies": k, "cells": n, "test": name}
    test.critical_difference = nemenyi_cd(k, n)
    test.nemenyi = nemenyi(ranks)
    order = list(mean_rank.index)
    tests = evidence.pairwise(better, order)
    if p >= evidence.ALPHA:
        tests.significant.loc[:, :] = False
        tests.groups = evidence.letters(order, tests.significant)
    test.pairwise = tests
    test.power = evidence.power_note(better, order[0], order[1], tests)
    return test


@dataclass
class Study:
    """The anytime statistics of a comparison, as benchmark studies report them (HPOBench, YAHPO
    Gym, CARP-S, rliable): normalised regret over the budget, ranks and tests at 25, 50 and 100 %
    of it, performance profiles, and each strategy's speed-up over random search.

    Regret is normalised per cell: 0 at the best validation score known (the table's optimum where
    it has one, else the best any run of the cell reached) and 1 at the worst score any of the
    cell's trials got; a run with no score yet has regret 1.
    """

    fractions: list[float]
    regret: dict[str, dict[str, list[float]]]  # strategy -> median / q25 / q75 over cells, per fraction
    at_fraction: pd.DataFrame  # strategy x CD fraction -> median over cells of each cell's median regret
    tests: dict[float, RankTest | None]  # CD fraction -> ranks and tests over the blocks
    profile: pd.DataFrame  # tau x strategy: share of cells within tau of the best strategy's regret
    speedup: pd.DataFrame  # strategy -> median, q25, q75 over cells; cells reached / cells
    cells: int
    unit: str
    optimum: str  # where the regret's zero comes from


def anytime_study(runs: pd.DataFrame, trials: pd.DataFrame, points: int = 101) -> Study | None:
    """The anytime statistics over every cell of `runs` (one kind: simulated or real, not mixed)."""
    import numpy as np
    import pandas as pd

    usable = runs[runs["started_at"].notna()] if not runs.empty else runs
    if usable.empty or trials.empty:
        return None
    fractions = [i / (points - 1) for i in range(points)]
    curves = run_curves(trials)
    scored = trials[trials["score"].notna()]
    low_by_run = scored.groupby("run_id")["score"].min()
    strategies = sorted(usable["strategy_label"].unique())
    cell_regret: dict[tuple[Any, ...], dict[str, Any]] = {}  # cell -> strategy -> (seeds x fractions)
    cell_best: dict[tuple[Any, ...], dict[str, Any]] = {}  # cell -> strategy -> median best-so-far per fraction
    seed_regret: dict[tuple[Any, ...], dict[str, Any]] = {}  # (cell, seed) -> strategy -> regret per fraction
    known = 0
    for cell, group in usable.groupby(["dataset_label", "model_label"]):
        ids = [int(i) for i in group["id"]]
        bests = [float(curves[i][1][-1]) for i in ids if i in curves]
        if not bests:
            continue
        optimum = _table_optimum(group)
        known += optimum is not None
        top = max([*bests, *([optimum] if optimum is not None else [])])
        lows = [float(low_by_run[i]) for i in ids if i in low_by_run.index]
        bottom = min(lows) if lows else min(bests)
        span = top - bottom if top > bottom else 1.0
        cell_regret[cell], cell_best[cell] = {}, {}
        for s, runs_s in group.groupby("strategy_label"):
            series = np.array([curve_at(curves.get(int(r["id"])), float(r["started_at"]),
                                        [f * float(r["budget_s"]) for f in fractions])
                               for r in runs_s.to_dict("records")], dtype=float)
            regret = np.clip((top - np.nan_to_num(series, nan=bottom)) / span, 0.0, 1.0)
            cell_regret[cell][s] = regret
            cell_best[cell][s] = np.array(_percentile(series, 50))
            for r, row in zip(runs_s.to_dict("records"), regret):
                seed_regret.setdefault((*cell, r["seed"]), {})[s] = row
    if not cell_regret:
        return None
    per_cell = {cell: {s: np.median(v, axis=0) for s, v in by.items()} for cell, by in cell_regret.items()}
    regret_curves = {}
    for s in strategies:
        rows = np.array([by[s] for by in per_cell.values() if s in by])
        if len(rows):
            regret_curves[s] = {"median": list(np.median(rows, axis=0)), "q25": list(np.percentile(rows, 25, axis=0)),
                                "q75": list(np.percentile(rows, 75, axis=0))}
    marks = {f: int(round(f * (points - 1))) for f in CD_FRACTIONS}
    at = pd.DataFrame({f"{int(f * 100)}%": {s: float(np.median([by[s][i] for by in per_cell.values() if s in by]))
                                            for s in regret_curves} for f, i in marks.items()})
    by_cells = len(per_cell) >= MIN_CELLS
    blocks = per_cell if by_cells else seed_regret
    unit = "cells" if by_cells else "seeds"
    tests = {}
    for f, i in marks.items():
        values = pd.DataFrame({block: {s: float(v[i]) for s, v in by.items()} for block, by in blocks.items()}).T
        tests[f] = rank_test(values.reindex(columns=strategies), higher_is_better=False, unit=unit)
    finals = pd.DataFrame({cell: {s: float(v[-1]) for s, v in by.items()} for cell, by in per_cell.items()}).T
    gaps = finals.sub(finals.min(axis=1), axis=0)
    taus = [round(0.005 * i, 3) for i in range(201)]
    profile = pd.DataFrame({s: [float((gaps[s].dropna() <= t + 1e-12).mean()) if gaps[s].notna().any()
                                else math.nan for t in taus] for s in gaps.columns}, index=taus)
    profile.index.name = "tau"
    speed = _speedups(cell_best, fractions)
    source = ("the table's optimum" if known == len(per_cell) else
              "the best any run reached" if not known else "the table's optimum where known, else the best run")
    return Study(fractions, regret_curves, at, tests, profile, speed, len(per_cell), unit, source)


def _table_optimum(runs: pd.DataFrame) -> float | None:
    """The cell's known optimum, from its simulated runs' table record."""
    for table in runs.get("table", []):
        if isinstance(table, dict) and table.get("optimum") is not None:
            return float(table["optimum"])
    return None


def _speedups(cell_best: dict[tuple[Any, ...], dict[str, Any]], fractions: list[float]) -> pd.DataFrame:
    """Per strategy, over cells: how much sooner it reached random search's final median score than
    random search did (random's time over its time; 0 if it never did), median and quartiles."""
    import numpy as np
    import pandas as pd

    found: dict[str, list[float]] = {}
    for by in cell_best.values():
        if RANDOM not in by:
            continue
        target = by[RANDOM][-1]
        if math.isnan(target):
            continue

        base = _reach(by[RANDOM], target, fractions)
        for s, curve in by.items():
            t = _reach(curve, target, fractions)
            found.setdefault(s, []).append(0.0 if math.isnan(t) else (base / t if t > 0 else math.inf))
    rows = {}
    for s, values in found.items():
        v = np.array(values, dtype=float)
        finite = np.where(np.isinf(v), np.nan, v)
        rows[s] = {"speedup_median": float(np.nanmedian(finite)) if np.isfinite(finite).any() else math.nan,
                   "speedup_q25": float(np.nanpercentile(finite, 25)) if np.isfinite(finite).any() else math.nan,
                   "speedup_q75": float(np.nanpercentile(finite, 75)) if np.isfinite(finite).any() else math.nan,
                   "reached": int((v > 0).sum()), "cells": len(v)}
    return pd.DataFrame.from_dict(rows, orient="index")


def _reach(curve: Any, target: float, fractions: list[float]) -> float:
    """The first fraction of the budget at which a median curve reaches `target` (NaN: never)."""
    import numpy as np

    hits = np.flatnonzero(np.nan_to_num(curve, nan=-np.inf) >= target - 1e-12)
    return fractions[hits[0]] if len(hits) else math.nan


def surrogate_corners(runs: pd.DataFrame) -> str | None:
    """A warning, where runs searched a surrogate table (`Table.surrogate`) and some selected a
    corner of its box: every searched numeric hyperparameter at a bound of its range. A surrogate
    extrapolates there, and its score may be one no real network reaches (on LCBench, a maximum
    dropout of 1.0 scored 0.949). Where a table has 4 or more numeric hyperparameters, selections
    with all but one at a bound are counted beside them. None when no run selected either."""
    if runs.empty or "table" not in runs:
        return None
    counts: dict[str, list[int]] = {}
    tables: set[str] = set()
    for strategy, table in zip(runs["strategy_label"], runs["table"]):
        if not isinstance(table, dict) or not table.get("surrogate") or not table.get("selected_at_bounds"):
            continue
        hit, numeric = table["selected_at_bounds"]
        tables.add(str(table.get("name")))
        seen = counts.setdefault(str(strategy), [0, 0, 0])
        seen[0] += int(numeric >= 2 and hit == numeric)
        seen[1] += int(numeric >= 4 and hit == numeric - 1)
        seen[2] += 1
    if not any(corner or near for corner, near, _ in counts.values()):
        return None
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1][0] / kv[1][2], -kv[1][1] / kv[1][2], kv[0]))
    nears = any(near for _, near, _ in counts.values())
    return (f"Surrogate corners: on the surrogate table{'s' if len(tables) > 1 else ''} ({', '.join(sorted(tables))}) "
            f"some runs selected a configuration with every numeric hyperparameter at a bound of its range"
            + (" (or all but one)" if nears else "")
            + ", where a surrogate extrapolates and may score what no real network reaches: "
            + " · ".join(f"{s} {c} of {n}" + (f" (+{m} with all but one)" if m else "") for s, (c, m, n) in ranked)
            + ". A strategy that ranks high there may have found the surrogate's edge rather than a good network.")


def costs(runs: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    """What each strategy spent its budget on, real and simulated runs alike: its sampler's own
    seconds per trial, and the shares of the budget that went to training (trials that trained), to
    the sampler, and to draws the feasibility guard turned away."""
    import numpy as np
    import pandas as pd

    if runs.empty or trials.empty:
        return pd.DataFrame()
    t = trials.merge(runs[["id", "strategy_label"]], left_on="run_id", right_on="id")
    t["seconds"] = (t["finished_at"].astype(float) - t["started_at"].astype(float)).clip(lower=0)
    turned = t["error_kind"] == "infeasible"
    rows = {}
    for s, group in t.groupby("strategy_label"):
        budget = float(runs.loc[runs["strategy_label"] == s, "budget_s"].sum())
        sampler = pd.to_numeric(group["sampler_s"], errors="coerce")
        mine = turned.loc[group.index]
        rows[s] = {"trials": len(group),
                   "sampler_s_per_trial": float(sampler.mean()) if sampler.notna().any() else math.nan,
                   "training_share": float(group.loc[~mine, "seconds"].sum()) / budget if budget else math.nan,
                   "sampler_share": float(sampler.sum()) / budget if budget and sampler.notna().any() else math.nan,
                   "turned_away_share": float(group.loc[mine, "seconds"].sum()) / budget if budget else math.nan,
                   "turned_away": int(mine.sum())}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "strategy"
    return frame.replace([np.inf, -np.inf], np.nan)
