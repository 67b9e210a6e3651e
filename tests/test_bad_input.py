"""A corpus of bad inputs and faults, tried as a user would: through the real command line.

Each case asserts the exit code, that no traceback reaches the user, and that the message names
what to fix; the faults also check the store's rows before and after. The long fault cases (a
full disk, an out-of-memory trial) are marked slow and run in CI's slow tier.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, TESTING_PLUGINS, tunebench, write_suite
from tunebench.store import Store

GOOD = """
budget: 20s
max_epochs: 1
datasets: [digits]
model_families: [mlp]
strategies: [{random: {max_trials: 1}}]
"""


@dataclass(frozen=True)
class Case:
    """One bad suite for `tunebench validate`: its text and what the message must say."""

    id: str
    suite: str
    says: tuple[str, ...]
    code: int = 2
    files: dict[str, bytes] = field(default_factory=dict)


def _images(root: Path, good: bool) -> None:
    import numpy as np
    from PIL import Image

    for label in ("a", "b"):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(3):
            target = root / label / f"{i}.png"
            if good:
                Image.fromarray(np.full((8, 8, 3), 50 * i, np.uint8)).save(target)
            else:
                target.write_bytes(b"\x89PNG not really")


def _suite(body: str) -> str:
    return textwrap.dedent(body).strip() + "\n"


SUITE_CASES = [
    Case("budget_nan", GOOD.replace("budget: 20s", "budget: .nan"), ("'budget'", "finite")),
    Case("budget_inf", GOOD.replace("budget: 20s", "budget: .inf"), ("'budget'", "finite")),
    Case("budget_absurd", GOOD.replace("budget: 20s", "budget: 400d"), ("'budget'", "at most")),
    Case("budget_zero", GOOD.replace("budget: 20s", "budget: 0"), ("'budget'", "positive")),
    Case("trial_budget_negative", GOOD + "trial_budget: -5\n", ("'trial_budget'",)),
    Case("seeds_huge_count", GOOD + "seeds: 100000000\n", ("'seeds'", "at most 1000")),
    Case("seed_over_2_32", GOOD + "seeds: [4294967296]\n", ("'seeds'", "4294967296", "below 2147483648")),
    Case("seed_over_2_63", GOOD + "seeds: [9223372036854775808]\n", ("'seeds'", "below 2147483648")),
    Case("seed_negative", GOOD + "seeds: [-1]\n", ("'seeds'",)),
    Case("seeds_duplicated", GOOD + "seeds: [1, 1]\n", ("'seeds' has duplicates",)),
    Case("max_epochs_zero", GOOD.replace("max_epochs: 1", "max_epochs: 0"), ("'max_epochs'",)),
    Case("split_leaves_no_training_set",
         GOOD.replace("datasets: [digits]", "datasets: [{digits: {validation: 0.6, test: 0.5}}]"),
         ("validation", "test", "training")),
    Case("pinned_param_misspelt",
         GOOD.replace("model_families: [mlp]", "model_families: [{mlp: {params: {unitz: 64}}}]"),
         ("unitz", "did you mean 'units'")),
    Case("pinned_param_wrong_type",
         GOOD.replace("model_families: [mlp]", "model_families: [{mlp: {params: {units: many}}}]"),
         ("units", "must be a number")),
    Case("pinned_choice_not_a_choice",
         GOOD.replace("model_families: [mlp]", "model_families: [{mlp: {params: {activation: swish}}}]"),
         ("activation", "swish", "relu")),
    Case("image_size_one_number_list", _suite("""
        budget: 20s
        datasets: [{image_folder: {path: "IMAGES_OK", size: [16]}}]
        model_families: [mlp]
        strategies: [random]
        """), ("size", "[height, width]")),
    Case("image_size_zero", _suite("""
        budget: 20s
        datasets: [{image_folder: {path: "IMAGES_OK", size: 0}}]
        model_families: [mlp]
        strategies: [random]
        """), ("dataset", "size", "at least 1")),
    Case("every_image_corrupt", _suite("""
        budget: 20s
        datasets: [{image_folder: {path: "IMAGES_BAD", size: 8}}]
        model_families: [mlp]
        strategies: [random]
        """), ("no readable image", "IMAGES_BAD")),
    Case("duplicate_key", GOOD + "budget: 30s\n", ("duplicate key 'budget'", "line")),
    Case("duplicate_key_nested", GOOD.replace("strategies: [{random: {max_trials: 1}}]",
                                              "strategies: [{random: {max_trials: 1, max_trials: 2}}]"),
         ("duplicate key 'max_trials'",)),
    Case("first_trial_unknown", GOOD + "first_trial: maybe\n", ("'first_trial'", "defaults or none")),
    Case("feasibility_margin_below_one", GOOD + "feasibility_margin: 0.5\n", ("'feasibility_margin'", "at least 1")),
    Case("hang_timeout_not_a_duration", GOOD + "hang_timeout: never\n", ("'hang_timeout'", "duration")),
    Case("steps_per_execution_zero", GOOD + "training: {steps_per_execution: 0}\n", ("steps_per_execution",)),
    Case("strategy_option_wrong_type", GOOD.replace("{max_trials: 1}", "{max_trials: ten}"),
         ("max_trials", "an integer")),
    Case("resources_memory_nonsense", GOOD + "resources: {memory: lots}\n", ("memory", "4GB")),
    Case("unknown_top_level_key", GOOD + "budgett: 3s\n", ("did you mean 'budget'",)),
    Case("unknown_dataset", GOOD.replace("datasets: [digits]", "datasets: [digitz]"), ("Did you mean 'digits'",)),
    Case("not_a_mapping", "- budget: 20s\n", ("must be a mapping",)),
    Case("yaml_syntax", GOOD + "strategies: [random\n", ("not valid YAML", "line")),
    Case("csv_latin1", _suite("""
        budget: 20s
        datasets: [{csv_manifest: {path: "CSV_LATIN1", size: 8}}]
        model_families: [mlp]
        strategies: [random]
        """), ("not UTF-8", "encoding: latin-1")),
]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("data")
    _images(root / "ok", good=True)
    _images(root / "bad", good=False)
    csv_dir = root / "csv"
    _images(csv_dir, good=True)
    (csv_dir / "latin1.csv").write_bytes(b"path,label\n" + b"".join(
        f"{c}/{i}.png,{'Comédie' if c == 'a' else 'Drame'}\n".encode("latin-1") for c in "ab" for i in range(3)))
    (csv_dir / "bom.csv").write_bytes(b"\xef\xbb\xbfpath,label\n" + b"".join(
        f"{c}/{i}.png,{c}\n".encode() for c in "ab" for i in range(3)))
    return {"IMAGES_OK": root / "ok", "IMAGES_BAD": root / "bad", "CSV_LATIN1": csv_dir / "latin1.csv",
            "CSV_BOM": csv_dir / "bom.csv"}


def _assert_user_error(result: subprocess.CompletedProcess[str], code: int, says: tuple[str, ...]) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == code, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    for part in says:
        assert part in output, f"{part!r} not in: {output[-3000:]}"


@pytest.mark.parametrize("case", SUITE_CASES, ids=lambda c: c.id)
def test_a_bad_suite_is_refused_by_validate_with_what_to_fix(case, data, tmp_path):
    text = case.suite
    for name, path in data.items():
        text = text.replace(name, str(path))
    suite = write_suite(tmp_path / "suite.yaml", text)
    result = tunebench("validate", str(suite), "--plugin", TESTING_PLUGINS, timeout=300)
    _assert_user_error(result, case.code, tuple(s.replace("IMAGES_BAD", str(data["IMAGES_BAD"])) for s in case.says))


def test_validate_costs_memory_by_the_suites_size_not_its_seed_count(tmp_path):
    import resource

    suite = write_suite(tmp_path / "s.yaml", GOOD + "seeds: 100000000\n")
    code = (f"import resource, sys; resource.setrlimit(resource.RLIMIT_AS, ({2 * 2**30}, {2 * 2**30})); "
            f"from tunebench.cli import main; sys.exit(main(['validate', {str(suite)!r}]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    _assert_user_error(result, 2, ("at most 1000",))
    assert resource  # the limit above: 2 GB of address space is plenty for validating any seed count


def test_suite_files_in_other_encodings_are_read_or_refused_with_which(tmp_path):
    latin = tmp_path / "latin1.yaml"
    latin.write_bytes(("description: Comédie\n" + GOOD).encode("latin-1"))
    _assert_user_error(tunebench("validate", str(latin)), 2, ("not UTF-8", "save it as UTF-8"))
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(bytes(range(256)) * 4)
    _assert_user_error(tunebench("validate", str(binary)), 2, ("not a text file",))
    bom = tmp_path / "bom.yaml"
    bom.write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    ok = tunebench("validate", str(bom))
    assert ok.returncode == 0, ok.stderr


def test_a_csv_with_a_byte_order_mark_or_in_latin1_with_its_encoding_loads(data, tmp_path):
    for path, extra in ((data["CSV_BOM"], ""), (data["CSV_LATIN1"], ", encoding: latin-1")):
        suite = write_suite(tmp_path / "c.yaml", f"""
