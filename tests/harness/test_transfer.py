"""A study run in parts: `tunebench export-runs` writes a store's finished runs to one file,
`tunebench merge` copies stores and such files into another store, never overwriting."""

from __future__ import annotations

import gzip
import json

import pytest

from tests.conftest import TESTING_PLUGINS, tunebench, write_suite
from tunebench.store import Store
from tunebench.transfer import bundles, merge, read_archive, write_archive

SUITE = """
name: parts
budget: rule
seeds: 2
first_trial: none
tables:
  - scripted_table: {tasks: [bowl]}
strategies:
  - random
  - asha: {min_epochs: 1, max_epochs: 5}
"""


def _runs(results):
    done = tunebench("runs", "--results", str(results), "--format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _trials(results):
    return json.loads(tunebench("trials", "--results", str(results), "--format", "json").stdout)


def test_a_study_run_in_two_stores_merges_into_one_that_resumes_nothing(tmp_path):
    suite = write_suite(tmp_path / "parts.yaml", SUITE)
    for part, strategy in (("a", "random"), ("b", "asha")):
        done = tunebench("run", str(suite), "--results", str(tmp_path / part), "--plugin", TESTING_PLUGINS,
                         "--strategy", strategy)
        assert done.returncode == 0, done.stderr[-3000:]
    archive = tmp_path / "b.jsonl.gz"
    exported = tunebench("export-runs", "--results", str(tmp_path / "b"), "--out", str(archive))
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.startswith("2 runs (")

    merged = tunebench("merge", str(archive), "--results", str(tmp_path / "a"))
    assert merged.returncode == 0, merged.stderr
    assert "2 runs copied" in merged.stdout
    runs, source = _runs(tmp_path / "a"), _runs(tmp_path / "b")
    assert sorted(r["strategy_label"] for r in runs) == ["asha", "asha", "random", "random"]
    copied = {r["seed"]: r for r in runs if r["strategy_label"] == "asha"}
    for r in source:  # the same rows, under new ids
        for key in ("test_score", "best_val", "n_trials", "budget_s", "simulated", "started_at", "finished_at"):
            assert copied[r["seed"]][key] == r[key], key
    # every trial came along, under its new run
    by_run = {}
    for t in _trials(tmp_path / "a"):
        by_run.setdefault(t["run_id"], []).append(t)
    for r in source:
        assert len(by_run[copied[r["seed"]]["id"]]) == r["n_trials"]

    again = tunebench("merge", str(archive), str(tmp_path / "b"), "--results", str(tmp_path / "a"))
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("0 runs copied") == 2 and again.stdout.count("2 already in the store") == 2
    assert len(_runs(tmp_path / "a")) == 4
    resumed = tunebench("run", str(suite), "--results", str(tmp_path / "a"), "--plugin", TESTING_PLUGINS)
    assert resumed.returncode == 0 and "simulated search" not in resumed.stderr  # nothing left to run
    board = tunebench("leaderboard", "--results", str(tmp_path / "a"), "--format", "csv")
    assert "asha" in board.stdout and "random" in board.stdout


def _real_run(store, key, status, *, epochs=2, **fields):
    run_id = store.create_run(search_key=key, suite="s", dataset="d", model_family="m", strategy="random",
                              seed=0, budget_s=60.0, **fields)
    for number in range(2):
        trial = store.start_trial(run_id, number, started_at=100.0 + number, params={"lr": 0.1 * (number + 1)})
        for epoch in range(epochs):
            store.record_epoch(run_id, trial, epoch, {"val_accuracy": 0.5 + epoch / 10}, elapsed=1.5 * (epoch + 1),
                               score=0.5 + epoch / 10, best_epoch=epoch)
        store.finish_trial(trial, status="ok", finished_at=110.0 + number)
    if status == "ok":
        store.finish_run(run_id, test_score=0.7)
    elif status == "failed":
        store.fail_run(run_id, "out of memory")
    elif status == "interrupted":
        store.interrupt_run(run_id, "the runner stopped")
    return run_id


def test_merge_copies_finished_runs_with_their_epochs_and_never_overwrites(tmp_path):
    source = Store.open(tmp_path / "src")
    _real_run(source, "k-ok", "ok")
    failed = _real_run(source, "k-retried", "failed")
    _real_run(source, "k-retried", "ok", retry_of=failed)
    _real_run(source, "k-failed", "failed")
    _real_run(source, "k-cut", "interrupted")
    _real_run(source, "k-running", "running")
    target = Store.open(tmp_path / "dst")
    _real_run(target, "k-failed", "failed", epochs=1)  # the target's own: left as it is

    done = merge(target, bundles(source, finished_only=False))
    # k-ok, the failed k-retried and its ok retry; k-failed is in the target already; 2 unfinished
    assert (done.copied, done.present, done.unfinished) == (3, 1, 2)
    rows = {(r["search_key"], r["status"]): r for r in target.runs()}
    assert set(rows) == {("k-failed", "failed"), ("k-ok", "ok"), ("k-retried", "failed"), ("k-retried", "ok")}
    assert rows[("k-retried", "ok")]["retry_of"] == rows[("k-retried", "failed")]["id"]
    assert target.latest_runs(["k-retried"])["k-retried"]["status"] == "ok"
    copied = rows[("k-ok", "ok")]
    trials = target.trials([copied["id"]])
    assert [t["params"] for t in trials] == [{"lr": 0.1}, {"lr": 0.2}]
    epochs = target.epochs([t["id"] for t in trials])
    assert [(e["epoch"], e["elapsed"], e["metrics"]["val_accuracy"]) for e in epochs] == \
        [(0, 1.5, 0.5), (1, 3.0, 0.6)] * 2
    assert len(target.epochs([t["id"] for t in target.trials([rows[("k-failed", "failed")]["id"]])])) == 2

    # an ok run later in the source replaces nothing, but a target with only a failed run takes it
    _real_run(source, "k-failed", "ok")
    later = merge(target, bundles(source))
    assert (later.copied, later.present) == (1, 4)
    assert target.latest_runs(["k-failed"])["k-failed"]["status"] == "ok"


def test_an_archive_round_trips_and_bad_files_are_clear_errors(tmp_path):
    source = Store.open(tmp_path / "src")
    _real_run(source, "k1", "ok")
    _real_run(source, "k2", "ok")
    archive = tmp_path / "runs.jsonl.gz"
    assert write_archive(source, archive) == {"runs": 2, "trials": 4, "epochs": 8}
    assert [b.run["search_key"] for b in read_archive(archive)] == ["k1", "k2"]

    not_archive = tmp_path / "table.jsonl.gz"
    with gzip.open(not_archive, "wt") as fh:
        fh.write('{"format": "tunebench-table/1"}\n')
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(archive.read_bytes()[:-40])
    for bad, says in ((not_archive, "is not a tunebench runs archive"), (cut, "cannot read the runs archive"),
                      (tmp_path / "nowhere", "does not exist")):
        done = tunebench("merge", str(bad), "--results", str(tmp_path / "dst"))
        assert done.returncode != 0 and says in done.stderr and "Traceback" not in done.stderr, done.stderr
    itself = tunebench("merge", str(tmp_path / "src"), "--results", str(tmp_path / "src"))
    assert itself.returncode == 2 and "is the store being merged into" in itself.stderr
    empty = tunebench("export-runs", "--results", str(tmp_path / "src"), "--out", str(tmp_path / "x.jsonl.gz"),
                      "--strategy", "nothing-by-this-name")
    assert empty.returncode == 2 and "no finished runs" in empty.stderr and not (tmp_path / "x.jsonl.gz").exists()


def test_export_since_writes_only_the_runs_that_finished_after_it(tmp_path):
    from datetime import datetime, timezone

    store = Store.open(tmp_path / "src")
    for key, day in (("old", 3), ("new", 4)):
        run_id = _real_run(store, key, "ok")
        store.update_run(run_id, completed_at=datetime(2026, 12, day, 12, tzinfo=timezone.utc).timestamp())
    part = tmp_path / "part.jsonl.gz"
    done = tunebench("export-runs", "--results", str(tmp_path / "src"), "--out", str(part), "--since", "2026-12-04")
    assert done.returncode == 0, done.stderr
    assert [b.run["search_key"] for b in read_archive(part)] == ["new"]
    late = tunebench("export-runs", "--results", str(tmp_path / "src"), "--out", str(part), "--since",
                     "2026-12-04T13:00+01:00")  # 12:00 UTC: still in
    assert late.returncode == 0 and late.stdout.startswith("1 run (")
    bad = tunebench("export-runs", "--results", str(tmp_path / "src"), "--out", str(part), "--since", "yesterday")
    assert bad.returncode == 2 and "is not a date or time" in bad.stderr


def test_a_failed_export_leaves_no_file_behind(tmp_path, monkeypatch):
    from tunebench import transfer

    source = Store.open(tmp_path / "src")
    _real_run(source, "k1", "ok")
    _real_run(source, "k2", "ok")
    archive = tmp_path / "runs.jsonl.gz"

    def broken(store, **kwargs):  # the store goes away after the first run (a lost connection, a full disk)
        yield from list(bundles(store, **kwargs))[:1]
        raise OSError("the store went away")

    monkeypatch.setattr(transfer, "bundles", broken)
    with pytest.raises(OSError, match="went away"):
        write_archive(source, archive)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_runs_read_in_chunks_travel_as_they_do_in_one_read(tmp_path, monkeypatch):
    from tunebench import transfer

    store = Store.open(tmp_path / "src")
    for key in ("k1", "k2", "k3"):
        _real_run(store, key, "ok", epochs=3)
    whole = [(b.source_id, b.run, b.trials) for b in bundles(store)]
    monkeypatch.setattr(transfer, "RUNS_PER_READ", 2)
    monkeypatch.setattr(transfer, "TRIALS_PER_READ", 3)  # a run's trials' epochs split over two reads
    chunked = [(b.source_id, b.run, b.trials) for b in bundles(store)]
    assert chunked == whole
    assert [len(trials) for _, _, trials in whole] == [2, 2, 2]
    assert [len(t["epochs"]) for _, _, trials in whole for t in trials] == [3] * 6
