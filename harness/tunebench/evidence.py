"""What a ranking may claim: pairwise tests, rank groups and the power to tell two strategies apart.

A ranking of strategies over blocks (cells, or seeds of one cell) is only a claim where the data
supports it. Here every pair is tested with the Wilcoxon signed-rank test over the blocks both ran
(`scipy.stats.wilcoxon`), the p-values are corrected for the number of pairs with Holm's method
(`statsmodels.stats.multitest.multipletests`), and strategies that no corrected test separates share
a *rank group*: the compact letter display of an ordered ranking (strategies sharing a letter are
not significantly different), written here because no maintained library offers it as a public
function. A *power note* says how many blocks a paired test would need to detect the observed
difference between two strategies (`statsmodels.stats.power.TTestPower`, with the Wilcoxon test's
asymptotic relative efficiency of 3/π against the t test).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

ALPHA = 0.05
POWER = 0.8
#: The Wilcoxon signed-rank test's asymptotic efficiency against the paired t test (normal data).
WILCOXON_ARE = 3 / math.pi
#: With fewer blocks than this, no two-sided Wilcoxon test can reach p < 0.05 (its smallest p with 5 is 0.0625).
MIN_BLOCKS_FOR_WILCOXON = 6


@dataclass
class Pairwise:
    """Every pair of strategies tested over the blocks both ran.

    Attributes:
        order: the strategies, best mean rank first.
        p_raw: uncorrected two-sided Wilcoxon p-values (strategy x strategy; 1 on the diagonal).
        p_holm: Holm-corrected p-values; `significant` is `p_holm < alpha`.
        blocks: how many blocks each pair was tested over.
        groups: each strategy's letters (`a`, `ab`, ...): strategies sharing a letter are not
            significantly different.
    """

    order: list[str]
    p_raw: pd.DataFrame
    p_holm: pd.DataFrame
    significant: pd.DataFrame
    blocks: pd.DataFrame
    groups: dict[str, str]
    alpha: float = ALPHA

    def rank_range(self, strategy: str) -> tuple[int, int]:
        """The positions (1 = best) a strategy cannot be told apart from: its own and those of every
        strategy sharing one of its letters."""
        mine = set(self.groups[strategy])
        positions = [i + 1 for i, s in enumerate(self.order) if mine & set(self.groups[s])]
        return min(positions), max(positions)

    def rank_label(self, strategy: str) -> str:
        low, high = self.rank_range(strategy)
        return f"{low}" if low == high else f"{low}–{high}"


def pairwise(scores: pd.DataFrame, order: list[str], *, higher_is_better: bool = True,
             alpha: float = ALPHA) -> Pairwise:
    """Test every pair of `scores`' columns (strategies) over its rows (blocks) where both have a
    value; `order` is the ranking (best first) the groups follow."""
    import numpy as np
    import pandas as pd
    from scipy import stats
    from statsmodels.stats.multitest import multipletests

    names = list(order)
    raw = pd.DataFrame(1.0, index=names, columns=names)
    counts = pd.DataFrame(0, index=names, columns=names)
    pairs, ps = [], []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            both = scores[[a, b]].dropna()
            counts.loc[a, b] = counts.loc[b, a] = len(both)
            diff = (both[a] - both[b]).to_numpy(dtype=float)
            if len(diff) == 0 or not np.any(diff != 0):
                p = 1.0
            else:
                p = float(stats.wilcoxon(both[a], both[b], zero_method="zsplit").pvalue)
            raw.loc[a, b] = raw.loc[b, a] = p
            pairs.append((a, b))
            ps.append(p)
    holm = pd.DataFrame(1.0, index=names, columns=names)
    if ps:
        corrected = multipletests(ps, alpha=alpha, method="holm")[1]
        for (a, b), p in zip(pairs, corrected):
            holm.loc[a, b] = holm.loc[b, a] = float(p)
    significant = holm < alpha
    for n in names:
        significant.loc[n, n] = False
    return Pairwise(names, raw, holm, significant, counts, letters(names, significant), alpha)


def letters(order: list[str], significant: pd.DataFrame) -> dict[str, str]:
    """The compact letter display of a ranking (Piepho's insert-and-absorb, 2004): two strategies
    share a letter exactly when no test separates them, and every significant pair shares none.
    A group need not be consecutive in the ranking: at 100 % of the simulated study's budget TPE
    (first) and grid (fifth) share a letter while PBT and Hyperband, between them, do not share
    TPE's (a display of consecutive runs had put grid apart from TPE, which no test said).
    Letters go in the order of each group's best-ranked member."""
    columns: list[set[str]] = [set(order)]
    for i, a in enumerate(order):
        for b in order[i + 1:]:
            if not bool(significant.loc[a, b]):
                continue
            split: list[set[str]] = []
            for column in columns:
                if a in column and b in column:
                    split += [column - {a}, column - {b}]
                else:
                    split.append(column)
            # absorb: a column inside another says nothing more
            unique = [c for n, c in enumerate(split) if c and c not in split[:n]]
            columns = [c for c in unique if not any(c < other for other in unique)]
    rank = {s: k for k, s in enumerate(order)}
    columns.sort(key=lambda c: sorted(rank[s] for s in c))
    found = {s: "" for s in order}
    for n, column in enumerate(columns):
        for s in sorted(column, key=rank.__getitem__):
            found[s] += _letter(n)
    return found


def _letter(n: int) -> str:
    return "abcdefghijklmnopqrstuvwxyz"[n] if n < 26 else f"g{n}"


@dataclass(frozen=True)
class PowerNote:
    """How many blocks a paired test needs to detect the difference observed between two strategies."""

    a: str
    b: str
    blocks: int
    mean_difference: float
    effect_size: float  # Cohen's d_z: the mean paired difference over its standard deviation
    needed: int | None  # None: no difference observed, or it is detected already
    significant: bool
    alpha: float

    def sentence(self, unit: str = "blocks") -> str:
        if self.significant:
            return (f"{self.a} and {self.b} differ significantly over the {self.blocks} {unit} "
                    f"(mean difference {self.mean_difference:+.4f}, effect size d_z = {self.effect_size:.2f}).")
        if self.needed is None:
            return (f"{self.a} and {self.b} scored the same in every one of the {self.blocks} {unit}: no number "
                    f"of {unit} would tell them apart.")
        more = max(0, self.needed - self.blocks)
        return (f"To tell {self.a} from {self.b} apart (mean difference {self.mean_difference:+.4f} per "
                f"{unit[:-1] if unit.endswith('s') else unit}, effect size d_z = {self.effect_size:.2f}) at "
                f"α = {self.alpha:g} with {POWER:.0%} power, a paired Wilcoxon test needs about {self.needed} "
                f"{unit}; there are {self.blocks}" + (f" ({more} more)." if more else "."))


def blocks_needed(effect_size: float, *, alpha: float = ALPHA, power: float = POWER) -> int | None:
    """Blocks a two-sided paired Wilcoxon signed-rank test needs to detect a standardised difference
    `effect_size` (d_z) at `alpha` with `power`: the paired t test's sample size (statsmodels) over
    the Wilcoxon test's efficiency of 3/π. None for no difference."""
    if not math.isfinite(effect_size) or effect_size == 0:
        return None
    from statsmodels.stats.power import TTestPower

    n = float(TTestPower().solve_power(effect_size=abs(effect_size), alpha=alpha, power=power,
                                       alternative="two-sided"))
    return int(math.ceil(n / WILCOXON_ARE))


def power_note(scores: pd.DataFrame, a: str, b: str, tests: Pairwise | None, *,
               alpha: float = ALPHA) -> PowerNote:
    """The power note for strategies `a` and `b` over the blocks both ran, for the pair compared on its
    own at `alpha` (with several pairs, Holm's correction asks for somewhat more)."""
    both = scores[[a, b]].dropna()
    diff = (both[a] - both[b]).astype(float)
    mean = float(diff.mean()) if len(diff) else 0.0
    sd = float(diff.std(ddof=1)) if len(diff) > 1 else 0.0
    d = mean / sd if sd > 0 else (math.inf if mean else 0.0)
    significant = bool(tests.significant.loc[a, b]) if tests is not None else False
    needed = None if significant else blocks_needed(d, alpha=alpha)
    return PowerNote(a, b, len(diff), mean, d if math.isfinite(d) else 0.0, needed, significant, alpha)


def claims(order: list[str], tests: Pairwise | None, friedman: dict[str, Any] | None, unit: str) -> list[str]:
    """What a ranking says, in sentences the tests support and no more."""
    if len(order) < 2:
        return []
    if tests is None or friedman is None:
        return [f"Too few {unit} for a test: the order of the strategies is descriptive only, and no difference "
                f"between them is shown."]
    lines = []
    if friedman["p_value"] >= tests.alpha:
        lines.append(f"The strategies do not differ significantly ({friedman['test'].split(' (')[0]} p = "
                     f"{friedman['p_value']:.3g} over {friedman['cells']} {unit}): every strategy shares the "
                     f"rank group of the first, and the order is descriptive only.")
    else:
        lines.append(f"The strategies differ ({friedman['test'].split(' (')[0]} p = {friedman['p_value']:.3g} over "
                     f"{friedman['cells']} {unit}).")
    best = order[0]
    beaten = [s for s in order[1:] if bool(tests.significant.loc[best, s])]
    tied = [s for s in order[1:] if not bool(tests.significant.loc[best, s])]
    if beaten:
        lines.append(f"{best} is significantly better than {_join(beaten)} (Wilcoxon signed-rank, Holm-corrected, "
                     f"α = {tests.alpha:g})" + (f"; it cannot be told apart from {_join(tied)}." if tied else "."))
    elif friedman["p_value"] < tests.alpha:
        lines.append(f"No pairwise test separates {best}, first in mean rank, from any other strategy "
                     f"(Wilcoxon signed-rank, Holm-corrected, α = {tests.alpha:g}).")
    groups = " · ".join(f"{s} ({tests.groups[s]})" for s in order)
    lines.append(f"Rank groups (strategies sharing a letter are not significantly different): {groups}.")
    return lines


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"


__all__ = ["ALPHA", "Pairwise", "PowerNote", "blocks_needed", "claims", "letters", "pairwise", "power_note"]
