"""Label vocabulary: what a user wrote in a label column, normalised before any work.

``0``, ``0.0`` and ``00`` name one class; ``Lesion``, ``lesion`` and `` lesion `` name
one class (the most frequent spelling is kept); ``NaN``, ``None``, ``null``, ``n/a``
and empty cells are missing labels, never a class. Every merge is reported, so the
plan can say which spellings were taken as one class.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

UNLABELLED = "unlabelled"  # the split of cases without a label (training images only)
UNLABELLED_FOLDERS = ("unlabelled", "unlabeled")  # folder names that hold unlabelled images
MISSING_LABELS = frozenset({"", "nan", "none", "null", "na", "n/a", "#n/a", "?"})


def is_missing_label(value: str | None) -> bool:
    """True for an empty cell or a spelling of 'no value' (NaN, None, null, n/a)."""
    return value is None or " ".join(str(value).split()).lower() in MISSING_LABELS


def _spelling_key(value: str) -> str:
    """The key under which spellings of one class meet: numbers by value, text by case."""
    text = " ".join(value.split())
    try:
        number = float(text)
    except ValueError:
        return text.casefold()
    if math.isfinite(number) and number == int(number):
        return str(int(number))
    return repr(number) if math.isfinite(number) else text.casefold()


@dataclass
class LabelVocabulary:
    """Each raw value's class name (None: missing), and one note per merge."""

    labels: list[str | None]
    notes: list[str] = field(default_factory=list)


def normalise_labels(raw: list[str | None]) -> LabelVocabulary:
    """Map raw label cells to class names: spellings of one class merged, missing -> None."""
    spellings: dict[str, Counter[str]] = defaultdict(Counter)
    raw_forms: dict[str, set[str]] = defaultdict(set)
    keys: list[str | None] = []
    for value in raw:
        if value is None or is_missing_label(value):
            keys.append(None)
            continue
        text = " ".join(str(value).split())
        key = _spelling_key(text)
        spellings[key][text] += 1
        raw_forms[key].add(str(value))
        keys.append(key)
    name_of: dict[str, str] = {}
    notes: list[str] = []
    for key, counts in sorted(spellings.items()):
        # a number keeps its plain form (1.0 -> 1); text its most frequent spelling
        name = key if _is_number(key) else sorted(counts, key=lambda s: (-counts[s], s))[0]
        name_of[key] = name
        if len(raw_forms[key]) > 1:
            merged = ", ".join(repr(v) for v in sorted(raw_forms[key]))
            notes.append(f"labels {merged} taken as one class {name!r}")
            log.info("label vocabulary: %s", notes[-1])
    return LabelVocabulary([name_of[k] if k is not None else None for k in keys], notes)


def _is_number(key: str) -> bool:
    try:
        float(key)
    except ValueError:
        return False
    return True
