from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness import ArrayData, Dataset, DataSpec, ModelFamily, hookimpl, hookspecs
from harness.errors import PluginError, UnknownPluginError
from harness.plugins import load_plugins
from tests.conftest import ROOT, tunebench, write_suite

BUILTINS = {"dataset": {"digits"}, "model family": {"mlp", "scratch_cnn"},
            "search strategy": {"random", "optuna_tpe"}}


class Tiny(Dataset):
    """A two-image dataset."""

    name = "tiny"

    @property
    def spec(self):
        return DataSpec((8, 8, 1), ("a", "b"))

    def load(self):
        import numpy as np

        return ArrayData(np.zeros((2, 8, 8, 1), np.uint8), np.array([0, 1]))


def plugin(**hooks):
    """An inline plugin object with the given hook implementations."""
    return SimpleNamespace(**{name: hookimpl(fn) for name, fn in hooks.items()})


def test_builtins_are_discovered_through_entry_points_with_their_package():
    catalog = load_plugins()
    for info in catalog.all():
        if info.name in BUILTINS[info.kind]:
            assert info.package == "tunebench"
            assert info.cls.__module__.startswith("plugins.")
    names = {kind: {i.name for i in catalog.all() if i.kind == kind} for kind in BUILTINS}
    for kind, expected in BUILTINS.items():
        assert expected <= names[kind]


def test_inline_plugin_registers_a_dataset():
    catalog = load_plugins([plugin(tunebench_register_datasets=lambda registry: registry.add(Tiny))])
    info = catalog.datasets.info("tiny")
    assert info.cls is Tiny and info.package == "local"
    assert info.summary == "A two-image dataset."


def test_two_plugins_registering_the_same_name_is_an_error_naming_both():
    class FakeDigits(Tiny):
        name = "digits"

    with pytest.raises(PluginError) as err:
        load_plugins([plugin(tunebench_register_datasets=lambda registry: registry.add(FakeDigits))])
    message = str(err.value)
    assert "'digits'" in message and "tunebench" in message and "FakeDigits" in message and "Digits" in message


def test_an_implementation_of_an_unknown_hook_is_refused():
    bad = plugin(tunebench_register_dataset=lambda registry: None)  # missing "s"
    with pytest.raises(PluginError, match="tunebench_register_dataset") as err:
        load_plugins([bad])
    assert "tunebench_register_datasets" in str(err.value)  # the message lists the real hooks


def test_registering_something_that_is_not_a_plugin_class_is_refused():
    with pytest.raises(PluginError, match="not a subclass of harness.Dataset"):
        load_plugins([plugin(tunebench_register_datasets=lambda registry: registry.add(object))])

    class Abstract(ModelFamily):
        name = "abstract"

    with pytest.raises(PluginError, match="does not implement: build"):
        load_plugins([plugin(tunebench_register_model_families=lambda registry: registry.add(Abstract))])


def test_unknown_name_suggests_the_closest():
    catalog = load_plugins()
    with pytest.raises(UnknownPluginError, match="Did you mean 'digits'"):
        catalog.datasets.get("digit")


def test_plugin_module_that_fails_to_import_names_itself():
    with pytest.raises(PluginError, match="no_such_plugin_module"):
        load_plugins(["no_such_plugin_module"])


def test_every_hook_is_documented():
    hooks = [n for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("tunebench_")]
    assert {"tunebench_register_datasets", "tunebench_register_model_families",
            "tunebench_register_search_strategies"} <= set(hooks)
    readme = (ROOT / "README.md").read_text()
    architecture = (ROOT / "docs" / "architecture.md").read_text()
    for name in hooks:
        doc = getattr(hookspecs, name).__doc__ or ""
        assert "Args:" in doc and "registry" in doc, name
        assert name in readme or name in architecture, f"{name} is not in the docs"


# -- a real third-party package -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def example_plugin(tmp_path_factory) -> Path:
    """The README's example plugin, really installed (into its own folder, via pip)."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(ROOT / "examples" / "tunebench-example-plugin")],
                   check=True, capture_output=True, timeout=300)
    return target


def _env(site: Path) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}


def test_external_plugin_is_listed_with_its_package(example_plugin):
    result = tunebench("plugins", "--format", "json", env=_env(example_plugin))
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["tiny_dense"]["kind"] == "model family"
    assert rows["tiny_dense"]["package"] == "tunebench-example-plugin 0.1.0"
    assert rows["mlp"]["package"].startswith("tunebench ")


def test_external_plugin_runs_in_a_suite_and_reaches_the_leaderboard(example_plugin, tmp_path):
    suite = write_suite(tmp_path / "ext.yaml", """
budget: 4s
max_epochs: 2
datasets: [digits]
model_families: [tiny_dense]
strategies: [random]
""")
    results = tmp_path / "results"
    result = tunebench("run", str(suite), "--results", str(results), env=_env(example_plugin))
    assert result.returncode == 0, result.stdout + result.stderr
    board = tunebench("leaderboard", "--results", str(results), "--format", "json", env=_env(example_plugin))
    rows = [r for r in json.loads(board.stdout) if r["model_family"] != "baseline"]
    assert [(r["model_family"], r["strategy"], r["runs_ok"]) for r in rows] == [("tiny_dense", "random", 1)]
    assert rows[0]["trials_ok"] >= 1 and 0 < rows[0]["test_mean"] <= 1
