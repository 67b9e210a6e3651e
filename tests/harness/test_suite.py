from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from tests.conftest import ROOT, tunebench, write_suite
from tunebench import ModelFamily, hookimpl
from tunebench.errors import SuiteError
from tunebench.registry import load_plugins
from tunebench.suite import load_suite, parse_suite

GOOD = {"budget": "30s", "seeds": 2, "datasets": ["digits"], "model_families": ["mlp", "scratch_cnn"],
        "strategies": ["random", {"optuna_tpe": {"n_startup_trials": 3}}]}


def test_the_smoke_suite_expands_to_one_search_per_combination(catalog):
    suite = load_suite(ROOT / "benchmarks" / "smoke.yaml", catalog)
    searches = suite.searches()
    assert len(searches) == 1 * 2 * 2 * 2
    assert len({s.key for s in searches}) == len(searches)
    assert load_suite(ROOT / "benchmarks" / "smoke.yaml", catalog).searches()[3].key == searches[3].key


def test_defaults_are_resolved_into_the_search_identity(catalog):
    explicit = dict(GOOD, strategies=[{"random": {"max_trials": None}}])
    implicit = dict(GOOD, strategies=["random"])
    assert ([s.key for s in parse_suite(explicit, catalog).searches()]
            == [s.key for s in parse_suite(implicit, catalog).searches()])
    suite = parse_suite(dict(GOOD), catalog)
    assert dict(suite.strategies[1].options) == {"max_trials": None, "n_startup_trials": 3, "multivariate": False,
                                                 "pruner": "none", "storage": None, "study_name": None,
                                                 "parallel_trials": 1}
    # an option added later leaves keys of earlier stores alone at its default, and changes them otherwise
    lanes = dict(GOOD, strategies=[{"random": {"parallel_trials": 2}}])
    assert "parallel_trials" not in json.dumps(suite.strategies[1].identity())
    assert ({s.key for s in parse_suite(lanes, catalog).searches()}
            .isdisjoint(s.key for s in parse_suite(implicit, catalog).searches()))


def test_every_problem_is_reported_at_once(catalog):
    bad = {
        "budget": "fast", "seeds": [0, 0], "max_epochs": 0, "bugdet": 3,
        "datasets": ["digit", {"digits": {"sise": 16}}],
        "model_families": ["mlp", {"mlp": {"as": "mlp"}}],
        "strategies": [{"optuna_tpe": {"n_startup_trials": "many"}}],
    }
    with pytest.raises(SuiteError) as err:
        parse_suite(bad, catalog)
    problems = err.value.problems
    text = "\n".join(problems)
    assert "unknown key 'bugdet' (did you mean 'budget'?)" in text
    assert "'budget': 'fast' is not a duration" in text
    assert "'seeds' has duplicates" in text
    assert "'max_epochs' must be a positive integer" in text
    assert "unknown dataset 'digit'. Did you mean 'digits'?" in text
    assert "unknown option 'sise' (did you mean 'size'?)" in text
    assert "repeats model_families[0]" in text
    assert "option 'n_startup_trials' must be an integer" in text
    assert len(problems) == 8


def test_labels_distinguish_variants_of_one_family(catalog):
    suite = parse_suite(dict(GOOD, model_families=["mlp", {"mlp": {"as": "mlp_wide", "params": {"units": 1024}}}]),
                        catalog)
    assert [e.label for e in suite.model_families] == ["mlp", "mlp_wide"]
    with pytest.raises(SuiteError, match="label 'mlp' is used twice"):
        parse_suite(dict(GOOD, model_families=["mlp", {"scratch_cnn": {"as": "mlp"}}]), catalog)


def test_an_impossible_pairing_is_rejected_up_front():
    class NeedsBigImages(ModelFamily):
        name = "needs_big"
        min_input_size = 32

        def build(self, hp, spec):  # pragma: no cover - never built
            raise AssertionError

    catalog = load_plugins([SimpleNamespace(tunebench_register_model_families=hookimpl(
        lambda registry: registry.add(NeedsBigImages)))])
    with pytest.raises(SuiteError, match="needs images of at least 32 px"):
        parse_suite(dict(GOOD, model_families=["needs_big"]), catalog)
    assert parse_suite(dict(GOOD, model_families=["needs_big"], datasets=[{"digits": {"size": 32}}]), catalog)


def test_budget_override(catalog):
    assert parse_suite(dict(GOOD), catalog, budget="1m").budget_s == 60
    with pytest.raises(SuiteError, match="'--budget'"):
        parse_suite(dict(GOOD), catalog, budget="soon")
    # --budget also wins over a strategy's own budget, as the CLI's message promises.
    own = dict(GOOD, strategies=[{"random": {"budget": "5m"}}])
    assert {s.budget_s for s in parse_suite(own, catalog).searches()} == {300}
    assert {s.budget_s for s in parse_suite(own, catalog, budget="20s").searches()} == {20}


