"""Every suite in benchmarks/ is runnable as written, and reproduces the published architectures."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT, tunebench
from tunebench import DataSpec, FixedHyperParameters
from tunebench.registry import load_plugins
from tunebench.suite import load_suite

SUITES = sorted((ROOT / "benchmarks").glob("*.yaml"))


@pytest.fixture(scope="module")
def catalog():
    return load_plugins()


@pytest.mark.parametrize("path", SUITES, ids=lambda p: p.stem)
def test_every_suite_validates(path, catalog):
    """Names, options and pairings (data and weights are checked separately: not all are here)."""
    suite = load_suite(path, catalog, check_resources=False)
    assert suite.searches()


def family(suite_name: str, label: str, catalog):
    suite = load_suite(ROOT / "benchmarks" / f"{suite_name}.yaml", catalog, check_resources=False)
    entry = next(e for e in suite.model_families if e.label == label)
    return catalog.model_families.get(entry.name)(**entry.options), dict(entry.options["params"])


@pytest.mark.parametrize("suite_name, label, shape, classes, params", [
    ("mnist_lecture", "dense_512", (28, 28, 1), 10, 407_050),
    ("mnist_lecture", "convnet", (28, 28, 1), 10, 93_322),
    # Flatten - 2048 - 1024 - 512 - 256 - 10 on 32x32x3
    ("cifar10_notebook", "dense_baseline", (32, 32, 3), 10,
     3072 * 2048 + 2048 + 2048 * 1024 + 1024 + 1024 * 512 + 512 + 512 * 256 + 256 + 256 * 10 + 10),
    ("tiny_imagenet", "alexnet_small", (32, 32, 3), 200, 22_370_760),
])
def test_fixed_configurations_reproduce_the_published_architectures(suite_name, label, shape, classes, params,
                                                                    catalog):
    fam, pins = family(suite_name, label, catalog)
    spec = DataSpec(shape, tuple(str(i) for i in range(classes)))
    hp = FixedHyperParameters(pins)
    model = fam.build(hp, spec)
    settings = fam.training(hp, spec)
    assert model.count_params() == params
    assert hp.unused_pins() == []  # every published value is a declared hyperparameter
    if label == "dense_512":
        assert (settings.optimizer, settings.batch_size, settings.epochs) == ("rmsprop", 128, 5)


def test_the_fixed_strategy_runs_only_the_pinned_configurations(catalog):
    suite = load_suite(ROOT / "benchmarks" / "mnist_lecture.yaml", catalog, check_resources=False)
    fixed = suite.select(strategies=["fixed"]).searches()
    assert {(s.model_family.label, s.seed) for s in fixed} == {(f, seed) for f in ("dense_512", "convnet")
                                                               for seed in (0, 1, 2)}
    searches = suite.searches()
    grid = [s for s in searches if s.strategy.label == "grid"]
    assert {s.model_family.label for s in grid} == {"dense_grid"}
    study = [s for s in searches if s.strategy.label == "regularisation"]
    assert {s.model_family.label for s in study} == {"dense_regularised"} and len(study) == 3
    assert {s.budget_s for s in searches if s.strategy.label == "random"} == {600.0}


def test_a_suite_whose_data_is_absent_fails_with_the_missing_data_message(tmp_path):
    result = tunebench("validate", str(ROOT / "benchmarks" / "tiny_imagenet.yaml"),
                       env={"TUNEBENCH_DATA": str(tmp_path), "KERAS_HOME": str(tmp_path / "k")})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"folder {tmp_path}/tiny-imagenet-200 does not exist" in result.stderr
    assert "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5" in result.stderr


@pytest.mark.slow  # about 2 minutes of CPU: CI runs it in the slow tier (make test-slow)
def test_the_gpu_check_dry_runs_on_a_cpu_through_the_same_code_paths(tmp_path):
    """benchmarks/perf/gpu_check.py --dry-run: every part of the GPU check (the harness against a bare
    loop with the data placed and streamed, a sampled search, packing), tiny, so that the script
    works the first time it meets a GPU."""
    import json
    import subprocess
    import sys

    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "perf" / "gpu_check.py"), "--dry-run",
                             "--out", str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["dry_run"] and [m["placed"] for m in report["mnist"]] == [True, False]
    for m in report["mnist"]:
        assert m["status"] == "ok", m["error"]
        assert m["train_s"] > 0 and m["bare"]["train_s"] > 0 and m["overhead"] > 0
        assert 0 <= m["test_accuracy"] <= 1 and 0 <= m["bare"]["test_accuracy"] <= 1
    assert [p["per_gpu"] for p in report["packing"]] == [1, 2]
    assert [p["searches"] for p in report["packing"]] == [1, 2] and all(p["trials"] >= 1 for p in report["packing"])
    assert "| figure | measured | goal |" in (tmp_path / "gpu_check.md").read_text()
