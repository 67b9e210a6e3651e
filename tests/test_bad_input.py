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
    # -- round three: what was added since (issue: bad input and faults, round three) ----------------
    Case("first_trial_null", GOOD + "first_trial: null\n", ("'first_trial' is set to nothing",)),
    Case("min_trials_null", GOOD + "min_trials:\n", ("'min_trials' is set to nothing",)),
    Case("min_trials_the_budget_cannot_hold", GOOD + "min_trials: 109\n",
         ("'min_trials'", "109", "less than a trial needs", "at most 20")),
    Case("resources_memory_below_the_floor", GOOD + "resources: {memory: 200MB}\n",
         ("200MB", "less than a search's process needs", "1GiB")),
    Case("asha_min_epochs_over_max_epochs", GOOD.replace("strategies: [{random: {max_trials: 1}}]",
                                                         "strategies: [{asha: {min_epochs: 5, max_epochs: 3}}]"),
         ("min_epochs (5) is more than max_epochs (3)",)),
    Case("asha_min_epochs_over_the_suites_max_epochs",
         GOOD.replace("strategies: [{random: {max_trials: 1}}]", "strategies: [{asha: {min_epochs: 3}}]"),
         ("min_epochs (3) is more than the suite's max_epochs (1)",)),
    Case("csv_one_hot_yes_no", _suite("""
        budget: 20s
        datasets: [{csv_manifest: {path: "CSV_YESNO", size: 8, label_columns: [comedy, drama]}}]
        model_families: [mlp]
        strategies: [random]
        """), ("holds 'yes'", "label_values: [positive, negative]")),
    Case("csv_one_hot_true_false", _suite("""
        budget: 20s
        datasets: [{csv_manifest: {path: "CSV_TRUEFALSE", size: 8, label_columns: [comedy, drama]}}]
        model_families: [mlp]
        strategies: [random]
        """), ("holds 'true'", "label_values")),
    Case("csv_one_hot_minus_one_and_nan", _suite("""
        budget: 20s
        datasets: [{csv_manifest: {path: "CSV_MINUSONE", size: 8, label_columns: [comedy, drama]}}]
        model_families: [mlp]
        strategies: [random]
        """), ("holds '-1'", "1 or 0")),
    Case("csv_one_hot_every_row_every_label", _suite("""
        budget: 20s
        datasets: [{csv_manifest: {path: "CSV_ALLONES", size: 8, label_columns: [comedy, drama]}}]
        model_families: [mlp]
        strategies: [random]
        """), ("every one of the 6 rows has every label",)),
    Case("csv_label_values_not_a_pair", _suite("""
        budget: 20s
        datasets: [{csv_manifest: {path: "CSV_YESNO", size: 8, label_columns: [comedy], label_values: [yes]}}]
        model_families: [mlp]
        strategies: [random]
        """), ("label_values must be two different values",)),
    Case("csv_path_is_a_folder", _suite("""
        budget: 20s
        datasets: [{csv_manifest: {path: "IMAGES_OK", size: 8}}]
        model_families: [mlp]
        strategies: [random]
        """), ("is a folder, not a CSV file",)),
    Case("every_bad_pin_reported", GOOD.replace(
        "model_families: [mlp]", "model_families: [{mlp: {params: {units: many, activation: swish, unitz: 3}}}]"),
         ("'units' must be a number", "swish", "unitz")),
    Case("conditional_pin_names_its_parent", _suite("""
        budget: 20s
        datasets: [{synthetic: {size: 32}}]
        model_families: [{scratch_cnn: {params: {filters_3: 64}}}]
        strategies: [random]
        """), ("'filters_3' is declared only when blocks = 4", "pin that too")),
    Case("space_restriction_misspelt",
         GOOD.replace("model_families: [mlp]", "model_families: [{mlp: {space: {unitz: [8, 16]}}}]"),
         ("restricted (space) hyperparameter 'unitz'", "did you mean 'units'")),
    Case("space_restriction_of_the_wrong_kind",
         GOOD.replace("model_families: [mlp]", "model_families: [{mlp: {space: {layers: [1.5, 2]}}}]"),
         ("layers", "not a value of its kind")),
    Case("space_restriction_empty",
         GOOD.replace("model_families: [mlp]", "model_families: [{mlp: {space: {units: []}}}]"),
         ("space: 'units' must list at least one value",)),
    Case("protocol_unknown", GOOD + "protocol: thorough\n", ("'protocol' must be one of benchmark",)),
    Case("budget_rule_for_datasets", GOOD.replace("budget: 20s", "budget: rule"),
         ("'budget: rule'", "tables only")),
    Case("sampler_time_unknown", GOOD + "sampler_time: sometimes\n", ("'sampler_time' must be charged or apart",)),
    Case("record_test_not_a_bool", GOOD + "record_test: maybe\n", ("'record_test' must be true or false",)),
    Case("strategy_seeds_out_of_range", GOOD.replace("{max_trials: 1}", "{max_trials: 1, seeds: [-2]}"),
         ("random", "'seeds'")),
    Case("table_task_unknown", _suite("""
        budget: rule
        tables: [{nas_bench_201: {tasks: [cifar11]}}]
        strategies: [random]
        """), ("cifar11", "not a task of this table", "cifar10")),
    Case("table_replay_without_a_table", _suite("""
        budget: 1h
        tables: [{replay: {path: "IMAGES_OK"}}]
        strategies: [random]
        """), ("no table at", "export-table")),
    Case("table_with_a_strategy_of_its_own_family", _suite("""
        budget: 1h
        tables: [scripted_table]
        strategies: [autokeras]
        """), ("cannot run on a table",)),
    Case("table_and_no_strategy", _suite("""
        budget: 1h
        tables: [scripted_table]
        """), ("'strategies' is required",)),
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
    one_hot = {"yesno": ("yes", "no"), "truefalse": ("true", "false"), "minusone": ("-1", "nan"),
               "allones": ("1", "1")}
    for name, (on, off) in one_hot.items():
        (csv_dir / f"{name}.csv").write_text("path,comedy,drama\n" + "".join(
            f"{c}/{i}.png,{on if c == 'a' else off},{off if c == 'a' else on}\n" for c in "ab" for i in range(3)))
    return {"IMAGES_OK": root / "ok", "IMAGES_BAD": root / "bad", "CSV_LATIN1": csv_dir / "latin1.csv",
            "CSV_BOM": csv_dir / "bom.csv", **{f"CSV_{n.upper()}": csv_dir / f"{n}.csv" for n in one_hot}}


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


