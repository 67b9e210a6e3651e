"""The `tunebench` command line.

Never imports Keras or TensorFlow: `tunebench --help` and `tunebench plugins` stay fast. Training
happens in the child processes the runner starts, and the one build a model family needs to show
or check its search space (`plugins show`, the pins `validate` checks) in a child process of
`tunebench.declared`, under the memory guard.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tunebench import __version__
from tunebench.errors import TunebenchError, UsageError
from tunebench.vocabulary import RunStatus

RESULTS_ENV = "TUNEBENCH_RESULTS"
TIME_COLUMNS = ("created_at", "started_at", "finished_at", "completed_at", "heartbeat_at")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tunebench",
        description="Benchmark hyperparameter-search strategies and model families for Keras image "
                    "classification under hard wall-clock budgets.")
    parser.add_argument("--version", action="version", version=f"tunebench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def results_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--results", default=os.environ.get(RESULTS_ENV, "results"), metavar="DIR",
                       help="results directory (default: ./results, or $TUNEBENCH_RESULTS)")
        p.add_argument("--store", metavar="URL",
                       help="SQLAlchemy URL of the results store (default: sqlite in DIR)")

    def plugin_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("-p", "--plugin", action="append", default=[], metavar="MODULE",
                       help="also load this plugin module (repeatable), besides installed plugins")
        p.add_argument("--disable-plugin", action="append", default=[], metavar="NAME",
                       help="do not load this installed plugin (entry-point or package name; repeatable; "
                            "or $TUNEBENCH_DISABLE_PLUGINS=a,b)")

    def data_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", metavar="DIR",
                       help="folder where datasets look for local copies (default: $TUNEBENCH_DATA)")

    p = sub.add_parser("run", help="run a benchmark suite (resumes if run before)")
    p.add_argument("suite", help="suite YAML file")
    results_args(p)
    plugin_args(p)
    data_args(p)
    p.add_argument("--budget", metavar="DURATION", help="override the suite's per-search budget, e.g. 30s, 2m")
    p.add_argument("--rerun-failed", action="store_true", help="run again the searches whose last run failed")
    p.add_argument("--workers", type=int, metavar="N",
                   help="searches to run at once on this machine (default: one per GPU x --trials-per-gpu, or 1)")
    p.add_argument("--trials-per-gpu", type=int, default=1, metavar="K",
                   help="pack K searches on each GPU, each with memory growth (default 1)")
    p.add_argument("--backend", action="append", choices=("tensorflow", "jax", "torch"),
                   help="Keras backend(s) to run under, overriding the suite's `backend` (repeatable)")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="where searches run: child processes here (default) or tasks on a Ray cluster")
    p.add_argument("--address", default="auto", metavar="ADDR",
                   help="the Ray cluster (--executor ray): auto, HOST:PORT or ray://HOST:PORT (default auto)")
    p.add_argument("--max-retries", type=int, default=2, metavar="N",
                   help="--executor ray: run a search again up to N times when its worker dies (default 2)")
    p.add_argument("--cpus-per-search", type=float, metavar="N", help="--executor ray: CPUs per search")
    p.add_argument("--gpus-per-search", type=float, metavar="N",
                   help="--executor ray: GPUs per search; 0.25 packs four on one GPU")
    p.add_argument("--memory-per-search", metavar="SIZE", help="--executor ray: host memory per search, e.g. 4GB")
    p.add_argument("--dataset", action="append", metavar="LABEL", help="run only this dataset's searches (repeatable)")
    p.add_argument("--model-family", action="append", metavar="LABEL",
                   help="run only this model family's searches (repeatable)")
    p.add_argument("--strategy", action="append", metavar="LABEL",
                   help="run only this strategy's searches (repeatable)")
    p.add_argument("-v", "--verbose", action="store_true", help="show Keras's logs instead of progress lines")

    p = sub.add_parser("validate", help="check a suite file without running it")
    p.add_argument("suite")
    plugin_args(p)
    data_args(p)
    p.add_argument("--budget", metavar="DURATION")

    def filter_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--suite", help="only runs of this suite")
        p.add_argument("--dataset", help="only this dataset (its label in the suite)")
        p.add_argument("--model-family", help="only this model family (label)")
        p.add_argument("--strategy", help="only this strategy (label)")

    p = sub.add_parser("leaderboard", help="print the leaderboard of a results store")
    results_args(p)
    p.add_argument("--format", choices=("table", "md", "csv", "json", "latex"), default="table")
    p.add_argument("--pareto", action="store_true",
                   help="print each dataset's cost-accuracy fronts (training cost, inference latency, parameters)")
    p.add_argument("--strategies", action="store_true",
                   help="print the strategy comparison: rank groups, tests at 25/50/100 %% of the budget, regret, "
                        "performance profiles, speed-ups over random search, costs")
    p.add_argument("--mix", action="store_true",
                   help="with --strategies: rank real and simulated runs together (by default each kind apart)")
    filter_args(p)

    p = sub.add_parser("report", help="write a self-contained HTML report (tables, plots) of a results store")
    results_args(p)
    p.add_argument("--out", metavar="FILE", help="where to write it (default: DIR/report.html)")
    p.add_argument("--figures", metavar="DIR", help="also write each plot there as a PNG file "
                                                     "(e.g. critical-difference-diagram.png)")
    p.add_argument("--mix", action="store_true", help="rank real and simulated runs together (by default apart)")
    filter_args(p)

    p = sub.add_parser("dashboard", help="a live view of a results store in optuna-dashboard (every search of "
                                          "every strategy), on 127.0.0.1")
    results_args(p)
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")

    p = sub.add_parser("compare", help="two results stores side by side, cell by cell")
    p.add_argument("results_a", metavar="RESULTS_A", help="a results directory (or SQLAlchemy URL)")
    p.add_argument("results_b", metavar="RESULTS_B", help="another results directory (or SQLAlchemy URL)")
    p.add_argument("--format", choices=("table", "md", "csv", "json"), default="table")

    p = sub.add_parser("export-table", help="a recorded grid (a suite's runs) as a table the `replay` table "
                                            "answers on the simulated clock")
    results_args(p)
    p.add_argument("--suite", required=True, help="the suite whose runs make the table")
    p.add_argument("--out", required=True, metavar="FOLDER", help="the table's folder (manifest.json, trials.jsonl.gz)")
    p.add_argument("--name", help="the table's name (default: the suite's)")

    p = sub.add_parser("export-runs", help="a results store's finished runs, with their trials and epochs, as one "
                                           "file (gzipped JSON lines) that `merge` reads")
    results_args(p)
    p.add_argument("--out", required=True, metavar="FILE", help="the archive to write, e.g. part-1.jsonl.gz")
    p.add_argument("--since", metavar="WHEN", help="only runs that finished at or after WHEN (ISO 8601, UTC unless it "
                                                   "says: 2026-12-04 or 2026-12-04T17:30): a part, without the runs "
                                                   "merged in from earlier parts")
    filter_args(p)

    p = sub.add_parser("merge", help="copy the finished runs of other results stores or `export-runs` archives into "
                                     "this one (never overwriting: a search it has finished is left as it is)")
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="a results directory, a SQLAlchemy URL, or an archive file from `export-runs`")
    results_args(p)

    p = sub.add_parser("runs", help="the raw per-run rows")
    results_args(p)
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--suite", help="only runs of this suite")

    p = sub.add_parser("trials", help="the raw per-trial rows")
    results_args(p)
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--run", type=int, action="append", metavar="ID", help="only trials of this run (repeatable)")

    p = sub.add_parser("plugins", help="list datasets, model families and strategies, and who registered them; "
                                        "`plugins show NAME` for one plugin's options and search space")
    plugin_args(p)
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("action", nargs="?", choices=("list", "show"), default="list",
                   help="list (default) or show NAME")
    p.add_argument("name", nargs="?", help="with `show`: the dataset, model family or strategy")
    p.add_argument("--input-shape", default="32x32x3", metavar="HxWxC",
                   help="with `show` for a model family: the image shape its search space is shown for")
    p.add_argument("--classes", type=int, default=10, metavar="K", help="with `show`: classes of that data")
    p.add_argument("--train-size", type=int, default=10_000, metavar="N",
                   help="with `show`: training images of that data (the epochs scale with it; default 10000)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if getattr(args, "data_dir", None):
        from tunebench.images import DATA_ENV

        os.environ[DATA_ENV] = str(Path(args.data_dir).resolve())  # the searches' processes inherit it
    # SIGTERM (a scheduler, `kill`) unwinds like Ctrl-C: searches in flight are stopped and recorded.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        _check_results(args)
        _check_arguments(args)
        return int(COMMANDS[args.command](args) or 0)
    except TunebenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to resume where it stopped", file=sys.stderr)
        return 130
    except SystemExit as exc:
        if exc.code == 128 + signal.SIGTERM:
            print("\nstopped (SIGTERM): run the same command again to resume where it stopped", file=sys.stderr)
        raise
    except BrokenPipeError:  # `tunebench trials --format csv | head -1`: the reader has what it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as exc:  # a store that fails under us (corrupt pages, a full disk) is the user's to fix
        described = _store_problem(exc, args)
        if described is None:
            raise
        print(f"error: {described}", file=sys.stderr)
        return 1


def _check_arguments(args: argparse.Namespace) -> None:
    """What argparse cannot check: counts, folders, contradictions, environment variables. Each is a
    user error (exit 2) saying what to write instead."""
    from tunebench import environment

    problems = environment.problems()
    for name in ("workers", "trials_per_gpu", "max_retries"):
        value = getattr(args, name, None)
        if value is not None and value < (0 if name == "max_retries" else 1):
            problems.append(f"--{name.replace('_', '-')} must be at least {0 if name == 'max_retries' else 1}, "
                            f"not {value}")
    port = getattr(args, "port", None)
    if port is not None and not 1 <= port <= 65535:
        problems.append(f"--port must be between 1 and 65535, not {port}")
    data = getattr(args, "data_dir", None)
    if data and not Path(data).expanduser().is_dir():
        problems.append(f"--data-dir {data} is not a folder" + (" (it is a file)" if Path(data).exists() else
                                                               " (it does not exist)"))
    both = set(getattr(args, "plugin", None) or []) & set(getattr(args, "disable_plugin", None) or [])
    if both:
        problems.append(f"--plugin and --disable-plugin both name {', '.join(sorted(both))}: keep one")
    if getattr(args, "pareto", False) and getattr(args, "format", None) == "latex":
        problems.append("--pareto prints the fronts as table, md, csv or json, not latex")
    if getattr(args, "pareto", False) and getattr(args, "strategies", False):
        problems.append("--pareto and --strategies print different things: give one")
    if problems:
        raise UsageError("\n  ".join(["the command cannot run as given:", *problems]))


def _check_results(args: argparse.Namespace) -> None:
    """`--results` must be a folder (or not exist yet)."""
    results = getattr(args, "results", None)
    if results is not None and Path(results).exists() and not Path(results).is_dir():
        raise UsageError(f"--results {results} is a file; give the results folder (it holds tunebench.db)")


def _store_problem(exc: BaseException, args: argparse.Namespace) -> str | None:
    if "sqlalchemy" not in sys.modules:
        return None
    import sqlalchemy as sa

    from tunebench.store import default_url, problem

    if not isinstance(exc, sa.exc.SQLAlchemyError):
        return None
    url = getattr(args, "store", None) or default_url(getattr(args, "results", None) or "results")
    return problem(exc, url)


# -- commands --------------------------------------------------------------------------------------------

def _catalog(args: argparse.Namespace) -> Any:
    """The installed plugins (and --plugin modules), with a warning for each one left out."""
    from tunebench.registry import DISABLE_ENV, load_plugins

    if args.disable_plugin:  # the searches' processes inherit it
        os.environ[DISABLE_ENV] = ",".join([os.environ.get(DISABLE_ENV, ""), *args.disable_plugin]).strip(",")
    catalog = load_plugins(tuple(args.plugin))
    for broken in catalog.broken:
        print(f"warning: {broken.warning}", file=sys.stderr)
    import difflib

    def hint(name: str) -> str:
        close = difflib.get_close_matches(name, catalog.installed, n=1)
        return f" (did you mean '{close[0]}'?)" if close else ""

    typed = [n for n in catalog.unmatched if n in args.disable_plugin]
    if typed:
        raise UsageError("--disable-plugin " + ", ".join(f"'{n}'{hint(n)}" for n in typed) + " matches no "
                         "installed plugin or package; `tunebench plugins` lists them")
    for name in catalog.unmatched:
        print(f"warning: {DISABLE_ENV} names '{name}'{hint(name)}, which matches no installed plugin or "
              f"package", file=sys.stderr)
    return catalog


def cmd_run(args: argparse.Namespace) -> int:
    from tunebench.runner import prewarm_worker, retire

    # the first search's process imports the frameworks while this one checks the suite
    warm = prewarm_worker(verbose=args.verbose) if args.executor != "ray" and not args.backend else None
    try:
        return _run(args, warm)
    finally:
        if warm is not None:
            retire(warm)  # unused (a user error, another backend), or already ended by the runner


def _run(args: argparse.Namespace, warm: Any) -> int:
    from tunebench import leaderboard
    from tunebench.runner import Runner, visible_gpus
    from tunebench.store import Store
    from tunebench.suite import load_suite

    plugins = tuple(args.plugin)
    catalog = _catalog(args)
    suite = load_suite(args.suite, catalog, budget=args.budget, datasets_only=args.dataset,
                       model_families_only=args.model_family)
    if args.backend:
        suite = dataclasses.replace(suite, backends=tuple(dict.fromkeys(args.backend)))
    suite = suite.select(datasets=args.dataset, model_families=args.model_family, strategies=args.strategy)
    searches = suite.searches()
    if not searches:  # before the store: a run that runs nothing creates nothing
        raise UsageError("the --dataset / --model-family / --strategy filters leave no search to run")
    store = Store.open(args.results, args.store)
    budget = args.budget or (_dur(suite.budget_s) if suite.budget_s is not None else "by the rule")
    print(f"suite '{suite.name}': {len(searches)} searches, budget {budget} each, "
          f"results in {args.results}", file=sys.stderr)
    gpus = visible_gpus()
    runner = Runner(suite, store, args.results, workers=args.workers or 1, rerun_failed=args.rerun_failed,
                    verbose=args.verbose, plugins=plugins, gpus=gpus if args.workers is None else gpus[:args.workers],
                    trials_per_gpu=args.trials_per_gpu)
    runner.prewarm(warm)
    planned = runner.plan()
    simulated = [s for s in planned[0] if s.simulated]
    if args.executor == "ray":
        from tunebench.budget import parse_size
        from tunebench.cluster import RayExecutor
        from tunebench.settings import Resources

        declared = suite.resources
        try:
            memory = parse_size(args.memory_per_search) if args.memory_per_search else declared.memory_bytes
        except ValueError as exc:
            raise TunebenchError(f"--memory-per-search: {exc}") from None
        cpus = args.cpus_per_search if args.cpus_per_search is not None else declared.cpus
        gpus_each = args.gpus_per_search if args.gpus_per_search is not None else declared.gpus
        if gpus_each is None:
            gpus_each = 1 / args.trials_per_gpu if gpus else 0.0
        resources = Resources(cpus=1.0 if cpus is None else float(cpus), gpus=float(gpus_each), memory_bytes=memory)
        outcomes = RayExecutor(runner, args.address, resources=resources, max_retries=args.max_retries).run()
    else:
        outcomes = runner.run(planned)
    outcomes += _run_simulated(simulated, store, args)
    board = leaderboard.build(store, suite=suite.name)
    print(leaderboard.render(board, "table"))
    files = leaderboard.write_files(leaderboard.build(store), args.results)
    failed = [o for o in outcomes if o.status == RunStatus.FAILED]
    print(f"leaderboard written to {', '.join(map(str, files))}", file=sys.stderr)
    print(f"next: `tunebench report --results {args.results}` (tables, fronts, plots in one HTML file), "
          f"`tunebench dashboard --results {args.results}` (every trial, live)", file=sys.stderr)
    if failed:
        print(f"{len(failed)} search(es) failed; see `tunebench runs --results {args.results}` for the "
              f"errors, and `--rerun-failed` to retry them", file=sys.stderr)
        return 1
    return 0


def _run_simulated(searches: list[Any], store: Any, args: argparse.Namespace) -> list[Any]:
    """The suite's searches on tables (the simulated clock), `--workers` processes at a time (default:
    one per CPU core); a failed one gets a line, the rest a progress bar."""
    if not searches:
        return []
    from tunebench.runner import Outcome
    from tunebench.simulation import run_searches

    workers = args.workers or os.cpu_count() or 1
    print(f"{len(searches)} simulated search(es) on tables, {workers} process(es)", file=sys.stderr)
    outcomes = []
    log = Path(args.results) / "simulated.log"
    for search, done in run_searches(searches, store.url, plugins=tuple(args.plugin), workers=workers, log=log):
        if done.status == "skipped":
            print(f"  skip  {search.title} ({done.note})", file=sys.stderr)
        elif done.status != RunStatus.OK:
            print(f"FAILED {search.title}: {done.note} (see {log})", file=sys.stderr)
        outcomes.append(Outcome(search, done.run_id, done.status, done.note, done.test_score))
    return outcomes


def cmd_validate(args: argparse.Namespace) -> int:
    from tunebench.suite import load_suite

    suite = load_suite(args.suite, _catalog(args), budget=args.budget)
    for warning in suite.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    searches = suite.searches()
    real = [s for s in searches if not s.simulated]
    parts = []
    if real or not suite.table_tasks:
        parts.append(f"{len(suite.datasets)} dataset(s) x {len(suite.model_families)} "
                     f"model famil{'y' if len(suite.model_families) == 1 else 'ies'} x {len(suite.strategies)} "
                     f"strateg{'y' if len(suite.strategies) == 1 else 'ies'} x {len(suite.seeds)} seed(s) = "
                     f"{len(real)} searches of {_dur(suite.budget_s)} each")
    if suite.table_tasks:
        parts.append(f"{len(suite.table_tasks)} table task(s) x their strategies and seeds = "
                     f"{len(searches) - len(real)} simulated searches, {_budget_of(suite)}")
    print(f"suite '{suite.name}' is valid: " + "; ".join(parts))
    return 0


def _budget_of(suite: Any) -> str:
    """How a suite's simulated searches are budgeted, in words."""
    if suite.budget_s is not None:
        return f"{_dur(suite.budget_s)} of simulated time each"
    budgets = sorted(b for *_, b in suite.table_tasks)
    return (f"budgets by the rule ⌈20 + 40·√d⌉ full evaluations ({_dur(budgets[0])} to {_dur(budgets[-1])} "
            f"of simulated time)")


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    return {"suite": args.suite, "dataset": args.dataset, "model_family": args.model_family,
            "strategy": args.strategy}


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from tunebench import leaderboard

    store = _open_existing(args)
    filters = _filters(args)
    board = leaderboard.build(store, **filters)
    if args.pareto:
        print(leaderboard.render_fronts(board, "table" if args.format == "latex" else args.format))
        return 0
    if args.strategies:
        if args.format not in ("table", "md"):
            raise UsageError("--strategies prints tables: use --format table or md")
        print(leaderboard.render_strategies(store, args.format, mix=args.mix, **filters))
        return 0
    print(leaderboard.render(board, args.format), end="" if args.format in ("csv",) else "\n")
    if not any(filters.values()) and args.store is None:
        try:
            leaderboard.write_files(board, args.results)
        except OSError as exc:  # a read-only results folder: the leaderboard was printed, that is enough
            print(f"note: leaderboard.md/.csv not written to {args.results} ({exc.strerror or exc})", file=sys.stderr)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from tunebench import report

    target = Path(args.out) if args.out else Path(args.results) / "report.html"
    if target.is_dir():
        raise UsageError(f"--out {target} is a folder; give the report's file name, e.g. {target / 'report.html'}")
    store = _open_existing(args)
    if args.figures and Path(args.figures).exists() and not Path(args.figures).is_dir():
        raise UsageError(f"--figures {args.figures} is a file; give a folder for the PNG files")
    try:
        out = report.write(store, target, figures_dir=args.figures, mix=args.mix, **_filters(args))
    except report.FiguresNotWritten as exc:
        raise TunebenchError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"cannot write the report to {target}: {exc.strerror or exc}"
                         + ("" if args.out else "; choose where with --out FILE")) from None
    print(f"report written to {out}" + (f", its figures to {args.figures}/" if args.figures else ""))
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from tunebench import dashboard
    from tunebench.errors import require

    require("optuna_dashboard", extra="dashboard", purpose="tunebench dashboard")
    store = _open_existing(args)
    dashboard.check_address(args.host, args.port)
    print(f"tunebench dashboard: http://{args.host}:{args.port}/dashboard  ({store.url}; Ctrl-C stops it)",
          file=sys.stderr, flush=True)
    dashboard.serve(store, host=args.host, port=args.port)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from tunebench import leaderboard
    from tunebench.store import Store

    stores = []
    for where in (args.results_a, args.results_b):
        if "://" in where:
            stores.append(Store(where, readonly=True))
        else:
            stores.append(_open_existing(argparse.Namespace(results=where, store=None)))
    table = leaderboard.compare_stores(*stores)
    if args.format == "csv":
        print(table.to_csv(index=False), end="")
    elif args.format == "json":
        print(table.to_json(orient="records", indent=2))
    else:
        from tabulate import tabulate

        print(f"A = {args.results_a}\nB = {args.results_b}\n")
        print(tabulate(table, headers="keys", tablefmt="github" if args.format == "md" else "simple",
                       showindex=False, floatfmt=".4f", missingval="–"))
    return 0


