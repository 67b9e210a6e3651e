"""Grid search: over values declared in the suite, or over the search space's own grid."""

from __future__ import annotations

from typing import Any

import numpy as np

from tunebench import FixedHyperParameters, Option, OptionsError, SearchStrategy, hookimpl


class GridSearch(SearchStrategy):
    """Every combination of the values listed in `grid` (others at their defaults), or of the space's own grid."""

    name = "grid"
    parallel = True
    options_schema = {
        "grid": Option(dict, None, "hyperparameter name -> list of values, e.g. {learning_rate: [0.001, 0.01], "
                                   "units: [32, 64]} (`epochs` there sets each trial's epochs where the "
                                   "family trains epochs as a fidelity); without it, every hyperparameter the "
                                   "model family (or benchmark) declares and the suite does not pin, at `points` "
                                   "values each (a choice at all its values; `space:` restrictions are choices)"),
        "points": Option(int, 3, "values per numeric hyperparameter of the space's own grid (without `grid`)",
                         minimum=2),
        "shuffle": Option(bool, None, "visit the combinations in an order shuffled by the search's seed (default: "
                                      "yes for the space's own grid, which a budget seldom covers; no with `grid`)"),
        "repeats": Option(int, 1, "run each combination this many times", minimum=1),
    }

    def __init__(self, **options):
        super().__init__(**options)
        grid = self.options["grid"]
        if grid is None:
            return
        problems = [f"grid entry '{k}' must be a non-empty list of values, not {v!r}"
                    for k, v in grid.items() if not isinstance(v, list) or not v]
        if not grid:
            problems.append("'grid' must name at least one hyperparameter (or leave it out: the space's own grid)")
        if problems:
            raise OptionsError("grid options are not valid:", problems)

    def axes(self, ctx) -> dict[str, list[Any]]:
        """The values of each hyperparameter the grid varies."""
        if self.options["grid"] is not None:
            return {k: list(v) for k, v in self.options["grid"].items()}
        return {name: param.grid(self.options["points"]) for name, param in ctx.space().items()
                if name not in ctx.pins}

    def combinations(self, ctx=None):
        """The combinations in the order they are visited (each `repeats` times, by `search`). A grid
        too large to list (a space's own grid can be) is visited lazily."""
        axes = self.axes(ctx)
        names = list(axes)
        sizes = [len(axes[n]) for n in names]
        total = int(np.prod(sizes, dtype=object)) if sizes else 1
        shuffle = self.options["shuffle"] if self.options["shuffle"] is not None else self.options["grid"] is None
        rng = np.random.default_rng((ctx.seed if ctx is not None else 0, 4093))
        for index in _indices(total, rng if shuffle else None):
            values, rest = {}, index
            for name, size in zip(reversed(names), reversed(sizes)):  # the last name varies fastest
                rest, i = divmod(rest, size)
                values[name] = axes[name][i]
            yield {n: values[n] for n in names}

    def search(self, ctx):
        space = ctx.space()
        # `epochs` in a grid of a family that trains epochs as a fidelity: each trial's epoch budget
        fidelity = self.options["grid"] is not None and "epochs" in self.options["grid"] and "epochs" not in space
        unknown = sorted(set(self.options["grid"] or ()) - set(space) - ({"epochs"} if fidelity else set()))
        if unknown:
            raise OptionsError("grid options are not valid:",
                               [f"grid entry '{k}' is not a hyperparameter of this search's space (it declares: "
                                f"{', '.join(space) or 'none'})" for k in unknown])
        combos = self.combinations(ctx)
        repeats = self.options["repeats"]
        first = ctx.first_number  # 1 when the family default ran as trial 0
        current, done = None, 0
        for number in ctx.trial_numbers(self.options["max_trials"]):  # lanes take the next cell
            wanted = (number - first) // repeats
            while current is None or done <= wanted:
                current = next(combos, None)
                if current is None:
                    return
                done += 1
            values = dict(current)
            epochs = values.pop("epochs") if fidelity else None
            ctx.run_trial(FixedHyperParameters(values), number=number, epochs=epochs)


def _indices(total, rng):
    """0..total-1, in order, or shuffled by `rng` (lazily, without repeats, for a grid too large to permute)."""
    if rng is None:
        yield from range(total)
    elif total <= 1_000_000:
        yield from (int(i) for i in rng.permutation(total))
    else:
        seen: set[int] = set()
        while len(seen) < total:
            i = int(rng.integers(total))
            if i not in seen:
                seen.add(i)
                yield i


@hookimpl
def tunebench_register_search_strategies(registry):
    registry.add(GridSearch)
