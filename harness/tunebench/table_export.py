"""`tunebench export-table`: a results store's trials as a table the `replay` table plugin answers.

A suite that records a grid (every configuration trained to the same epochs, `record_test: true`
so that each has a test score, `feasibility_guard: false` so that none is turned away) is run like
any other suite, resumable and in lanes. This module turns its runs into a folder:

- `manifest.json`: the format, the space (each hyperparameter the suite did not pin, a choice among
  its recorded values, in the order the model family declared them), the pins, the dataset and the
  model family with their options, the objective, the epochs, the seeds, the family default's
  configuration when it was recorded, the machine and the package versions, what a real search
  spent between two trials (`between_trials_s`), and the command that made it;
- `trials.jsonl.gz`: one line per configuration and seed: its validation score and time after each
  epoch, its start-up (build, compile, tracing), its test score, and how it ended.
"""

from __future__ import annotations

import gzip
import json
import math
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunebench.errors import TunebenchError
from tunebench.vocabulary import TrialStatus

if TYPE_CHECKING:
    from tunebench.store import Store

FORMAT = "tunebench-table/1"
#: A table bigger than this is refused (a replay table is meant to be committed and shipped).
MAX_BYTES = 10 * 2**20


def export_table(store: Store, suite: str, out: str | Path, *, name: str | None = None,
                 command: str = "") -> dict[str, Any]:
    """Write the latest runs of `suite` in `store` as a table folder `out`; returns the manifest.

    Raises:
        TunebenchError: the suite has no finished runs, its runs differ in dataset or model family,
            or the table would be larger than `MAX_BYTES`.
    """
    runs = _latest(store, suite)
    if not runs:
        raise TunebenchError(f"no finished runs of suite '{suite}' in {store.url}: run it first (or to its end), "
                             f"or check --suite")
    first = runs[0]
    for run in runs:
        for key in ("dataset", "dataset_options", "model_family", "model_options", "objective"):
            if run[key] != first[key]:
                raise TunebenchError(f"the runs of suite '{suite}' differ in {key} ({first[key]!r} and {run[key]!r}); "
                                     f"a table holds one dataset and one model family")
    pins = dict((first["model_options"] or {}).get("params") or {})
    restricted = dict((first["model_options"] or {}).get("space") or {})
    objective = first["objective"] or "val_accuracy"
    trials = store.trials([r["id"] for r in runs])
    epochs: dict[int, list[dict[str, Any]]] = {}
    for e in store.epochs([t["id"] for t in trials]):
        epochs.setdefault(e["trial_id"], []).append(e)
    names = _space_names(trials, pins)
    seed_of = {r["id"]: r["seed"] for r in runs}
    lines, gaps, default = [], [], None
    for run in runs:
        mine = [t for t in trials if t["run_id"] == run["id"]]
        gaps += [b["started_at"] - a["finished_at"] for a, b in zip(mine, mine[1:])
                 if a["finished_at"] and b["started_at"] >= a["finished_at"]]
    for t in trials:
        if t["status"] in (TrialStatus.RUNNING, TrialStatus.INTERRUPTED) or not t["params"]:
            continue
        row = _row(t, epochs.get(t["id"], []), names, objective, seed_of[t["run_id"]])
        lines.append(row)
        if (t["notes"] or {}).get("family_default") and default is None:
            default = row["config"]
    if not lines:
        raise TunebenchError(f"the runs of suite '{suite}' have no finished trial to put in a table")
    values = {n: _values(n, restricted, lines) for n in names}
    manifest = {
        "format": FORMAT, "name": name or suite, "suite": suite, "created": time.strftime("%Y-%m-%d"),
        "tunebench_version": (first["versions"] or {}).get("tunebench"),
        "dataset": {"name": first["dataset"], "label": first["dataset_label"], "options": first["dataset_options"],
                    "split_sizes": first["split_sizes"]},
        "model_family": {"name": first["model_family"], "label": first["model_label"],
                         "options": first["model_options"]},
        "objective": objective, "epochs": max(len(r["scores"]) for r in lines),
        "space": [{"name": n, "values": values[n], "default": values[n][0]} for n in names],
        "pins": pins, "default": default, "seeds": sorted({r["seed"] for r in lines}),
        "configurations": len({json.dumps([r["config"][n] for n in names], default=str) for r in lines}),
        "rows": len(lines), "between_trials_s": round(statistics.median(gaps), 4) if gaps else 0.0,
        "machine": {k: v for k, v in (first["hardware"] or {}).items() if k in ("cpu", "cpus", "gpus", "memory_gb")}
        | {"host": first["host"]}, "versions": first["versions"] or {}, "command": command,
    }
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    data = gzip.compress("".join(json.dumps(r, default=_plain) + "\n" for r in lines).encode(), mtime=0)
    if len(data) > MAX_BYTES:
        raise TunebenchError(f"the table would be {len(data) / 2**20:.1f} MB, more than {MAX_BYTES / 2**20:.0f} MB: "
                             f"record fewer configurations, seeds or epochs")
    from tunebench.atomic import write_bytes_atomic, write_text_atomic

    write_bytes_atomic(folder / "trials.jsonl.gz", data)
    write_text_atomic(folder / "manifest.json", json.dumps(manifest, indent=1, default=_plain) + "\n")
    return manifest