def cmd_export_table(args: argparse.Namespace) -> int:
    from tunebench.table_export import export_table

    store = _open_existing(args)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give the table's folder")
    command = "tunebench " + " ".join(sys.argv[1:]) if sys.argv and "export-table" in sys.argv else ""
    try:
        manifest = export_table(store, args.suite, out, name=args.name, command=command)
    except OSError as exc:
        raise UsageError(f"cannot write the table to {out}: {exc.strerror or exc}") from None
    size = sum(f.stat().st_size for f in out.iterdir()) / 2**20
    print(f"table '{manifest['name']}' written to {out}: {manifest['configurations']} configurations, "
          f"{manifest['rows']} rows over seeds {manifest['seeds']}, {manifest['epochs']} epochs, {size:.2f} MB. "
          f"Replay it with `tables: [{{replay: {{path: {out}}}}}]` in a suite.")
    return 0


def cmd_export_runs(args: argparse.Namespace) -> int:
    from tunebench.transfer import write_archive

    store = _open_existing(args)
    out = Path(args.out)
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give the archive's file name, e.g. {out / 'runs.jsonl.gz'}")
    if not out.parent.is_dir():
        raise UsageError(f"--out {out}: the folder {out.parent} does not exist")
    filters = {"suite": args.suite, "dataset": args.dataset, "model_family": args.model_family,
               "strategy": args.strategy}
    since = None
    if args.since:
        try:
            when = datetime.fromisoformat(args.since)
        except ValueError:
            raise UsageError(f"--since {args.since!r} is not a date or time; write it like 2026-12-04 or "
                             f"2026-12-04T17:30 (UTC unless it gives an offset)") from None
        since = (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()
    try:
        counts = write_archive(store, out, filters=filters, since=since)
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror or exc}") from None
    if not counts["runs"]:
        out.unlink()
        raise UsageError(f"no finished runs in {args.store or args.results} match: nothing written (check the "
                         f"--suite / --dataset / --model-family / --strategy / --since filters)")
    runs = f"{counts['runs']} run{'' if counts['runs'] == 1 else 's'}"
    print(f"{runs} ({counts['trials']} trials, {counts['epochs']} epochs) written to {out}, "
          f"{out.stat().st_size / 2**20:.2f} MB; `tunebench merge {out} --results DIR` copies them into a store")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from tunebench.store import Store
    from tunebench.transfer import bundles, merge, read_archive

    target_where = args.store or str(Path(args.results).resolve() / "tunebench.db")
    sources: list[tuple[str, Any]] = []
    for where in args.sources:
        path = Path(where)
        if "://" in where:
            sources.append((where, Store(where, readonly=True)))
        elif path.is_file() and path.name != "tunebench.db":
            sources.append((where, path))
        elif path.is_dir() or path.name == "tunebench.db":
            folder = path if path.is_dir() else path.parent
            if (folder / "tunebench.db").resolve() == Path(target_where).resolve():
                raise UsageError(f"{where} is the store being merged into; give another store or an archive")
            sources.append((where, _open_existing(argparse.Namespace(results=str(folder), store=None))))
        else:
            raise UsageError(f"{where} does not exist: give a results directory, a SQLAlchemy URL or an archive "
                             f"file from `tunebench export-runs`")
    target = Store.open(args.results, args.store)
    for where, source in sources:
        runs = read_archive(source) if isinstance(source, Path) else bundles(source)
        done = merge(target, runs)
        print(f"{where}: {done.copied} runs copied ({done.trials} trials); {done.present} already in the store; "
              f"{done.unfinished} not finished there, not copied")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    store = _open_existing(args)
    rows = store.runs(suite=args.suite)
    for r in rows:  # time spent waiting for a worker, never charged to the search's budget
        r["queue_s"] = (round(r["dispatched_at"] - r["created_at"], 3)
                        if r.get("dispatched_at") and r.get("created_at") else None)
    columns = ["id", "suite", "dataset_label", "model_label", "strategy_label", "seed", "status",
               "started_at", "finished_at", "n_trials", "best_val", "test_score", "error"]
    if args.format != "table":
        columns += ["backend", "executor", "attempt", "retry_of", "lanes", "host", "queue_s", "split_fingerprint"]
    print(_export(rows, args.format, columns))
    return 0


