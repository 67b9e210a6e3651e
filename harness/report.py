"""`tunebench report`: one self-contained static HTML file.

Tables are HTML; plots are PNGs drawn with matplotlib's headless backend and embedded as data URIs,
so the file opens offline, without a server, and references no external URL.
"""

from __future__ import annotations

import base64
import html
import io
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunebench import analysis, leaderboard

if TYPE_CHECKING:
    import pandas as pd

    from tunebench.store import Store

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2em auto; max-width: 1200px;
       color: #1d2330; padding: 0 1em; }
h1 { font-size: 1.7em; margin-bottom: .2em; } h2 { margin-top: 2em; border-bottom: 1px solid #d7dbe3; }
h3 { margin-top: 1.5em; } .meta, .note { color: #5b6375; } .policy { background: #f4f6fa; padding: .6em 1em; }
table { border-collapse: collapse; margin: .8em 0; font-variant-numeric: tabular-nums; }
th, td { padding: .3em .7em; border-bottom: 1px solid #e3e6ec; text-align: right; white-space: nowrap; }
th { background: #f4f6fa; } td:nth-child(-n+3), th:nth-child(-n+3) { text-align: left; }
.wrap { overflow-x: auto; } img { max-width: 100%; border: 1px solid #e3e6ec; margin: .5em 0; }
"""


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _img(data: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(frame: pd.DataFrame, *, index: bool = False, digits: int = 4) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return "–" if math.isnan(v) else f"{v:.{digits}f}"
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in ([frame.index.name or ""] if index else [])
                   + list(frame.columns))
    rows = []
    for key, row in frame.iterrows():
        cells = ([f"<td>{html.escape(' · '.join(map(str, key)) if isinstance(key, tuple) else str(key))}</td>"]
                 if index else []) + [f"<td>{fmt(v)}</td>" for v in row]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f"<div class='wrap'><table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
            f"</div>")


def plot_anytime(curve: analysis.Anytime) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    for strategy, c in sorted(curve.curves.items()):
        if not c["median"]:
            continue
        line, = ax.step(curve.grid, c["median"], where="post", label=strategy)
        ax.fill_between(curve.grid, c["q25"], c["q75"], step="post", alpha=0.18, color=line.get_color())
    ax.set_xlabel("wall-clock seconds into the search")
    ax.set_ylabel("best validation score so far")
    ax.set_title(f"{curve.cell[0]} · {curve.cell[1]} (median and IQR over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _png(fig)


def plot_critical_difference(comparison: analysis.Comparison) -> str:
    """A critical-difference diagram: mean ranks on an axis, groups within the CD joined by a bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ranks = (comparison.complete_mean_rank if comparison.complete_mean_rank is not None
             else comparison.mean_rank).sort_values()
    k = len(comparison.scores.columns)
    cd = comparison.critical_difference or 0.0
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.32 * len(ranks)))
    ax.set_xlim(0.8, k + 0.2)
    ax.set_ylim(-len(ranks) - 1, 1.5)
    ax.hlines(0, 1, k, color="black", lw=1)
    for r in range(1, k + 1):
        ax.vlines(r, -0.1, 0.1, color="black", lw=1)
        ax.text(r, 0.25, str(r), ha="center", fontsize=8)
    for i, (name, r) in enumerate(ranks.items()):
        y = -(i + 1) * 0.8
        ax.plot([r, r], [0, y], color="#4c72b0", lw=0.8)
        ax.text(r + 0.04, y, f"{name} ({r:.2f})", va="center", fontsize=8)
    # Bars joining strategies whose mean ranks differ by less than the critical difference.
    values = list(ranks.values)
    level = 0.6
    for i in range(len(values)):
        j = max((j for j in range(i, len(values)) if values[j] - values[i] < cd), default=i)
        if j > i:
            ax.hlines(level, values[i] - 0.03, values[j] + 0.03, color="#c44e52", lw=3)
            level += 0.18
    ax.hlines(1.2, 1, 1 + cd, color="black", lw=2)
    ax.text(1 + cd / 2, 1.32, f"CD = {cd:.2f}", ha="center", fontsize=8)
    ax.axis("off")
    ax.set_title("Mean rank across cells (lower is better)", fontsize=9)
    return _png(fig)


def build_html(store: Store, *, suite: str | None = None, dataset: str | None = None,
               model_family: str | None = None, strategy: str | None = None, source: str = "") -> str:
    """The whole report as one HTML string."""
    import pandas as pd

    filters = {"suite": suite, "dataset": dataset, "model family": model_family, "strategy": strategy}
    runs = leaderboard.latest_runs(store, suite, dataset=dataset, model_family=model_family, strategy=strategy)
    trials = pd.DataFrame(store.trials(run_ids=[int(i) for i in runs["id"]])) if not runs.empty else pd.DataFrame()
    board = leaderboard.build(store, suite, dataset=dataset, model_family=model_family, strategy=strategy)
    parts = [f"<h1>tunebench report</h1><p class='meta'>{html.escape(source)} · generated "
             f"{time.strftime('%Y-%m-%d %H:%M')} · {len(runs)} runs · filters: "
             f"{html.escape(', '.join(f'{k}={v}' for k, v in filters.items() if v) or 'none')}</p>"]
    if runs.empty:
        parts.append("<p>No runs match. Run a suite with <code>tunebench run SUITE</code>.</p>")
        return _page(parts)

    parts.append("<h2>Leaderboards</h2><p class='note'>Test score of the configuration selected on validation "
                 "(accuracy; macro F1 for multilabel), mean ± sd over seeds with a t-based 95% confidence "
                 "interval. Baselines come from each run's own test split.</p>")
    for name, group in board.groupby("dataset", sort=True):
        parts.append(f"<h3>{html.escape(str(name))}</h3>" + _table(leaderboard.display_frame(group)))

    comparison = analysis.compare_strategies(runs)
    parts.append("<h2>Strategy comparison across cells</h2>")
    parts.append(f"<p class='policy'><b>Ranking policy.</b> {html.escape(comparison.policy)} A cell is a "
                 f"dataset × model family; a strategy's score in a cell is its mean test score over seeds. "
                 f"The normalised score is 0 for random search's score in the cell and 1 for the best score "
                 f"any strategy reached there.</p>")
    for note in comparison.notes:
        parts.append(f"<p class='note'>{html.escape(note)}</p>")
    if not comparison.mean_rank.empty:
        summary = pd.DataFrame({"mean rank": comparison.mean_rank,
                                "mean normalised score": comparison.mean_normalised})
        summary.index.name = "strategy"
        parts.append(_table(summary, index=True, digits=3))
        parts.append("<h3>Scores per cell</h3>" + _table(comparison.scores, index=True))
        parts.append("<h3>Ranks per cell</h3>" + _table(comparison.ranks, index=True, digits=1))
        parts.append("<h3>Normalised scores per cell</h3>" + _table(comparison.normalised, index=True, digits=3))
    if comparison.friedman:
        f = comparison.friedman
        verdict = ("the strategies differ significantly (p < 0.05)" if f["p_value"] < 0.05
                   else "no significant difference between the strategies at p = 0.05")
        parts.append(f"<p>Friedman test over {f['cells']} cells and {f['strategies']} strategies: "
                     f"χ² = {f['statistic']:.3f}, p = {f['p_value']:.4f}: {verdict}. Nemenyi critical "
                     f"difference at α = 0.05: {comparison.critical_difference or float('nan'):.3f}.</p>")
        if comparison.critical_difference is not None:
            parts.append(_img(plot_critical_difference(comparison), "critical-difference diagram"))

    parts.append("<h2>Anytime performance</h2><p class='note'>Best validation score found so far against "
                 "wall-clock time into each search: median over seeds, with the inter-quartile band.</p>")
    if trials.empty:
        parts.append("<p class='note'>No trials recorded.</p>")
    for curve in analysis.anytime(runs, trials) if not trials.empty else []:
        parts.append(f"<h3>{html.escape(' · '.join(curve.cell))}</h3>")
        parts.append(_img(plot_anytime(curve), f"anytime curve {' '.join(curve.cell)}"))
        table = curve.at_fraction.copy()
        table["time to random's final (s)"] = curve.time_to_random
        table.index.name = "strategy"
        parts.append(_table(table, index=True) + "<p class='note'>Score at each fraction of the budget; time "
                     "each strategy needed to reach random search's final median score (– : never, or no "
                     "random search in this cell).</p>")
    return _page(parts)


def _page(parts: list[str]) -> str:
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>tunebench report</title>"
            f"<style>{CSS}</style></head><body>" + "\n".join(parts) + "</body></html>\n")


def write(store: Store, out: str | Path, **filters: Any) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(build_html(store, source=store.url, **filters), encoding="utf-8")
    return out
