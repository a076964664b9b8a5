"""Which series a model applies to: rules in a small JSON file, checked key by key.

A selector is a JSON object. Its keys are rules, all of which must hold::

    {"all": [{"modality": ["CT"]},
             {"any": [{"series_description": "(?i)chest"}, {"body_part": ["CHEST"]}]},
             {"min_slices": 20}]}

Rules: ``modality``, ``body_part``, ``orientation`` (axial, coronal, sagittal, oblique,
unknown) and ``image_type`` (every value listed must be in Image Type) take a list of
strings (one string is a list of one), compared without case; ``series_description`` a
regular expression searched in the description; ``min_rows``, ``max_rows``,
``min_columns``, ``max_columns``, ``min_slices``, ``max_slices`` a whole number.
Combinators: ``all`` and ``any`` take a list of selectors, ``not`` one selector. An
unknown key or a value of the wrong type is one ScandxError line naming the file and the
key's path (``all[1].any[0].body_part``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scandx.data.series.model import Series, Study
from scandx.errors import ScandxError

ORIENTATIONS = ("axial", "coronal", "sagittal", "oblique", "unknown")
LIST_RULES = ("modality", "body_part", "orientation", "image_type")
SIZE_RULES = {
    "min_rows": lambda s: s.rows,
    "max_rows": lambda s: s.rows,
    "min_columns": lambda s: s.columns,
    "max_columns": lambda s: s.columns,
    "min_slices": lambda s: s.n_slices,
    "max_slices": lambda s: s.n_slices,
}
KNOWN = ("all", "any", "not", *LIST_RULES, "series_description", *SIZE_RULES)

Test = Callable[[Series], bool]


@dataclass
class Selector:
    """A checked selector; ``rules`` is the JSON it came from."""

    rules: dict[str, Any]
    test: Test
    source: str = ""

    def matches(self, series: Series) -> bool:
        return self.test(series)


def load_selector(path: str | Path) -> Selector:
    """Read and check a selector file (a ScandxError names the file and the key)."""
    path = Path(path)
    try:
        rules = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ScandxError(f"cannot read selector ({e.strerror or e})", path) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ScandxError(f"not valid JSON ({e})", path) from None
    return parse_selector(rules, str(path))


def parse_selector(rules: Any, source: str = "selector") -> Selector:
    return Selector(rules, _compile(rules, "", source), source)


def select(study: Study, selector: Selector) -> list[Series]:
    """The study's image series the selector accepts, in the study's order."""
    return [s for s in study.series if selector.matches(s)]


def _bad(source: str, key: str, reason: str) -> ScandxError:
    return ScandxError(f"key {key!r}: {reason}", source)


def _compile(node: Any, at: str, source: str) -> Test:
    if not isinstance(node, dict):
        raise _bad(source, at or "(top)", f"a selector is a JSON object, not {_kind(node)}")
    if not node:
        raise _bad(source, at or "(top)", "an empty selector selects nothing; give a rule")
    tests = []
    for key, value in node.items():
        name = f"{at}.{key}" if at else key
        if key not in KNOWN:
            raise _bad(source, name, f"unknown key; known: {', '.join(KNOWN)}")
        tests.append(_rule(key, value, name, source))
    return lambda s: all(t(s) for t in tests)


def _rule(key: str, value: Any, name: str, source: str) -> Test:
    if key in ("all", "any"):
        if not isinstance(value, list) or not value:
            raise _bad(source, name, f"a non-empty list of selectors expected, not {_kind(value)}")
        parts = [_compile(v, f"{name}[{i}]", source) for i, v in enumerate(value)]
        if key == "all":
            return lambda s: all(p(s) for p in parts)
        return lambda s: any(p(s) for p in parts)
    if key == "not":
        inner = _compile(value, name, source)
        return lambda s: not inner(s)
    if key == "series_description":
        if not isinstance(value, str):
            raise _bad(source, name, f"a regular expression (string) expected, not {_kind(value)}")
        try:
            pattern = re.compile(value)
        except re.error as e:
            raise _bad(source, name, f"not a valid regular expression ({e})") from None
        return lambda s: pattern.search(s.description) is not None
    if key in SIZE_RULES:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _bad(source, name, f"a whole number >= 0 expected, not {_kind(value)}")
        size = SIZE_RULES[key]
        if key.startswith("min_"):
            return lambda s: size(s) >= value
        return lambda s: size(s) <= value
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        raise _bad(source, name, f"a string or a list of strings expected, not {_kind(value)}")
    wanted = {v.strip().upper() for v in values}
    if key == "orientation":
        unknown = sorted(w.lower() for w in wanted if w.lower() not in ORIENTATIONS)
        if unknown:
            raise _bad(source, name, f"unknown orientation {unknown}; known: {list(ORIENTATIONS)}")
        return lambda s: s.orientation.upper() in wanted
    if key == "image_type":
        return lambda s: wanted <= set(s.image_type)
    attribute = "modality" if key == "modality" else "body_part"
    return lambda s: getattr(s, attribute).upper() in wanted


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "true/false", int: "a number", float: "a number", str: "a string"}.get(
        type(value), "a list" if isinstance(value, list) else "an object"
    ) + (f" ({value!r})" if isinstance(value, int | float | str) else "")
