"""Every built-in strategy passes the shipped conformance suite."""

from __future__ import annotations

from tunebench.testing.conformance import StrategyConformance


class TestRandom(StrategyConformance):
    strategy = "random"


class TestGrid(StrategyConformance):
    strategy = "grid"
    options = {"grid": {"units": [4, 8, 16, 32, 64], "epochs": [1, 2]}}


class TestOptunaTPE(StrategyConformance):
    strategy = "optuna_tpe"
    options = {"n_startup_trials": 2}


class TestOptunaRandomWithPruner(StrategyConformance):
    strategy = "optuna_random"
    options = {"pruner": "median"}


class TestOptunaCmaEs(StrategyConformance):
    strategy = "optuna_cmaes"


class TestOptunaGP(StrategyConformance):
    strategy = "optuna_gp"
    # Its first Gaussian-process fit imports torch and fits the kernel: seconds on a loaded machine,
    # which once left fewer than four trials in 8 s. Room, and a trial count that ends it sooner.
    options = {"n_startup_trials": 2, "max_trials": 6}
    budget_s = 30.0


class TestKTRandom(StrategyConformance):
    strategy = "kt_random"


class TestKTBayesian(StrategyConformance):
    strategy = "kt_bayesian"
    options = {"num_initial_points": 2}


class TestKTHyperband(StrategyConformance):
    strategy = "kt_hyperband"
    options = {"max_epochs": 2, "hyperband_iterations": 3}


class TestASHA(StrategyConformance):
    strategy = "asha"
    options = {"max_epochs": 4, "eta": 2}


class TestPBT(StrategyConformance):
    strategy = "pbt"
    options = {"population": 2, "max_epochs": 2}


class TestAutoKeras(StrategyConformance):
    strategy = "autokeras"
    options = {"tuner": "random"}


class TestOptunaNSGA2(StrategyConformance):
    strategy = "optuna_nsga2"
    options = {"objective": "params", "population_size": 4}


class TestOptunaMOTPE(StrategyConformance):
    strategy = "optuna_motpe"
    options = {"objective": "latency", "n_startup_trials": 2}
