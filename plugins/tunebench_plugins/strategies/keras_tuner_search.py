"""KerasTuner's oracles, driven trial by trial by the harness.

KerasTuner has no time budget: here the harness owns the loop. It asks the oracle for a trial
(`create_trial`), runs it under the search's deadline, and reports the result (`update_trial`,
`end_trial`). Hyperband's per-trial epoch budget (`tuner/epochs`) becomes the trial's epoch count,
and a trial promoted to the next round continues the previous round's model from its checkpoint
(`tuner/trial_id`, `tuner/initial_epoch`), as KerasTuner's own Hyperband does: only the trials that
may be promoted keep a checkpoint, and a promoted trial's is freed once continued (`reuse_weights:
false` trains every round from scratch instead, for comparison). Oracle state lives
under the run's results folder (KerasTuner saves it at every trial's start and end): a search that
goes on in a fresh process after a kill reloads it. It is removed at the end unless
`keep_trial_dirs` is set.
"""

from __future__ import annotations

import json
import shutil
from abc import abstractmethod

from tunebench import BudgetExhausted, KerasTunerHyperParameters, Option, SearchStrategy, hookimpl, require

UNLIMITED = 10**6


class KerasTunerSearch(SearchStrategy):
    """Base for strategies backed by a KerasTuner oracle."""

    # KerasTuner's own parallel mode runs the oracle in a chief process that workers reach over
    # gRPC (KERASTUNER_TUNER_ID / ORACLE_IP / ORACLE_PORT); here the oracle lives in the search's
    # process, so a KerasTuner search runs one trial at a time, and `--workers` runs searches side by side.
    serial_reason = (": KerasTuner's oracle lives in the search's process (its distributed mode needs a "
                     "separate chief process reached over gRPC, which tunebench does not start)")

    common_options = {
        **SearchStrategy.common_options,
        "keep_trial_dirs": Option(bool, False, "keep KerasTuner's oracle and trial files after the search"),
    }

    @abstractmethod
    def make_oracle(self, kt, objective, seed, ctx):
        """The `keras_tuner.Oracle` to drive."""

    def continuation(self, oracle, trial, numbers):
        """(resume_from, checkpoint) for `trial`: which of our trials it continues, and whether a
        later trial may continue it. Only Hyperband continues trials."""
        return None, False

    def search(self, ctx):
        kt = require("keras_tuner", purpose=f"strategy '{self.name}'")
        oracle = self.make_oracle(kt, kt.Objective(ctx.objective, direction="max"), ctx.seed, ctx)
        oracle.max_consecutive_failed_trials = UNLIMITED  # the harness records failures; never abort
        # Private to keras-tuner 1.4.8 (pinned in constraints.txt; the test
        # tests/test_package.py::test_the_private_internals_we_use_exist fails on an upgrade that
        # drops them): the oracle's progress display, and where it saves itself (KerasTuner's Tuner
        # sets both; we drive the oracle without a Tuner).
        oracle._display.verbose = 0
        workdir = ctx.workdir / "keras_tuner"
        oracle._set_project_dir(str(workdir), "oracle")
        if ctx.resumed and (workdir / "oracle" / "oracle.json").is_file():
            resume(oracle)
        # Like KerasTuner's own Tuner: build once to learn the define-by-run space, so the oracle
        # samples every hyperparameter from its first trial on (Hyperband stops on an empty space).
        ctx.space(KerasTunerHyperParameters(oracle.hyperparameters))
        # the oracle's trial ids -> our trial numbers, kept beside the oracle for a resumed search
        mapping = workdir / "trial_numbers.json"
        numbers = json.loads(mapping.read_text()) if ctx.resumed and mapping.is_file() else {}
        try:
            for number in self.trial_numbers(ctx):
                trial = oracle.create_trial("tunebench")
                if trial.status != "RUNNING":  # STOPPED: the oracle has nothing more to try
                    return
                numbers[trial.trial_id] = number
                mapping.parent.mkdir(parents=True, exist_ok=True)
                mapping.write_text(json.dumps(numbers))
                epochs = trial.hyperparameters.values.get("tuner/epochs")
                resume_from, keep = self.continuation(oracle, trial, numbers)
                continuation = {}  # only when used: a context written before continuation still works
                if keep:
                    continuation["checkpoint"] = True
                if resume_from is not None:
                    continuation["resume_from"] = resume_from
                try:
                    record = ctx.run_trial(KerasTunerHyperParameters(trial.hyperparameters), epochs=epochs,
                                          number=number, **continuation)
                except BudgetExhausted:
                    trial.status, trial.message = "FAILED", "not run: the search's budget was spent"
                    oracle.end_trial(trial)
                    raise
                if resume_from is not None:
                    ctx.discard_checkpoint(resume_from)  # a trial is promoted once
                if record.selectable:
                    oracle.update_trial(trial.trial_id, {ctx.objective: record.score},
                                        step=record.initial_epoch + record.epochs)
                    trial.status = "COMPLETED"
                else:
                    trial.status, trial.message = "FAILED", record.error or record.status
                oracle.end_trial(trial)
        finally:
            if not self.options["keep_trial_dirs"]:
                shutil.rmtree(workdir, ignore_errors=True)