budget: 20s
datasets: [{{csv_manifest: {{path: "{path}", size: 8{extra}}}}}]
model_families: [mlp]
strategies: [random]
""")
        result = tunebench("validate", str(suite))
        assert result.returncode == 0, result.stderr


# -- the command line and its stores ----------------------------------------------------------------------

def _store_with_one_run(where: Path) -> Path:
    store = Store.open(where)
    common: dict[str, Any] = dict(suite="s", dataset="d", dataset_label="d", model_family="m", model_label="m",
                                  strategy="r", strategy_label="r", budget_s=10, dataset_options={},
                                  model_options={}, strategy_options={})
    run_id = store.create_run(search_key="k", seed=0, **common)
    store.finish_run(run_id, test_score=0.5, best_val=0.5)
    store.close()
    return where / "tunebench.db"


def test_results_pointing_at_a_file_says_so(tmp_path):
    afile = tmp_path / "results.txt"
    afile.write_text("not a folder")
    suite = write_suite(tmp_path / "s.yaml", GOOD)
    for args in (["run", str(suite)], ["leaderboard"], ["runs"]):
        _assert_user_error(tunebench(*args, "--results", str(afile)), 2, ("is a file", "--results"))
    assert afile.read_text() == "not a folder"


def test_report_out_pointing_at_a_folder_or_an_unwritable_path_says_so(tmp_path):
    _store_with_one_run(tmp_path / "r")
    _assert_user_error(tunebench("report", "--results", str(tmp_path / "r"), "--out", str(tmp_path)), 2,
                       ("is a folder", "--out"))
    _assert_user_error(tunebench("report", "--results", str(tmp_path / "r"), "--out", "/proc/no/report.html"), 2,
                       ("cannot write the report", "/proc/no/report.html"))


@pytest.mark.parametrize("url, says", [
    ("notaurl://", ("not a database URL", "--store")),
    ("nonsense", ("not a database URL",)),
    ("postgresql+pg8000://u@127.0.0.1:1/x", ("pg8000", "pip install")),
])
def test_bad_store_urls_say_what_to_fix(url, says, tmp_path):
    code = 1 if any("pip install" in s for s in says) else 2
    _assert_user_error(tunebench("leaderboard", "--store", url), code, says)
    _assert_user_error(tunebench("run", str(write_suite(tmp_path / "s.yaml", GOOD)), "--store", url), code, says)


def test_a_read_only_command_on_a_missing_sqlite_store_creates_nothing(tmp_path):
    target = tmp_path / "nope" / "x.db"
    _assert_user_error(tunebench("leaderboard", "--store", f"sqlite:///{target}"), 1, ("no results store", str(target)))
    assert not (tmp_path / "nope").exists()


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_corrupt_or_truncated_store_is_reported_with_its_path_and_what_to_do(tmp_path, damage):
    db = _store_with_one_run(tmp_path / "r")
    raw = db.read_bytes()
    db.write_bytes(os.urandom(4096) if damage == "garbage" else raw[: len(raw) // 3])
    for command in ("leaderboard", "runs", "report"):
        result = tunebench(command, "--results", str(tmp_path / "r"))
        _assert_user_error(result, 1, (str(db), "corrupt"))


def test_read_only_commands_work_on_a_read_only_results_folder():
    """Run as an unprivileged user for whom the folder is read-only (root can write anywhere)."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root to drop to the `nobody` user")
    base = Path(tempfile.mkdtemp(prefix="tunebench-ro-"))
    try:
        os.chmod(base, 0o755)
        _store_with_one_run(base / "r")
        for path in (base / "r", *(base / "r").iterdir()):
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        before = sorted(p.name for p in (base / "r").iterdir())
        for command in (["leaderboard"], ["runs"], ["trials"], ["leaderboard", "--format", "md"]):
            result = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                                     sys.executable, "-m", "tunebench.cli", *command, "--results", str(base / "r")],
                                    capture_output=True, text=True, timeout=120, cwd="/",
                                    env=dict(os.environ, HOME="/tmp"))
            assert result.returncode == 0, result.stderr[-2000:]
            assert "Traceback" not in result.stderr
        assert sorted(p.name for p in (base / "r").iterdir()) == before  # nothing created or changed
        assert stat.S_IMODE((base / "r").stat().st_mode) == 0o755
    finally:
        shutil.rmtree(base, ignore_errors=True)


