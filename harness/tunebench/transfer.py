"""Moving finished runs between results stores: `tunebench export-runs` and `tunebench merge`.

A study run in parts (on several machines, in several sessions, a costly strategy apart from the
rest) ends in several stores. `export-runs` writes a store's finished runs, with their trials and
epochs, to one gzipped JSON-lines file (an *archive*) that can be kept, mailed or committed;
`merge` copies the finished runs of a store or an archive into another store, so that one
leaderboard ranks them all and `tunebench run` skips the searches they hold.

An archive's first line is a header (`{"format": "tunebench-runs/1", ...}`); each further line is
one run: its row without its id, and its trials, each with its epochs. Times stay Unix seconds.

Merging never overwrites: a run is copied only when the target has no finished (`ok`) run of the
same search key, and a failed run only when the target has no run of that key at all. Runs that are
still running, queued or interrupted are not copied (the store they are in resumes them). Each run
is copied in one transaction, so an interrupted merge can be run again.
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunebench import __version__
from tunebench.errors import TunebenchError
from tunebench.vocabulary import RunStatus

if TYPE_CHECKING:
    from tunebench.store import Store

FORMAT = "tunebench-runs/1"
#: Statuses of runs that are copied: the others are still in some store's hands.
FINISHED = frozenset({RunStatus.OK.value, RunStatus.FAILED.value})


@dataclass
class MergeResult:
    """What a merge did, run by run."""

    copied: int = 0
    trials: int = 0
    present: int = 0  # the target already has a finished run of the key (or any run, for a failed one)
    unfinished: int = 0  # running, queued or interrupted in the source: not copied


@dataclass
class Bundle:
    """One run as it travels: its row (without its id), its trials, each with `epochs`."""

    run: dict[str, Any]
    trials: list[dict[str, Any]]
    source_id: int | None = None


def _selected(store: Store, filters: Mapping[str, str | None]) -> list[dict[str, Any]]:
    """The runs of `store` in the suite `filters` names, whose dataset, model family and strategy
    match the filters by label or plugin name."""
    columns = {"dataset": "dataset_label", "model_family": "model_label", "strategy": "strategy_label"}
    wanted = {k: v for k, v in filters.items() if k in columns and v is not None}
    return [row for row in store.runs(suite=filters.get("suite"))
            if all(value in (row.get(columns[key]), row.get(key)) for key, value in wanted.items())]


#: Runs read per query, and trial ids per epochs query (under SQLite's and PostgreSQL's bound-
#: parameter limits): an export of a whole study reads its store in a few hundred queries, not three
#: per run.
RUNS_PER_READ = 100
TRIALS_PER_READ = 5000


def bundles(store: Store, *, filters: Mapping[str, str | None] | None = None,
            finished_only: bool = True, since: float | None = None) -> Iterator[Bundle]:
    """The runs of `store` (those `filters` keep: suite, dataset, model_family, strategy by label or
    plugin name; with `since`, those that finished at or after that Unix time) with their trials and
    epochs, oldest first."""
    selected = [run for run in _selected(store, filters or {})
                if not (finished_only and run["status"] not in FINISHED)
                and not (since is not None and (run.get("completed_at") or run.get("created_at") or 0.0) < since)]
    for first in range(0, len(selected), RUNS_PER_READ):
        chunk = selected[first:first + RUNS_PER_READ]
        trial_rows: dict[int, list[dict[str, Any]]] = {}
        for t in store.trials([run["id"] for run in chunk]):
            trial_rows.setdefault(t["run_id"], []).append(t)
        ids = [t["id"] for rows in trial_rows.values() for t in rows]
        epoch_rows: dict[int, list[dict[str, Any]]] = {}
        for at in range(0, len(ids), TRIALS_PER_READ):
            for e in store.epochs(ids[at:at + TRIALS_PER_READ]):
                epoch_rows.setdefault(e["trial_id"], []).append(
                    {k: v for k, v in e.items() if k not in ("id", "trial_id")})
        for run in chunk:
            trials = [{**{k: v for k, v in t.items() if k not in ("id", "run_id")},
                       "epochs": epoch_rows.get(t["id"], [])} for t in trial_rows.get(run["id"], [])]
            yield Bundle({k: v for k, v in run.items() if k != "id"}, trials, source_id=run["id"])


def write_archive(store: Store, path: str | Path, *, filters: Mapping[str, str | None] | None = None,
                  since: float | None = None) -> dict[str, int]:
    """Write the finished runs of `store` to the archive `path` (gzipped JSON lines); returns the
    counts written. The file is written next to `path` and renamed, so a failed export leaves
    nothing half-written (neither at `path` nor beside it)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    counts = {"runs": 0, "trials": 0, "epochs": 0}
    header = {"format": FORMAT, "tunebench": __version__, "exported_at": time.time(), "source": store.url,
              "filters": {k: v for k, v in (filters or {}).items() if v is not None}, "since": since}
    try:
        with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=9) as fh:
            fh.write(json.dumps(header) + "\n")
            for b in bundles(store, filters=filters, since=since):
                fh.write(json.dumps({"source_id": b.source_id, "run": b.run, "trials": b.trials},
                                    separators=(",", ":"), allow_nan=True) + "\n")
                counts["runs"] += 1
                counts["trials"] += len(b.trials)
                counts["epochs"] += sum(len(t["epochs"]) for t in b.trials)
    except BaseException:  # a full disk, a store gone, Ctrl-C: no half-written file is left behind
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)
    return counts


