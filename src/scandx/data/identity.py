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
from collections import defaultdict
from pathlib import Path

from scandx.core.privacy import pseudonym
from scandx.errors import BadImageError

CHUNK = 1 << 20


def content_digest(path: str | Path) -> str:
    """SHA-256 (hex) of a regular file's bytes; BadImageError when it cannot be read."""
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
