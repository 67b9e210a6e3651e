"""A table of tunebench's own runs, replayed: a grid a suite recorded with real training (every
configuration's per-epoch validation scores and times, and its test score), exported with
`tunebench export-table`, answered on the simulated clock.

The folder holds `manifest.json` (the space, the dataset and model family, the machine and the
versions it was recorded with) and `trials.jsonl.gz` (one line per configuration and seed). Its
space is the recorded grid: each hyperparameter a choice among its recorded values, declared in
the order the model family declared them, so that a strategy with the same seed proposes on the
table what it proposed in the real search. A configuration recorded with several seeds answers
with one of them, picked by the trial's seed; one that is not in the table fails as `failed`.
"""

from __future__ import annotations

import gzip
import json
import os
import statistics
from functools import cached_property
from pathlib import Path
from typing import Any

from tunebench import Curve, Option, Table, TrialStatus, hookimpl, unset_variable_hint

FORMAT = "tunebench-table/1"


def config_key(names, config) -> str:
    """The lookup key of a configuration: its values in the space's order, as JSON."""
    return json.dumps([config.get(n) for n in names], sort_keys=True)


class Replay(Table):
    """A recorded grid of tunebench's own runs (`tunebench export-table`), replayed."""

    name = "replay"
    options_schema = {"path": Option(str, None, "the table's folder (manifest.json, trials.jsonl.gz)", required=True)}

    @property
    def folder(self) -> Path:
        return Path(os.path.expandvars(self.options["path"])).expanduser()

    def check(self):
        manifest = self.folder / "manifest.json"
        if not manifest.is_file():
            return [f"no table at {self.folder} (no manifest.json; option `path`)"
                    + unset_variable_hint(self.options["path"])
                    + "; make one with `tunebench export-table`"]
        if not (self.folder / "trials.jsonl.gz").is_file():
            return [f"the table at {self.folder} has a manifest but no trials.jsonl.gz"]
        try:
            found = json.loads(manifest.read_text()).get("format")
        except (OSError, ValueError) as exc:
            return [f"{manifest} is not readable JSON ({exc})"]
        return [] if found == FORMAT else [f"{manifest} is format {found!r}, not {FORMAT!r}"]

    @cached_property
    def manifest(self) -> dict[str, Any]:
        return json.loads((self.folder / "manifest.json").read_text())

    @cached_property
    def _rows(self) -> dict[str, list[dict[str, Any]]]:
        names = [p["name"] for p in self.manifest["space"]]
        rows: dict[str, list[dict[str, Any]]] = {}
        with gzip.open(self.folder / "trials.jsonl.gz", "rt") as f:
            for line in f:
                row = json.loads(line)
                rows.setdefault(config_key(names, row["config"]), []).append(row)
        for found in rows.values():
            found.sort(key=lambda r: r["seed"])
        return rows

    def tasks(self):
        return [self.manifest["name"]] if (self.folder / "manifest.json").is_file() else [self.folder.name]

    def declare(self, hp, task):
        for p in self.manifest["space"]:
            hp.Choice(p["name"], p["values"], default=p.get("default"))

    def default(self, task):
        return self.manifest.get("default")

    def max_epochs(self, task):
        return int(self.manifest["epochs"])

    def between_trials_s(self, task):
        return float(self.manifest.get("between_trials_s") or 0.0)

    def identity(self):
        m = self.manifest
        return {"name": self.name, "table": m["name"], "version": m.get("tunebench_version"),
                "source": f"tunebench export-table of suite '{m.get('suite')}' ({m.get('created')})",
                "machine": m.get("machine", {}).get("cpu")}

    def repeats(self, task):
        return max(1, len(self.manifest.get("seeds") or [1]))

    def curve(self, task, config, seed):
        names = [p["name"] for p in self.manifest["space"]]
        found = self._rows.get(config_key(names, config))
        if not found:
            return Curve((), (), status=TrialStatus.FAILED, failed_at=0,
                         error="this configuration is not in the table (the recording did not finish it)")
        row = found[seed % len(found)]
        return Curve(tuple(row["scores"]), tuple(row["epoch_s"]), startup_s=row.get("startup_s", 0.0),
                     finish_s=row.get("finish_s", 0.0), test=row.get("test"),
                     status=row.get("status", TrialStatus.OK), failed_at=row.get("failed_at"), error=row.get("error"))

    def full_evaluation_s(self, task):
        return statistics.median(r["startup_s"] + sum(r["epoch_s"]) + r.get("finish_s", 0.0)
                                 for rows in self._rows.values() for r in rows)

    def optimum(self, task):
        best = [statistics.mean(max(r["scores"]) for r in rows) for rows in self._rows.values()
                if all(r["scores"] for r in rows)]
        return max(best) if best else None


@hookimpl
def tunebench_register_tables(registry):
    registry.add(Replay)
