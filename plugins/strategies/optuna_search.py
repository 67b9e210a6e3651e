"""Optuna samplers driven trial by trial (ask/tell), so the harness keeps the clock."""

from __future__ import annotations

from abc import abstractmethod

from harness import Option, OptunaHyperParameters, SearchStrategy, hookimpl, require


class OptunaSearch(SearchStrategy):
    """Base for Optuna strategies: a study driven with ask/tell, one harness trial per Optuna trial."""

    @abstractmethod
    def make_sampler(self, optuna, seed):
        """The `optuna.samplers.BaseSampler` to use, seeded with the search's seed."""

    def search(self, ctx):
        optuna = require("optuna", extra="optuna", purpose=f"strategy '{self.name}'")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(direction="maximize", sampler=self.make_sampler(optuna, ctx.seed))
        for _ in self.trial_numbers():
            trial = study.ask()
            record = ctx.run_trial(OptunaHyperParameters(trial))
            if record.selectable:
                study.tell(trial, record.score)
            elif record.status == "pruned":
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            else:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)


class OptunaTPE(OptunaSearch):
    """Optuna's Tree-structured Parzen Estimator (TPESampler), seeded."""

    name = "optuna_tpe"
    options_schema = {
        "n_startup_trials": Option(int, 10, "random trials before TPE takes over", minimum=0),
        "multivariate": Option(bool, False, "model dependencies between hyperparameters"),
    }

    def make_sampler(self, optuna, seed):
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.options["n_startup_trials"],
                                          multivariate=self.options["multivariate"])


@hookimpl
def tunebench_register_search_strategies(registry):
    registry.add(OptunaTPE)
