"""Walking a data folder without hanging, looping or silently dropping anything.

``walk_files`` yields every regular file under a folder (following symlinked folders
once each, so a symlink loop ends) and, for everything else it meets, a reason:
a dangling symlink, a symlink loop, a FIFO, a socket or a device, or a name that is
not valid UTF-8. Nothing is opened: a FIFO is recognised by ``stat``, never read.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path


def display_path(path: str | Path) -> str:
    """A path as printable text: bytes that are not UTF-8 appear as ``\\xNN``."""
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


def is_printable_name(path: str | Path) -> bool:
    """False when the name holds bytes that are not UTF-8 (``os.fsdecode`` surrogates)."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def file_problem(path: Path) -> str | None:
    """Why ``path`` is not a readable regular file (None when it is one)."""
    try:
        st = path.stat()  # follows symlinks
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "symlink loop"
        if path.is_symlink():
            return f"dangling symlink (target {display_path(os.readlink(path))} not found)"
        return f"cannot read ({e.strerror or e})"
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a folder, not an image file"
    kind = (
        "a FIFO (named pipe)"
        if stat.S_ISFIFO(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "a device"
    )
    return f"not a regular file: {kind}"


def walk_files(root: Path) -> Iterator[tuple[Path, str | None]]:
    """(path, None) for each regular file under ``root``, sorted; (path, reason) for each
    entry that is not one. Hidden entries (``.name``) are left out, as before."""
    seen: set[tuple[int, int]] = set()
    yield from _walk(root, seen)


def _walk(folder: Path, seen: set[tuple[int, int]]) -> Iterator[tuple[Path, str | None]]:
    try:
        st = folder.stat()
    except OSError as e:
        yield folder, f"cannot open folder ({e.strerror or e})"
        return
    if (st.st_dev, st.st_ino) in seen:
        yield folder, "symlink loop (folder already visited)"
        return
    seen.add((st.st_dev, st.st_ino))
    try:
        entries = sorted(folder.iterdir())
    except OSError as e:
        yield folder, f"cannot list folder ({e.strerror or e})"
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if not is_printable_name(entry.name):
            yield entry, "file name is not valid UTF-8; rename it"
            continue
        problem = file_problem(entry)
        if problem == "is a folder, not an image file":
            yield from _walk(entry, seen)
        else:
            yield entry, problem