PLUGIN_FAULTS = {
    "raises_at_import": "raise RuntimeError('this plugin is broken')\n",
    "syntax_error": "def oops(:\n",
    "hook_raises": ("from tunebench import hookimpl\n\n@hookimpl\n"
                    "def tunebench_register_datasets(registry):\n    raise KeyError('dataset table')\n"),
    "misspelt_hook": ("from tunebench import hookimpl\n\n@hookimpl\n"
                      "def tunebench_register_dataset(registry):\n    pass\n"),
}


@pytest.mark.parametrize("fault", sorted(PLUGIN_FAULTS))
def test_a_plugin_module_that_fails_names_itself_and_exits_2(fault, tmp_path):
    module = f"bad_plugin_{fault}"
    (tmp_path / f"{module}.py").write_text(PLUGIN_FAULTS[fault])
    suite = write_suite(tmp_path / "s.yaml", GOOD)
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    for args in (["validate", str(suite)], ["plugins"], ["run", str(suite), "--results", str(tmp_path / "r")]):
        result = tunebench(*args, "--plugin", module, env=env)
        _assert_user_error(result, 2, (module,))
    assert not (tmp_path / "r").exists()


# -- faults in a running suite ------------------------------------------------------------------------------

def _rows(results: Path) -> tuple[list[dict], list[dict]]:
    store = Store.open(results)
    try:
        return store.runs(), store.trials()
    finally:
        store.close()


