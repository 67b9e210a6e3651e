"""The one reference build: a model family built once with its defaults (and the suite's pins), to
learn the search space it declares on some data.

A define-by-run space is only known by building a model, so the search (`SearchContext.space`),
the pin checks of a suite (`tunebench validate`), a trial's check of its pins, and `tunebench
plugins show` all build one. They do it here, and only here: this module owns the Keras import
that takes, and the messages about pins.

The command line never imports Keras itself: `declared_in_child` runs the builds in a child
process (`python -m tunebench.declared`) under the memory guard, so that a pinned model too large
for the machine fails that child with a message, not the command, and TensorFlow's start-up lines
stay off the terminal (`quiet.drop_start_up_noise`).
"""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tunebench.errors import SpaceError, TunebenchError
from tunebench.space import DefaultHyperParameters, HyperParameters, Param

if TYPE_CHECKING:
    from tunebench.datasets import DataSpec
    from tunebench.models import ModelFamily


@dataclass(frozen=True)
class DeclaredSpace:
    """What one build of a model family declared.

    Attributes:
        params: the hyperparameters declared, in order (those of the branches the values took).
        values: the value each one took.
        unused_pins: pinned names no declaration used (a typo, or a branch these values skip).
        pin_problems: pins that do not fit their declaration (a wrong type, a value outside a
            categorical's choices), every one of them.
        param_count: the built model's parameter count (when asked for).
        space_error: a declaration that contradicts another (the family's own bug), reported with the pins.
        error: why the build failed otherwise (not reported here: the first trial records it).
    """

    params: dict[str, Param]
    values: dict[str, Any]
    unused_pins: tuple[str, ...] = ()
    unused_restrictions: tuple[str, ...] = ()
    pin_problems: tuple[str, ...] = ()
    #: Pins that fit but lie outside what the family searches: warnings, not errors.
    pin_notes: tuple[str, ...] = ()
    #: For each pinned name the defaults never reach: the other hyperparameter's value that declares it.
    parents: tuple[tuple[str, str], ...] = ()
    param_count: int | None = None
    #: The training settings' epochs: {"fidelity": whether the harness assigns them, "most": the
    #: most a trial may have on this data, "default": the family default's} (None if the build failed).
    epochs: dict[str, Any] | None = None
    space_error: str | None = None
    error: str | None = None

    def problems(self, family: str, unused: Sequence[str] | None = None) -> list[str]:
        """Every problem with the pins, as a suite (and a trial) reports them: bad values, then the
        `unused` names (default: every unused pin) the family does not declare, each with the
        closest declared name."""
        found = [f"model family '{family}': {p}" for p in (*self.pin_problems, *filter(None, [self.space_error]))]
        named = [("pinned", n) for n in (self.unused_pins if unused is None else unused)]
        named += [("restricted (space)", n) for n in (self.unused_restrictions if unused is None else ())]
        parents = dict(self.parents)
        for how, name in named:
            if name in parents:
                found.append(f"model family '{family}': {how} hyperparameter '{name}' is declared only when "
                             f"{parents[name]}, which the pinned defaults do not reach; pin that too")
                continue
            hint = difflib.get_close_matches(name, list(self.params), n=1)
            found.append(f"model family '{family}': {how} hyperparameter '{name}' is not one it declares ("
                         + (f"did you mean '{hint[0]}'? " if hint else "")
                         + f"it declares: {', '.join(self.params) or 'none'})")
        return found


