"""Conformance suites for plugin authors: subclass one in a test module of your package.

- `StrategyConformance`: a search strategy respects the budget, records every trial, survives
  failing and diverging trials.
- `DatasetConformance`: a dataset's arrays match its spec and split deterministically.
- `ModelFamilyConformance`: a model family's configurations fit the spec, rebuild identically, and
  its default configuration trains and is tested through the harness.

The strategy suite:

```python
from tunebench.testing.conformance import StrategyConformance

class TestMyStrategy(StrategyConformance):
    strategy = "my_strategy"
    options = {"my_option": 3}
    plugins = ("my_package.tunebench_plugin",)   # if it is not installed through an entry point
```

It runs the strategy for real (in-process, on a slice of digits, with the `scripted` test-double
model family) and checks that it respects the budget contract, that every trial it runs is
recorded, that it survives a trial that raises, and that a NaN loss is recorded as `nan` without
ending the search.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from tunebench.budget import allowed_overshoot
from tunebench.vocabulary import TrialStatus


class StrategyConformance:
    strategy: ClassVar[str] = ""
    options: ClassVar[Mapping[str, Any]] = {}
    plugins: ClassVar[tuple[str, ...]] = ()
    #: Budget of a search of short trials; long enough for about five of them on an idle machine.
    budget_s: ClassVar[float] = 8.0
    #: The search whose trials misbehave needs four of them: at 8 s, with both cores busy, a search
    #: of Optuna's CMA-ES or MOTPE ran three.
    FAILURES_BUDGET_S: ClassVar[float] = 12.0

    #: The search whose trials misbehave ends after this many trials (unless `options` sets
    #: `max_trials`), so it does not wait out its budget once it has what it checks.
    FAILURES_MAX_TRIALS: ClassVar[int] = 6

    def _run(self, tmp_path: Any, script: list[str], *, then: str = "ok", budget_s: float,
             max_epochs: int = 2, search_options: Mapping[str, Any] | None = None,
             strategy_options: Mapping[str, Any] | None = None) -> tuple[Any, int, Any]:
        from tunebench.testing.inprocess import run_search

        return run_search(tmp_path, model_family="scripted", strategy=self.strategy,
                          model_options={"script": script, "then": then, "batch_sleep": 0.02},
                          strategy_options={**(strategy_options or {}), **self.options}, budget_s=budget_s,
                          max_epochs=max_epochs,
                          dataset_options={"limit": 600}, search_options=search_options,
                          plugins=("tunebench.testing.scripted", *self.plugins))

    def test_records_every_trial_and_survives_failures_and_nan(self, tmp_path: Any) -> None:
        # `min_trials: 2`: each trial may take the time left over the scored trials still wanted. With
        # the default (12), a 12 s search caps a trial at about 1 s, and on a loaded machine the NaN
        # trial's build and first step took longer: it ended `timeout`, not `nan`.
        store, run_id, events = self._run(tmp_path, ["ok", "fail", "nan", "ok"],
                                          budget_s=max(self.budget_s, self.FAILURES_BUDGET_S),
                                          search_options={"min_trials": 2},
                                          strategy_options={"max_trials": self.FAILURES_MAX_TRIALS})
        run = store.run(run_id)
        trials = store.trials([run_id])
        assert run["status"] == "ok", run["error"]
        assert len(trials) >= 4, "the search stopped after a failed or NaN trial"
        assert [t["number"] for t in trials] == list(range(len(trials)))
        assert all(t["status"] != TrialStatus.RUNNING and t["finished_at"] for t in trials)
        statuses = [t["status"] for t in trials]
        assert statuses[:4] == ["ok", "failed", "nan", "ok"] or (
            # multi-fidelity strategies may stop an `ok` trial at its epoch budget: still ok
            statuses[1:3] == ["failed", "nan"]), [(t["status"], t["error"]) for t in trials]
        assert "ScriptedFailure" in trials[1]["error"]
        assert len([e for e in events.sent if e["event"] == "trial"]) == len(trials)
        assert run["n_trials"] == len(trials)
        assert run["best_trial"] is not None and run["test_score"] is not None

    def test_continues_only_what_it_kept(self, tmp_path: Any) -> None:
        """A strategy that continues trials (`run_trial(resume_from=N)`) continues only a trial it kept
        (`checkpoint=True`) that completed its epochs, each from the epoch that trial reached; one
        that never continues passes as it is."""
        store, run_id, _ = self._run(tmp_path, [], budget_s=self.budget_s, max_epochs=4)
        trials = {t["number"]: t for t in store.trials([run_id])}
        for t in trials.values():
            source = (t["notes"] or {}).get("resumed_from")
            if source is None:
                continue
            kept = trials[source]
            assert (kept["notes"] or {}).get("checkpoint"), f"trial {t['number']} continued {source}, never kept"
            assert t["notes"]["initial_epoch"] == (kept["notes"] or {}).get("initial_epoch", 0) + kept["epochs_done"]
            assert t["number"] > source

    def test_respects_the_budget(self, tmp_path: Any) -> None:
        budget = 3.0
        store, run_id, _ = self._run(tmp_path, [], then="slow", budget_s=budget, max_epochs=50)
        run = store.run(run_id)
        assert run["finished_at"] - run["started_at"] <= budget + allowed_overshoot(budget)
        trials = store.trials([run_id])
        assert trials and all(t["finished_at"] <= run["finished_at"] for t in trials)
        assert trials[-1]["status"] in ("timeout", "ok", "pruned")


class DatasetConformance:
    """Checks a dataset plugin keeps the dataset contract: subclass it in a test module.

    ```python
    from tunebench.testing.conformance import DatasetConformance

    class TestMyDataset(DatasetConformance):
        dataset = "my_dataset"
        options = {"path": "/data/mine"}      # or override `make_options(tmp_path)` to build test data
    ```

    It loads the data for real and checks that `check()` finds nothing wrong, that the arrays match
    the `spec` (uint8 images of its shape, labels in range), and that the harness splits them the
    same way twice, with disjoint parts.
    """

    dataset: ClassVar[str] = ""
    options: ClassVar[Mapping[str, Any]] = {}
    plugins: ClassVar[tuple[str, ...]] = ()

    def make_options(self, tmp_path: Any) -> Mapping[str, Any]:
        """The options to test with; override to create files under `tmp_path` first."""
        return dict(self.options)

    def _instance(self, tmp_path: Any) -> Any:
        from tunebench.registry import load_plugins

        return load_plugins(self.plugins).datasets.get(self.dataset)(**self.make_options(tmp_path))

    def test_check_passes_and_load_matches_the_spec(self, tmp_path: Any) -> None:
        import numpy as np

        dataset = self._instance(tmp_path)
        assert dataset.check() == [], "check() reports problems with data that should load"
        spec = dataset.spec
        assert spec.num_classes >= 2 and len(spec.input_shape) == 3 and spec.task in ("multiclass", "multilabel")
        data = dataset.load()
        parts = [(data.x, data.y)]
        if data.x_test is not None:
            parts.append((data.x_test, data.y_test))
        if data.x_val is not None:
            parts.append((data.x_val, data.y_val))
        for x, y in parts:
            assert x.dtype == np.uint8, f"images must be uint8, not {x.dtype}"
            assert tuple(x.shape[1:]) == tuple(spec.input_shape), (x.shape, spec.input_shape)
            assert len(x) == len(y) and len(x) > 0
            if spec.task == "multiclass":
                assert y.ndim == 1 and np.issubdtype(y.dtype, np.integer)
                assert 0 <= int(y.min()) and int(y.max()) < spec.num_classes
            else:
                assert y.shape == (len(x), spec.num_classes) and set(np.unique(y)) <= {0, 1}

    def test_splits_are_deterministic_and_disjoint(self, tmp_path: Any) -> None:
        dataset = self._instance(tmp_path)
        first, second = dataset.splits(0), dataset.splits(0)
        assert first.fingerprint == second.fingerprint
        assert first.sizes == second.sizes and min(first.sizes.values()) > 0
        assert len(first.x_train) == first.sizes["train"] and len(first.x_val) == first.sizes["validation"]


class ModelFamilyConformance:
    """Checks a model-family plugin keeps the model-family contract: subclass it in a test module.

    ```python
    from tunebench.testing.conformance import ModelFamilyConformance

    class TestMyFamily(ModelFamilyConformance):
        family = "my_family"
        options = {}
        input_shape = (32, 32, 3)
    ```

    It builds the default configuration and a few random ones for the family's tasks, checks that
    the model takes the spec's images and gives one output per class, that a rebuild with the same
    values is the same model (the test evaluation rebuilds the selected configuration), and that a
    search with the family's default configuration trains, is recorded and is tested end to end.
    """

    family: ClassVar[str] = ""
    options: ClassVar[Mapping[str, Any]] = {}
    plugins: ClassVar[tuple[str, ...]] = ()
    input_shape: ClassVar[tuple[int, int, int]] = (16, 16, 3)
    classes: ClassVar[int] = 3
    random_configurations: ClassVar[int] = 2

    def _family(self) -> Any:
        from tunebench.registry import load_plugins

        return load_plugins(self.plugins).model_families.get(self.family)(**self.options)

    def test_configurations_fit_the_spec_and_rebuild_identically(self) -> None:
        import keras

        from tunebench.datasets import DataSpec
        from tunebench.space import DefaultHyperParameters, FixedHyperParameters, RandomHyperParameters

        family = self._family()
        for task in sorted(family.tasks):
            spec = DataSpec(self.input_shape, tuple(f"c{i}" for i in range(self.classes)), task)
            assert family.check(spec) == [], family.check(spec)
            for hp in [DefaultHyperParameters(), *(RandomHyperParameters((7, i))
                                                   for i in range(self.random_configurations))]:
                model = family.build(hp, spec)
                settings = family.training(hp, spec, max_epochs=2)
                assert settings.epochs >= 1 and settings.batch_size >= 1
                assert tuple(model.input_shape[1:]) == tuple(self.input_shape)
                assert model.output_shape[-1] == self.classes
                again = FixedHyperParameters(hp.values)
                rebuilt = family.build(again, spec)
                family.training(again, spec, max_epochs=2)
                assert rebuilt.count_params() == model.count_params()
                assert again.values == hp.values, "a rebuild with the same values declared other values"
                keras.backend.clear_session()

    def test_default_configuration_trains_and_is_tested(self, tmp_path: Any) -> None:
        from tunebench.testing.inprocess import run_search

        store, run_id, _ = run_search(
            tmp_path, dataset="synthetic", model_family=self.family, strategy="fixed",
            dataset_options={"size": list(self.input_shape[:2]), "channels": self.input_shape[2],
                             "classes": self.classes, "samples": 120},
            model_options=dict(self.options), budget_s=120, max_epochs=1, plugins=self.plugins)
        run = store.run(run_id)
        trials = store.trials([run_id])
        assert run["status"] == "ok", run["error"]
        assert [t["status"] for t in trials] == ["ok"] and trials[0]["epochs_done"] == 1
        assert trials[0]["param_count"] and 0.0 <= run["test_score"] <= 1.0
