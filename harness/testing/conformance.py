"""A conformance suite any search strategy can run: subclass it in a test module.

```python
from harness.testing.conformance import StrategyConformance

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

from harness.budget import allowed_overshoot
from harness.strategies import RUNNING


class StrategyConformance:
    strategy: ClassVar[str] = ""
    options: ClassVar[Mapping[str, Any]] = {}
    plugins: ClassVar[tuple[str, ...]] = ()
    #: Budget of the search whose trials misbehave; long enough for about five short trials.
    budget_s: ClassVar[float] = 8.0

    def _run(self, tmp_path: Any, script: list[str], *, then: str = "ok", budget_s: float,
             max_epochs: int = 2) -> tuple[Any, int, Any]:
        from harness.testing.inprocess import run_search

        return run_search(tmp_path, model_family="scripted", strategy=self.strategy,
                          model_options={"script": script, "then": then, "batch_sleep": 0.02},
                          strategy_options=dict(self.options), budget_s=budget_s, max_epochs=max_epochs,
                          dataset_options={"limit": 600},
                          plugins=("harness.testing.plugins", *self.plugins))

    def test_records_every_trial_and_survives_failures_and_nan(self, tmp_path):
        store, run_id, events = self._run(tmp_path, ["ok", "fail", "nan", "ok"], budget_s=self.budget_s)
        run = store.run(run_id)
        trials = store.trials([run_id])
        assert run["status"] == "ok", run["error"]
        assert len(trials) >= 4, "the search stopped after a failed or NaN trial"
        assert [t["number"] for t in trials] == list(range(len(trials)))
        assert all(t["status"] != RUNNING and t["finished_at"] for t in trials)
        assert [t["status"] for t in trials[:4]] == ["ok", "failed", "nan", "ok"] or (
            # multi-fidelity strategies may stop an `ok` trial at its epoch budget: still ok
            [t["status"] for t in trials[1:3]] == ["failed", "nan"])
        assert "ScriptedFailure" in trials[1]["error"]
        assert len([e for e in events.sent if e["event"] == "trial"]) == len(trials)
        assert run["n_trials"] == len(trials)
        assert run["best_trial"] is not None and run["test_score"] is not None

    def test_respects_the_budget(self, tmp_path):
        budget = 3.0
        store, run_id, _ = self._run(tmp_path, [], then="slow", budget_s=budget, max_epochs=50)
        run = store.run(run_id)
        assert run["finished_at"] - run["started_at"] <= budget + allowed_overshoot(budget)
        trials = store.trials([run_id])
        assert trials and all(t["finished_at"] <= run["finished_at"] for t in trials)
        assert trials[-1]["status"] in ("timeout", "ok", "pruned")