def cmd_trials(args: argparse.Namespace) -> int:
    store = _open_existing(args)
    rows = store.trials(run_ids=args.run)
    columns = ["run_id", "number", "status", "score", "epochs_done", "param_count", "started_at",
               "finished_at", "params", "error"]
    if args.format != "table":
        columns.append("lane")
    print(_export(rows, args.format, columns))
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    catalog = _catalog(args)
    if args.action == "show":
        return _show_plugin(catalog, args)
    rows = [{"kind": i.kind, "name": i.name, "package": f"{i.package} {i.version}".strip(),
             "plugin": i.plugin, "class": f"{i.cls.__module__}.{i.cls.__name__}", "summary": i.summary,
             "status": "ok"} for i in catalog.all()]
    rows += [{"kind": "?", "name": b.name, "package": f"{b.package} {b.version}", "plugin": b.name, "class": "",
              "summary": b.error, "status": "broken"} for b in catalog.broken]
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    else:
        from tabulate import tabulate

        print(tabulate([{k: r[k] for k in ("kind", "name", "package", "summary")} for r in rows],
                       headers="keys", tablefmt="simple"))
        if catalog.disabled:
            print(f"\ndisabled: {', '.join(catalog.disabled)}")
        print("\n`tunebench plugins show NAME` shows a plugin's options (and a model family's search space).")
    return 0


