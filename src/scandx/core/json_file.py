"""A user-supplied JSON document read as an object: one line naming the file otherwise."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from scandx.errors import ScandxError


def read_json_object(path: Path, what: str = "") -> dict[str, Any]:
    """The JSON object in ``path`` (UTF-8, a BOM allowed); ``what`` names the document in
    the error when it is not an object (e.g. ``case spec``)."""
    try:
        doc = json.loads(path.read_bytes().decode("utf-8-sig"))
    except (OSError, UnicodeDecodeError) as e:
        raise ScandxError(f"cannot read ({e})", path) from None
    except json.JSONDecodeError as e:
        raise ScandxError(f"not valid JSON ({e.msg} at line {e.lineno})", path) from None
    if not isinstance(doc, dict):
        lead = f"{what} must" if what else "must"
        raise ScandxError(f"{lead} be a JSON object, found {type(doc).__name__}", path)
    return doc
