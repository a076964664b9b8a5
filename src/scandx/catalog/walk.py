"""The archive's file list, cut into shards whose identity survives a changed tree.

``list_tree`` walks the root with ``data/files.walk_files`` (FIFOs are never opened,
symlink loops end, names that are not UTF-8 are reported) and records each regular
file's relative path, size and mtime; everything else is a failure with its reason.

``make_shards`` cuts the sorted list into shards of about ``shard_size`` files. A shard
ends after a file whose path hashes to a cut mark (content-defined chunking), so adding
or removing one file changes the one shard that holds it, not every shard after it.
A shard's id is a hash of its files' (path, size, mtime): a finished shard of an
unchanged part of the tree has the same id on a rerun, and is not read again.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from scandx.data.files import walk_files

ROW_FORMAT = "1"  # bump when a row's columns or their meaning change: every shard is redone


@dataclass(frozen=True)
class Entry:
    relative: str  # POSIX path relative to the root
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Shard:
    id: str
    entries: tuple[Entry, ...]

    @property
    def first(self) -> str:
        return self.entries[0].relative

    @property
    def last(self) -> str:
        return self.entries[-1].relative


def list_tree(root: Path, exclude: Path | None = None) -> tuple[list[Entry], list[tuple[str, str]]]:
    """(regular files, [(relative path, reason)] for everything that is not one)."""
    files: list[Entry] = []
    problems: list[tuple[str, str]] = []
    skip = str(exclude.resolve()) + os.sep if exclude is not None else None
    for path, problem in walk_files(root):
        relative = relative_path(path, root)
        if skip is not None and (str(path.absolute()) + os.sep).startswith(skip):
            continue  # the catalog being written inside the tree it indexes
        if problem:
            problems.append((relative, problem))
            continue
        try:
            st = path.stat()
        except OSError as e:
            problems.append((relative, f"cannot read ({e.strerror or e})"))
            continue
        files.append(Entry(relative, st.st_size, st.st_mtime_ns))
    return files, problems


def relative_path(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def make_shards(entries: list[Entry], shard_size: int) -> list[Shard]:
    """Consecutive shards of about ``shard_size`` files (at least half, at most thrice)."""
    size = max(int(shard_size), 1)
    shards: list[Shard] = []
    current: list[Entry] = []
    for entry in entries:
        current.append(entry)
        if len(current) >= 3 * size or (len(current) >= (size + 1) // 2 and _cut(entry, size)):
            shards.append(_shard(current))
            current = []
    if current:
        shards.append(_shard(current))
    return shards


def _cut(entry: Entry, size: int) -> bool:
    digest = hashlib.blake2b(entry.relative.encode("utf-8", "surrogateescape"), digest_size=8)
    return int.from_bytes(digest.digest(), "big") % size < 2 or size <= 2


def _shard(entries: list[Entry]) -> Shard:
    h = hashlib.sha256(f"scandx-catalog-rows-{ROW_FORMAT}\n".encode())
    for e in entries:
        h.update(f"{e.relative}\t{e.size}\t{e.mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return Shard(h.hexdigest()[:16], tuple(entries))
