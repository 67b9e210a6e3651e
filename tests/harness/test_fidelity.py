"""Real searches that spend their budget on search: epochs as a fidelity the harness assigns, the
family default within its share, cost-aware spaces, and trials that start only when they can reach
their first step.

Every test uses the scripted test-double family (its speed set by sleeps, or by FLOPs counted, not
timed) or asserts what holds at any speed: none depends on a real model training fast.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pytest
import yaml

from tests.conftest import TESTING_PLUGINS, tunebench, write_suite
from tunebench.budget import allowed_overshoot
from tunebench.datasets import DataSpec
from tunebench.declared import declared_space
from tunebench.registry import load_plugins
from tunebench.runner import KILL_AT
from tunebench.settings import DEFAULT_MIN_TRIALS
from tunebench.space import FixedHyperParameters
from tunebench.store import Store
from tunebench.testing import run_search

ROOT = Path(__file__).resolve().parents[2]


def _family(name: str, **options):
    return load_plugins((TESTING_PLUGINS,)).model_families.get(name)(**options)


@pytest.mark.parametrize("name", ["mlp", "scratch_cnn", "alexnet", "transfer", "feature_extraction", "scripted"])
def test_epochs_are_a_fidelity_not_a_drawn_hyperparameter(name):
    family = _family(name, **({"weights": "none"} if name in ("transfer", "feature_extraction") else {}))
    spec = DataSpec((32, 32, 3), tuple("abcd"), train_size=2_500)
    found = declared_space(family, spec)
    assert found.error is None, found.error
    assert not {"epochs", "epochs_frozen", "epochs_fine_tune"} & set(found.params)
    assert found.epochs["fidelity"] is True
    # the default's epochs and the most a trial may have both scale with the data: 4x fewer images, 2x the epochs
    assert found.epochs["default"] == min(family.epochs_for(spec), found.epochs["most"])
    assert found.epochs["most"] >= found.epochs["default"]
    larger = declared_space(family, DataSpec((32, 32, 3), tuple("abcd"), train_size=40_000))
    assert larger.epochs["default"] <= found.epochs["default"]


def test_a_pinned_or_restricted_epochs_is_searched_as_before():
    pinned = declared_space(_family("mlp", params={"epochs": 7}), DataSpec((8, 8, 1), tuple("ab"), train_size=1000))
    assert pinned.values["epochs"] == 7 and pinned.epochs == {"fidelity": False, "most": 7, "default": 7}
    searched = declared_space(_family("mlp", space={"epochs": [1, 5, 10]}), DataSpec((8, 8, 1), tuple("ab")))
    assert searched.params["epochs"].values == (1, 5, 10) and searched.epochs["fidelity"] is False
    transfer = _family("transfer", weights="none", params={"epochs_frozen": 2, "epochs_fine_tune": 3})
    found = declared_space(transfer, DataSpec((32, 32, 3), tuple("ab")))
    assert found.epochs["fidelity"] is False and found.epochs["most"] == 5


def test_the_reference_experiments_fixed_configurations_still_pin_their_epochs():
    """The seeds' fixed-configuration suites train exactly their published epochs: every family
    there that a `fixed` strategy runs pins them (or restricts them for a grid)."""
    catalog = load_plugins((TESTING_PLUGINS,))
    checked = 0
    for path in sorted((ROOT / "benchmarks").glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        fixed = {label for entry in raw.get("strategies") or [] if isinstance(entry, dict)
                 for name, options in entry.items() if name == "fixed"
                 for label in ((options or {}).get("model_families") or [])}
        for entry in raw.get("model_families") or []:
            if not isinstance(entry, dict):
                continue
            (name, options), = entry.items()
            if (options or {}).get("as", name) not in fixed:
                continue
            family = catalog.model_families.get(name)(**{k: v for k, v in options.items() if k != "as"})
            assert family.epochs_searched, (path.name, options.get("as"))
            checked += 1
    assert checked >= 5


def test_the_family_default_stops_at_its_share_of_the_budget_as_an_ordinary_end(tmp_path):
    # 40 batches x 0.1 s a 4 s epoch; the default's calibrated epochs (2 at 10,000 images, 6 on
    # digits' 1,257) would take 24 s, and its share is a fifth of 60 s. The share leaves 8 s for
    # the start-up before the first epoch's end: with a 6-s share a loaded machine's start-up cut
    # that epoch (a `timeout` with no epoch done; a fresh clone's `make test` saw it once).
    store, run_id, _ = run_search(tmp_path, model_family="scripted", budget_s=60, max_epochs=None,
                                  model_options={"script": ["slow"], "batch_sleep": 0.1},
                                  strategy_options={"max_trials": 1})
    default = store.trials([run_id])[0]
    assert default["notes"]["family_default"] and default["notes"]["default_share_s"] == 12.0
    assert default["epoch_budget"] == 6
    assert default["status"] == "ok" and default["notes"]["stopped"] == "share", default
    assert 1 <= default["epochs_done"] < 6


def test_other_trials_get_their_share_and_the_epochs_it_fits(tmp_path):
    store, run_id, _ = run_search(tmp_path, model_family="scripted", budget_s=24, max_epochs=None,
                                  model_options={"then": "slow", "batch_sleep": 0.02},
                                  search_options={"feasibility_guard": False})
    trials = store.trials([run_id])
    assert len(trials) >= 3
    strategy_trials = [t for t in trials[1:] if not t["notes"].get("promoted")]
    for trial in strategy_trials:
        notes = trial["notes"]
        if notes.get("not_started"):
            continue
        assigned = notes["epochs_assigned"]
        assert trial["epoch_budget"] == assigned["epochs"] <= assigned["most"]
        # capped at its share of the time left, unless the trials wanted have scored, or the budget's
        # end comes first (the last trial)
        assert "min_trials_cap_s" in notes or "reserve_cap_s" in notes or trial is strategy_trials[-1] or sum(
            t["score"] is not None for t in trials if t["number"] < trial["number"]) >= DEFAULT_MIN_TRIALS - 1
        if assigned["estimated_epoch_s"]:
            # as many epochs as the estimate fits in the share (at least one)
            fits = math.floor(assigned["share_s"] / assigned["estimated_epoch_s"])  # both rounded: +-1
            assert abs(assigned["epochs"] - max(1, min(assigned["most"], fits))) <= 1, assigned
        assert trial["status"] in ("ok", "timeout")
        if trial["status"] == "ok" and trial["epochs_done"] < trial["epoch_budget"]:
            assert notes["stopped"] in ("share", "plateau")


def test_the_budgets_end_continues_the_strategys_best_configuration(tmp_path):
    budget = 24
    store, run_id, _ = run_search(tmp_path, model_family="scripted", budget_s=budget, max_epochs=None,
                                  model_options={"then": "slow", "batch_sleep": 0.02},
                                  search_options={"feasibility_guard": False})
    trials, run = store.trials([run_id]), store.run(run_id)
    promoted = [t for t in trials if t["notes"].get("promoted")]
    assert len(promoted) == 1 and promoted[0]["number"] == trials[-1]["number"], [t["notes"] for t in trials]
    last = promoted[0]
    # the candidate: the best score among the strategy's budget-assigned trials (the first of equals),
    # never the family default's
    candidates = [t for t in trials if "epochs_assigned" in t["notes"] and t["score"] is not None
                  and t["status"] in ("ok", "timeout") and t["error_kind"] != "infeasible"]
    best = max(candidates, key=lambda t: t["score"])
    moved = last["notes"]["promoted"]
    assert moved["from_trial"] == best["number"] == last["notes"]["resumed_from"]
    assert moved["from_epoch"] == best["epochs_done"] == last["notes"]["initial_epoch"]
    assert moved["to_epoch"] == last["epoch_budget"] > moved["from_epoch"]
    assert last["params"] == best["params"] and last["status"] == "ok" and last["epochs_done"] >= 1
    # no strategy trial started in the reserved fifth
    reserve = 0.2 * budget
    for trial in trials[1:-1]:
        assert trial["started_at"] - run["started_at"] <= budget - reserve + 0.5, trial
    # selected only on its merit: the run's best is the trial with the best score
    assert run["best_val"] == pytest.approx(max(t["score"] for t in trials if t["score"] is not None))


def test_no_reserve_without_a_promote_share_and_focus_off_for_a_family_without_priority(tmp_path):
    store, run_id, _ = run_search(tmp_path, model_family="scripted", budget_s=30, max_epochs=None,
                                  model_options={"then": "slow", "batch_sleep": 0.02},
                                  strategy_options={"max_trials": 3},
                                  search_options={"feasibility_guard": False, "promote_share": 0})
    trials = store.trials([run_id])
    assert len(trials) == 3 and not any("promoted" in t["notes"] or "reserve_cap_s" in t["notes"] for t in trials)
    assert not (store.run(run_id)["space_costs"] or {}).get("focused")


def test_a_search_varies_the_familys_most_important_hyperparameters_and_holds_the_rest():
    from tunebench import space_costs

    spec = DataSpec((32, 32, 3), tuple("abcd"), train_size=2_500)
    family = _family("scratch_cnn")
    free = {n for n, p in declared_space(family, spec).params.items() if n != "epochs" and len(p.grid(2)) > 1}
    found = space_costs.focus(family, spec, max_epochs=None, wanted=12)  # 12 trials: 4 hyperparameters
    assert found["varied"] == ["learning_rate", "dropout", "dense_dropout", "batch_size"]
    assert set(found["varied"]) | set(found["held"]) == free and not set(found["varied"]) & set(found["held"])
    assert found["held"]["blocks"] == 3 and found["held"]["batch_norm"] == "none"
    assert found["held"]["filters_1"] == 64 and found["held"]["optimizer"] == "adam"
    # a name ending in * counts once: 5 names vary the three blocks' filters too
    assert space_costs.focus(family, spec, max_epochs=None, wanted=15)["varied"][4:] == [
        "filters_0", "filters_1", "filters_2"]
    assert space_costs.focus(family, spec, max_epochs=None, wanted=12, setting=2)["varied"] == [
        "learning_rate", "dropout"]
    assert space_costs.focus(family, spec, max_epochs=None, wanted=3)["varied"] == ["learning_rate", "dropout"]
    assert space_costs.focus(family, spec, max_epochs=None, wanted=12, setting="all") is None
    # the suite's own space is never narrowed, nor a family's without a priority
    assert space_costs.focus(_family("scratch_cnn", space={"blocks": [1, 2]}), spec, max_epochs=None,
                             wanted=12) is None
    assert space_costs.focus(_family("scripted"), spec, max_epochs=None, wanted=12) is None
    held = FixedHyperParameters().restrict({n: [v] for n, v in found["held"].items()})
    family.build(held, spec)
    assert held.params["blocks"].values == (3,) and held.params["dropout"].kind == "float"


def test_a_focused_search_draws_only_what_it_varies(tmp_path):
    # room for a loaded machine: the search ends at its 4th trial, not at the budget
    store, run_id, _ = run_search(tmp_path, model_family="mlp", budget_s=90, max_epochs=2,
                                  strategy_options={"max_trials": 4})
    focused = store.run(run_id)["space_costs"]["focused"]
    assert focused["varied"] == ["learning_rate", "dropout", "units", "layers"]
    trials = store.trials([run_id])
    assert len(trials) >= 2
    for trial in trials:
        assert all(trial["params"][name] == value for name, value in focused["held"].items()), trial["params"]


@pytest.mark.parametrize(("key", "value"), [("promote_share", 1), ("promote_share", -0.1), ("focus", 0),
                                            ("focus", "some")])
def test_bad_promote_share_and_focus_are_reported(key, value):
    from tunebench.settings import SearchSettings

    _, problems = SearchSettings.parse({key: value})
    assert len(problems) == 1 and key in problems[0]


def test_a_plateau_ends_a_budgeted_trial(tmp_path):
    """`weak` trains at a learning rate of 1e-7: its validation score never moves after the first epoch."""
    store, run_id, _ = run_search(tmp_path, model_family="scripted", budget_s=60, max_epochs=None,
                                  model_options={"then": "weak"}, strategy_options={"max_trials": 2},
                                  search_options={"first_trial": "none", "plateau_patience": 2,
                                                  "min_trials": 2})
    trial = store.trials([run_id])[0]
    assert trial["status"] == "ok" and trial["notes"]["stopped"] == "plateau", trial
    assert trial["epochs_done"] == trial["best_epoch"] + 1 + 2 < trial["epoch_budget"]


def test_multi_fidelity_strategies_keep_their_own_epochs(tmp_path):
    store, run_id, _ = run_search(tmp_path, model_family="scripted", strategy="asha", budget_s=40, max_epochs=None,
                                  strategy_options={"min_epochs": 1, "max_epochs": 4, "eta": 2, "max_trials": 6})
    trials = store.trials([run_id])
    strategy_trials = [t for t in trials if not t["notes"].get("family_default")]
    assert strategy_trials
    for trial in strategy_trials:
        assert "epochs_assigned" not in trial["notes"] and "min_trials_cap_s" not in trial["notes"]
        assert "promoted" not in trial["notes"] and "reserve_cap_s" not in trial["notes"]  # no reserve kept
        assert trial["epoch_budget"] in (1, 2, 4), trial
    continued = [t for t in strategy_trials if t["notes"].get("resumed_from") is not None]
    assert all(t["epochs_done"] == t["epoch_budget"] - t["notes"]["initial_epoch"] for t in continued
               if t["status"] == "ok")


def test_the_cost_model_leaves_out_a_value_that_cannot_train_an_epoch_in_a_share():
    """FLOPs are counted, not timed: with a given step time the verdict is exact."""
    from tunebench import space_costs

    family = _family("scripted", costly=True)
    spec = DataSpec((16, 16, 1), tuple("abcd"), train_size=1000)
    sample = __import__("numpy").zeros((32, 16, 16, 1), "uint8")
    costs = space_costs.estimate(family, spec, train_size=1000, val_size=200, share_s=3.0, sample=sample,
                                 step_seconds=0.01)
    # the default: 32 steps of 0.01 s and the validation pass: about 0.35 s; 64 filters about 2.3 s,
    # 512 about 18 s
    assert 0.3 < costs.default_epoch_s < 0.4
    assert "512" in costs.removed["filters"] and "64" not in costs.removed["filters"]
    assert costs.restrictions["filters"] == [8, 64]
    assert costs.removed["filters"]["512"] > 3.0
    # `units` (an integer range) is cheap whatever its value here: its range is untouched
    assert "units" not in costs.restrictions
    space_costs.apply(family, costs)
    hp = FixedHyperParameters().restrict(family.restrictions)
    family.build(hp, spec)
    assert hp.params["filters"].values == (8, 64)
    # a share below the default's own epoch: what costs about the default's epoch stays (1.25 x)
    narrow = space_costs.estimate(family, spec, train_size=1000, val_size=200, share_s=0.05, sample=sample,
                                  step_seconds=0.01)
    assert narrow.limit_s == pytest.approx(space_costs.DEFAULT_ALLOWANCE * narrow.default_epoch_s)
    assert narrow.restrictions["filters"] == [8]
    assert "1.25 x the default's" in narrow.describe()
    # a wide share leaves everything
    assert not space_costs.estimate(family, spec, train_size=1000, val_size=200, share_s=1e6, sample=sample,
                                    step_seconds=0.01).removed


def test_a_range_loses_its_top_and_the_model_flops_count_convolutions_and_dense_layers():
    import keras

    from tunebench import space_costs

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(10)(x))
    conv, dense = 8 * 8 * 4 * (3 * 3 * 3), 256 * 10
    elements = 8 * 8 * 4 + 256 + 10
    assert space_costs.model_flops(model) == 2 * (conv + dense) + elements
    family = _family("mlp")
    spec = DataSpec((28, 28, 1), tuple("0123456789"), train_size=10_000)
    sample = __import__("numpy").zeros((64, 28, 28, 1), "uint8")
    costs = space_costs.estimate(family, spec, train_size=10_000, val_size=2_000, share_s=3.0, sample=sample,
                                 step_seconds=0.02)
    units = costs.restrictions["units"]
    assert set(units) == {"max"} and 512 <= units["max"] < 2048, costs.to_json()
    assert all(float(s) > 3.0 for s in costs.removed["units"].values())


def test_a_search_records_what_its_cost_model_left_out_and_never_draws_it(tmp_path, monkeypatch):
    from tunebench import space_costs

    # The cost model gets 5 % of the budget, at least MIN_SECONDS (2 s), before the clock starts; with
    # both cores busy its builds took longer and it stopped before `filters` (the rest kept, as it
    # should). Room for every build here, so that what it leaves out does not depend on the machine.
    monkeypatch.setattr(space_costs, "MIN_SECONDS", 60.0)
    store, run_id, _ = run_search(tmp_path, model_family="scripted", budget_s=12, max_epochs=None,
                                  dataset_options={"size": 32}, model_options={"costly": True},
                                  strategy_options={"max_trials": 8})
    run = store.run(run_id)
    costs = run["space_costs"]
    assert costs["share_s"] == pytest.approx(12 * 0.8 / (DEFAULT_MIN_TRIALS - 1), abs=0.01)
    assert costs["builds"] >= 2 and "512" in costs["removed"]["filters"], costs
    trials = store.trials([run_id])
    assert trials and all(t["params"].get("filters") != 512 for t in trials)
    off, off_id, _ = run_search(tmp_path / "off", model_family="scripted", budget_s=6, max_epochs=None,
                                model_options={"costly": True}, strategy_options={"max_trials": 1},
                                search_options={"cost_aware_space": False})
    assert off.run(off_id)["space_costs"] is None


def test_no_trial_starts_that_is_expected_to_reach_its_first_step_past_the_deadline(tmp_path):
    """Each build sleeps 1.5 s: a trial needs that and more to reach its first batch end."""
    store, run_id, _ = run_search(tmp_path, model_family="scripted", budget_s=10, max_epochs=1,
                                  dataset_options={"limit": 300}, model_options={"build_sleep": 1.5},
                                  search_options={"first_trial": "none"})
    run = store.run(run_id)
    trials = store.trials([run_id])
    deadline = run["started_at"] + run["budget_s"]
    assert run["finished_at"] - run["started_at"] <= run["budget_s"] + KILL_AT * allowed_overshoot(run["budget_s"])
    needed = [t["timings"]["to_first_step"] for t in trials if "to_first_step" in (t["timings"] or {})]
    assert len(needed) >= 2

    def expected(seen):
        return max(seen) if len(seen) < 4 else statistics.quantiles(seen, n=4)[2]

    for k, trial in enumerate(trials[1:], 1):
        before = [t["timings"]["to_first_step"] for t in trials[:k] if "to_first_step" in t["timings"]]
        assert deadline - trial["started_at"] >= expected(before) - 0.3, (k, trial)
    # and the search stopped because the next one could not: less was left than a trial needs (to
    # reach its first step, or to end its first epoch as the quickest trial did)
    least = min(t["timings"]["build"] + t["timings"]["first_epoch"] for t in trials if t["epochs_done"])
    assert deadline - trials[-1]["finished_at"] < max(expected(needed), least) + 0.3


def test_no_trial_starts_with_less_time_left_than_the_quickest_trial_needed_to_end_its_first_epoch(tmp_path):
    """The same configuration again and again, each epoch about 1.5 s of scripted batches: the tail
    of the budget is not spent on trials the guard could only turn away."""
    store, run_id, _ = run_search(tmp_path, model_family="scripted", strategy="fixed", budget_s=12, max_epochs=1,
                                  dataset_options={"limit": 300}, model_options={"batch_sleep": 0.2},
                                  strategy_options={"repeats": 100}, search_options={"first_trial": "none"})
    run = store.run(run_id)
    trials = store.trials([run_id])
    deadline = run["started_at"] + run["budget_s"]
    # every trial but the last reached its score (the last was started with at least the quickest
    # first epoch left, and may take longer than that: then the deadline cuts it)
    assert len(trials) >= 2 and all(t["status"] == "ok" for t in trials[:-1]), [(t["status"], t["error"])
                                                                                 for t in trials]
    assert trials[-1]["status"] in ("ok", "timeout")
    least = min(t["timings"]["build"] + t["timings"]["first_epoch"] for t in trials if t["epochs_done"])
    # and the search ended because less than that was left for another
    assert deadline - trials[-1]["finished_at"] < least + 0.3 + (trials[-1]["timings"].get("eval") or 0.0)


@pytest.mark.slow  # process-level faults (hangs, crashes, kill -9): the slow tier
def test_a_trial_killed_while_it_compiles_keeps_its_drawn_values(tmp_path):
    results = tmp_path / "results"
    suite = write_suite(tmp_path / "suite.yaml", """
budget: 60s
hang_timeout: 3s
max_epochs: 1
first_trial: none
datasets: [{digits: {limit: 600}}]
model_families: [{scripted: {script: [ok, hang_compile], hang_marker: "MARKER"}}]
strategies: [{random: {max_trials: 3}}]
""".replace("MARKER", str(tmp_path / "hung")))
    result = tunebench("run", str(suite), "--results", str(results), "--plugin", TESTING_PLUGINS)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    store = Store.open(results)
    run = store.runs()[0]
    killed = store.trials([run["id"]])[1]
    assert killed["status"] == "timeout" and "killed by the runner" in killed["error"]
    assert killed["params"].get("units"), killed  # drawn, built and on record before the compile hung
    assert run["status"] == "ok"
