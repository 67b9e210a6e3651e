"""`tunebench report`: one self-contained static HTML file.

Tables are HTML; plots are PNGs drawn with matplotlib's headless backend and embedded as data URIs,
so the file opens offline, without a server, and references no external URL.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
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
    """The critical-difference diagram of scikit-posthocs: mean ranks on an axis, strategies whose
    Nemenyi p-value is above 0.05 joined by a bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import scikit_posthocs as sp

    ranks = (comparison.complete_mean_rank if comparison.complete_mean_rank is not None
             else comparison.mean_rank).sort_values()
    fig, ax = plt.subplots(figsize=(7, 1.4 + 0.3 * len(ranks)))
    sp.critical_difference_diagram(ranks, comparison.nemenyi, ax=ax, label_fmt_left="{label} ({rank:.2f})  ",
                                   label_fmt_right="  ({rank:.2f}) {label}")
    ax.set_title(f"Mean rank across {comparison.blocks} (lower is better); critical difference "
                 f"{comparison.critical_difference or float('nan'):.2f}", fontsize=9)
    return _png(fig)


def plot_front(board: pd.DataFrame, dataset: str, cost: str, meaning: str, front: str) -> str:
    """One dataset's cells, test score against a cost, the front highlighted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = board[(board["dataset"] == dataset) & (board["kind"] == "search")].dropna(subset=["test_mean", cost])
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    on = cells[cells[front].astype(bool)].sort_values(cost)
    ax.scatter(cells[cost], cells["test_mean"], color="#9aa5b8", s=24, label="cells")
    ax.plot(on[cost], on["test_mean"], "o-", color="#c44e52", label="front")
    for _, r in cells.iterrows():
        ax.annotate(f"{r['model_family']} · {r['strategy']}", (r[cost], r["test_mean"]), fontsize=7,
                    xytext=(4, 3), textcoords="offset points")
    ax.set_xlabel(meaning)
    ax.set_ylabel("test score")
    if len(cells) and cells[cost].min() > 0 and cells[cost].max() / cells[cost].min() > 30:
        ax.set_xscale("log")
    ax.legend(fontsize=8)
    ax.set_title(f"{dataset}: test score against {meaning.split(' (')[0]}", fontsize=9)
    return _png(fig)


def plot_search_front(run: dict[str, Any], trials: pd.DataFrame) -> str:
    """A multi-objective search's trials, validation score against its cost, its own front marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    front = run["pareto"] or {}
    key = "inference_ms" if front.get("metric") == "latency" else "param_count"
    mine = trials[(trials["run_id"] == run["id"]) & trials["score"].notna() & trials[key].notna()]
    on = mine[mine["number"].isin(front.get("trials", []))].sort_values(key)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.scatter(mine[key], mine["score"], color="#9aa5b8", s=20, label="trials")
    ax.plot(on[key], on["score"], "o-", color="#c44e52", label="the search's Pareto set")
    chosen = mine[mine["number"] == run["best_trial"]]
    ax.scatter(chosen[key], chosen["score"], marker="*", s=160, color="#2a9d8f", label="tested", zorder=3)
    ax.set_xlabel("ms per image" if key == "inference_ms" else "parameters")
    ax.set_ylabel("validation score")
    ax.legend(fontsize=8)
    return _png(fig)