def test_yaml_errors_give_the_line(tmp_path, catalog):
    path = write_suite(tmp_path / "broken.yaml", "budget: 10s\ndatasets: [digits\nstrategies: [random]\n")
    with pytest.raises(SuiteError, match="not valid YAML at line"):
        load_suite(path, catalog)


def test_cli_reports_a_bad_suite_without_traceback_and_exits_2(tmp_path):
    path = write_suite(tmp_path / "bad.yaml", "budget: 2x\ndatasets: [mnist_typo]\nmodel_families: [mlp]\n"
                                              "strategies: [{random: {max_trails: 3}}]\n")
    for command in ("run", "validate"):
        result = tunebench(command, str(path), "--results", str(tmp_path / "r")) if command == "run" \
            else tunebench(command, str(path))
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
        assert "problems" in result.stderr
        for expected in ("'budget'", "unknown dataset 'mnist_typo'",
                         "unknown option 'max_trails' (did you mean 'max_trials'?)"):
            assert expected in result.stderr
    assert not (tmp_path / "r").exists()  # nothing was created, nothing trained


def test_missing_suite_file(tmp_path):
    result = tunebench("run", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2 and "no such file" in result.stderr and "Traceback" not in result.stderr


def test_backends_multiply_searches_and_training_settings_are_validated(catalog):
    plain = parse_suite(dict(GOOD), catalog)
    both = parse_suite(dict(GOOD, backend=["tensorflow", "torch"],
                            training={"mixed_precision": "bfloat16", "steps_per_execution": 4}), catalog)
    assert len(both.searches()) == 2 * len(plain.searches())
    assert {s.backend for s in both.searches()} == {"tensorflow", "torch"}
    assert len({s.key for s in both.searches()}) == len(both.searches())
    assert {s.key for s in plain.searches()}.isdisjoint({s.key for s in both.searches()})
    assert all(s.training.to_mapping() == {"mixed_precision": "bfloat16", "steps_per_execution": 4}
               for s in both.searches())
    with pytest.raises(SuiteError) as err:
        parse_suite(dict(GOOD, backend="theano", training={"jit_compile": "maybe", "steps_per_execution": 0,
                                                           "data_on_device": "gpu", "warp": 9},
                         resources={"gpus": 1, "disks": 2}), catalog)
    text = str(err.value) + "\n".join(err.value.problems)
    for part in ("unknown Keras backend 'theano'", "jit_compile must be auto", "steps_per_execution must be",
                 "data_on_device must be auto, true or false, not 'gpu'", "unknown key 'warp'", "unknown key 'disks'"):
        assert part in text


def test_compile_options_follow_the_training_block():
    from types import SimpleNamespace

    from tunebench.settings import ExecutionSettings
    from tunebench.training import compile_options

    model = SimpleNamespace(count_params=lambda: 90_000)  # the count no longer matters: the step time does
    auto = ExecutionSettings()
    # a 5 ms step: 0.2 s / 5 ms = 40 batches a call, capped at 32 and at a twentieth of the epoch
    assert compile_options(auto, "tensorflow", model, 1000, step_seconds=0.005) == {"steps_per_execution": 32}
    assert compile_options(auto, "tensorflow", model, 400, step_seconds=0.005) == {"steps_per_execution": 20}
    assert compile_options(auto, "tensorflow", model, 400, step_seconds=0.05) == {"steps_per_execution": 4}
    assert compile_options(auto, "tensorflow", model, 400, step_seconds=0.5) == {}  # a slow step: one a call
    assert compile_options(auto, "tensorflow", model, 30, step_seconds=0.001) == {}  # too few batches to bother
    assert compile_options(auto, "tensorflow", model, 400) == {}  # no measured step: one a call
    assert compile_options(auto, "torch", model, 400, step_seconds=0.001) == {}  # torch's trainer supports only 1
    assert compile_options(ExecutionSettings(jit_compile=False, steps_per_execution=8), "jax", model, 400) == {
        "jit_compile": False, "steps_per_execution": 8}


def test_resources_are_validated(catalog):
    from tunebench.settings import Resources

    assert parse_suite(dict(GOOD, resources={"cpus": 2, "gpus": 0.25, "memory": "4GB"}), catalog).resources == (
        Resources(cpus=2.0, gpus=0.25, memory_bytes=4 * 10**9))
    with pytest.raises(SuiteError) as err:
        parse_suite(dict(GOOD, resources={"cpus": -1, "gpus": "lots", "memory": "4XB"}), catalog)
    assert len(err.value.problems) == 3
    assert any("gpus must be a number" in p for p in err.value.problems)
    assert any("'4XB' is not a size" in p for p in err.value.problems)
