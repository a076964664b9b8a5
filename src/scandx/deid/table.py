"""PS3.15 Table E.1-1 as shipped (package data) and the one action each attribute gets.

The table is ``ps315_table_e1_1_<edition>.json``, made by ``scripts/deid_table.py`` from
innolitics/dicom-standard's extraction of the standard (edition and source commit are
recorded in the file). Nothing is downloaded.

Combined codes. The standard resolves ``X/Z``, ``X/D``, ``Z/D``, ``X/Z/D`` and ``X/Z/U*``
by the attribute's Type in the IOD of the instance (remove a Type 3, empty a Type 2,
dummy a Type 1). scandx does not carry the module tables, so it takes the strongest
choice that keeps any IOD valid, whatever the Type: ``X/Z -> Z``, ``X/D -> D``,
``Z/D -> D``, ``X/Z/D -> D``, ``X/Z/U* -> U`` (the sequence stays; the UIDs in it are
remapped). None of these keeps an original value (Z empties, D writes a dummy, U a keyed
remap), so privacy is the same as removal, and the output never loses a Type 1 or Type 2
attribute the input had (dciodvfy reports no new missing-attribute errors).

Options (PS3.15 E.3): ``modified_dates`` applies the column "Retain Longitudinal
Temporal Information with Modified Dates" (its ``C``: shift the date by a keyed
per-patient offset); ``clean_descriptors`` applies "Clean Descriptors" (its ``C``: keep
the text, scrubbed of the identifiers found in the instance). Where an option's column
is empty the Basic Profile's code stands.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

EDITION = "2024b"
TABLE_FILE = f"ps315_table_e1_1_{EDITION}.json"

# the one action each combined code becomes (see the module docstring for why)
COMBINED = {"X/Z": "Z", "X/D": "D", "Z/D": "D", "X/Z/D": "D", "X/Z/U*": "U"}

# Where the attribute's Type is known to be the same wherever it occurs, the standard's
# own rule (Type 3 -> X, Type 2 -> Z) is applied instead of the general choice above:
# (action, why). A zero-item Type 3 sequence and a missing Type 2C attribute are IOD
# errors (dciodvfy), and Z carries no more than X.
IOD_OVERRIDES = {
    "00081110": ("X", "Referenced Study Sequence is Type 3 (General Study Module)"),
    "00102297": ("Z", "Responsible Person is Type 2C (Patient Module, non-human patient)"),
    "00102299": ("Z", "Responsible Organization is Type 2C (Patient Module, non-human)"),
}

OPTION_COLUMN = {
    "modified_dates": "rtnLongModifDatesOpt",
    "clean_descriptors": "cleanDescOpt",
}


@dataclass(frozen=True)
class Rule:
    """One row of Table E.1-1."""

    key: str  # 8 hex digits, lower case, ``x`` for a wildcard digit; or "private"
    name: str
    basic: str  # the Basic Profile's code as the table gives it
    options: dict[str, str]

    def action(self, options: frozenset[str] = frozenset()) -> str:
        """The single action (X, Z, D, U, K or C) under the options in use."""
        for option in sorted(options):
            code = self.options.get(OPTION_COLUMN.get(option, ""), "")
            if code:
                return code
        if self.key in IOD_OVERRIDES:
            return IOD_OVERRIDES[self.key][0]
        return COMBINED.get(self.basic, self.basic)


@dataclass(frozen=True)
class Table:
    edition: str
    source: str
    source_commit: str
    rules: dict[int, Rule]  # exact tags
    wildcards: tuple[tuple[int, int, Rule], ...]  # (mask, value, rule)
    private: Rule

    def rule(self, tag: int) -> Rule | None:
        """The row that governs ``tag`` (an ``int`` tag), or None if the table does not
        list it (then the attribute is kept)."""
        if (tag >> 16) % 2 == 1:
            return self.private
        found = self.rules.get(tag)
        if found is not None:
            return found
        for mask, value, rule in self.wildcards:
            if tag & mask == value:
                return rule
        return None


def _wildcard(key: str) -> tuple[int, int]:
    """``50xxxxxx`` -> (mask, value) over the 32-bit tag; repeating groups are even."""
    mask = int("".join("0" if c == "x" else "f" for c in key), 16)
    value = int(key.replace("x", "0"), 16)
    if key[2:4] == "xx":  # 50xx / 60xx: even groups 0x..00-0x..1E only
        mask |= 0x00E10000  # group low byte: bits 5-7 and 0 clear
    return mask, value


@functools.lru_cache(maxsize=1)
def load_table() -> Table:
    """Table E.1-1 of the shipped edition."""
    raw: dict[str, Any] = json.loads(
        resources.files("scandx.deid").joinpath(TABLE_FILE).read_text(encoding="utf-8")
    )
    rules: dict[int, Rule] = {}
    wildcards: list[tuple[int, int, Rule]] = []
    private: Rule | None = None
    for key, name, basic, options in raw["attributes"]:
        rule = Rule(key, name, basic, dict(options))
        if key == "private":
            private = rule
        elif "x" in key:
            wildcards.append((*_wildcard(key), rule))
        else:
            rules[int(key, 16)] = rule
    if private is None:  # pragma: no cover - the shipped table has it
        raise RuntimeError(f"{TABLE_FILE}: no row for private attributes")
    return Table(
        raw["edition"], raw["source"], raw["source_commit"], rules, tuple(wildcards), private
    )
