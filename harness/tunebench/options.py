"""Declared option schemas for plugins, checked before anything trains.

Every dataset, model family and search strategy declares the options a suite may set as a mapping
of names to `Option`. The suite validator checks given values against it and reports every problem
at once; an unknown option is an error, never ignored.
"""

from __future__ import annotations

import difflib
from abc import ABC
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from tunebench.errors import OptionsError

_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
               dict: "a mapping", list: "a list"}


@dataclass(frozen=True)
class Option:
    """One option a plugin accepts.

    Args:
        type: the Python type the value must have (`float` also accepts integers); a tuple of
            types accepts any of them.
        default: the value used when the suite does not set the option.
        help: one sentence for `tunebench plugins` and error messages.
        choices: the allowed values, if the option is an enumeration.
        minimum, maximum: inclusive bounds for numbers.
        required: the suite must set it.
        nullable: `null` is accepted (the default when `default` is None).
    """

    type: type | tuple[type, ...]
    default: Any = None
    help: str = ""
    choices: Sequence[Any] | None = None
    minimum: float | None = None
    maximum: float | None = None
    required: bool = False
    nullable: bool | None = None

    def problem(self, name: str, value: Any) -> str | None:
        """Why `value` is not acceptable for this option, or None if it is."""
        if value is None:
            nullable = self.default is None if self.nullable is None else self.nullable
            return None if nullable and not self.required else f"option '{name}' must be set"
        types = self.type if isinstance(self.type, tuple) else (self.type,)
        ok = any(_is_instance(value, t) for t in types)
        if not ok:
            wanted = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)
            return f"option '{name}' must be {wanted}, not {value!r}"
        if self.choices is not None and value not in self.choices:
            return f"option '{name}' must be one of {', '.join(map(str, self.choices))}; got {value!r}"
        if self.minimum is not None and isinstance(value, (int, float)) and value < self.minimum:
            return f"option '{name}' must be at least {self.minimum}; got {value!r}"
        if self.maximum is not None and isinstance(value, (int, float)) and value > self.maximum:
            return f"option '{name}' must be at most {self.maximum}; got {value!r}"
        return None


def _is_instance(value: Any, t: type) -> bool:
    if t is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, t)


def resolve_options(schema: Mapping[str, Option], given: Mapping[str, Any] | None,
                    ) -> tuple[dict[str, Any], list[str]]:
    """Fill defaults and check `given` against `schema`.

    Returns the resolved options and the list of problems (empty when all is well).
    """
    given = dict(given or {})
    problems: list[str] = []
    for name in given:
        if name not in schema:
            hint = difflib.get_close_matches(name, list(schema), n=1)
            known = ", ".join(sorted(schema)) or "none"
            problems.append(f"unknown option '{name}'"
                            + (f" (did you mean '{hint[0]}'?)" if hint else f" (known options: {known})"))
    resolved: dict[str, Any] = {}
    for name, option in schema.items():
        value = given.get(name, option.default)
        if isinstance(value, int) and not isinstance(value, bool) and option.type is float:
            value = float(value)
        problem = option.problem(name, value)
        if problem:
            problems.append(problem)
        resolved[name] = value
    return resolved, problems


class Configurable(ABC):  # noqa: B024 - an ABC so that its subclasses' abstract methods are enforced
    """Base of every plugin class: a name, a one-line summary and declared options.

    Subclasses set `name` and `options_schema`; instances hold the resolved options in
    `self.options`. Constructing one with bad options raises `OptionsError` listing every problem.
    Each kind's base class declares, in `common_options`, the options every plugin of that kind
    accepts (a dataset's split fractions, a model family's `params`, a strategy's `max_trials`).
    """

    name: str = ""
    options_schema: Mapping[str, Option] = {}
    #: The options every plugin of a kind accepts, declared once by the kind's base class.
    common_options: ClassVar[Mapping[str, Option]] = {}

    def __init__(self, **options: Any) -> None:
        resolved, problems = resolve_options(self.full_schema(), options)
        if problems:
            raise OptionsError(f"{type(self).__name__} '{self.name}' options are not valid:", problems)
        self.options: dict[str, Any] = resolved

    @classmethod
    def full_schema(cls) -> dict[str, Option]:
        """The declared options, including those every plugin of this kind accepts."""
        return {**cls.common_options, **cls.options_schema}

    @classmethod
    def summary(cls) -> str:
        """The first line of the class docstring."""
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""
