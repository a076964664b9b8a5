"""One dataset through the Basic Application Level Confidentiality Profile.

Every element, at every depth of every sequence, gets the action Table E.1-1 gives it
(table.py resolves combined codes and options); an element the table does not list is
kept (a sequence the table does not list is walked). Private elements are removed
except the few in SAFE_PRIVATE; overlay planes whose Overlay Data the table removes go
as a whole group (a plane without its data is an invalid module); group lengths go.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from scandx.deid import keyed
from scandx.deid.table import Table

# Retained private attributes: a subset of PS3.15 Table E.3.10-1 ("Exemplary Safe
# Private Attributes"): diffusion b-value and gradient direction, which MR models need
# and which are numbers, never identifiers. (group, creator, element low byte).
SAFE_PRIVATE = {
    (0x0019, "SIEMENS MR HEADER", 0x0C),  # B_value
    (0x0019, "SIEMENS MR HEADER", 0x0E),  # DiffusionGradientDirection
    (0x0043, "GEMS_PARM_01", 0x39),  # slop_int_6..9 (b-value)
    (0x2001, "Philips Imaging DD 001", 0x03),  # Diffusion B-Factor
}
NUMERIC_VRS = {"DS", "IS", "FD", "FL", "SL", "SS", "UL", "US", "SV", "UV"}
FREE_TEXT_VRS = {"PN", "ST", "LT", "UT", "UC"}
DUMMY_TEXT = "ANONYMIZED"
DUMMY = {
    "DA": "19000101",
    "TM": "000000",
    "DT": "19000101000000",
    "AS": "000Y",
    "IS": "0",
    "DS": "0",
    "UR": "urn:anonymized",
}
DUMMY_CODE = ("REMOVED", "99SCANDX", "Removed by de-identification")
BINARY_VRS = {"OB", "OW", "OD", "OF", "OL", "OV", "UN"}


@dataclass
class InstanceContext:
    """What one instance's de-identification needs and records."""

    table: Table
    options: frozenset[str]
    patient_pseudonym: str
    shift_days: int
    scrub: re.Pattern | None = None
    uids: dict[str, str] = field(default_factory=dict)  # old -> new, this instance
    actions: dict[str, int] = field(default_factory=dict)  # action -> count
    kept_private: int = 0

    def count(self, action: str) -> None:
        self.actions[action] = self.actions.get(action, 0) + 1

    def uid(self, old: str) -> str:
        new = keyed.remap_uid(old)
        if new:
            self.uids[old.strip().rstrip("\0")] = new
        return new


def deidentify_dataset(ds: Dataset, ctx: InstanceContext, dummy_text: bool = False) -> None:
    """Apply the profile to ``ds`` in place (``dummy_text``: inside a sequence the table
    replaces with a dummy, free text the table does not list is replaced too)."""
    _drop_overlays_and_curves(ds, ctx)
    # a Patient ID at this level (a nested one may be another patient's) names this
    # level's patient; without one, the instance's patient
    level_pseudonym = (
        keyed.patient_pseudonym(str(ds.PatientID or "")) if "PatientID" in ds else None
    )
    creators = _private_creators(ds)
    for tag in list(ds.keys()):
        elem = ds[tag]
        if tag.element == 0:  # group length: stale once anything changes
            del ds[tag]
            continue
        if tag.is_private:
            _private(ds, elem, creators, ctx)
            continue
        rule = ctx.table.rule(int(tag))
        if rule is None:
            _unlisted(elem, ctx, dummy_text)
            continue
        action = rule.action(ctx.options)
        ctx.count(action)
        _apply(ds, elem, action, ctx, level_pseudonym or ctx.patient_pseudonym)


def _unlisted(elem: DataElement, ctx: InstanceContext, dummy_text: bool) -> None:
    if elem.VR == "SQ":
        for item in elem.value:
            deidentify_dataset(item, ctx, dummy_text)
    elif dummy_text and elem.VR in FREE_TEXT_VRS and not elem.is_empty:
        elem.value = DUMMY_TEXT
    elif dummy_text and elem.VR in ("DA", "DT") and not elem.is_empty:
        _apply_date(elem, ctx)


def _apply(ds: Dataset, elem: DataElement, action: str, ctx: InstanceContext, patient: str) -> None:
    if elem.keyword in ("PatientName", "PatientID") and action in ("Z", "D"):
        elem.value = patient
    elif action == "X":
        del ds[elem.tag]
    elif action == "Z":
        elem.value = elem.empty_value
    elif action == "K":
        if elem.VR == "SQ":
            for item in elem.value:
                deidentify_dataset(item, ctx)
    elif action == "U" or (action == "D" and elem.VR == "UI"):
        _apply_uid(elem, ctx)
    elif action == "D":
        _apply_dummy(elem, ctx)
    elif action == "C":
        _apply_clean(elem, ctx)
    else:  # pragma: no cover - the table has no other code
        raise ValueError(f"unknown action {action!r} for {elem.tag}")