def resume(oracle):
    """Reload the oracle the killed process saved in the run's folder (KerasTuner saves it at every
    trial's start and end). The trial it had in flight was stopped by the runner: end it as failed,
    rather than let KerasTuner retry it (a trial that hung would hang again)."""
    oracle.reload()
    # private to keras-tuner 1.4.8 (see `search`): the trials KerasTuner would run again
    stopped = list(oracle._retry_queue)
    oracle._retry_queue.clear()
    for trial_id in stopped:
        trial = oracle.trials[trial_id]
        trial.status, trial.message = "FAILED", "stopped by the runner (killed or crashed)"
        oracle.end_trial(trial)


class KTRandom(KerasTunerSearch):
    """KerasTuner's RandomSearch oracle."""

    name = "kt_random"

    def make_oracle(self, kt, objective, seed, ctx):
        return kt.oracles.RandomSearchOracle(objective=objective, max_trials=UNLIMITED, seed=seed + 1)


class KTBayesian(KerasTunerSearch):
    """KerasTuner's Gaussian-process Bayesian optimisation oracle."""

    name = "kt_bayesian"
    options_schema = {
        "num_initial_points": Option(int, 4, "random trials before the Gaussian process takes over", minimum=1),
    }

    def make_oracle(self, kt, objective, seed, ctx):
        return kt.oracles.BayesianOptimizationOracle(objective=objective, max_trials=UNLIMITED, seed=seed + 1,
                                                     num_initial_points=self.options["num_initial_points"])


class KTHyperband(KerasTunerSearch):
    """KerasTuner's Hyperband oracle: successive halving over epoch budgets."""

    name = "kt_hyperband"
    options_schema = {
        "max_epochs": Option(int, None, "largest epoch budget of a trial (default: the suite's max_epochs, or 10)",
                             minimum=1),
        "factor": Option(int, 3, "reduction factor between rounds", minimum=2),
        "hyperband_iterations": Option(int, 1, "how many times to run the whole Hyperband schedule", minimum=1),
        "reuse_weights": Option(bool, True, "a promoted trial continues the previous round's model (as "
                                "KerasTuner's Hyperband does); false trains every round from scratch"),
    }

    def continuation(self, oracle, trial, numbers):
        if not self.options["reuse_weights"]:
            return None, False
        values = trial.hyperparameters.values
        previous = values.get("tuner/trial_id")
        # a trial below the schedule's top epoch budget may be promoted to the next round
        keep = int(values.get("tuner/epochs") or 0) < oracle.max_epochs
        return (numbers.get(previous) if previous is not None else None), keep

    def make_oracle(self, kt, objective, seed, ctx):
        max_epochs = self.options["max_epochs"] or ctx.max_epochs or 10
        return kt.oracles.HyperbandOracle(objective=objective, max_epochs=max_epochs, factor=self.options["factor"],
                                          hyperband_iterations=self.options["hyperband_iterations"], seed=seed + 1)


@hookimpl
def tunebench_register_search_strategies(registry):
    registry.add(KTRandom)
    registry.add(KTBayesian)
    registry.add(KTHyperband)
