"""Fixed-configuration mode: run one configuration (the family's defaults plus its pinned `params`).

Pin a model family's hyperparameters to published values (`params:` in the suite) and pair it
with `fixed` to re-run the original experiment exactly; `repeats` trains it several times.
"""

from __future__ import annotations

from tunebench import FixedHyperParameters, Option, SearchStrategy, hookimpl


class Fixed(SearchStrategy):
    """Runs exactly one configuration: the family's defaults with its pinned `params` (re-runs a published setting)."""

    name = "fixed"
    explores = False
    options_schema = {"repeats": Option(int, 1, "train the configuration this many times", minimum=1)}

    def search(self, ctx):
        # With `first_trial: defaults` the harness already ran this configuration as trial 0: it
        # counts as the first repeat. Trial numbers also carry the count across a resume.
        for number in ctx.trial_numbers(self.options["repeats"]):
            # the default's own epochs, as the harness's first trial trains them
            ctx.run_trial(FixedHyperParameters(ctx.default_values()), number=number, epochs=ctx.default_epochs())


@hookimpl
def tunebench_register_search_strategies(registry):
    registry.add(Fixed)
