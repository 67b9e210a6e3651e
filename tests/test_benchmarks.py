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


def test_the_repeat_check_sets_two_runs_of_one_search_side_by_side(tmp_path):
    """benchmarks/perf/repeat_search.py: the same search run twice; trials paired while they agree,
    the search compared to the end of the last whole trial both ran, a deadline-cut trial left out."""
    import json
    import subprocess
    import sys

    from tunebench.store import Store

    def search(folder, durations, last_status):
        store = Store.open(tmp_path / folder)
        run_id = store.create_run(search_key="same", suite="s", dataset="d", model_family="m", strategy="random",
                                  seed=0, budget_s=60.0, started_at=1000.0)
        at = 1000.0
        for number, took in enumerate(durations):
            trial = store.start_trial(run_id, number, started_at=at, params={"lr": [0.1, 0.01, 0.001][number]})
            status = last_status if number == len(durations) - 1 else "ok"
            store.finish_trial(trial, status=status, finished_at=at + took)
            at += took + 1.0
        store.finish_run(run_id, test_score=0.5)

    search("a", [10.0, 20.0, 5.0], "timeout")
    search("b", [10.4, 24.0, 2.0], "timeout")
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "perf" / "repeat_search.py"),
                             str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "repeat_search.json").read_text())
    assert report["common_prefix"] == 3 and report["full_trials"] == 2
    assert report["search_s"] == [31.0, 35.4]  # to the end of trial 1: 10 + 1 + 20, and 10.4 + 1 + 24
    assert report["search_ratio"] == round(35.4 / 31.0, 4)
    assert report["trials_within_5_percent"] == 1  # 1.04 is, 1.2 is not
    other = Store.open(tmp_path / "c")
    other.create_run(search_key="another", suite="s", dataset="d", model_family="m", strategy="random", seed=1,
                     budget_s=60.0)
    refused = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "perf" / "repeat_search.py"),
                              str(tmp_path / "a"), str(tmp_path / "c")], capture_output=True, text=True, cwd=ROOT,
                             timeout=120)
    assert refused.returncode != 0 and "expected one finished real search, found 0" in refused.stderr