def _apply_uid(elem: DataElement, ctx: InstanceContext) -> None:
    if elem.VR == "SQ":  # X/Z/U*: the sequence stays, its UIDs (U rows) are remapped;
        for item in elem.value:  # it holds references: free text in it is replaced
            deidentify_dataset(item, ctx, dummy_text=True)
    elif elem.VR == "UI":
        if elem.VM > 1:
            elem.value = [ctx.uid(str(v)) for v in elem.value]
        elif not elem.is_empty:
            elem.value = ctx.uid(str(elem.value))
    else:
        _apply_dummy(elem, ctx)


def _apply_dummy(elem: DataElement, ctx: InstanceContext) -> None:
    vr = elem.VR
    if vr == "SQ":
        if elem.keyword.endswith("CodeSequence"):
            item = Dataset()
            item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = DUMMY_CODE
            elem.value = Sequence([item])
        else:  # the items stay; the table at their level and dummy free text
            for item in elem.value:
                deidentify_dataset(item, ctx, dummy_text=True)
    elif vr in DUMMY:
        elem.value = DUMMY[vr]
    elif vr in BINARY_VRS:
        size = max(2, len(elem.value or b""))
        elem.value = b"\0" * (size + size % 2)
    elif vr in NUMERIC_VRS or vr == "AT":
        elem.value = 0
    else:  # text VRs: AE, CS, LO, LT, PN, SH, ST, UC, UT
        elem.value = DUMMY_TEXT


def _apply_date(elem: DataElement, ctx: InstanceContext) -> None:
    """Modified Dates: shift by the patient's offset; otherwise the dummy."""
    if "modified_dates" not in ctx.options:
        elem.value = DUMMY[elem.VR]
        return
    shift = keyed.shift_da if elem.VR == "DA" else keyed.shift_dt
    values = elem.value if elem.VM > 1 else [elem.value]
    shifted = [shift(str(v), ctx.shift_days) for v in values]
    elem.value = shifted if elem.VM > 1 else shifted[0]


def _apply_clean(elem: DataElement, ctx: InstanceContext) -> None:
    """C: a date of the Modified Dates option is shifted (a time stays: the shift is
    whole days); a descriptor of Clean Descriptors is kept, scrubbed of the identifiers
    found in the instance; a sequence is walked."""
    vr = elem.VR
    if vr in ("DA", "DT"):
        if not elem.is_empty:
            _apply_date(elem, ctx)
    elif vr == "TM":
        pass
    elif vr == "SQ":
        for item in elem.value:
            deidentify_dataset(item, ctx)
    elif vr in BINARY_VRS or vr in NUMERIC_VRS:
        _apply_dummy(elem, ctx)  # nothing to read and clean in bytes: the dummy
    elif not elem.is_empty and ctx.scrub is not None:
        values = elem.value if elem.VM > 1 else [elem.value]
        cleaned = [ctx.scrub.sub("*", str(v)) for v in values]
        elem.value = cleaned if elem.VM > 1 else cleaned[0]


def _private_creators(ds: Dataset) -> dict[tuple[int, int], str]:
    """(group, block) -> private creator of the dataset's private blocks."""
    creators = {}
    for tag in ds.keys():
        if tag.is_private and 0x10 <= tag.element <= 0xFF:
            creators[(tag.group, tag.element)] = str(ds[tag].value).strip()
    return creators


def _private(
    ds: Dataset, elem: DataElement, creators: dict[tuple[int, int], str], ctx: InstanceContext
) -> None:
    tag = elem.tag
    if 0x10 <= tag.element <= 0xFF:  # a creator stays while an element of its block does
        block = tag.element
        if not any(
            (tag.group, creators.get((tag.group, block)), e & 0xFF) in SAFE_PRIVATE
            and e >> 8 == block
            and (tag.group << 16 | e) in ds
            and ds[tag.group << 16 | e].VR in NUMERIC_VRS
            for e in range(block << 8, (block << 8) + 0x100)
        ):
            del ds[tag]
        return
    creator = creators.get((tag.group, tag.element >> 8))
    if (tag.group, creator, tag.element & 0xFF) in SAFE_PRIVATE and elem.VR in NUMERIC_VRS:
        ctx.kept_private += 1
        ctx.count("K")
        return
    ctx.count("X")
    del ds[tag]


def _drop_overlays_and_curves(ds: Dataset, ctx: InstanceContext) -> None:
    """Curve groups (50xx, all X) and the overlay planes whose Overlay Data (60xx,3000)
    the profile removes go whole; the table's row applies to the data element."""
    drop = set()
    for tag in ds.keys():
        group = tag.group
        if 0x5000 <= group <= 0x501E and group % 2 == 0:
            drop.add(group)
        elif 0x6000 <= group <= 0x601E and group % 2 == 0 and (group << 16 | 0x3000) in ds:
            rule = ctx.table.rule(group << 16 | 0x3000)
            if rule is not None and rule.action(ctx.options) == "X":
                drop.add(group)
    for tag in [t for t in ds.keys() if t.group in drop]:
        ctx.count("X")
        del ds[tag]