def _show_plugin(catalog: Any, args: argparse.Namespace) -> int:
    """One plugin's options and, for a model family, its search space with the defaults."""
    from tabulate import tabulate

    from tunebench.errors import UnknownPluginError

    if not args.name:
        raise TunebenchError("`tunebench plugins show NAME`: name a dataset, model family or strategy "
                             "(`tunebench plugins` lists them)")
    found = [i for i in catalog.all() if i.name == args.name]
    if not found:
        known = [i.name for i in catalog.all()]
        import difflib

        hint = difflib.get_close_matches(args.name, known, n=1)
        raise UnknownPluginError(f"no plugin is named '{args.name}'." + (f" Did you mean '{hint[0]}'?" if hint else "")
                                 + " `tunebench plugins` lists them.")
    out: dict[str, Any] = {}
    for info in found:
        options = [{"option": name, "type": _type_name(o.type), "default": o.default,
                    "choices": ", ".join(map(str, o.choices)) if o.choices else "", "help": o.help}
                   for name, o in info.cls.full_schema().items()]
        entry: dict[str, Any] = {"kind": info.kind, "name": info.name, "package": f"{info.package} {info.version}",
                                 "class": f"{info.cls.__module__}.{info.cls.__name__}", "summary": info.summary,
                                 "options": options}
        if info.kind == "model family":
            entry["search_space"] = _family_space(info, args, catalog)
        out[info.kind] = entry
    if args.format == "json":
        print(json.dumps(out, indent=2, default=str))
        return 0
    for entry in out.values():
        print(f"{entry['kind']} '{entry['name']}' ({entry['package']}, {entry['class']})\n{entry['summary']}\n")
        print("options:")
        print(tabulate(entry["options"], headers="keys", tablefmt="simple") if entry["options"] else "  (none)")
        if "search_space" in entry:
            space = entry["search_space"]
            print(f"\nsearch space on {space['input_shape']} images, {space['classes']} classes "
                  f"(hyperparameters declared by the default configuration; others appear with other values):")
            print(tabulate(space["params"], headers="keys", tablefmt="simple"))
            epochs = space.get("epochs")
            if epochs and epochs.get("fidelity"):
                print(f"\nepochs: a fidelity, not drawn. On {space['train_size']:,} training images the family "
                      f"default trains {epochs['default']} and a trial at most {epochs['most']}; both scale with "
                      f"the square root of {space['reference_train_size']:,} / the training images "
                      f"(--train-size). A multi-fidelity strategy gives each trial its epochs; the others get "
                      f"as many as the trial's share of the budget fits, stopping on a plateau. Pin `epochs` "
                      f"(or restrict it with `space:`) to search it instead.")
        print()
    return 0