# -- round three: the command line, its arguments and environment ----------------------------------------

ARGUMENT_CASES = [
    (["run", "SUITE", "--workers", "0"], ("--workers must be at least 1",)),
    (["run", "SUITE", "--trials-per-gpu", "0"], ("--trials-per-gpu must be at least 1",)),
    (["run", "SUITE", "--data-dir", "/no/such/folder"], ("--data-dir /no/such/folder is not a folder",)),
    (["validate", "SUITE", "--plugin", "tunebench.testing.scripted", "--disable-plugin", "tunebench.testing.scripted"],
     ("--plugin and --disable-plugin both name",)),
    (["validate", "SUITE", "--disable-plugin", "digitz"], ("'digitz'", "did you mean 'digits'")),
    (["leaderboard", "--pareto", "--format", "latex"], ("--pareto prints the fronts",)),
    (["plugins", "show", "mlp", "--input-shape", "0x0x3"], ("--input-shape", "HxWxC")),
    (["plugins", "show", "mlp", "--classes", "0"], ("--classes must be at least 2",)),
    (["dashboard", "--port", "70000"], ("--port must be between 1 and 65535",)),
    (["run", "SUITE", "--strategy", "nothing_by_this_label"], ("leave no search to run",)),
]


@pytest.mark.parametrize("args, says", ARGUMENT_CASES, ids=lambda a: "_".join(map(str, a))[:60])
def test_bad_arguments_exit_2_with_what_to_fix(args, says, tmp_path):
    suite = write_suite(tmp_path / "s.yaml", GOOD)
    _store_with_one_run(tmp_path / "r")
    args = [str(suite) if a == "SUITE" else a for a in args]
    extra = ["--results", str(tmp_path / "r")] if args[0] in ("leaderboard", "dashboard") else []
    result = tunebench(*args, *extra)
    _assert_user_error(result, 2, says)


def test_a_run_whose_filters_select_nothing_creates_no_store(tmp_path):
    suite = write_suite(tmp_path / "s.yaml", GOOD)
    result = tunebench("run", str(suite), "--results", str(tmp_path / "r"), "--model-family", "nobody")
    _assert_user_error(result, 2, ("leave no search to run",))
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("value", ["1GB", "-5", "lots"])
def test_a_bad_environment_variable_is_refused_before_anything_runs(value, tmp_path):
    suite = write_suite(tmp_path / "s.yaml", GOOD)
    result = tunebench("run", str(suite), "--results", str(tmp_path / "r"),
                       env={"TUNEBENCH_WORKER_RECYCLE_MB": value})
    _assert_user_error(result, 2, ("TUNEBENCH_WORKER_RECYCLE_MB", "write it like TUNEBENCH_WORKER_RECYCLE_MB=1024"))
    assert not (tmp_path / "r").exists()


