"""tunebench as a user installs it: one import name, no cycles, and a wheel that works from any folder."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import ROOT, write_suite

PACKAGE_DIRS = {"tunebench": ROOT / "harness", "tunebench.plugins": ROOT / "plugins"}


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in folder.rglob("*.py"):
            parts = [p for p in path.relative_to(folder).with_suffix("").parts if p != "__init__"]
            found[".".join([package, *parts])] = path
    return found


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """Modules of the package `name` imports (at module scope or in functions; not for type checking)."""
    found: set[str] = set()

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            if "TYPE_CHECKING" in ast.unparse(node.test):
                for child in node.orelse:
                    self.visit(child)
                return
            self.generic_visit(node)

        def visit_Import(self, node: ast.Import) -> None:
            found.update(a.name for a in node.names)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            if node.module:
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names)

    Visitor().visit(ast.parse(path.read_text()))
    # the package itself (its __init__) is imported first by any submodule: not an edge
    return {m for m in found if m in modules and m != name and not name.startswith(m + ".")}


def test_the_package_has_no_import_cycles():
    modules = _modules()
    graph = {m: _imports(p, m, modules) for m, p in modules.items()}
    cycles, seen, stack = [], set(), []

    def visit(node: str) -> None:
        if node in stack:
            cycles.append(stack[stack.index(node):] + [node])
            return
        if node in seen:
            return
        seen.add(node)
        stack.append(node)
        for nxt in sorted(graph[node]):
            visit(nxt)
        stack.pop()

    for module in sorted(graph):
        visit(module)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_runner_imports_only_the_protocol_of_the_search_process():
    modules = _modules()
    imported = _imports(modules["tunebench.runner"], "tunebench.runner", modules)
    assert not imported & {"tunebench.worker", "tunebench.context", "tunebench.lanes", "tunebench.training"}
    assert "tunebench.job" in imported


def test_nothing_is_importable_as_harness_or_plugins(tmp_path):
    code = ("import importlib.util, tunebench, tunebench.plugins.models.mlp\n"
            "print([n for n in ('harness', 'plugins') if importlib.util.find_spec(n)])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory) -> Path:
    """tunebench built as a wheel and installed, not editable, into a fresh virtual environment.

    The fresh environment gets its third-party dependencies from this one (a folder of links to
    everything here but tunebench itself), so that nothing is downloaded."""
    base = tmp_path_factory.mktemp("wheel")
    dist = base / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
                    str(ROOT)], check=True, capture_output=True, timeout=600)
    wheel = next(dist.glob("tunebench-*.whl"))
    env_dir = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, timeout=300)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    deps = base / "deps"
    deps.mkdir()
    here = Path(next(p for p in sys.path if p.endswith("site-packages") and Path(p, "keras").is_dir()))
    for entry in here.iterdir():
        if not (entry.name.lower().startswith(("tunebench", "__editable__")) or entry.suffix == ".pth"):
            (deps / entry.name).symlink_to(entry)
    (site / "tunebench-test-deps.pth").write_text(str(deps) + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True, timeout=600)
    return env_dir


def test_the_wheel_runs_a_suite_from_a_folder_with_its_own_plugins_and_harness(installed_wheel, tmp_path):
    project = tmp_path / "project"
    for package in ("plugins", "plugins/models", "harness"):
        (project / package).mkdir(parents=True)
        (project / package / "__init__.py").write_text("raise ImportError('the user\\'s own package')\n")
    (project / "harness" / "worker.py").write_text("raise SystemExit('the user\\'s own harness.worker ran')\n")
    suite = write_suite(project / "suite.yaml", textwrap.dedent("""
        budget: 60s
        max_epochs: 1
        datasets: [digits]
        model_families: [mlp]
        strategies:
          - random: {max_trials: 2}
    """))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONPATH"] = str(project)  # the user's folders come first on the path, as in any project
    tunebench = installed_wheel / "bin" / "tunebench"
    result = subprocess.run([str(tunebench), "run", str(suite), "--results", str(project / "results")],
                            capture_output=True, text=True, cwd=project, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "1 search" in result.stderr and "done" in result.stderr
    where = subprocess.run([str(installed_wheel / "bin" / "python"), "-c",
                            "import tunebench, importlib.util as u; print(tunebench.__file__); "
                            "print(u.find_spec('tunebench.plugins').origin)"],
                           capture_output=True, text=True, cwd=tmp_path, env=env)
    assert str(installed_wheel) in where.stdout and str(ROOT) not in where.stdout, where.stdout + where.stderr
    typed = subprocess.run([str(installed_wheel / "bin" / "python"), "-c",
                            "import importlib.resources as r; "
                            "print(r.files('tunebench').joinpath('py.typed').is_file())"],
                           capture_output=True, text=True, cwd=tmp_path, env=env)
    assert typed.stdout.strip() == "True"
