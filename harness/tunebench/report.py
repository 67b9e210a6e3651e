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


#: Columns that count things: whole numbers, shown without decimals even when pandas made them floats.
COUNTS = re.compile(r"(^|_| )(runs?|trials?|seeds|cells|reached|turned_away|blocks)($|_| )")


def _table(frame: pd.DataFrame, *, index: bool = False, digits: int = 4) -> str:
    counts = {c for c in frame.columns if COUNTS.search(str(c))}

    def fmt(v: Any, column: Any = None) -> str:
        if isinstance(v, float):
            if math.isnan(v):
                return "–"
            if column in counts and v.is_integer():
                return f"{int(v)}"
            return f"{v:.{digits}f}"
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in ([frame.index.name or ""] if index else [])
                   + list(frame.columns))
    rows = []
    for key, row in frame.iterrows():
        cells = ([f"<td>{html.escape(' · '.join(map(str, key)) if isinstance(key, tuple) else str(key))}</td>"]
                 if index else []) + [f"<td>{fmt(v, c)}</td>" for c, v in row.items()]
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


def plot_critical_difference(ranks: pd.Series, tests: Any, title: str) -> str:
    """A critical-difference diagram (scikit-posthocs): mean ranks on an axis, strategies that no
    test separates joined by a bar. The bars follow the pairwise Wilcoxon-Holm tests (`tests`, an
    `evidence.Pairwise`), the same evidence as the rank groups; without them, Nemenyi's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import scikit_posthocs as sp

    ranks = ranks.sort_values()
    matrix = tests.p_holm.where(tests.significant, 1.0) if hasattr(tests, "p_holm") else tests
    fig, ax = plt.subplots(figsize=(7, 1.4 + 0.3 * len(ranks)))
    sp.critical_difference_diagram(ranks, matrix.loc[ranks.index, ranks.index], ax=ax,
                                   label_fmt_left="{label} ({rank:.2f})  ", label_fmt_right="  ({rank:.2f}) {label}")
    ax.set_title(title, fontsize=9)
    return _png(fig)


def plot_regret(study: analysis.Study) -> str:
    """Normalised regret against the fraction of the budget: median over cells, and the IQR band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    for strategy, c in sorted(study.regret.items()):
        line, = ax.plot(study.fractions, c["median"], label=strategy)
        ax.fill_between(study.fractions, c["q25"], c["q75"], alpha=0.12, color=line.get_color())
    ax.set_xlabel("fraction of the budget")
    ax.set_ylabel("normalised regret (lower is better)")
    ax.set_yscale("symlog", linthresh=0.01)
    ax.set_title(f"Normalised regret over {study.cells} cells (median and IQR)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return _png(fig)


def plot_profile(study: analysis.Study) -> str:
    """Performance profiles: the share of cells within tau of the best strategy's final regret."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    for strategy in sorted(study.profile.columns):
        ax.step(study.profile.index, study.profile[strategy], where="post", label=strategy)
    ax.set_xlabel("tau: normalised regret above the best strategy's")
    ax.set_ylabel("share of cells")
    ax.set_xlim(0, max(0.05, float(study.profile.index.max())))
    ax.set_title(f"Performance profiles over {study.cells} cells", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
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
    # labels of the cells on the front only, each nudged off its neighbours: with many cells, labelling
    # every point piled the labels on one another
    for k, (_, r) in enumerate(on.iterrows()):
        ax.annotate(f"{r['model_family']} · {r['strategy']}", (r[cost], r["test_mean"]), fontsize=7,
                    xytext=(5, 4 + 9 * (k % 3)), textcoords="offset points",
                    arrowprops={"arrowstyle": "-", "color": "#9aa5b8", "lw": 0.5})
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
               figures: dict[str, bytes] | None = None, mix: bool = False) -> str:
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
    multi = runs[runs["pareto"].notna()] if "pareto" in runs and not runs.empty else runs.iloc[0:0]
    trials = (pd.DataFrame(store.trials(run_ids=[int(i) for i in multi["id"]])) if not multi.empty
              else pd.DataFrame())
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
    simulated = (set(runs.loc[runs["simulated"].fillna(False).astype(bool), "dataset_label"])
                 if "simulated" in runs else set())
    if simulated:
        parts.append("<p class='note'>Tables' tasks (the simulated clock) have no fronts: a table records no model "
                     "size or latency, and the training cost there is simulated.</p>")
    for dataset in sorted(set(board[board["kind"] == "search"]["dataset"].unique()) - simulated):
        for column, (cost, meaning) in leaderboard.FRONTS.items():
            if board[(board["dataset"] == dataset) & (board["kind"] == "search")][cost].notna().any():
                parts.append(img(plot_front(board, dataset, cost, meaning, column), f"front {dataset} {cost}"))
        mine = fronts[fronts["dataset"] == dataset]
        if not mine.empty:
            parts.append(_table(mine.drop(columns=["dataset", "cost_of"])))

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

    for label, chosen in leaderboard.kinds(runs, mix=mix):
        parts.extend(_strategy_sections(store, label, chosen, img))
    return _page(parts)


def _strategy_sections(store: Store, label: str, runs: pd.DataFrame, img: Any) -> list[str]:
    """The strategy comparison of one kind of runs (real or simulated), as HTML."""
    tables = leaderboard.strategy_tables(store, runs)
    comparison, study, trials = tables["comparison"], tables["study"], tables["trials"]
    tag = "" if label == "real runs" else f" ({label})"
    parts = [f"<h2>Strategy comparison: {html.escape(label)}</h2>",
             f"<p class='policy'><b>Protocol.</b> {html.escape(tables['protocol'])}</p>"]
    row = ("A row is a dataset × model family × seed (the same split for every strategy); a strategy's score "
           "there is its run's test score." if comparison.blocks == "seeds" else
           "A cell is a dataset × model family (or a table's task); a strategy's score in a cell is its mean test "
           "score over seeds.")
    parts.append(f"<p class='policy'><b>Ranking policy.</b> {html.escape(comparison.policy)} {row} "
                 f"The normalised score is 0 for random search's score in the row and 1 for the best score "
                 f"any strategy reached there. A strategy's rank is the span of places it cannot be told apart "
                 f"from, and strategies sharing a group letter are not significantly different.</p>")
    for note in comparison.notes:
        parts.append(f"<p class='note'>{html.escape(note)}</p>")
    if len(tables["summary"].index):
        parts.append(_table(tables["summary"], index=True, digits=3))
    parts.append("<h3>What this says</h3><ul>" + "".join(f"<li>{html.escape(c)}</li>" for c in comparison.claims())
                 + "</ul>")
    sentence = comparison.test_sentence()
    if sentence:
        parts.append(f"<p class='note'>{html.escape(sentence)}</p>")
    if comparison.pairwise is not None and comparison.complete_mean_rank is not None:
        parts.append(img(plot_critical_difference(comparison.complete_mean_rank, comparison.pairwise,
                                                  f"Test score: mean rank over {comparison.blocks} (lower is "
                                                  f"better); bars join what no test separates"),
                         f"critical-difference diagram{tag}"))
    if study is not None:
        parts.append("<h3>Over the budget: regret, ranks at 25, 50 and 100 %, profiles, speed-ups</h3>"
                     f"<p class='note'>Normalised regret per cell: 0 at {html.escape(study.optimum)}, 1 at the worst "
                     "score any of the cell's trials got; a run with no score yet has regret 1.</p>")
        parts.append(img(plot_regret(study), f"normalised regret{tag}"))
        for f, test in study.tests.items():
            if test is None:
                parts.append(f"<p class='note'>At {f:.0%} of the budget: too few {study.unit} for a test.</p>")
                continue
            parts.append(f"<p><b>At {f:.0%} of the budget</b>: " + html.escape(" ".join(test.claims())) + "</p>")
            if test.pairwise is not None:
                parts.append(img(plot_critical_difference(test.mean_rank, test.pairwise,
                                                          f"Normalised regret at {f:.0%} of the budget: mean rank "
                                                          f"over {test.blocks} {study.unit}"),
                                 f"critical-difference diagram at {int(f * 100)} percent{tag}"))
        parts.append(img(plot_profile(study), f"performance profile{tag}"))
        profile = study.profile.loc[[t for t in analysis.PROFILE_TAUS if t in study.profile.index]].copy()
        profile.index = [f"tau = {t:g}" for t in profile.index]
        parts.append(_table(profile, index=True, digits=2))
        if not study.speedup.empty:
            parts.append("<p class='note'>Speed-up over random search: per cell, the time random search's median "
                         "curve needed to reach its own final score, over the time a strategy's median curve "
                         "needed to reach it (0: never reached); median and quartiles over cells.</p>"
                         + _table(study.speedup, index=True, digits=2))
    if not tables["costs"].empty:
        parts.append("<h3>Costs</h3><p class='note'>The sampler's own seconds per trial, and the shares of the "
                     "budget spent training, in the sampler, and in draws the feasibility guard turned away.</p>"
                     + _table(tables["costs"], index=True, digits=4))
    per = "seed" if comparison.blocks == "seeds" else "cell"
    if 0 < len(comparison.scores) <= 40:
        parts.append(f"<h3>Scores per {per}</h3>" + _table(comparison.scores, index=True))
        parts.append(f"<h3>Ranks per {per}</h3>" + _table(comparison.ranks, index=True, digits=1))
    if comparison.iqm is not None and not comparison.iqm.empty:
        parts.append("<h3>Interquartile mean over every seed and cell</h3>" + _table(comparison.iqm, index=True)
                     + "<p class='note'>The mean of the middle half of each strategy's test scores (normalised per "
                     "cell when there are several), with a 95 % stratified bootstrap interval: robust to an "
                     "outlying seed where the mean is not.</p>")
    parts.append(f"<p class='note'><b>Statistics, by library.</b> {html.escape(analysis.LIBRARIES)}</p>")
    cells = runs.groupby(["dataset_label", "model_label"]).ngroups
    parts.append("<h3>Anytime performance per cell</h3><p class='note'>Best validation score found so far against "
                 "time into each search: median over seeds, with the inter-quartile band.</p>")
    if trials.empty:
        parts.append("<p class='note'>No trials recorded.</p>")
    elif cells > 12:
        parts.append(f"<p class='note'>{cells} cells: their curves are summarised by the regret above "
                     f"(`tunebench leaderboard --strategies --dataset LABEL` prints one cell's table).</p>")
    else:
        for curve in analysis.anytime(runs, trials):
            parts.append(f"<h3>{html.escape(' · '.join(curve.cell))}</h3>")
            parts.append(img(plot_anytime(curve), f"anytime curve {' '.join(curve.cell)}"))
            table = curve.at_fraction.copy()
            table["time to random's final (s)"] = curve.time_to_random
            table.index.name = "strategy"
            parts.append(_table(table, index=True) + "<p class='note'>Score at each fraction of the budget; time "
                         "each strategy needed to reach random search's final median score (– : never, or no "
                         "random search in this cell).</p>")
    return parts


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
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for name, data in figures.items():
                write_bytes_atomic(folder / name, data)
        except OSError as exc:
            raise FiguresNotWritten(path, folder, exc) from None
    return path


class FiguresNotWritten(OSError):
    """The report was written, but its figures could not be (an unwritable `--figures` folder)."""

    def __init__(self, report: Path, folder: Path, cause: OSError) -> None:
        super().__init__(f"the report was written to {report}, but its figures could not be written to {folder}: "
                         f"{cause.strerror or cause}; choose a writable folder with --figures")
        self.report = report