def build_html(store: Store, *, suite: str | None = None, dataset: str | None = None,
               model_family: str | None = None, strategy: str | None = None, source: str = "",
               figures: dict[str, bytes] | None = None) -> str:
    """The whole report as one HTML string. `figures`, if given, receives each plot as PNG bytes
    under a file name made from its description (`critical-difference-diagram.png`)."""
    import pandas as pd

    def img(data: str, alt: str) -> str:
        if figures is not None:
            name = stem = re.sub(r"[^a-z0-9]+", "-", alt.lower()).strip("-") or "figure"
            n = 1
            while f"{name}.png" in figures:  # one search front per multi-objective run
                n += 1
                name = f"{stem}-{n}"
            figures[f"{name}.png"] = base64.b64decode(data)
        return _img(data, alt)

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

    parts.append("<h2>Leaderboards</h2><p class='note'>" + html.escape(leaderboard.legend(board)) + " Baselines come "
                 "from each run's own test split.</p>")
    for name, group in board.groupby("dataset", sort=True):
        parts.append(f"<h3>{html.escape(str(name))}</h3>" + _table(leaderboard.display_frame(group)))

    parts.append("<h2>Cost–accuracy fronts</h2><p class='note'>Per dataset, the model family × strategy cells "
                 "that no other cell beats on both the test score (higher) and a cost (lower): the training "
                 "cost (CPU + accelerator hours per search), the selected model's inference latency, and its "
                 "parameter count. Computed from the leaderboard's own rows.</p>")
    fronts = leaderboard.fronts(board)
    for dataset in sorted(board[board["kind"] == "search"]["dataset"].unique()):
        for column, (cost, meaning) in leaderboard.FRONTS.items():
            if board[(board["dataset"] == dataset) & (board["kind"] == "search")][cost].notna().any():
                parts.append(img(plot_front(board, dataset, cost, meaning, column), f"front {dataset} {cost}"))
        mine = fronts[fronts["dataset"] == dataset]
        if not mine.empty:
            parts.append(_table(mine.drop(columns=["dataset", "cost_of"])))

    multi = runs[runs["pareto"].notna()] if "pareto" in runs else runs.iloc[0:0]
    if not multi.empty:
        parts.append("<h2>Multi-objective searches</h2><p class='note'>Each search's own Pareto set (validation "
                     "score against the cost it searched against), and the configuration it tested, chosen on "
                     "validation only by the rule stated with it.</p>")
        for run in multi.to_dict("records"):
            rule = str((run.get("selection") or {}).get("rule") or "the best validation score (no limit)")
            parts.append(f"<h3>{html.escape(str(run['dataset_label']))} · {html.escape(str(run['model_label']))} · "
                         f"{html.escape(str(run['strategy_label']))} · seed {run['seed']}</h3><p>Selection rule: "
                         f"{html.escape(rule)}; Pareto set: trials {', '.join(map(str, run['pareto']['trials']))}; "
                         f"tested: trial {run['best_trial']}.</p>")
            if not trials.empty:
                parts.append(img(plot_search_front(run, trials), "search front"))

    comparison = analysis.compare_strategies(runs)
    parts.append("<h2>Strategy comparison across cells</h2>")
    row = ("A row is a dataset × model family × seed (the same split for every strategy); a strategy's score "
           "there is its run's test score." if comparison.blocks == "seeds" else
           "A cell is a dataset × model family; a strategy's score in a cell is its mean test score over seeds.")
    parts.append(f"<p class='policy'><b>Ranking policy.</b> {html.escape(comparison.policy)} {row} "
                 f"The normalised score is 0 for random search's score in the row and 1 for the best score "
                 f"any strategy reached there.</p>")
    for note in comparison.notes:
        parts.append(f"<p class='note'>{html.escape(note)}</p>")
    if not comparison.mean_rank.empty:
        summary = pd.DataFrame({"mean rank": comparison.mean_rank,
                                "mean normalised score": comparison.mean_normalised})
        summary.index.name = "strategy"
        parts.append(_table(summary, index=True, digits=3))
        per = "seed" if comparison.blocks == "seeds" else "cell"
        parts.append(f"<h3>Scores per {per}</h3>" + _table(comparison.scores, index=True))
        parts.append(f"<h3>Ranks per {per}</h3>" + _table(comparison.ranks, index=True, digits=1))
        parts.append(f"<h3>Normalised scores per {per}</h3>"
                     + _table(comparison.normalised, index=True, digits=3))
    if comparison.iqm is not None and not comparison.iqm.empty:
        parts.append("<h3>Interquartile mean over every seed and cell</h3>" + _table(comparison.iqm, index=True)
                     + "<p class='note'>The mean of the middle half of each strategy's test scores, with a 95 % "
                     "bootstrap interval: robust to an outlying seed where the mean is not.</p>")
    sentence = comparison.test_sentence()
    if sentence:
        parts.append(f"<p>{html.escape(sentence)}</p>")
        if comparison.critical_difference is not None and comparison.nemenyi is not None:
            parts.append(img(plot_critical_difference(comparison), "critical-difference diagram"))
    parts.append(f"<p class='note'><b>Statistics, by library.</b> {html.escape(analysis.LIBRARIES)}</p>")

    parts.append("<h2>Anytime performance</h2><p class='note'>Best validation score found so far against "
                 "wall-clock time into each search: median over seeds, with the inter-quartile band.</p>")
    if trials.empty:
        parts.append("<p class='note'>No trials recorded.</p>")
    for curve in analysis.anytime(runs, trials) if not trials.empty else []:
        parts.append(f"<h3>{html.escape(' · '.join(curve.cell))}</h3>")
        parts.append(img(plot_anytime(curve), f"anytime curve {' '.join(curve.cell)}"))
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


def write(store: Store, out: str | Path, figures_dir: str | Path | None = None, **filters: Any) -> Path:
    """Write the report; with `figures_dir`, also each of its plots there as a PNG file."""
    from tunebench.atomic import write_bytes_atomic, write_text_atomic

    figures: dict[str, bytes] = {}
    path = write_text_atomic(out, build_html(store, source=store.url, figures=figures, **filters))
    if figures_dir is not None:
        folder = Path(figures_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in figures.items():
            write_bytes_atomic(folder / name, data)
    return path