def declared_space(family: ModelFamily, spec: DataSpec, pins: Mapping[str, Any] | None = None,
                   max_epochs: int | None = None, *, hp: HyperParameters | None = None,
                   count_params: bool = False, space: Mapping[str, Any] | None = None,
                   find_parents: bool = False) -> DeclaredSpace:
    """Build `family` once on data of `spec` with `hp`'s answers (its defaults when None), `pins` and
    the suite's restricted `space` (default: the family's own options for both), declare its
    training settings, and free the model. Nothing is trained.

    A pin that does not fit its declaration is reported in `pin_problems` (all of them, each
    declaration then taking its default), never raised; another failure of the build is kept in
    `error`.
    """
    import keras

    hp = (hp or DefaultHyperParameters()).pin(dict(family.pins if pins is None else pins))
    hp.restrict(family.restrictions if space is None else space)
    hp.collect_pin_problems()
    count, space_error, error, epochs = None, None, None, None
    try:
        model = family.build(hp, spec)
        settings = family.training(hp, spec, max_epochs)
        epochs = {"fidelity": settings.fidelity, "most": settings.epochs,
                  "default": settings.default_epochs if settings.fidelity else settings.epochs}
        if count_params:
            count = int(model.count_params())
        del model
    except SpaceError as exc:  # a declaration that contradicts another: the family's own bug
        space_error = str(exc)
    except Exception as exc:  # the first trial meets, and records, the same error
        error = f"{type(exc).__name__}: {exc}"
    finally:
        keras.backend.clear_session()
    parents = (_parents(family, spec, dict(family.pins if pins is None else pins), hp, max_epochs)
               if find_parents and hp.unused_pins() and error is None and space_error is None else ())
    return DeclaredSpace(hp.params, hp.values, unused_pins=tuple(hp.unused_pins()),
                         unused_restrictions=tuple(hp.unused_restrictions()), pin_problems=tuple(hp.pin_problems),
                         pin_notes=tuple(hp.pin_notes), parents=parents, param_count=count, epochs=epochs,
                         space_error=space_error,
                         error=error)


#: At most this many extra builds look for the hyperparameter a conditional pin depends on.
PARENT_BUILDS = 12


def _parents(family: ModelFamily, spec: DataSpec, pins: dict[str, Any], reference: HyperParameters,
             max_epochs: int | None) -> tuple[tuple[str, str], ...]:
    """For each pin the pinned defaults never declare, a value of another (unpinned, finite)
    hyperparameter under which the family does declare it: `filters_3` needs `blocks = 4`."""
    import keras

    missing = set(reference.unused_pins())
    found: dict[str, str] = {}
    builds = 0
    for name, param in reference.params.items():
        if name in pins or not missing - set(found):
            continue
        for value in param.grid(6) if param.kind in ("choice", "boolean", "int") else ():
            if value == reference.values[name] or builds >= PARENT_BUILDS:
                continue
            builds += 1
            hp = DefaultHyperParameters().pin({**pins, name: value})
            hp.collect_pin_problems()
            try:
                family.build(hp, spec)
                family.training(hp, spec, max_epochs)
            except Exception:  # this value does not build: it declares nothing
                continue
            finally:
                keras.backend.clear_session()
            for gone in missing - set(found) - set(hp.unused_pins()):
                found[gone] = f"{name} = {value!r} (the pinned defaults give {reference.values[name]!r})"
    return tuple(found.items())


def pin_problems(checks: Sequence[tuple[str, ModelFamily, DataSpec]], *, plugins: Sequence[str] = (),
                 in_child: bool = True, warnings: list[str] | None = None) -> list[str]:
    """Every problem with the pins of each (label, family, spec), as `tunebench validate` reports
    them, each once. The builds run in one child process (`declared_in_child`) when `in_child`
    (the families' plugins must be importable by module name there), else in this one."""
    found: list[str] = []
    if in_child:
        requests = [Request(family.name, dict(family.options), tuple(spec.input_shape), tuple(spec.class_names),
                            spec.task, spec.train_size, label=label)
                    for label, family, spec in checks]
        replies = declared_in_child(requests, plugins) if requests else []
        answers = [a["problems"] for a in replies]
        notes = [n for a in replies for n in a.get("notes", [])]
    else:
        built = [(label, declared_space(family, spec, find_parents=True)) for label, family, spec in checks]
        answers = [d.problems(label) for label, d in built]
        notes = [f"model family '{label}': {n}" for label, d in built for n in d.pin_notes]
    for problems in answers:
        found.extend(p for p in problems if p not in found)
    if warnings is not None:
        warnings.extend(n for n in notes if n not in warnings)
    return found


# -- in a child process, for the command line ------------------------------------------------------------

