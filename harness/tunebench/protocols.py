"""Protocol presets: what a study must have before a general claim, as benchmark studies define it.

A suite declares `protocol: benchmark`; `tunebench validate` then says what the suite lacks for it,
and the leaderboard and the report say which protocol the stored results meet. `benchmark` is the
bar of YAHPO Gym, CARP-S and HPOBench studies: at least 10 seeds per strategy and task, at least 20
tasks, budgets by the rule ⌈20 + 40·√d⌉ full evaluations (on tables), and the strategies compared
at 25 %, 50 % and 100 % of the budget (which the statistics always do).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from tunebench.suite import Suite


@dataclass(frozen=True)
class Protocol:
    name: str
    min_seeds: int
    min_tasks: int
    budget_rule: bool
    fractions: tuple[float, ...] = (0.25, 0.5, 1.0)

    def describe(self) -> str:
        rule = ", budgets by the rule ⌈20 + 40·√d⌉ full evaluations" if self.budget_rule else ""
        return (f"{self.name}: at least {self.min_seeds} seeds per strategy and task, at least {self.min_tasks} "
                f"tasks{rule}, compared at {', '.join(f'{f:.0%}' for f in self.fractions)} of the budget")


PROTOCOLS = {"benchmark": Protocol("benchmark", min_seeds=10, min_tasks=20, budget_rule=True)}


def suite_lacks(suite: Suite, protocol: Protocol) -> list[str]:
    """What `suite` lacks to follow `protocol`, one line each (empty: nothing)."""
    problems = []
    searches = suite.searches()
    tasks = {(s.dataset.label, s.model_family.label) for s in searches}
    if len(tasks) < protocol.min_tasks:
        problems.append(f"protocol {protocol.name}: {len(tasks)} task(s) (dataset x model family, or table task); "
                        f"it needs at least {protocol.min_tasks}")
    seeds: dict[tuple[str, str, str], set[int]] = {}
    for s in searches:
        seeds.setdefault((s.strategy.label, s.dataset.label, s.model_family.label), set()).add(s.seed)
    short = sorted({k[0] for k, v in seeds.items() if len(v) < protocol.min_seeds})
    if short:
        fewest = min(len(v) for v in seeds.values())
        problems.append(f"protocol {protocol.name}: strategies {', '.join(short)} have fewer than "
                        f"{protocol.min_seeds} seeds per task (the fewest: {fewest}); give them `seeds:`")
    if protocol.budget_rule and (suite.budget_s is not None or any(e.budget_s for e in suite.strategies)
                                 or not suite.table_tasks):
        problems.append(f"protocol {protocol.name}: budgets must follow the rule ⌈20 + 40·√d⌉ full evaluations: "
                        f"`budget: rule`, on tables (and no strategy with a budget of its own)")
    return problems


def results_meet(runs: pd.DataFrame, protocol: Protocol) -> tuple[bool, list[str]]:
    """Whether the stored runs (one kind: simulated or real) meet `protocol`, and what they lack."""
    lacks = []
    ok = runs[runs["status"] == "ok"] if not runs.empty else runs
    tasks = ok.groupby(["dataset_label", "model_label"]).ngroups if not ok.empty else 0
    if tasks < protocol.min_tasks:
        lacks.append(f"{tasks} task{'s' if tasks != 1 else ''} (needs {protocol.min_tasks})")
    if not ok.empty:
        per = ok.groupby(["strategy_label", "dataset_label", "model_label"])["seed"].nunique()
        if per.min() < protocol.min_seeds:
            lacks.append(f"{int(per.min())} seed{'s' if per.min() != 1 else ''} for some strategy and task "
                         f"(needs {protocol.min_seeds})")
    else:
        lacks.append("no finished runs")
    if protocol.budget_rule:
        rule = [isinstance(t, dict) and t.get("budget") == "rule" for t in runs.get("table", [])]
        if not rule or not all(rule):
            lacks.append("budgets not by the rule ⌈20 + 40·√d⌉ (tables only)")
    return not lacks, lacks


def statement(runs: pd.DataFrame) -> str:
    """One sentence: which protocol the results meet, or what they lack for the benchmark one."""
    protocol = PROTOCOLS["benchmark"]
    met, lacks = results_meet(runs, protocol)
    if met:
        return f"These results meet the {protocol.name} protocol ({protocol.describe()})."
    return (f"These results do not meet the {protocol.name} protocol ({protocol.describe()}): "
            f"{'; '.join(lacks)}. Read the ranking as describing these tasks and seeds, not as a general claim.")


def named(name: Any) -> Protocol | None:
    return PROTOCOLS.get(str(name))


__all__ = ["PROTOCOLS", "Protocol", "results_meet", "statement", "suite_lacks"]