@pytest.mark.slow
def test_an_out_of_memory_trial_is_recorded_and_the_next_one_runs(tmp_path):
    """A dense layer of 50,000,000 units (12.8 GB of weights) under a 3 GB memory guard: the trial is
    recorded failed/oom, the machine is never at risk, and the search goes on."""
    suite = write_suite(tmp_path / "oom.yaml", """
budget: 120s
max_epochs: 1
first_trial: none
resources: {memory: 3GB}
datasets: [digits]
model_families: [{mlp: {params: {layers: 1}}}]
strategies: [{grid: {grid: {units: [50000000, 32]}}}]
""")
    result = tunebench("run", str(suite), "--results", str(tmp_path / "r"), timeout=600)
    assert "Traceback" not in result.stderr
    runs, trials = _rows(tmp_path / "r")
    assert [(t["status"], t["error_kind"]) for t in trials] == [("failed", "oom"), ("ok", None)], [
        (t["status"], t["error_kind"], t["error"]) for t in trials]
    assert trials[0]["params"]["units"] == 50_000_000
    assert runs[0]["status"] == "ok" and runs[0]["hardware"]["memory_limit_bytes"] == 3 * 10**9


WEIGHTS_DISK_FULL = '''
"""Fault injection: the disk fills up after the first trial: writing any later trial's weights
fails with ENOSPC, half-way (a partial file is written first)."""
import errno

from tunebench import training

_save = training.save_weights


def save_on_a_full_disk(model, path):
    if not path.name.startswith("0-"):
        tmp = path.with_name(".partial.tmp.weights.h5")
        tmp.write_bytes(b"half a file")
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    _save(model, path)


training.save_weights = save_on_a_full_disk
'''


@pytest.mark.slow
def test_a_full_disk_while_writing_weights_fails_that_trial_and_the_search_goes_on(tmp_path, monkeypatch):
    (tmp_path / "weights_disk_full.py").write_text(WEIGHTS_DISK_FULL)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    suite = write_suite(tmp_path / "disk.yaml", """
budget: 60s
max_epochs: 1
first_trial: none
datasets: [{digits: {limit: 600}}]
model_families: [{scripted: {script: [weak, ok, ok]}}]
strategies: [{random: {max_trials: 3}}]
""")
    result = tunebench("run", str(suite), "--results", str(tmp_path / "r"), "--plugin", TESTING_PLUGINS,
                       "--plugin", "weights_disk_full", timeout=600)
    assert "Traceback" not in result.stderr
    runs, trials = _rows(tmp_path / "r")
    run = runs[0]
    assert [t["status"] for t in trials] == ["ok", "failed", "failed"]
    assert all(t["error_kind"] == "disk_full" and "No space left" in t["error"] for t in trials[1:])
    assert run["status"] == "ok" and run["best_trial"] == 0 and run["test_score"] is not None
    artifacts = Path(run["artifact_dir"])
    assert (artifacts / "best.weights.h5").is_file()
    assert sorted(p.name for p in artifacts.rglob("*.h5")) == ["best.weights.h5"]  # nothing partial left


