"""The documentation stays true: the plugin guide's examples run as written, every hook is in the
README with its signature, and every public name has a docstring."""

from __future__ import annotations

import inspect
import json
import os
import re
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, tunebench, write_suite
from tunebench.testing.conformance import DatasetConformance, ModelFamilyConformance, StrategyConformance

GUIDE = ROOT / "docs" / "plugins.md"


def _example_modules() -> dict[str, str]:
    """The guide's code blocks that are plugin modules (they implement a hook), by module name."""
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.S)
    return {f"guide_example_{i}": code for i, code in enumerate(b for b in blocks if "@hookimpl" in b)}


# The examples become real modules on sys.path at collection time, so the conformance classes below
# can name them as plugins, exactly as a plugin author's test module would.
EXAMPLES = Path(tempfile.mkdtemp(prefix="tunebench-guide-"))
for _name, _code in _example_modules().items():
    (EXAMPLES / f"{_name}.py").write_text(_code)
sys.path.insert(0, str(EXAMPLES))
GUIDE_PLUGINS = tuple(sorted(_example_modules()))


def _shapes_zip(path: Path, per_class: int = 16) -> Path:
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as archive:
        for c, name in enumerate(("circle", "square", "triangle")):
            for i in range(per_class):
                image = np.full((24, 24, 3), 40 * c, np.uint8) + rng.integers(0, 60, (24, 24, 3), dtype=np.uint8)
                buffer = io.BytesIO()
                Image.fromarray(image).save(buffer, format="PNG")
                archive.writestr(f"{name}/{i:04d}.png", buffer.getvalue())
    return path


def test_the_guide_has_one_example_of_each_kind():
    code = "\n".join(_example_modules().values())
    for hook in ("tunebench_register_datasets", "tunebench_register_model_families",
                 "tunebench_register_search_strategies"):
        assert f"def {hook}(" in code


class TestGuideDataset(DatasetConformance):
    dataset = "zip_folder"
    plugins = GUIDE_PLUGINS

    def make_options(self, tmp_path: Any) -> dict[str, Any]:
        return {"path": str(_shapes_zip(tmp_path / "shapes.zip")), "size": 16}


class TestGuideModelFamily(ModelFamilyConformance):
    family = "residual_cnn"
    plugins = GUIDE_PLUGINS
    random_configurations = 1


class TestGuideStrategy(StrategyConformance):
    strategy = "hill_climb"
    options = {"n_startup_trials": 1}
    plugins = GUIDE_PLUGINS


def test_the_guide_examples_run_together_in_a_suite(tmp_path):
    archive = _shapes_zip(tmp_path / "shapes.zip")
    suite = write_suite(tmp_path / "guide.yaml", f"""
budget: 25s
max_epochs: 2
datasets:
  - zip_folder: {{path: "{archive}", size: 16}}
model_families: [residual_cnn]
strategies:
  - hill_climb: {{n_startup_trials: 1, max_trials: 3}}
""")
    env = {"PYTHONPATH": os.pathsep.join([str(EXAMPLES), os.environ.get("PYTHONPATH", "")]),
           "TUNEBENCH_CACHE": str(tmp_path / "cache")}
    args = [a for m in GUIDE_PLUGINS for a in ("--plugin", m)]
    result = tunebench("run", str(suite), "--results", str(tmp_path / "r"), *args, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = json.loads(tunebench("trials", "--results", str(tmp_path / "r"), "--format", "json").stdout)
    assert len(trials) >= 2 and trials[0]["status"] in ("ok", "timeout")
    assert (tmp_path / "cache" / "zip_folder").is_dir()  # the dataset cached its decoded arrays


# -- the reference documentation ------------------------------------------------------------------------

def _signature(fn: Any) -> str:
    return f"{fn.__name__}{inspect.signature(fn)}".replace("'", "")


def test_every_hook_is_in_the_readme_with_its_signature():
    from tunebench import hookspecs

    hooks = [f for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("tunebench_")]
    assert len(hooks) >= 3
    readme = (ROOT / "README.md").read_text()
    for fn in hooks:
        assert _signature(fn) in readme, f"README.md does not document {_signature(fn)}"
        assert "Args:" in (fn.__doc__ or ""), fn.__name__


def test_every_public_name_has_a_docstring():
    import tunebench

    builtin_docs = {inspect.getdoc(t) for t in (dict, list, tuple, str, int, float, object)}
    for name in tunebench.__all__:
        obj = getattr(tunebench, name)
        doc = inspect.getdoc(obj)
        assert doc and doc not in builtin_docs, f"tunebench.{name} has no docstring of its own"


@pytest.mark.parametrize("page", ["README.md", "docs/architecture.md", "docs/plugins.md", "CONTRIBUTING.md"])
def test_docs_name_modules_that_exist(page):
    """Every `tunebench.x.y` the docs name is a module or an attribute that exists."""
    import importlib

    text = (ROOT / page).read_text()
    for dotted in sorted(set(re.findall(r"`(tunebench(?:\.[a-z_]+)+)", text))):
        parts = dotted.split(".")
        if parts[-1] in ("db", "yaml", "md", "toml", "json", "csv", "html", "txt"):
            continue  # a file name (tunebench.db), not a module
        for cut in range(len(parts), 0, -1):
            try:
                obj: Any = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            for attr in parts[cut:]:
                assert hasattr(obj, attr), f"{page} names {dotted}, which does not exist"
                obj = getattr(obj, attr)
            break
        else:
            pytest.fail(f"{page} names {dotted}, which does not exist")
