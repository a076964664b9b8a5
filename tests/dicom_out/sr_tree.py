"""Reading an SR's content tree flat, for the tests: (concept meaning, value) pairs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pydicom


def items(ds: pydicom.Dataset) -> Iterator[tuple[str, str, Any]]:
    """(concept name meaning, value type, value) of every content item, depth first;
    CODE values are their meaning, NUM values (number, unit code), IMAGE the referenced
    SOP Instance UID."""
    for item in ds.get("ContentSequence", []):
        name = item.ConceptNameCodeSequence[0].CodeMeaning
        kind = item.ValueType
        if kind == "TEXT":
            value: Any = item.TextValue
        elif kind == "CODE":
            value = item.ConceptCodeSequence[0].CodeMeaning
        elif kind == "NUM":
            measured = item.MeasuredValueSequence[0]
            value = (
                float(measured.NumericValue),
                measured.MeasurementUnitsCodeSequence[0].CodeValue,
            )
        elif kind == "IMAGE":
            value = item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        elif kind == "UIDREF":
            value = item.UID
        else:
            value = None
        yield name, kind, value
        yield from items(item)


def values(ds: pydicom.Dataset, name: str, kind: str | None = None) -> list[Any]:
    """Values of the items named ``name`` (of value type ``kind`` when given)."""
    return [v for n, k, v in items(ds) if n == name and kind in (None, k)]


def one(ds: pydicom.Dataset, name: str, kind: str | None = None) -> Any:
    found = values(ds, name, kind)
    assert len(found) == 1, (name, found)
    return found[0]
