"""AutoKeras's architecture search under the harness's budget.

AutoKeras has no time limit; here its tuners' oracles are driven trial by trial like KerasTuner's
(see `keras_tuner_search`), over the `autokeras` model family's space. `greedy` is AutoKeras's
own oracle, starting from its hand-picked initial architectures; `bayesian`, `hyperband` and
`random` are KerasTuner's. The suite pairs this strategy with the `autokeras` model family, added
automatically when the suite does not list it.
"""

from __future__ import annotations

from tunebench import Option, hookimpl, require
from tunebench_plugins.strategies.keras_tuner_search import UNLIMITED, KerasTunerSearch

TUNERS = ("greedy", "bayesian", "hyperband", "random")


class AutoKerasSearch(KerasTunerSearch):
    """AutoKeras's neural architecture search (ImageClassifier's space), with a selectable tuner."""

    name = "autokeras"
    model_family = "autokeras"
    options_schema = {
        "tuner": Option(str, "greedy", "which tuner proposes architectures", choices=TUNERS),
    }

    def make_oracle(self, kt, objective, seed, ctx):
        tuner = self.options["tuner"]
        if tuner == "greedy":
            require("autokeras", extra="autokeras", purpose="strategy 'autokeras'")
            from autokeras.tuners import greedy, task_specific

            return greedy.GreedyOracle(initial_hps=task_specific.IMAGE_CLASSIFIER, objective=objective,
                                       max_trials=UNLIMITED, seed=seed + 1)
        if tuner == "bayesian":
            return kt.oracles.BayesianOptimizationOracle(objective=objective, max_trials=UNLIMITED, seed=seed + 1)
        if tuner == "hyperband":
            return kt.oracles.HyperbandOracle(objective=objective, max_epochs=ctx.max_epochs or 10, seed=seed + 1)
        return kt.oracles.RandomSearchOracle(objective=objective, max_trials=UNLIMITED, seed=seed + 1)


@hookimpl
def tunebench_register_search_strategies(registry):
    registry.add(AutoKerasSearch)
