"""Population-based training (PBT; Jaderberg et al., 2017) on the harness's trial continuation.

A population of `population` random configurations trains `interval` epochs at a time, each stretch
one trial that continues the member's previous trial (weights and optimizer state). After every
generation the members are ranked by their last score. A member in the bottom `quantile` exploits
a member of the top `quantile`: it continues that member's model (its checkpoint) with that
member's hyperparameters, and explores by multiplying the ones named in `perturb` (by default the
learning rate) by 0.8 or 1.2, within their declared range. The others continue their own model.
Members stop at `max_epochs`; the search then starts a fresh population, until the budget ends.
Every trial records `resumed_from` (the trial whose model it continued) and `initial_epoch`.
"""

from __future__ import annotations

import numpy as np

from tunebench import FixedHyperParameters, Option, OptionsError, RandomHyperParameters, SearchStrategy, hookimpl


class PBT(SearchStrategy):
    """Population-based training: exploit a better member's weights, explore by perturbing its hyperparameters."""

    name = "pbt"
    options_schema = {
        "population": Option(int, 4, "members trained side by side", minimum=2),
        "interval": Option(int, 1, "epochs between exploit/explore steps", minimum=1),
        "max_epochs": Option(int, None, "epochs a member trains in all (default: the suite's max_epochs, or 8)",
                             minimum=1),
        "quantile": Option(float, 0.25, "bottom fraction that copies the top fraction", minimum=0.0, maximum=0.5),
        "perturb": Option(list, None, "numeric hyperparameters that explore perturbs (x0.8 or x1.2); default: "
                                      "learning_rate, or where the space has none, every numeric one not pinned"),
    }

    def search(self, ctx):
        rng = np.random.default_rng((ctx.seed, 7919))
        space = ctx.space()
        numeric = [n for n, p in space.items() if p.kind in ("float", "int") and n not in ctx.pins]
        self.perturbed = self.options["perturb"] or (["learning_rate"] if "learning_rate" in numeric else numeric)
        bad = [f"'{n}' ({'a ' + space[n].kind + ', not a number' if n in space else 'not declared'})"
               for n in self.perturbed if n not in space or space[n].kind not in ("float", "int")]
        if bad:
            raise OptionsError("pbt options are not valid:", [
                f"perturb names {', '.join(bad)}: PBT could never explore it; choose among the numeric "
                f"hyperparameters the model family declares: {', '.join(numeric)}"])
        numbers = self.trial_numbers(ctx)
        top_epochs = self.options["max_epochs"] or ctx.max_epochs or 8
        interval = self.options["interval"]
        while True:  # a population after another, until the budget or max_trials ends the search
            members = []  # per member: (its latest trial's record, the epoch its model reached)
            for _ in range(self.options["population"]):
                number = next(numbers, None)
                if number is None:
                    return
                epochs = min(interval, top_epochs)
                record = ctx.run_trial(RandomHyperParameters((ctx.seed, number)), epochs=epochs, number=number,
                                       checkpoint=epochs < top_epochs)
                members.append((record, epochs))
            while any(reached < top_epochs for _, reached in members):
                ranked = sorted(range(len(members)), key=lambda i: _score(members[i][0]), reverse=True)
                cut = max(1, int(round(len(members) * self.options["quantile"])))
                top, bottom = ranked[:cut], set(ranked[-cut:])
                before = list(members)
                for i, (record, reached) in enumerate(before):
                    if reached >= top_epochs:
                        continue
                    source, params = record, dict(record.params)
                    if i in bottom and i not in top:  # exploit a top member's model, explore its hyperparameters
                        source, reached = before[int(rng.choice(top))]
                        params = self.explore(dict(source.params), space, rng)
                    number = next(numbers, None)
                    if number is None:
                        return
                    epochs = min(reached + interval, top_epochs)
                    resume = source.number if source.checkpointed else None
                    new = ctx.run_trial(FixedHyperParameters(params), epochs=epochs, number=number,
                                        resume_from=resume, checkpoint=epochs < top_epochs)
                    members[i] = (new, epochs)
                live = {m[0].number for m in members}
                for record, _ in before:  # nobody continues these any more
                    if record.number not in live:
                        ctx.discard_checkpoint(record.number)

    def explore(self, params, space, rng):
        """Multiply each numeric hyperparameter in `perturb` by 0.8 or 1.2, within its range."""
        for name in self.perturbed:
            param = space.get(name)
            if param is None or name not in params or param.kind not in ("float", "int"):
                continue
            value = params[name] * float(rng.choice([0.8, 1.2]))
            value = min(max(value, param.low), param.high)
            params[name] = int(round(value)) if param.kind == "int" else value
        return params


def _score(record) -> float:
    return record.score if record.score is not None else float("-inf")


@hookimpl
def tunebench_register_search_strategies(registry):
    registry.add(PBT)
