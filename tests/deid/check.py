"""Checks every Table E.1-1 attribute of an input against its de-identified output."""

from __future__ import annotations

from collections import Counter

from pydicom.dataset import Dataset

from scandx.deid import keyed
from scandx.deid.table import load_table

PSEUDONYM_KEYWORDS = ("PatientName", "PatientID")


def _text(value: object) -> str:
    return str(value).strip()


def check_actions(
    inp: Dataset, out: Dataset, options: frozenset[str] = frozenset(), patient: str | None = None
) -> Counter:
    """Assert each listed attribute of ``inp`` got its action in ``out``; walk sequences
    that kept their items. Returns the count of checks per action."""
    table = load_table()
    if "PatientID" in inp or patient is None:
        patient = _text(inp.get("PatientID", "") or "")
    checked: Counter = Counter()
    for elem in inp:
        tag = int(elem.tag)
        if elem.tag.is_private or elem.tag.element == 0:
            continue
        group = tag >> 16
        if 0x6000 <= group <= 0x601E and (group << 16 | 0x3000) in inp:
            assert tag not in out, f"{elem.tag}: overlay plane kept"
            continue
        rule = table.rule(tag)
        where = f"{elem.tag} {elem.keyword or ''}"
        if rule is None:
            if elem.VR == "SQ" and tag in out and len(out[tag].value) == len(elem.value):
                for a, b in zip(elem.value, out[tag].value, strict=True):
                    checked += check_actions(a, b, options, patient)
            continue
        action = rule.action(options)
        checked[action] += 1
        if action == "X":
            assert tag not in out, f"{where}: X but present"
            continue
        assert tag in out, f"{where}: {action} but absent"
        new = out[tag]
        assert new.VR == elem.VR or elem.VR == "UN", f"{where}: VR {elem.VR} -> {new.VR}"
        if elem.keyword in PSEUDONYM_KEYWORDS:
            assert _text(new.value) == keyed.patient_pseudonym(patient), where
        elif action == "Z":
            assert new.is_empty, f"{where}: Z but {new.value!r}"
        elif action == "U" and elem.VR == "UI":
            values = elem.value if elem.VM > 1 else [elem.value]
            expected = [keyed.remap_uid(str(v)) for v in values]
            got = list(new.value) if new.VM > 1 else [new.value]
            assert [str(v) for v in got] == expected, f"{where}: U not the keyed remap"
        elif action in ("U", "K") and elem.VR == "SQ":
            assert len(new.value) == len(elem.value), f"{where}: items lost"
            for a, b in zip(elem.value, new.value, strict=True):
                checked += check_actions(a, b, options, patient)
        elif action == "D":
            _check_dummy(elem, new, where)
        elif action == "K":
            assert new.value == elem.value, f"{where}: K but changed"
    return checked


def _check_dummy(old, new, where: str) -> None:
    if old.VR == "SQ":
        for item in new.value:  # a dummy code, or the items de-identified
            assert isinstance(item, Dataset)
        return
    if old.is_empty:
        return
    assert not new.is_empty, f"{where}: D but empty"
    if old.VR == "UI":
        assert str(new.value).startswith("2.25."), f"{where}: D on a UID is the keyed remap"
    if old.VR not in ("US", "SS", "UL", "SL", "FL", "FD", "IS", "DS"):
        assert new.value != old.value, f"{where}: D kept the original"
