"""Asynchronous successive halving (ASHA; Li et al., "A System for Massively Parallel Hyperparameter
Tuning", MLSys 2020) on the harness's trial continuation.

Rungs give trials `min_epochs`, `min_epochs x eta`, ... up to `max_epochs` epochs. Whenever a lane is
free it promotes the best trial of the highest rung that is in its rung's top `1/eta` and has not
been promoted yet, continuing that trial's model (weights and optimizer state) to the next rung's
epochs; when nothing can be promoted it starts a new random configuration (seeded by the search
seed and the trial number, as `random` is) on the lowest rung. Nothing waits for a rung to fill,
so it runs with `parallel_trials` lanes: each lane reads the whole search's trials from the store,
and claims a promotion (`ctx.claim`) before making it, so that no two lanes promote one trial.
`reuse_weights: false` trains each promoted trial from scratch (the same schedule), for comparison.
"""

from __future__ import annotations

import bisect
import math
from typing import Any

from tunebench import (
    FixedHyperParameters,
    HyperParameters,
    Option,
    OptionsError,
    RandomHyperParameters,
    SearchStrategy,
    hookimpl,
)


class ASHA(SearchStrategy):
    """Asynchronous successive halving: promote the top 1/eta of each rung, continuing its model."""

    name = "asha"
    parallel = True
    options_schema = {
        "min_epochs": Option(int, 1, "epochs of the lowest rung", minimum=1),
        "max_epochs": Option(int, None, "epochs of the highest rung (default: the suite's max_epochs, or 9)",
                             minimum=1),
        "eta": Option(int, 3, "reduction factor: the top 1/eta of a rung is promoted to eta times the epochs",
                      minimum=2),
        "reuse_weights": Option(bool, True, "a promoted trial continues its model; false trains it from scratch"),
    }

    def __init__(self, **options):
        super().__init__(**options)
        top = self.options["max_epochs"]
        if top is not None and self.options["min_epochs"] > top:
            raise OptionsError("asha options are not valid:", [
                f"min_epochs ({self.options['min_epochs']}) is more than max_epochs ({top}): the lowest rung "
                f"cannot train more epochs than the highest"])

    def check(self, max_epochs):
        top = self.options["max_epochs"] or max_epochs
        if top is not None and self.options["min_epochs"] > top:
            return [f"min_epochs ({self.options['min_epochs']}) is more than the suite's max_epochs ({top})"]
        return []

    def rungs(self, ctx) -> list[int]:
        """The epochs of each rung, lowest first."""
        top = self.options["max_epochs"] or ctx.max_epochs or 9
        low = min(self.options["min_epochs"], top)
        eta = self.options["eta"]
        count = int(math.floor(math.log(top / low, eta) + 1e-9)) + 1
        epochs = [min(top, low * eta**k) for k in range(count)]
        return epochs if epochs[-1] == top else [*epochs, top]

    def promotion(self, ctx, rungs):
        """The trial to promote now, and its next rung's epochs, or None."""
        self._take(ctx.search_trials(curves=False), rungs, whole=ctx.lanes > 1)  # scores are enough
        eta = self.options["eta"]
        for k in range(len(rungs) - 2, -1, -1):
            rung = self._rungs[k]
            for _, _, t in rung[: len(rung) // eta]:  # the rung's top 1/eta, best first
                if (t.number not in self._promoted and (t.checkpointed or not self.options["reuse_weights"])
                        and ctx.claim(f"promote-{t.number}")):  # no other lane promotes it too
                    return t, rungs[k + 1]
        return None

    def _take(self, trials, rungs, *, whole):
        """Put the search's trials in their rungs, each rung sorted best first, and note which were
        promoted (continued by a later trial, any lane's). One lane's own trials only grow at their
        end, so only the new ones are added (a search of thousands of trials does not rescan them
        all for each promotion); the store's view of several lanes is read whole each time."""
        if whole:
            self._rungs, self._scanned = [[] for _ in rungs], 0
        index = {e: k for k, e in enumerate(rungs)}
        for t in trials[self._scanned:]:
            if t.resumed_from is not None:
                self._promoted.add(t.resumed_from)
            k = index.get(t.epoch_budget)
            if k is not None and t.selectable:
                bisect.insort(self._rungs[k], (-t.score, t.number, t))
        self._scanned = len(trials)

    _rungs: list[list[tuple[float, int, Any]]]

    def search(self, ctx):
        self._promoted: set[int] = set()  # continued by a later trial, or promoted from scratch by this lane
        rungs = self.rungs(ctx)
        self._rungs = [[] for _ in rungs]
        self._scanned = 0
        reuse = self.options["reuse_weights"]
        for number in self.trial_numbers(ctx):
            chosen = self.promotion(ctx, rungs)
            hp: HyperParameters
            if chosen is None:
                hp, epochs, source = RandomHyperParameters((ctx.seed, number)), rungs[0], None
            else:
                trial, epochs = chosen
                hp, source = FixedHyperParameters(trial.params), trial.number
                self._promoted.add(source)
            keep = reuse and epochs < rungs[-1]  # a trial below the top rung may be promoted
            ctx.run_trial(hp, epochs=epochs, number=number, resume_from=source if reuse else None, checkpoint=keep)
            if source is not None:
                ctx.discard_checkpoint(source)  # a trial is promoted once


@hookimpl
def tunebench_register_search_strategies(registry):
    registry.add(ASHA)
