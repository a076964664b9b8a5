"""The one error type users see: what went wrong, and where."""

from __future__ import annotations

import os
from pathlib import Path


def _printable(text: str) -> str:
    """Text that prints anywhere: bytes of a non-UTF-8 file name appear as ``\\xNN``."""
    try:
        raw = os.fsencode(text)
    except UnicodeEncodeError:  # a surrogate that no file name decodes to
        raw = text.encode("utf-8", "backslashreplace")
    return raw.decode("utf-8", "backslashreplace")


class ScandxError(Exception):
    """A problem with the user's input or request.

    The CLI prints ``str(error)`` as one line and exits with code 2; nothing else
    should ever reach the user as a traceback for bad input.
    """

    def __init__(self, reason: str, where: str | Path | None = None):
        self.reason = _printable(" ".join(str(reason).split()))  # one line, always
        self.where = _printable(str(where)) if where is not None else None
        super().__init__(f"{self.where}: {self.reason}" if self.where else self.reason)


class BadImageError(ScandxError):
    """One image file could not be read; ``--skip-bad`` may skip it."""