def _type_name(t: Any) -> str:
    types = t if isinstance(t, tuple) else (t,)
    return " or ".join(x.__name__ for x in types)


def _family_space(info: Any, args: argparse.Namespace, catalog: Any) -> dict[str, Any]:
    """The hyperparameters a model family declares when built with its defaults: the reference
    build (`tunebench.declared`), run in a child process, so this one never imports Keras."""
    from tunebench.declared import Request, declared_in_child, declared_space

    try:
        shape = tuple(int(v) for v in args.input_shape.lower().split("x"))
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError
    except ValueError:
        raise UsageError(f"--input-shape {args.input_shape!r}: write it as HxWxC with each part at least 1, "
                         f"e.g. 32x32x3") from None
    if args.classes < 2:
        raise UsageError("--classes must be at least 2")
    if args.train_size < 1:
        raise UsageError("--train-size must be at least 1")
    classes = tuple(f"class_{i}" for i in range(args.classes))
    if catalog.inline:  # a plugin no other process can load
        from tunebench.datasets import DataSpec

        spec = DataSpec(shape, classes, train_size=args.train_size)
        found = declared_space(info.cls(), spec, count_params=True)
        params = {n: [p.describe(), found.values[n], p.kind] for n, p in found.params.items()}
        count, epochs = found.param_count, found.epochs
    else:
        answer = declared_in_child([Request(info.name, {}, shape, classes, train_size=args.train_size)],
                                   catalog.modules)[0]
        params, count, epochs = answer["params"], answer["param_count"], answer.get("epochs")
    rows = [{"hyperparameter": name, "range": what, "default": _shown(default, kind)}
            for name, (what, default, kind) in params.items()]
    return {"input_shape": "x".join(map(str, shape)), "classes": args.classes, "train_size": args.train_size,
            "default_params": count, "params": rows, "epochs": epochs,
            "reference_train_size": getattr(info.cls, "reference_train_size", None)}