@dataclass(frozen=True)
class Request:
    """One reference build to run in a child: the family by registered name with its options (its
    pins and restricted space among them)."""

    family: str
    options: Mapping[str, Any]
    input_shape: tuple[int, ...]
    class_names: tuple[str, ...]
    task: str = "multiclass"
    train_size: int | None = None
    max_epochs: int | None = None
    #: How messages name the family (its label in the suite); its name when empty.
    label: str = ""


#: The memory the child may hold (RLIMIT_DATA), unless `TUNEBENCH_MEMORY_LIMIT` says otherwise.
CHILD_MEMORY_SHARE = 0.8


def declared_in_child(requests: Sequence[Request], plugins: Sequence[str] = (), *,
                      timeout_s: float = 600.0) -> list[dict[str, Any]]:
    """Run `declared_space` for each request in one child process, under the memory guard; returns,
    per request, `params` (name -> description, default value), `param_count`, `problems` and
    `error`. What the child writes to standard error reaches this one's without TensorFlow's
    start-up lines.

    Raises:
        TunebenchError: the child died (out of memory, a crash) or did not answer in time.
    """
    import psutil

    from tunebench.job import MEMORY_LIMIT_ENV
    from tunebench.quiet import drop_start_up_noise, quiet_environment

    env = quiet_environment(dict(os.environ))
    env.setdefault(MEMORY_LIMIT_ENV, str(int(CHILD_MEMORY_SHARE * psutil.virtual_memory().total)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)  # the plugins the parent can import
    payload = json.dumps({"plugins": list(plugins), "requests": [r.__dict__ for r in requests]}, default=list)
    try:
        done = subprocess.run([sys.executable, "-m", "tunebench.declared"], input=payload, capture_output=True,
                              text=True, env=env, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise TunebenchError(f"building the pinned models to check their hyperparameters took longer than "
                             f"{timeout_s:.0f} s") from None
    noise_free = drop_start_up_noise(done.stderr)
    if done.returncode != 0 or not done.stdout.strip():
        limit = int(env[MEMORY_LIMIT_ENV]) / 1e9
        why = (f"ran out of memory (the memory guard allows {limit:.1f} GB; a pinned model may be too large)"
               if done.returncode in (-9, 137) or "MemoryError" in done.stderr or "bad_alloc" in done.stderr
               else f"exited with code {done.returncode}")
        tail = "\n".join(noise_free.strip().splitlines()[-5:])
        raise TunebenchError(f"the process that builds each pinned model once, to check its hyperparameters, "
                             f"{why}" + (f":\n{tail}" if tail else ""))
    if noise_free.strip():
        sys.stderr.write(noise_free)
    answers: list[dict[str, Any]] = json.loads(done.stdout.strip().splitlines()[-1])
    return answers


def _serve_child() -> int:
    """`python -m tunebench.declared`: the requests on stdin, the answers as one JSON line on stdout."""
    from tunebench.datasets import DataSpec
    from tunebench.job import limit_memory
    from tunebench.quiet import quiet_environment
    from tunebench.registry import load_plugins

    limit_memory()
    quiet_environment()
    raw = json.loads(sys.stdin.read())
    catalog = load_plugins(tuple(raw["plugins"]))
    answers = []
    for r in (Request(**req) for req in raw["requests"]):
        family = catalog.model_families.get(r.family)(**r.options)
        spec = DataSpec(tuple(r.input_shape), tuple(r.class_names), r.task, r.train_size)  # type: ignore[arg-type]
        found = declared_space(family, spec, None, r.max_epochs, count_params=True, find_parents=True)
        label = r.label or r.family
        answers.append({"params": {n: [p.describe(), found.values[n], p.kind] for n, p in found.params.items()},
                        "param_count": found.param_count, "epochs": found.epochs, "problems": found.problems(label),
                        "notes": [f"model family '{label}': {n}" for n in found.pin_notes], "error": found.error})
    sys.stdout.write(json.dumps(answers, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(_serve_child())


__all__ = ["DeclaredSpace", "Request", "declared_in_child", "declared_space"]
