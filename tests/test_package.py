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


def _source_roots() -> dict[str, Path]:
    """Each import package and its folder, as pyproject.toml declares them (setuptools' package-dir)."""
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    return {package: ROOT / folder for package, folder in declared.items()}


PACKAGE_DIRS = _source_roots()


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
    code = ("import importlib.util, tunebench, tunebench_plugins.models.mlp\n"
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
                            "print(u.find_spec('tunebench_plugins').origin)"],
                           capture_output=True, text=True, cwd=tmp_path, env=env)
    assert str(installed_wheel) in where.stdout and str(ROOT) not in where.stdout, where.stdout + where.stderr
    typed = subprocess.run([str(installed_wheel / "bin" / "python"), "-c",
                            "import importlib.resources as r; "
                            "print(r.files('tunebench').joinpath('py.typed').is_file())"],
                           capture_output=True, text=True, cwd=tmp_path, env=env)
    assert typed.stdout.strip() == "True"


def _static_imports(path: Path) -> list[tuple[str, list[str], int]]:
    """Every absolute import in a file as (module, names, line), read from its syntax tree."""
    found: list[tuple[str, list[str], int]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.module, [a.name for a in node.names], node.lineno))
    return found


def _resolve(module: str, roots: dict[str, Path]) -> Path | None:
    """The file an import names, found from the repository's source roots alone (no install)."""
    top, _, rest = module.partition(".")
    if top not in roots:
        return None
    base = roots[top].joinpath(*rest.split(".")) if rest else roots[top]
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def test_a_static_reader_resolves_every_import_of_ours_to_a_file_from_the_source_roots():
    """A module's import path is its file path under a source root (harness/, plugins/), so mypy,
    editors and static import readers find every import without installing anything; the roots
    they are told about (mypy_path, Pyright's extraPaths) are the ones pyproject declares."""
    import tomllib

    roots = _source_roots()
    assert set(roots) == {"tunebench", "tunebench_plugins"}
    for package, folder in roots.items():
        assert folder.name == package, f"{folder} holds {package}: the folder must be named as the package"
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]
    folders = {str(f.parent.relative_to(ROOT)) for f in roots.values()}
    assert set(config["pyright"]["extraPaths"]) == folders
    assert {p.rsplit("/", 1)[-1] for p in config["mypy"]["mypy_path"].split(":")} == folders
    unresolved, resolved = [], 0
    for path in [*ROOT.joinpath("harness").rglob("*.py"), *ROOT.joinpath("plugins").rglob("*.py"),
                 *ROOT.joinpath("tests").rglob("*.py")]:
        for module, names, line in _static_imports(path):
            if module.split(".")[0] not in roots:
                continue
            target = _resolve(module, roots)
            if target is None:
                unresolved.append(f"{path.relative_to(ROOT)}:{line}: {module}")
                continue
            resolved += 1
            for name in names:  # `from tunebench.testing import scripted`: a submodule, or a name defined there
                if _resolve(f"{module}.{name}", roots) is None and name != "*" and name not in target.read_text():
                    unresolved.append(f"{path.relative_to(ROOT)}:{line}: {module}.{name}")
    assert not unresolved, "imports no source root resolves: " + "; ".join(unresolved)
    assert resolved > 300


def _public_api() -> set[str]:
    """`tunebench.__all__`, read from the source (no import)."""
    tree = ast.parse((_source_roots()["tunebench"] / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return set(ast.literal_eval(node.value))
    raise AssertionError("tunebench/__init__.py declares no __all__")


def test_the_built_in_plugins_use_only_tunebenchs_public_api():
    """The built-ins are written like any third-party plugin: from `tunebench` they import only
    names in `tunebench.__all__`, and from each other only public names."""
    public = _public_api()
    broken = []
    for path in _source_roots()["tunebench_plugins"].rglob("*.py"):
        for module, names, line in _static_imports(path):
            where = f"{path.relative_to(ROOT)}:{line}"
            if module == "tunebench":
                broken += [f"{where}: tunebench.{n} is not in tunebench.__all__" for n in names if n not in public]
            elif module.startswith("tunebench."):
                broken.append(f"{where}: imports {module}, which is not tunebench's public API")
            elif module.startswith("tunebench_plugins"):
                broken += [f"{where}: imports the private {module}.{n}" for n in names if n.startswith("_")]
    assert not broken, "; ".join(broken)


def test_the_public_api_names_what_the_package_defines():
    import tunebench

    assert set(tunebench.__all__) == _public_api()
    assert all(hasattr(tunebench, name) for name in tunebench.__all__)


def test_the_private_internals_we_use_exist():
    """tunebench reaches into a few private attributes of the libraries it drives (each place says
    so in a comment). They exist in the versions constraints.txt pins: an upgrade that drops one
    fails here, not in a search."""
    import keras_tuner
    import optuna
    from optuna.study import _frozen

    oracle = keras_tuner.oracles.RandomSearchOracle(objective="val_accuracy", max_trials=1)
    assert hasattr(oracle, "_display") and hasattr(oracle._display, "verbose")
    assert callable(oracle._set_project_dir) and hasattr(oracle, "_retry_queue")
    assert callable(optuna.distributions.FloatDistribution(0, 1)._contains)
    assert hasattr(_frozen, "FrozenStudy")
    autokeras = pytest.importorskip("autokeras")
    assert callable(autokeras.ImageClassifier._analyze_data)
