from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, tunebench


@pytest.mark.parametrize("args", [["--help"], ["plugins"], ["plugins", "--format", "json"]])
def test_help_and_plugins_never_import_keras_or_tensorflow(args):
    code = ("import atexit, sys\n"
            "def report():\n"
            "    heavy = [m for m in sys.modules\n"
            "             if m.split('.')[0] in ('keras', 'tensorflow', 'torch', 'jax', 'optuna')]\n"
            "    print('HEAVY', heavy, file=sys.stderr)\n"
            "atexit.register(report)\n"
            "from tunebench.cli import main\n"
            f"sys.exit(main({args!r}))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert "HEAVY []" in result.stderr, result.stderr[-500:]


def test_plugins_json_lists_every_builtin_with_its_package():
    rows = json.loads(tunebench("plugins", "--format", "json").stdout)
    names = {(r["kind"], r["name"]) for r in rows}
    assert {("dataset", "digits"), ("model family", "mlp"), ("model family", "scratch_cnn"),
            ("search strategy", "random"), ("search strategy", "optuna_tpe")} <= names
    assert all(r["package"] and r["summary"] for r in rows)


def test_reading_a_results_dir_without_a_store_says_what_to_do(tmp_path):
    for command in ("leaderboard", "runs", "trials"):
        result = tunebench(command, "--results", str(tmp_path / "empty"))
        assert result.returncode == 1
        assert "no results store" in result.stderr and "tunebench run SUITE" in result.stderr
        assert "Traceback" not in result.stderr


def test_no_command_prints_help_and_exits_2():
    result = tunebench()
    assert result.returncode == 2 and "usage: tunebench" in result.stdout


def test_unknown_plugin_module_is_a_clear_error(tmp_path):
    result = tunebench("plugins", "--plugin", "not_a_module_anywhere")
    assert result.returncode == 2 and "not_a_module_anywhere" in result.stderr and "Traceback" not in result.stderr


def test_validate_that_loads_keras_keeps_tensorflow_start_up_lines_off_the_terminal(tmp_path):
    """Pinned params are checked against the family's space, which imports Keras: TensorFlow's
    oneDNN, cpu-feature and absl lines must not reach the terminal."""
    suite = tmp_path / "pins.yaml"
    suite.write_text("budget: 30s\ndatasets: [digits]\nmodel_families: [{scratch_cnn: {params: {dropout: 0.3}}}]\n"
                     "strategies: [random]\n")
    env = {k: v for k, v in __import__("os").environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-m", "tunebench.cli", "validate", str(suite)], capture_output=True,
                            text=True, cwd=ROOT, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "is valid" in result.stdout
    for noise in ("oneDNN", "cpu_feature_guard", "absl", "WARNING: All log messages", "E0000", "I0000"):
        assert noise not in result.stderr + result.stdout, noise
