"""Stable case identity: a keyed pseudonym of each image's content.

A case id must name the image, not its row in a table or its place on disk: a run's
manifest.csv records which images were trained on, and a later ``evaluate --data
NEW.csv`` must find an image of the training run under the same id (same split)
and a new image under a new one (``external``), whatever the row order or the folder
the data were copied to. The content digest (SHA-256 of the file's bytes) is that
name; it is never written as is (a bare hash of an image is an identifier too): the
case id is ``core.privacy.pseudonym(digest, "case")``. The digest also finds the same
image listed twice, under two names, two patients or two labels.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import defaultdict
from pathlib import Path

from scandx.core.privacy import pseudonym
from scandx.errors import BadImageError

CHUNK = 1 << 20
RACY_NS = 2_000_000_000  # 2 s
_DIGESTS: dict[tuple[object, ...], str] = {}
_DIGEST_LOCK = threading.Lock()


def content_digest(path: str | Path) -> str:
    """SHA-256 (hex) of a regular file's bytes; BadImageError when it cannot be read.
    Computed once per process for an unchanged file (remembered by path, device, inode,
    size and modification time), so a source's case ids and the preprocessed cache's keys
    read each file once. A file modified in the last ``RACY_NS`` is not remembered (as
    git's racy-clean rule: a rewrite of the same size within the file system's timestamp
    granularity would keep its modification time)."""
    memo: tuple[object, ...] | None = None
    try:
        st = os.stat(path)
        if time.time_ns() - st.st_mtime_ns > RACY_NS:
            memo = (os.path.realpath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    except OSError:
        pass  # the read below names the problem
    if memo is not None:
        with _DIGEST_LOCK:
            hit = _DIGESTS.get(memo)
        if hit is not None:
            return hit
    digest = _sha256(path)
    if memo is not None:
        with _DIGEST_LOCK:
            _DIGESTS[memo] = digest
    return digest


def _sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
    except OSError as e:
        raise BadImageError(f"cannot read the file ({e.strerror or e})", path) from None
    return h.hexdigest()


def case_ids_for(digests: list[str]) -> list[str]:
    """One case id per image, from its content; the k-th repeat of one content gets its own
    id (``#k``), so ids stay unique and the first listing keeps the plain one."""
    seen: dict[str, int] = defaultdict(int)
    out = []
    for d in digests:
        k = seen[d]
        seen[d] += 1
        out.append(pseudonym(d if k == 0 else f"{d}#{k}", "case"))
    return out


def duplicate_groups(digests: list[str]) -> list[list[int]]:
    """Indices of the entries that share one content, for every content listed twice or more."""
    by_digest: dict[str, list[int]] = defaultdict(list)
    for i, d in enumerate(digests):
        by_digest[d].append(i)
    return [idx for idx in by_digest.values() if len(idx) > 1]