def _latest(store: Store, suite: str) -> list[dict[str, Any]]:
    """The newest run of each of the suite's searches that finished, in order."""
    from tunebench.vocabulary import RunStatus

    latest: dict[str, dict[str, Any]] = {}
    for run in store.runs(suite=suite):
        if not run.get("simulated"):
            latest[run["search_key"]] = run
    return sorted((r for r in latest.values() if r["status"] == RunStatus.OK), key=lambda r: (r["seed"], r["id"]))


def _space_names(trials: Sequence[Mapping[str, Any]], pins: Mapping[str, Any]) -> list[str]:
    """The hyperparameters the table varies, in the order the model family declared them."""
    names: list[str] = []
    for t in trials:
        for n in t["params"] or {}:
            if n not in pins and n not in names:
                names.append(n)
    return names


def _values(name: str, restricted: Mapping[str, Sequence[Any]], rows: Sequence[Mapping[str, Any]]) -> list[Any]:
    """A hyperparameter's values as the space offers them: the suite's `space:` list in its order,
    else every recorded value, sorted."""
    seen = {json.dumps(r["config"].get(name)): r["config"].get(name) for r in rows}
    listed = [v for v in restricted.get(name, []) if json.dumps(v) in seen]
    if listed:
        return listed
    try:
        return sorted(seen.values())
    except TypeError:
        return list(seen.values())


def _row(trial: Mapping[str, Any], epochs: Sequence[Mapping[str, Any]], names: Sequence[str], objective: str,
         seed: int) -> dict[str, Any]:
    """One configuration and seed: its curve, its times, its test score and how it ended."""
    timings = trial["timings"] or {}
    build = float(timings.get("build") or 0.0)
    first_step = max(0.0, float(timings.get("to_first_step") or build) - build)
    elapsed = [float(e["elapsed"] or 0.0) for e in epochs]
    epoch_s = [b - a for a, b in zip([first_step, *elapsed], elapsed)]
    scores = [float((e["metrics"] or {}).get(objective, math.nan)) for e in epochs]
    failed_at = next((i for i, s in enumerate(scores) if not math.isfinite(s)), None)
    status = trial["status"]
    if status == TrialStatus.NAN:
        failed_at = failed_at if failed_at is not None else len(scores)
    elif status == TrialStatus.FAILED:
        failed_at = len(scores)
    if failed_at is not None:
        scores, epoch_s = scores[:failed_at], epoch_s[:max(failed_at, 0)]
        if status not in (TrialStatus.NAN, TrialStatus.FAILED):
            status = TrialStatus.NAN
    # after the last epoch: its weights, the record (a test pass for the table itself is not a search's)
    duration = float((trial["finished_at"] or trial["started_at"]) - trial["started_at"])
    finish = duration - build - first_step - (elapsed[-1] - first_step if elapsed else 0.0)
    finish -= float(timings.get("test_eval") or 0.0)
    row: dict[str, Any] = {
        "config": {n: (trial["params"] or {}).get(n) for n in names}, "seed": seed, "status": status,
        "scores": [round(s, 6) for s in scores], "epoch_s": [round(max(s, 1e-4), 4) for s in epoch_s],
        "startup_s": round(build + first_step, 4), "finish_s": round(max(0.0, finish), 4),
        "test": (trial["notes"] or {}).get("test_score"),
    }
    if failed_at is not None:
        row["failed_at"] = failed_at
        row["error"] = trial["error"]
    return row


def _plain(value: Any) -> Any:
    return str(value)


__all__ = ["FORMAT", "export_table"]