def test_a_misspelt_name_to_disable_in_the_environment_is_a_warning(tmp_path):
    result = tunebench("plugins", env={"TUNEBENCH_DISABLE_PLUGINS": "digitz"})
    assert result.returncode == 0 and "warning" in result.stderr and "'digitz'" in result.stderr
    assert "did you mean 'digits'" in result.stderr


def test_a_disabled_built_in_is_named_as_disabled_not_unknown(tmp_path):
    suite = write_suite(tmp_path / "s.yaml", GOOD)
    result = tunebench("validate", str(suite), "--disable-plugin", "digits")
    _assert_user_error(result, 2, ("unknown dataset 'digits'", "Disabled, and so not loaded: digits (tunebench)"))


def test_the_mysql_hint_names_the_package_that_brings_its_driver(tmp_path):
    result = tunebench("leaderboard", "--store", "mysql://u@127.0.0.1/x")
    _assert_user_error(result, 1, ("MySQLdb", "pip install mysqlclient"))


def test_a_plain_postgresql_url_gets_the_installed_driver():
    from tunebench.databases import database_url

    expected = "postgresql+psycopg2://u@h/db"
    import importlib.util

    if importlib.util.find_spec("psycopg") is not None:
        expected = "postgresql://u@h/db"
    assert database_url("postgresql://u@h/db") == expected
    assert database_url("postgres://u@h/db") == expected
    assert database_url("postgresql+pg8000://u@h/db") == "postgresql+pg8000://u@h/db"
    assert database_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"


def test_output_piped_into_head_ends_quietly(tmp_path):
    _store_with_one_run(tmp_path / "r")
    for command in ("trials", "runs", "leaderboard"):
        done = subprocess.run(f"{sys.executable} -m tunebench.cli {command} --results {tmp_path / 'r'} "
                              f"--format csv | head -c 1", shell=True, capture_output=True, text=True, timeout=120,
                              cwd=ROOT)
        assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr


def test_report_figures_to_an_unwritable_folder_says_the_report_was_written(tmp_path):
    _store_with_one_run(tmp_path / "r")
    result = tunebench("report", "--results", str(tmp_path / "r"), "--figures", "/proc/no/figures")
    _assert_user_error(result, 1, ("the report was written to", "figures could not be written", "/proc/no/figures"))
    assert (tmp_path / "r" / "report.html").is_file()


def test_the_dashboard_on_a_busy_port_or_an_unknown_host_says_so_before_listening(tmp_path):
    import socket

    _store_with_one_run(tmp_path / "r")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = tunebench("dashboard", "--results", str(tmp_path / "r"), "--port", str(port), timeout=60)
    _assert_user_error(result, 2, (f"cannot listen on 127.0.0.1:{port}", "--port"))
    assert "Listening" not in result.stderr
    result = tunebench("dashboard", "--results", str(tmp_path / "r"), "--host", "no-such-host.invalid", timeout=60)
    _assert_user_error(result, 2, ("no-such-host.invalid", "does not resolve"))


def test_leaderboard_strategies_on_a_store_of_failed_runs_prints_no_table_of_nan(tmp_path):
    store = Store.open(tmp_path / "r")
    common: dict[str, Any] = dict(suite="s", dataset="d", dataset_label="d", model_family="m", model_label="m",
                                  budget_s=10, dataset_options={}, model_options={}, strategy_options={})
    for strategy in ("random", "grid"):
        run_id = store.create_run(search_key=strategy, seed=0, strategy=strategy, strategy_label=strategy,
                                  started_at=1.0, **common)
        store.fail_run(run_id, "no trial finished with a validation score")
    store.close()
    result = tunebench("leaderboard", "--results", str(tmp_path / "r"), "--strategies")
    assert result.returncode == 0 and "nan" not in result.stdout.lower(), result.stdout


def test_a_pin_outside_what_the_family_searches_is_a_warning_not_an_error(tmp_path):
    suite = write_suite(tmp_path / "s.yaml", _suite("""
        budget: 20s
        datasets: [{synthetic: {size: 32}}]
        model_families: [{scratch_cnn: {params: {kernel_size: 4}}}]
        strategies: [random]
        """))
    result = tunebench("validate", str(suite))
    assert result.returncode == 0, result.stderr
    assert "warning" in result.stderr and "'kernel_size': 4 is not among what the family searches" in result.stderr


