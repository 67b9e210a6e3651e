"""Random search with the harness's own sampler."""

from __future__ import annotations

from tunebench import RandomHyperParameters, SearchStrategy, hookimpl


class RandomSearch(SearchStrategy):
    """Random search: independent uniform (log-uniform on log scales) draws, seeded per trial."""

    name = "random"
    parallel = True

    def search(self, ctx):
        for number in self.trial_numbers(ctx):
            # Seeded by (search seed, trial number): the same seed proposes the same sequence, however
            # many lanes share the search.
            ctx.run_trial(RandomHyperParameters((ctx.seed, number)), number=number)


@hookimpl
def tunebench_register_search_strategies(registry):
    registry.add(RandomSearch)