def _shown(value: Any, kind: str) -> Any:
    """A default as a user reads it: true/false for a boolean (tabulate would print 1 and 0)."""
    if kind == "boolean" or isinstance(value, bool):
        return "true" if value else "false"
    return value


COMMANDS = {"run": cmd_run, "validate": cmd_validate, "leaderboard": cmd_leaderboard, "runs": cmd_runs,
            "export-runs": cmd_export_runs, "merge": cmd_merge, "trials": cmd_trials, "plugins": cmd_plugins,
            "report": cmd_report, "compare": cmd_compare, "dashboard": cmd_dashboard,
            "export-table": cmd_export_table}


# -- helpers ---------------------------------------------------------------------------------------------

def _dur(seconds: float | None) -> str:
    from tunebench.budget import format_duration

    return format_duration(seconds)


def _open_existing(args: argparse.Namespace) -> Any:
    """The results store, for reading: nothing is created, and a read-only folder is fine."""
    from tunebench.store import DB_NAME, Store

    if args.store is None and not (Path(args.results) / DB_NAME).exists():
        raise TunebenchError(f"no results store in {args.results}/ (expected {Path(args.results) / DB_NAME}). "
                             f"Run a suite first (`tunebench run SUITE`), or point --results at a "
                             f"directory that holds one.")
    return Store.open(args.results, args.store, readonly=True)


def _iso(value: Any) -> Any:
    if value is None:
        return None
    return datetime.fromtimestamp(float(value), tz=timezone.utc).isoformat(timespec="milliseconds")


def _export(rows: list[dict[str, Any]], fmt: str, table_columns: list[str]) -> str:
    rows = [{k: (_iso(v) if k in TIME_COLUMNS else v) for k, v in r.items()} for r in rows]
    if fmt == "json":
        return json.dumps(rows, indent=2, default=str)
    if fmt == "csv":
        import csv
        import io

        buf = io.StringIO()
        if rows:
            writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
            writer.writeheader()
            for r in rows:
                writer.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in r.items()})
        return buf.getvalue().rstrip("\n")
    from tabulate import tabulate

    shown = [{k: (json.dumps(r.get(k)) if isinstance(r.get(k), (dict, list)) else r.get(k))
              for k in table_columns} for r in rows]
    for r in shown:
        if isinstance(r.get("error"), str) and len(r["error"]) > 60:
            r["error"] = r["error"][:57] + "..."
    return tabulate(shown, headers="keys", tablefmt="simple") if shown else "no rows"


if __name__ == "__main__":
    sys.exit(main())
