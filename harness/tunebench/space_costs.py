"""Cost-aware search spaces: the values a search can afford, from a cost model measured at its start.

Before a search's clock starts (`cost_aware_space: true`, the default), its model family's default
configuration is built and one training step of it timed (`training.estimate_step_seconds`, the
same forward-pass estimate the feasibility guard uses). Every other configuration's epoch is
estimated from that one by the ratio of their forward-pass FLOPs per image, counted layer by layer
from the built model (nothing is run), plus a fixed cost per step for its batch size. A value of a
hyperparameter whose configuration (the defaults with that value) cannot train one epoch and
validate within a trial's share of the budget is not offered to the strategy: a choice loses the
value, an integer range its top. The limit is never below `DEFAULT_ALLOWANCE` times the default's
own epoch: the default trains whatever the share, and each trial's share is at least twice its
first epoch (`context.SHARE_FLOOR`), so a value that costs about what the default costs runs, and
leaving it out would leave the strategy little but the default to draw. The defaults' own values
always stay, and so does every value of a hyperparameter that does not change the model's FLOPs (a
learning rate, an activation). What was left out, with each estimate, goes to the run's record
(`runs.space_costs`), which a search that goes on in a fresh process, and every lane of it, reads
back.

The estimate is a model, not a measurement: it holds the other hyperparameters at their defaults,
so a draw that combines several costly values can still be too slow; the feasibility guard turns
it away, and it counts against the strategy as before.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tunebench.datasets import DataSpec
    from tunebench.models import ModelFamily
    from tunebench.space import Param

#: A training step's cost besides its images' FLOPs (dispatch, the optimizer's update of small
#: tensors): what a batch size's number of steps adds to an epoch.
STEP_OVERHEAD_S = 0.002
#: Values whose epoch is within this factor of the default configuration's are always offered.
DEFAULT_ALLOWANCE = 1.25
#: At most this many variant builds, and this many seconds, per search.
MAX_BUILDS = 60
MAX_SECONDS = 15.0
#: ... and at least this many, whatever the budget (5 % of it otherwise): it runs before the clock.
MIN_SECONDS = 2.0
#: Hyperparameters whose values a search's FLOPs never depend on: not built.
NO_COST = frozenset({"optimizer", "learning_rate", "fine_tune_optimizer", "fine_tune_learning_rate",
                     "fine_tune_share", "class_weight", "activation", "weight_decay", "weight_decay_strength",
                     "epochs", "augment"})


@dataclass
class SpaceCosts:
    """What the cost model measured and left out of one search's space.

    Attributes:
        restrictions: per hyperparameter, what is still offered: a list of values (a choice) or
            `{"max": v}` (a range's new top), in the form of a suite's `space:`.
        removed: per hyperparameter, each value left out and its estimated epoch, in seconds.
        share_s: the trial's share of the budget at the search's start.
        limit_s: the epoch the estimates were held against: the share, or `DEFAULT_ALLOWANCE` times
            the default's epoch where that is more.
        default_epoch_s: the default configuration's estimated epoch (with validation).
        builds, seconds: what the estimate cost.
        note: why nothing was estimated, when nothing was (no step time, a build that failed).
    """

    restrictions: dict[str, Any] = field(default_factory=dict)
    removed: dict[str, dict[str, float]] = field(default_factory=dict)
    share_s: float = 0.0
    limit_s: float | None = None
    default_epoch_s: float | None = None
    builds: int = 0
    seconds: float = 0.0
    note: str | None = None
    #: The focus (`focus`): {"varied": [names], "held": {name: default}, "wanted": trials}, or None.
    focused: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"restrictions": self.restrictions, "removed": self.removed, "share_s": round(self.share_s, 2),
                "focused": self.focused,
                "limit_s": None if self.limit_s is None else round(self.limit_s, 2),
                "default_epoch_s": None if self.default_epoch_s is None else round(self.default_epoch_s, 3),
                "builds": self.builds, "seconds": round(self.seconds, 2), "note": self.note}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any] | None) -> SpaceCosts:
        raw = dict(raw or {})
        return cls(restrictions=dict(raw.get("restrictions") or {}), removed=dict(raw.get("removed") or {}),
                   share_s=float(raw.get("share_s") or 0.0), limit_s=raw.get("limit_s"),
                   default_epoch_s=raw.get("default_epoch_s"),
                   builds=int(raw.get("builds") or 0), seconds=float(raw.get("seconds") or 0.0),
                   note=raw.get("note"), focused=raw.get("focused"))

    def describe(self) -> str:
        """What the search's log says: the focus, then the cost model's line."""
        lines = []
        if self.focused:
            held = self.focused["held"]
            lines.append(f"focus: varies {', '.join(self.focused['varied']) or 'nothing'} (about "
                         f"{self.focused['wanted']} scored trials fit the budget: one hyperparameter per "
                         f"{TRIALS_PER_HYPERPARAMETER}); holds {len(held)} at the default: {', '.join(held)}")
        if self.limit_s is not None or self.note or self.removed:
            lines.append(self._costs_line())
        return "\n".join(lines)

    def _costs_line(self) -> str:
        if not self.removed:
            return (f"cost-aware space: every value fits a {self.share_s:.0f} s share"
                    + (f" ({self.note})" if self.note else "") + f"; {self.builds} builds, {self.seconds:.1f} s")
        parts = [f"{name}: {', '.join(str(v) for v in values)}" for name, values in self.removed.items()]
        limit = self.limit_s if self.limit_s is not None else self.share_s
        held = (f"the {self.share_s:.0f} s share" if limit <= self.share_s else
                f"{limit:.0f} s: {DEFAULT_ALLOWANCE:g} x the default's {self.default_epoch_s or 0:.0f} s epoch, "
                f"above the {self.share_s:.0f} s share")
        return (f"cost-aware space: left out (estimated epoch > {held}) "
                f"{'; '.join(parts)}; {self.builds} builds, {self.seconds:.1f} s")


def apply(family: ModelFamily, costs: SpaceCosts) -> None:
    """Offer `family` only what `costs` kept: its restrictions join the suite's `space:` (the
    suite's own entries win)."""
    if not costs.restrictions:
        return
    space = dict(costs.restrictions)
    space.update(family.options.get("space") or {})
    family.options["space"] = space


def for_search(job: Any, store: Any, family: ModelFamily, strategy: Any, data: Any, *,
               fresh: bool) -> SpaceCosts | None:
    """The search's focused, cost-aware space, applied to `family`: worked out now when `fresh` (lane
    0, before its clock starts) and recorded in the run, else read back from the run (a lane, a resume)."""
    from tunebench.settings import DEFAULT_MIN_TRIALS

    if not fresh:
        raw = store.run(job.run_id).get("space_costs")
        costs = SpaceCosts.from_json(raw) if raw else None
        if costs is not None:
            apply(family, costs)
        return costs
    settings = job.search
    if not strategy.explores:
        return None
    wanted = settings.min_trials or DEFAULT_MIN_TRIALS
    focused = focus(family, data.spec, max_epochs=job.max_epochs, wanted=wanted, setting=settings.focus)
    held = {name: [value] for name, value in focused["held"].items()} if focused is not None else {}
    if held:  # before the cost model, which then estimates only what is varied
        apply(family, SpaceCosts(restrictions=held))
    costs = None
    if settings.cost_aware_space and family.cost_model:
        share = share_of(job.budget_s, default_first=settings.first_trial == "defaults",
                         default_share=settings.default_share, wanted=wanted)
        if job.trial_budget_s:
            share = min(share, job.trial_budget_s)
        costs = estimate(family, data.spec, train_size=len(data.x_train), val_size=len(data.x_val), share_s=share,
                         sample=data.x_train[:256], max_epochs=job.max_epochs,
                         time_limit=min(MAX_SECONDS, max(MIN_SECONDS, 0.05 * job.budget_s)))
        apply(family, costs)
    if focused is not None:
        costs = costs or SpaceCosts()
        costs.focused = focused
        costs.restrictions = {**costs.restrictions, **held}
    if costs is None:
        return None
    store.update_run(job.run_id, space_costs=costs.to_json())
    print(costs.describe(), flush=True)
    return costs


#: A search varies one of its family's hyperparameters per this many scored trials its budget buys
#: (`focus: auto`), and never fewer than `MIN_FOCUS`.
TRIALS_PER_HYPERPARAMETER = 3
MIN_FOCUS = 2


def focus(family: ModelFamily, spec: DataSpec, *, max_epochs: int | None, wanted: int,
          setting: int | str = "auto") -> dict[str, Any] | None:
    """Which hyperparameters a search of the family's default space varies, and the values it holds
    the others at (the family default's). A dozen trials cannot explore twenty dimensions: they
    land on draws that are far from the calibrated default in a dozen ways at once, and the search
    ends by selecting the default. The family names its hyperparameters, most important first
    (`ModelFamily.priority`; a name may end in `*`); `setting` says how many of those names are
    varied (`auto`: one per `TRIALS_PER_HYPERPARAMETER` scored trials wanted, at least `MIN_FOCUS`).
    Names the priority leaves out are held too. None (the whole space) with `all`, for a family
    that declares no priority, or when the suite narrowed the space itself (`space:`) or searches
    the epochs."""
    import fnmatch

    from tunebench.declared import declared_space

    if setting == "all" or not family.priority or family.restrictions or family.epochs_searched:
        return None
    count = int(setting) if setting != "auto" else max(MIN_FOCUS, wanted // TRIALS_PER_HYPERPARAMETER)
    found = declared_space(family, spec, None, max_epochs)
    if found.error or found.space_error:
        return None  # the first trial records why the family does not build
    defaults = {**family.default_values(spec), **family.pins}
    free = [name for name, p in found.params.items()
            if name not in family.pins and name not in family.epoch_names and len(p.grid(2)) > 1]
    varied: list[str] = []
    for pattern in family.priority[:count]:
        varied += [n for n in free if fnmatch.fnmatchcase(n, pattern) and n not in varied]
    held = {n: defaults.get(n, found.params[n].default_value) for n in free if n not in varied}
    if not held:
        return None
    return {"varied": varied, "held": held, "wanted": wanted}


def share_of(budget_s: float, *, default_first: bool, default_share: float | None, wanted: int) -> float:
    """A trial's share of the budget at the search's start: what is left after the family default's
    share, over the other trials the search wants."""
    rest = budget_s * (1 - (default_share or 0.0)) if default_first else budget_s
    return rest / max(1, wanted - (1 if default_first else 0))


def model_flops(model: Any) -> float:
    """Forward-pass FLOPs per image of a built Keras model: 2 per multiply-add of every
    convolution and dense layer (nested models included), 1 per output element of the others."""
    import keras

    total = 0.0
    for layer in _leaves(model):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        try:
            outputs = layer.output
        except Exception:  # a layer used twice, or never called: no single output to read
            continue
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        elems = sum(_prod(o.shape[1:]) for o in outputs if getattr(o, "shape", None) is not None)
        macs = 0.0
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            kernel = layer.kernel.shape
            macs = elems * kernel[0] * kernel[1]
        elif isinstance(layer, keras.layers.SeparableConv2D):
            depth, point = layer.depthwise_kernel.shape, layer.pointwise_kernel.shape
            macs = elems * (depth[0] * depth[1] + point[-2])
        elif getattr(layer, "kernel", None) is not None and len(getattr(layer.kernel, "shape", ())) >= 2:
            kernel = layer.kernel.shape  # conv: (k..., in/groups, out); dense: (in, out)
            macs = elems * _prod(kernel[:-1])
        total += 2 * macs + elems
    return total


def _leaves(model: Any) -> list[Any]:
    found = []
    for layer in getattr(model, "layers", []):
        if getattr(layer, "layers", None) and layer is not model:
            found.extend(_leaves(layer))
        else:
            found.append(layer)
    return found


def _prod(shape: Any) -> float:
    out = 1.0
    for d in shape:
        if d is None:
            return 0.0
        out *= int(d)
    return out


def estimate(family: ModelFamily, spec: DataSpec, *, train_size: int, val_size: int, share_s: float,
             sample: Any, max_epochs: int | None = None, time_limit: float = MAX_SECONDS,
             step_seconds: float | None = None) -> SpaceCosts:
    """Build the family's default configuration and time a step (or take `step_seconds`), estimate
    each value's epoch from FLOPs, and return what a trial with `share_s` seconds can afford (see the
    module's docstring)."""
    import keras

    from tunebench import training
    from tunebench.space import FixedHyperParameters

    start = time.monotonic()
    costs = SpaceCosts(share_s=share_s)
    defaults = {**family.default_values(spec), **family.pins}
    restricted = dict(family.restrictions)

    def build(values: Mapping[str, Any], timed: bool = False) -> tuple[float, int, dict[str, Param], float | None]:
        hp = FixedHyperParameters(values).restrict(restricted)
        try:
            model = family.build(hp, spec)
            settings = family.training(hp, spec, max_epochs)
            step = training.estimate_step_seconds(model, sample, settings.batch_size) if timed else None
            return model_flops(model), settings.batch_size, dict(hp.params), step
        finally:
            costs.builds += 1
            keras.backend.clear_session()

    try:
        flops0, batch0, params, step0 = build(defaults, timed=step_seconds is None)
        step0 = step_seconds if step_seconds is not None else step0
    except Exception as exc:  # the first trial meets, and records, the same error
        costs.note = f"the default configuration did not build ({type(exc).__name__})"
        costs.seconds = time.monotonic() - start
        return costs
    if not step0 or flops0 <= 0:
        costs.note = "no step time or FLOPs to scale from"
        costs.seconds = time.monotonic() - start
        return costs
    per_flop_image = max(step0 / batch0 - STEP_OVERHEAD_S / batch0, step0 / batch0 / 4) / flops0
    validation = 1 + training.VALIDATION_COST * val_size / max(1, train_size)

    def epoch_s(flops: float, batch: int) -> float:
        return (train_size * per_flop_image * flops + math.ceil(train_size / batch) * STEP_OVERHEAD_S) * validation

    costs.default_epoch_s = epoch_s(flops0, batch0)
    costs.limit_s = max(share_s, DEFAULT_ALLOWANCE * costs.default_epoch_s)
    queue = [(name, dict(defaults)) for name, param in params.items() if _worth(name, param, family.pins)]
    seen = {name for name, _ in queue}
    while queue:
        name, base = queue.pop(0)
        param = params[name]
        def cost(value: Any, name: str = name, base: dict[str, Any] = base) -> float:
            return _cost(build, base, name, value, epoch_s, params, queue, seen, family.pins)

        kept, removed = _afford(name, param, base, cost, costs.limit_s, deadline=start + time_limit,
                                builds=lambda: costs.builds)
        if removed:
            costs.removed[name] = {str(v): round(s, 2) for v, s in removed.items()}
            costs.restrictions[name] = kept
        if time.monotonic() > start + time_limit or costs.builds >= MAX_BUILDS:
            costs.note = f"stopped after {costs.builds} builds ({time.monotonic() - start:.1f} s); the rest kept"
            break
    costs.seconds = time.monotonic() - start
    return costs


def _worth(name: str, param: Param, pins: Mapping[str, Any]) -> bool:
    return name not in pins and name not in NO_COST and param.kind in ("choice", "int", "boolean")


def _cost(build: Any, base: Mapping[str, Any], name: str, value: Any, epoch_s: Any, params: dict[str, Param],
          queue: list[tuple[str, dict[str, Any]]], seen: set[str], pins: Mapping[str, Any]) -> float:
    """The estimated epoch of the configuration `base` with `name` = `value`. A hyperparameter this
    value newly declares (a conditional one) joins the queue, with this value as its base."""
    values = {**base, name: value}
    flops, batch, declared, _ = build(values)
    for new, param in declared.items():
        if new not in seen and _worth(new, param, pins):
            seen.add(new)
            params[new] = param
            queue.append((new, values))
    return float(epoch_s(flops, batch))


def _afford(name: str, param: Param, base: Mapping[str, Any], cost: Any, share_s: float, *,
            deadline: float, builds: Any) -> tuple[Any, dict[Any, float]]:
    """What of `param` fits `share_s`: (its restriction, {value left out: estimated seconds})."""
    default = base.get(name, param.default_value)
    removed: dict[Any, float] = {}

    def more() -> bool:
        return time.monotonic() <= deadline and builds() < MAX_BUILDS

    if param.kind == "int":
        low, high = int(param.low), int(param.high)  # type: ignore[arg-type]
        top = high
        for value in sorted({high, *(v for v in param.grid(6) if v > default)}, reverse=True):
            if value <= default or not more():
                break
            seconds = cost(value)
            if seconds <= share_s:
                break  # the largest probe that fits: the new top
            removed[value] = seconds
            top = max(int(default), low)  # until a smaller probe fits
        if not removed:
            return None, removed
        fitting = [v for v in param.grid(6) if v not in removed and v < min(removed)]
        top = max([top, *fitting])
        return {"max": top}, removed
    values = [False, True] if param.kind == "boolean" else list(param.values or ())
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    for value in (sorted(values, reverse=True) if numeric else values):
        if value == default or not more():
            continue
        seconds = cost(value)
        if seconds > share_s:
            removed[value] = seconds
    if not removed:
        return None, removed
    return [v for v in values if v not in removed], removed


__all__ = ["SpaceCosts", "apply", "estimate", "for_search", "model_flops", "share_of"]
