"""Constraints on configuration values, declared once as data and checked at the boundary.

Modelled on scikit-learn's ``_param_validation``: a config class lists, per field, what
values it accepts; :func:`validate` checks them all when the config is built and fails on
the first bad one with one line naming the option, what it accepts and what it got::

    error: --fps: must be a number > 0 (or left out); got nan

The option is named as the CLI spells it (``min_face`` -> ``--min-face``), so the CLI only
maps names to flags and never repeats a check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from numbers import Integral, Real
from typing import Any

from fer.errors import FerError


@dataclass(frozen=True)
class Interval:
    """A number in ``[low, high]`` (``None``: unbounded; ``open`` excludes the bounds);
    ``integer`` asks for a whole number. NaN and infinities never pass."""

    low: float | None = None
    high: float | None = None
    integer: bool = False
    open: bool = False

    def accepts(self, value: Any) -> bool:
        kind = Integral if self.integer else Real
        if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.open else value <= self.high)

    def __str__(self) -> str:
        kind = "a whole number" if self.integer else "a number"
        lo, hi = (">", "<") if self.open else (">=", "<=")
        if self.low is not None and self.high is not None:
            return f"{kind} in {'(' if self.open else '['}{self.low:g}, {self.high:g}{')' if self.open else ']'}"
        if self.low is not None:
            return f"{kind} {lo} {self.low:g}"
        if self.high is not None:
            return f"{kind} {hi} {self.high:g}"
        return kind


@dataclass(frozen=True)
class Options:
    """One of a fixed set of values."""

    choices: tuple

    def accepts(self, value: Any) -> bool:
        return value in self.choices

    def __str__(self) -> str:
        return "one of " + ", ".join(map(str, self.choices))


#: ``None`` is allowed where a field's constraints include it.
NONE = None

POSITIVE = Interval(0, None, open=True)
AT_LEAST_ONE = Interval(1, None, integer=True)
NON_NEGATIVE_INT = Interval(0, None, integer=True)
NON_NEGATIVE = Interval(0, None)
PROBABILITY = Interval(0, 1)


def option(default: Any, help: str) -> Any:
    """A config field that is also a command-line option (:func:`flag` of its name): its
    default and its help are declared here, once, and the CLI builds the option from them."""
    return field(default=default, metadata={"help": help})


def flag(name: str) -> str:
    """The CLI option of a config field."""
    return "--" + name.replace("_", "-")


def validate(config: Any, constraints: dict[str, tuple]) -> None:
    """Check every field of ``config`` named in ``constraints`` (a tuple of constraints per
    field; the value must satisfy one of them, ``None`` meaning the value may be None).

    Raises:
        FerError: ``--option: must be <what it accepts>; got <value>``.
    """
    names = {f.name for f in fields(config)}
    for name, allowed in constraints.items():
        if name not in names:
            raise KeyError(f"{type(config).__name__} has no field {name!r}")  # a bug, not a user mistake
        check(name, getattr(config, name), *allowed)


def check(name: str, value: Any, *allowed) -> None:
    """Check one value against its constraints (one must hold; ``NONE``: it may be None),
    for the options of a library call that has no config class.

    Raises:
        FerError: ``--name: must be <what it accepts>; got <value>``.
    """
    if not any(value is None if c is NONE else c.accepts(value) for c in allowed):
        # In the CLI's terms: an option that may be None is one that may be left out.
        accepted = " or ".join(str(c) for c in allowed if c is not NONE)
        optional = " (or left out)" if NONE in allowed else ""
        raise FerError(f"{flag(name)}: must be {accepted}{optional}; got {value!r}")
