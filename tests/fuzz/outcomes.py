"""What every fuzzed input must come to: a result that passes its check, or ScandxError.

ScandxError is what the CLI prints as one line with exit 2; any other exception is a
traceback (exit 1) and a result that fails its check is a silently wrong answer. Both
fail the test, or, with ``SCANDX_FUZZ_TALLY`` set, are counted for the benchmark.
"""

from __future__ import annotations

import json
import os
import traceback
from collections.abc import Callable
from typing import Any

from scandx.errors import ScandxError


def _record(target: str, outcome: str, detail: str = "") -> None:
    path = os.environ.get("SCANDX_FUZZ_TALLY")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"target": target, "outcome": outcome, "detail": detail}) + "\n")


def attempt(
    target: str, run: Callable[[], Any], check: Callable[[Any], str | None] | None = None
) -> Any:
    """Run one fuzz case; ``check`` returns why an accepted result is wrong, or None."""
    tally = bool(os.environ.get("SCANDX_FUZZ_TALLY"))
    try:
        result = run()
    except ScandxError as e:
        if "\n" in str(e):
            _record(target, "wrong", f"multi-line error: {e!r}")
            if not tally:
                raise AssertionError(f"error message is not one line: {e!r}") from e
            return None
        _record(target, "refused")
        return None
    except Exception as e:  # noqa: BLE001 - the point: nothing else may escape
        frame = traceback.extract_tb(e.__traceback__)[-1]
        where = f"{type(e).__name__} at {os.path.basename(frame.filename)}:{frame.lineno}"
        _record(target, "traceback", where)
        if not tally:
            raise
        return None
    problem = check(result) if check else None
    if problem:
        _record(target, "wrong", problem)
        if not tally:
            raise AssertionError(f"{target}: accepted but wrong: {problem}")
        return None
    _record(target, "accepted")
    return result