STORE_DISK_FULL = '''
"""Fault injection: from the second trial on, no file of this process may grow past 4 kB, as on a
full disk: the store's own writes fail (SQLite: disk I/O error / database or disk is full)."""
import resource
import signal

from tunebench import context

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) rather than killing
_run_trial = context.TrialContext.run_trial


def run_trial(self, hp, **kwargs):
    if self.trials:
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
    return _run_trial(self, hp, **kwargs)


context.TrialContext.run_trial = run_trial
'''


@pytest.mark.slow
def test_a_store_that_cannot_be_written_leaves_a_closed_record(tmp_path, monkeypatch):
    """The search's process cannot write its record any more: it says why on its event pipe, and
    the runner (whose disk is fine here) closes the run and the trial in flight with that error."""
    (tmp_path / "store_disk_full.py").write_text(STORE_DISK_FULL)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    suite = write_suite(tmp_path / "disk.yaml", """
budget: 60s
max_epochs: 1
first_trial: none
datasets: [{digits: {limit: 600}}]
model_families: [{scripted: {script: [ok, ok]}}]
strategies: [{random: {max_trials: 2}}]
""")
    result = tunebench("run", str(suite), "--results", str(tmp_path / "r"), "--plugin", TESTING_PLUGINS,
                       "--plugin", "store_disk_full", timeout=600)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    runs, trials = _rows(tmp_path / "r")
    run = runs[0]
    assert run["status"] == "failed" and run["completed_at"] is not None
    assert "could not go on" in run["error"], run["error"]
    assert trials[0]["status"] == "ok"
    assert all(t["status"] != "running" for t in trials), [(t["number"], t["status"]) for t in trials]


@pytest.mark.slow  # kills the runner mid-suite: the slow tier
def test_rows_before_and_after_a_kill_of_the_runner_are_kept(tmp_path):
    """Faults keep the record: the kill -9 of the runner (tested in depth in test_runner.py) leaves the
    trial in flight `running`, and the next run marks it `interrupted` and runs the search again."""
    suite = write_suite(tmp_path / "s.yaml", """
budget: 15s
max_epochs: 1
first_trial: none
datasets: [{digits: {limit: 600}}]
model_families: [{scripted: {script: [ok, hang]}}]
strategies: [{random: {max_trials: 2}}]
""")
    runner = subprocess.Popen([sys.executable, "-m", "tunebench.cli", "run", str(suite), "--results",
                               str(tmp_path / "r"), "--plugin", TESTING_PLUGINS], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import time

    deadline = time.time() + 120
    while time.time() < deadline:
        if (tmp_path / "r" / "tunebench.db").exists():
            try:
                conn = sqlite3.connect(tmp_path / "r" / "tunebench.db", timeout=5)
                rows = list(conn.execute("select status, params from trials order by number"))
                conn.close()
            except sqlite3.Error:
                rows = []
            # the hanging trial is on record with its parameters before the kill
            if [r[0] for r in rows[:2]] == ["ok", "running"] and rows[1][1] not in (None, "null", "{}"):
                break
        time.sleep(0.2)
    runner.kill()
    runner.wait()
    runs, before = _rows(tmp_path / "r")
    assert [t["status"] for t in before] == ["ok", "running"] and before[1]["params"]
    again = tunebench("run", str(suite), "--results", str(tmp_path / "r"), "--plugin", TESTING_PLUGINS)
    assert "Traceback" not in again.stderr
    runs, after = _rows(tmp_path / "r")
    first = [t for t in after if t["run_id"] == runs[0]["id"]]
    assert [t["status"] for t in first] == ["ok", "interrupted"] and first[0] == before[0]
    assert runs[0]["status"] == "interrupted" and runs[-1]["status"] in ("ok", "failed")
    assert json.dumps(first[1]["params"]) == json.dumps(before[1]["params"])
