"""Grid search over values declared in the suite."""

from __future__ import annotations

import itertools

from tunebench import FixedHyperParameters, Option, OptionsError, SearchStrategy, hookimpl


class GridSearch(SearchStrategy):
    """Every combination of the values listed in `grid` (others at their defaults), in order."""

    name = "grid"
    parallel = True
    options_schema = {
        "grid": Option(dict, None, "hyperparameter name -> list of values, e.g. {epochs: [1, 5, 10], units: [32, 64]}",
                       required=True),
        "repeats": Option(int, 1, "run each combination this many times", minimum=1),
    }

    def __init__(self, **options):
        super().__init__(**options)
        grid = self.options["grid"]
        problems = [f"grid entry '{k}' must be a non-empty list of values, not {v!r}"
                    for k, v in grid.items() if not isinstance(v, list) or not v]
        if not grid:
            problems.append("'grid' must name at least one hyperparameter")
        if problems:
            raise OptionsError("grid options are not valid:", problems)

    def combinations(self):
        names = list(self.options["grid"])
        for values in itertools.product(*(self.options["grid"][n] for n in names)):
            yield dict(zip(names, values))

    def search(self, ctx):
        runs = [combo for combo in self.combinations() for _ in range(self.options["repeats"])]
        first = ctx.first_number  # 1 when the family default ran as trial 0
        limit = first + len(runs)
        if self.options["max_trials"]:
            limit = min(limit, self.options["max_trials"])
        for number in ctx.trial_numbers(limit):  # with parallel_trials, each lane takes the next cell
            ctx.run_trial(FixedHyperParameters(runs[number - first]), number=number)


@hookimpl
def tunebench_register_search_strategies(registry):
    registry.add(GridSearch)
