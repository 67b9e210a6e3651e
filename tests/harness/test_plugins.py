from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import ROOT, tunebench, write_suite
from tunebench import ArrayData, Dataset, DataSpec, ModelFamily, hookimpl, hookspecs
from tunebench.errors import PluginError, UnknownPluginError
from tunebench.registry import load_plugins

BUILTINS = {"dataset": {"digits"}, "model family": {"mlp", "scratch_cnn"},
            "search strategy": {"random", "optuna_tpe"}, "table": {"replay", "nas_bench_201", "lcbench", "hpobench"}}


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
            assert info.cls.__module__.startswith("tunebench_plugins.")
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
    assert "Change the `name` attribute" in message


def test_an_implementation_of_an_unknown_hook_is_refused_with_the_closest_real_hook():
    bad = plugin(tunebench_register_dataset=lambda registry: None)  # missing "s"
    with pytest.raises(PluginError, match="tunebench_register_dataset") as err:
        load_plugins([bad])
    assert "did you mean 'tunebench_register_datasets'?" in str(err.value)


def test_registering_something_that_is_not_a_plugin_class_is_refused():
    with pytest.raises(PluginError, match="not a subclass of tunebench.Dataset"):
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


def test_a_plugin_module_that_raises_or_does_not_parse_is_named_with_what_went_wrong(tmp_path, monkeypatch):
    (tmp_path / "raising_plugin.py").write_text("raise RuntimeError('boom at import')\n")
    (tmp_path / "garbled_plugin.py").write_text("def broken(:\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError, match="'raising_plugin' could not be imported: RuntimeError: boom at import"):
        load_plugins(["raising_plugin"])
    with pytest.raises(PluginError, match=r"'garbled_plugin'.*SyntaxError.*line 1"):
        load_plugins(["garbled_plugin"])


def test_a_register_hook_that_raises_names_its_plugin():
    def explode(registry):
        raise ValueError("no classes today")

    with pytest.raises(PluginError, match="register hook raised ValueError: no classes today"):
        load_plugins([plugin(tunebench_register_datasets=explode)])


@pytest.fixture
def broken_package(tmp_path) -> Path:
    """An installed distribution (dist-info on the path) whose tunebench plugin fails to import."""
    site = tmp_path / "site"
    info = site / "brokenpkg-1.2.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenpkg\nVersion: 1.2\n")
    (info / "entry_points.txt").write_text("[tunebench]\nshiny = brokenpkg_plugin\n")
    (site / "brokenpkg_plugin.py").write_text("import a_module_nobody_installed\n")
    return site


def test_a_broken_third_party_plugin_is_reported_by_package_and_other_commands_keep_working(broken_package,
                                                                                            tmp_path):
    env = _env(broken_package)
    listed = tunebench("plugins", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "plugin 'shiny' from package brokenpkg 1.2 is not loaded" in listed.stderr
    assert "a_module_nobody_installed" in listed.stderr and "TUNEBENCH_DISABLE_PLUGINS=shiny" in listed.stderr
    assert "brokenpkg" in listed.stdout and "mlp" in listed.stdout
    suite = write_suite(tmp_path / "s.yaml", "budget: 5s\ndatasets: [digits]\nmodel_families: [mlp]\n"
                                              "strategies: [shiny_search]\n")
    refused = tunebench("validate", str(suite), env=env)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "Plugin 'shiny' from package brokenpkg could not be loaded and may provide it" in refused.stderr
    good = write_suite(tmp_path / "g.yaml", "budget: 5s\ndatasets: [digits]\nmodel_families: [mlp]\n"
                                            "strategies: [random]\n")
    assert tunebench("validate", str(good), env=env).returncode == 0
    blocked = tunebench("validate", str(good), "--disable-plugin", "brokenpkg", env=env)
    assert blocked.returncode == 0 and "brokenpkg" not in blocked.stderr
    quiet = tunebench("plugins", env=dict(env, TUNEBENCH_BUILTIN_PLUGINS_ONLY="1"))
    assert quiet.returncode == 0 and "brokenpkg" not in quiet.stdout + quiet.stderr


def test_plugins_show_prints_options_and_a_model_familys_search_space():
    shown = tunebench("plugins", "show", "scratch_cnn", "--format", "json", "--input-shape", "8x8x1")
    assert shown.returncode == 0, shown.stderr
    entry = json.loads(shown.stdout)["model family"]
    assert {o["option"] for o in entry["options"]} >= {"params", "augmentation"}
    space = {p["hyperparameter"]: p for p in entry["search_space"]["params"]}
    assert space["blocks"]["range"] == "int in [1, 2]"  # two blocks at most on 8x8 images
    assert space["learning_rate"]["default"] == 0.001
    text = tunebench("plugins", "show", "random")
    assert text.returncode == 0 and "max_trials" in text.stdout
    missing = tunebench("plugins", "show", "scratch_cn")
    assert missing.returncode == 2 and "Did you mean 'scratch_cnn'?" in missing.stderr


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
    return {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
            "TUNEBENCH_BUILTIN_PLUGINS_ONLY": "0"}


def test_external_plugin_is_listed_with_its_package(example_plugin):
    result = tunebench("plugins", "--format", "json", env=_env(example_plugin))
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["tiny_dense"]["kind"] == "model family"
    assert rows["tiny_dense"]["package"] == "tunebench-example-plugin 0.1.0"
    assert rows["mlp"]["package"].startswith("tunebench ")


def test_external_plugin_runs_in_a_suite_and_reaches_the_leaderboard(example_plugin, tmp_path):
    suite = write_suite(tmp_path / "ext.yaml", """
budget: 60s
max_epochs: 2
datasets: [digits]
model_families: [tiny_dense]
strategies: [{random: {max_trials: 1}}]
""")
    results = tmp_path / "results"
    result = tunebench("run", str(suite), "--results", str(results), env=_env(example_plugin))
    assert result.returncode == 0, result.stdout + result.stderr
    board = tunebench("leaderboard", "--results", str(results), "--format", "json", env=_env(example_plugin))
    rows = [r for r in json.loads(board.stdout) if r["kind"] == "search"]
    assert [(r["model_family"], r["strategy"], r["runs_ok"]) for r in rows] == [("tiny_dense", "random", 1)]
    assert rows[0]["trials_ok"] >= 1 and 0 < rows[0]["test_mean"] <= 1