def test_a_multilabel_test_split_with_one_label_set_is_called_trivial():
    import numpy as np

    from tunebench.runner import TRIVIAL, _warning

    truth = np.ones((10, 3), dtype=int)
    predicted = np.ones((10, 3)) * 0.9
    from tunebench.training import collapse

    assert collapse(predicted > 0.5, truth)["trivial"] is True
    assert collapse(predicted > 0.5, np.eye(3, dtype=int)[np.arange(10) % 3])["trivial"] is False
    assert _warning({"test_metrics": {"trivial": True}}) == TRIVIAL


# -- round three: caches that heal themselves ------------------------------------------------------------

def _folder_suite(path: Path, data: dict[str, Path]) -> Path:
    return write_suite(path, _suite(f"""
        budget: 30s
        max_epochs: 1
        datasets: [{{image_folder: {{path: "{data['IMAGES_OK']}", size: 8}}}}]
        model_families: [scripted]
        strategies: [{{random: {{max_trials: 1}}}}]
        """))


def _entry(cache: Path, kind: str) -> Path:
    (entry,) = [p for p in (cache / kind).iterdir() if p.is_dir()]
    return entry


@pytest.mark.parametrize("damage", ["truncated", "garbage", "manifest"])
def test_a_damaged_decoded_image_cache_entry_is_reported_rebuilt_and_replaced(damage, data, tmp_path):
    from tunebench.images import load_images

    files = sorted(str(p) for p in data["IMAGES_OK"].rglob("*.png"))
    env = {"TUNEBENCH_CACHE": str(tmp_path / "cache")}
    os.environ.update(env)
    try:
        first = load_images(files, (8, 8))
        expected = first.x.copy()  # `first.x` maps the file about to be damaged
        entry = _entry(tmp_path / "cache", "images")
        x = entry / "x.npy"
        if damage == "truncated":
            x.write_bytes(x.read_bytes()[: x.stat().st_size // 2])
        elif damage == "garbage":
            x.write_bytes(os.urandom(x.stat().st_size))
        else:
            (entry / "entry.json").write_text("{not json")
        again = load_images(files, (8, 8))
        assert (again.x == expected).all()
        assert not again.from_cache  # decoded anew
        healed = load_images(files, (8, 8))
        assert healed.from_cache and (healed.x == expected).all()  # the entry was replaced, and is trusted again
    finally:
        for key in env:
            os.environ.pop(key, None)


def test_a_damaged_dataset_cache_entry_is_rebuilt_through_the_command_line(data, tmp_path):
    env = {"TUNEBENCH_CACHE": str(tmp_path / "cache"), "TUNEBENCH_LOAD_CACHE_MIN_S": "0"}
    # digits: an image folder's arrays are mapped from the decoded-image cache, never copied here
    suite = write_suite(tmp_path / "s.yaml", _suite("""
        budget: 30s
        max_epochs: 1
        datasets: [{digits: {limit: 400}}]
        model_families: [scripted]
        strategies: [{random: {max_trials: 1}}]
        """))
    first = tunebench("run", str(suite), "--results", str(tmp_path / "a"), "--plugin", TESTING_PLUGINS, env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    entry = _entry(tmp_path / "cache", "datasets")
    (entry / "notes.json").write_text("{broken")
    second = tunebench("run", str(suite), "--results", str(tmp_path / "b"), "--plugin", TESTING_PLUGINS, env=env)
    assert second.returncode == 0, second.stderr[-2000:]
    log = next((tmp_path / "b" / "runs").glob("*/log.txt")).read_text()
    assert "dataset cache entry" in log and "damaged" in log
    assert json.loads((_entry(tmp_path / "cache", "datasets") / "notes.json").read_text()) is not None


@pytest.mark.parametrize("cache", ["a_file", "unwritable"])
def test_a_cache_that_cannot_be_written_is_skipped_with_a_notice(cache, data, tmp_path):
    if cache == "unwritable" and os.geteuid() == 0:
        target = Path("/proc/tunebench-cache")  # not writable even by root
    elif cache == "unwritable":
        target = tmp_path / "ro"
        target.mkdir()
        target.chmod(0o500)
    else:
        target = tmp_path / "cache-file"
        target.write_text("not a folder")
    suite = _folder_suite(tmp_path / "s.yaml", data)
    result = tunebench("run", str(suite), "--results", str(tmp_path / "r"), "--plugin", TESTING_PLUGINS,
                       env={"TUNEBENCH_CACHE": str(target), "TUNEBENCH_LOAD_CACHE_MIN_S": "0"})
    assert result.returncode == 0, result.stderr[-2000:]
    log = next((tmp_path / "r" / "runs").glob("*/log.txt")).read_text()
    assert "cannot be written" in log


# -- round three: the quiet command line on every host -----------------------------------------------------

NOISY = '''
"""A model family whose build writes what TensorFlow 2.21 writes to file descriptor 2 on some hosts,
whatever TF_CPP_MIN_LOG_LEVEL says, and one real error line."""
import os

from tunebench import ModelFamily, hookimpl, output_layer, scaled_inputs


class Noisy(ModelFamily):
    """Writes start-up noise to stderr while it builds."""

    name = "noisy"

    def build(self, hp, spec):
        import keras

        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n")
        os.write(2, b"I0000 00:00:1764700000.123456   12345 port.cc:153] oneDNN custom operations are on.\\n")
        os.write(2, b"E0000 00:00:1764700000.5   12345 cuda_dnn.cc:8579] Unable to register cuDNN factory\\n")
        os.write(2, b"noisy: a real problem the user must see\\n")
        units = hp.Int("units", 4, 8, default=4)
        inputs, x = scaled_inputs(spec)
        x = keras.layers.Dense(units)(keras.layers.Flatten()(x))
        return keras.Model(inputs, output_layer(spec, x))


@hookimpl
def tunebench_register_model_families(registry):
    registry.add(Noisy)
'''


def test_framework_start_up_lines_never_reach_the_terminal_and_real_errors_do(tmp_path):
    """Whatever the host prints at framework start-up (the lines are written by the fake family here,
    as TensorFlow 2.21 writes them on an AMD EPYC host even with TF_CPP_MIN_LOG_LEVEL=3): the command
    line filters them from what its child processes print, and keeps any other line."""
    (tmp_path / "noisy_plugin.py").write_text(NOISY)
    suite = write_suite(tmp_path / "s.yaml", GOOD.replace("model_families: [mlp]",
                                                          "model_families: [{noisy: {params: {units: 5}}}]"))
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    for args in (["validate", str(suite)], ["plugins", "show", "noisy"]):
        result = tunebench(*args, "--plugin", "noisy_plugin", env=env)
        assert result.returncode == 0, result.stderr[-2000:]
        shown = result.stdout + result.stderr
        for noise in ("absl::InitializeLog", "oneDNN", "I0000", "Unable to register cuDNN factory"):
            assert noise not in shown, noise
        assert "noisy: a real problem the user must see" in result.stderr


# -- round three: a worker that dies while a search loads its data ---------------------------------------

CRASH_ONCE = '''
"""A dataset whose first load kills its own process (as the kernel would, or a kill from outside)."""
import os
import signal
from pathlib import Path

import numpy as np

from tunebench import ArrayData, Dataset, DataSpec, Option, hookimpl


class CrashOnce(Dataset):
    """Kills its process on its first load; loads on the next."""

    name = "crash_once"
    cacheable = False
    options_schema = {"marker": Option(str, None, "a file: present once the first load has crashed", required=True)}

    @property
    def spec(self):
        return DataSpec((8, 8, 1), ("a", "b"))

    def load(self):
        marker = Path(self.options["marker"])
        if not marker.exists():
            marker.write_text("crashed once")
            os.kill(os.getpid(), signal.SIGKILL)
        rng = np.random.default_rng(0)
        return ArrayData(rng.integers(0, 255, (120, 8, 8, 1), dtype=np.uint8), np.arange(120) % 2)


@hookimpl
def tunebench_register_datasets(registry):
    registry.add(CrashOnce)
'''


@pytest.mark.slow  # process-level faults (hangs, crashes, kill -9): the slow tier
def test_a_worker_that_dies_while_the_search_loads_its_data_runs_the_search_in_a_fresh_process(tmp_path):
    (tmp_path / "crash_plugin.py").write_text(CRASH_ONCE)
    marker = tmp_path / "marker"
    suite = write_suite(tmp_path / "s.yaml", _suite(f"""
        budget: 30s
        max_epochs: 1
        datasets: [{{crash_once: {{marker: "{marker}"}}}}]
        model_families: [scripted]
        strategies: [{{random: {{max_trials: 1}}}}]
        """))
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    result = tunebench("run", str(suite), "--results", str(tmp_path / "r"), "--plugin", "crash_plugin",
                       "--plugin", TESTING_PLUGINS, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert marker.exists()  # the first load did crash
    runs = Store.open(tmp_path / "r", readonly=True).runs()
    assert len(runs) == 1 and runs[0]["status"] == "ok" and runs[0]["test_score"] is not None
