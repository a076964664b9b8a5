"""Hypothesis strategies that damage valid inputs the way real files get damaged."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

# byte-level damage: flip, overwrite, insert, delete, truncate, at any position
_edit = st.tuples(
    st.sampled_from(["flip", "overwrite", "insert", "delete", "truncate"]),
    st.floats(0, 1, allow_nan=False),
    st.binary(min_size=1, max_size=16),
)
edits = st.lists(_edit, min_size=1, max_size=6)


def damage(data: bytes, plan: list[tuple[str, float, bytes]]) -> bytes:
    """Apply byte edits; positions are fractions of the length so they scale to any file."""
    out = bytearray(data)
    for op, where, chunk in plan:
        i = min(int(where * len(out)), max(len(out) - 1, 0))
        if op == "flip" and out:
            out[i] ^= chunk[0] or 0xFF
        elif op == "overwrite":
            out[i : i + len(chunk)] = chunk
        elif op == "insert":
            out[i:i] = chunk
        elif op == "delete":
            del out[i : i + len(chunk)]
        elif op == "truncate":
            del out[i:]
    return bytes(out)


# JSON values of every type, including the awkward ones (NaN and inf survive json.dumps)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)

# numbers that break arithmetic: zero, negative, huge, non-finite
odd_numbers = st.sampled_from([0, -1, 1, 2**31, -(2**31), 1e30, -1e30, math.nan, math.inf, 0.5])


@st.composite
def mutated_mapping(draw: Any, valid: dict[str, Any]) -> dict[str, Any]:
    """A valid JSON object with keys dropped, retyped, nested values broken or extras added."""
    d = dict(valid)
    keys = sorted(d)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["drop", "retype", "odd", "extra"]))
        if op == "extra" or not keys:
            d[draw(st.text(max_size=10))] = draw(json_values)
            continue
        k = draw(st.sampled_from(keys))
        if op == "drop":
            d.pop(k, None)
        elif op == "retype":
            d[k] = draw(json_values)
        else:
            d[k] = draw(odd_numbers)
    return d
