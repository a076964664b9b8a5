"""Checks of a plan.json's values against the plan dataclass: the field types (from the
annotations), finite numbers, and each field's range and choices. Generic: a task's plan
declares only its ``BOUNDS`` and ``CHOICES``; everything else follows from its fields."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from typing import Any

from scandx.errors import ScandxError


@dataclass(frozen=True)
class Bounds:
    """The range of a number (or of each number in a list): ``low <= v <= high``, or
    ``low < v`` when ``low_open``."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False

    def problem(self, v: float) -> str | None:
        if self.low is not None and (v <= self.low if self.low_open else v < self.low):
            return f"must be {'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None and v > self.high:
            return f"must be <= {self.high:g}"
        return None


def positive(*names: str) -> dict[str, Bounds]:
    """Bounds for fields that must be > 0 (integers: >= 1)."""
    return {n: Bounds(0, low_open=True) for n in names}


_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _shown(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def check_value(key: str, value: Any, hint: Any, bounds: Bounds | None) -> Any:
    """``value`` checked against the type ``hint``; returns it (ints as floats where a
    float is expected); raises ScandxError naming ``key`` otherwise."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if value is None:
            raise ScandxError(f"key {key!r}: null is not allowed")
        return check_value(key, value, inner[0], bounds) if len(inner) == 1 else value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ScandxError(f"key {key!r}: expected a list, got {_shown(value)}")
        item = args[0] if args else Any
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ScandxError(f"key {key!r}: expected {len(args)} values, got {len(value)}")
            return tuple(
                check_value(f"{key}[{i}]", v, a, bounds)
                for i, (v, a) in enumerate(zip(value, args, strict=True))
            )
        out = [check_value(f"{key}[{i}]", v, item, bounds) for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ScandxError(f"key {key!r}: expected an object, got {_shown(value)}")
        item = args[1] if args else Any
        return {k: check_value(f"{key}.{k}", v, item, bounds) for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict):
            raise ScandxError(f"key {key!r}: expected an object, got {_shown(value)}")
        return hint(**check_fields(hint, value, key + "."))
    if hint in (int, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if hint is int and ok and isinstance(value, float):
            ok = value.is_integer() and math.isfinite(value)
            value = int(value) if ok else value
        if not ok:
            raise ScandxError(f"key {key!r}: expected {_NAMES[hint]}, got {_shown(value)}")
        if not math.isfinite(value):
            raise ScandxError(f"key {key!r}: must be a finite number, got {value}")
        why = bounds.problem(value) if bounds else None
        if why:
            raise ScandxError(f"key {key!r}: {why}, got {value:g}")
        return float(value) if hint is float else value
    if hint in (str, bool):
        if not isinstance(value, hint):
            raise ScandxError(f"key {key!r}: expected {_NAMES[hint]}, got {_shown(value)}")
        return value
    return value


def check_fields(cls: type, d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The dict's values checked against the dataclass ``cls``: no unknown keys, every
    field without a default present, each value of its field's type and in its range
    (``cls.BOUNDS``) and choices (``cls.CHOICES``)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise ScandxError(f"unknown key '{prefix}{unknown[0]}' (not a field of the plan)")
    hints = typing.get_type_hints(cls)
    bounds: dict[str, Bounds] = getattr(cls, "BOUNDS", {})
    choices: dict[str, tuple[Any, ...]] = getattr(cls, "CHOICES", {})
    out = {}
    for name, f in fields.items():
        if name not in d:
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if required:
                raise ScandxError(f"missing key '{prefix}{name}'")
            continue
        value = check_value(prefix + name, d[name], hints[name], bounds.get(name))
        allowed = choices.get(name)
        if allowed is not None and value is not None and value not in allowed:
            names = ", ".join(map(str, allowed))
            raise ScandxError(f"key '{prefix}{name}': {_shown(value)} is not one of {names}")
        out[name] = value
    return out
