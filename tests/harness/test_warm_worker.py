"""Searches that start in a second: a warm worker runs a suite's searches one after another, each
from the same state as a fresh process, and a dataset is loaded once per suite (kept in the worker,
and memory-mapped from the disk cache by later processes)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.conftest import TESTING_PLUGINS, tunebench, write_suite
from tests.harness.warm_probe import PROBE_COUNT, PROBE_OUT
from tunebench.store import Store

PROBE = "tests.harness.warm_probe"

SUITE = """
name: warm
budget: 8s
max_epochs: 1
first_trial: none
cost_aware_space: false  # its builds would spoil the state (the probe's purpose) before the first trial
focus: all               # so would the focus's reference build (the probe is an mlp, which has a priority)
seeds: {seeds}
datasets: [{{counted_digits: {{source: {source}}}}}]
model_families: [{{probe: {{params: {{layers: 1, units: 16}}}}}}]
strategies: [{{random: {{max_trials: 1}}}}]
"""


def _run(tmp_path: Path, name: str, seeds: list[int], source: Path, cache: Path,
         **env: str) -> tuple[Store, list[dict], list[dict], list[str]]:
    work = tmp_path / name
    work.mkdir()
    suite = write_suite(work / "suite.yaml", SUITE.format(seeds=seeds, source=source))
    out, count = work / "probe.jsonl", work / "loads.txt"
    result = tunebench("run", str(suite), "--results", str(work / "results"), "--plugin", TESTING_PLUGINS,
                       "--plugin", PROBE, env={PROBE_OUT: str(out), PROBE_COUNT: str(count),
                                               "TUNEBENCH_CACHE": str(cache), **env})
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    store = Store.open(work / "results")
    probes = [json.loads(line) for line in out.read_text().splitlines()]
    loads = count.read_text().splitlines() if count.exists() else []
    return store, store.runs(), probes, loads


def test_a_suites_searches_share_one_warm_worker_and_each_starts_as_a_fresh_process_would(tmp_path):
    source = tmp_path / "source.txt"
    source.write_text("images")
    store, runs, probes, loads = _run(tmp_path, "warm", [0, 1, 2], source, tmp_path / "cache",
                                      TUNEBENCH_LOAD_CACHE_MIN_S="1000")  # in memory only
    assert [r["status"] for r in runs] == ["ok"] * 3
    # one process ran the three searches, and loaded the data once
    assert len({r["pid"] for r in runs}) == 1 and len(loads) == 1
    assert [r["hardware"]["worker"]["job"] for r in runs] == [1, 2, 3]
    assert [(r["data_notes"] or {}).get("load_cache") for r in runs] == [None, "memory", "memory"]
    # every build spoils the state; each search's first build found it put back (the later builds
    # of a search see what its own earlier ones did: one clean record per search)
    worker = [p for p in probes if p["pid"] == runs[0]["pid"]]
    clean = [p for p in worker if _clean(p)]
    assert len(clean) == 3, worker
    # each search's output is in its own log
    for r in runs:
        log = (Path(r["artifact_dir"]) / "log.txt").read_text()
        assert log.count("training data:") == 1, log
    # the last search, run alone in a fresh process, draws, names and scores the same
    _, alone, solo, _ = _run(tmp_path, "alone", [2], source, tmp_path / "cache",
                             TUNEBENCH_LOAD_CACHE_MIN_S="1000")
    solo_clean = [p for p in solo if p["pid"] == alone[0]["pid"] and _clean(p)]
    assert solo_clean[0]["pid"] != clean[2]["pid"]
    assert (solo_clean[0]["draw"], solo_clean[0]["layer"]) == (clean[2]["draw"], clean[2]["layer"])
    assert alone[0]["split_fingerprint"] == runs[2]["split_fingerprint"]
    assert alone[0]["best_params"] == runs[2]["best_params"]
    assert abs(alone[0]["best_val"] - runs[2]["best_val"]) < 1e-6


def _clean(probe: dict) -> bool:
    return (probe["leak"], probe["floatx"], probe["layout"], probe["policy"]) == (
        None, "float32", "channels_last", "float32")


@pytest.mark.slow  # three suites, each starting its own worker: the slow tier (make test-slow)
def test_a_slow_load_is_mapped_from_the_disk_cache_until_its_source_changes(tmp_path):
    source, cache = tmp_path / "source.txt", tmp_path / "cache"
    source.write_text("images")
    env = {"TUNEBENCH_LOAD_CACHE_MIN_S": "0"}  # every load counts as slow
    _, first, _, loads = _run(tmp_path, "first", [0], source, cache, **env)
    assert len(loads) == 1 and (first[0]["data_notes"] or {}).get("load_cache") is None
    entries = list((cache / "datasets").iterdir())
    assert len(entries) == 1 and (entries[0] / "x.npy").is_file()

    _, second, _, loads = _run(tmp_path, "second", [0], source, cache, **env)
    assert loads == [] and second[0]["data_notes"]["load_cache"] == "disk"
    assert second[0]["split_fingerprint"] == first[0]["split_fingerprint"]
    assert second[0]["test_score"] == first[0]["test_score"]

    later = time.time() + 5
    os.utime(source, (later, later))  # the data on disk changed: load again
    _, third, _, loads = _run(tmp_path, "third", [0], source, cache, **env)
    assert len(loads) == 1 and (third[0]["data_notes"] or {}).get("load_cache") is None
    assert len(list((cache / "datasets").iterdir())) == 2