def read_archive(path: str | Path) -> Iterator[Bundle]:
    """The runs of an archive `write_archive` wrote.

    Raises:
        TunebenchError: the file is not such an archive, or is cut short or corrupt.
    """
    path = Path(path)
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            first = fh.readline()
            try:
                header = json.loads(first)
            except json.JSONDecodeError:
                header = None
            if not isinstance(header, dict) or header.get("format") != FORMAT:
                raise TunebenchError(f"{path} is not a tunebench runs archive (its first line should be a "
                                     f"{FORMAT!r} header); write one with `tunebench export-runs`")
            for number, line in enumerate(fh, start=2):
                try:
                    item = json.loads(line)
                    yield Bundle(dict(item["run"]), list(item["trials"]), source_id=item.get("source_id"))
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    raise TunebenchError(f"{path}, line {number}: not a run of a tunebench runs archive "
                                         f"({exc}); the file may be cut short: export it again") from None
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise TunebenchError(f"cannot read the runs archive {path}: {exc}") from None


def merge(target: Store, source: Iterable[Bundle]) -> MergeResult:
    """Copy the finished runs of `source` into `target` (see the module's rules); returns what was
    done. Ids are new in `target`; a retried run's `retry_of` follows its run when both are copied."""
    import sqlalchemy as sa

    from tunebench.store import _inserted_id, _plain, epochs, runs, trials

    result = MergeResult()
    run_columns = {c.name for c in runs.columns} - {"id"}
    trial_columns = {c.name for c in trials.columns} - {"id", "run_id"}
    epoch_columns = {c.name for c in epochs.columns} - {"id", "trial_id"}
    new_ids: dict[int, int] = {}
    for bundle in source:
        run = bundle.run
        if run.get("status") not in FINISHED:
            result.unfinished += 1
            continue
        key = run["search_key"]
        with target.engine.begin() as conn:
            statuses = {s for (s,) in conn.execute(sa.select(runs.c.status).where(runs.c.search_key == key))}
            if RunStatus.OK.value in statuses or (run["status"] != RunStatus.OK.value and statuses):
                result.present += 1
                continue
            fields = _plain({k: v for k, v in run.items() if k in run_columns})
            retry_of = fields.get("retry_of")
            fields["retry_of"] = new_ids.get(retry_of) if retry_of is not None else None
            run_id = _inserted_id(conn.execute(runs.insert().values(**fields)))
            if not any(t.get("epochs") for t in bundle.trials):  # a simulated search: one statement
                rows = [_plain({k: v for k, v in t.items() if k in trial_columns}) | {"run_id": run_id}
                        for t in bundle.trials]
                if rows:
                    conn.execute(trials.insert(), rows)
            else:
                for t in bundle.trials:
                    _copy_trial(conn, run_id, t, trial_columns, epoch_columns)
        if bundle.source_id is not None:
            new_ids[bundle.source_id] = run_id
        result.copied += 1
        result.trials += len(bundle.trials)
    return result


def _copy_trial(conn: Any, run_id: int, trial: Mapping[str, Any], trial_columns: set[str],
                epoch_columns: set[str]) -> None:
    from tunebench.store import _inserted_id, _plain, epochs, trials

    row = _plain({k: v for k, v in trial.items() if k in trial_columns}) | {"run_id": run_id}
    trial_id = _inserted_id(conn.execute(trials.insert().values(**row)))
    rows = [{k: v for k, v in e.items() if k in epoch_columns} | {"trial_id": trial_id}
            for e in trial.get("epochs") or []]
    if rows:
        conn.execute(epochs.insert(), rows)
