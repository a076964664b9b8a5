"""The one error type users see: what went wrong, and where."""

from __future__ import annotations

from pathlib import Path


class ScandxError(Exception):
    """A problem with the user's input or request.

    The CLI prints ``str(error)`` as one line and exits with code 2; nothing else
    should ever reach the user as a traceback for bad input.
    """

    def __init__(self, reason: str, where: str | Path | None = None):
        self.reason = " ".join(str(reason).split())  # one line, always
        self.where = str(where) if where is not None else None
        super().__init__(f"{self.where}: {self.reason}" if self.where else self.reason)


class BadImageError(ScandxError):
    """One image file could not be read; ``--skip-bad`` may skip it."""
