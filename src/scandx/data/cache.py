"""The preprocessed cache: deterministic preprocessing done once, read memory-mapped after.

An entry is one or more ``.npy`` files under ``$SCANDX_CACHE_DIR/preprocessed`` (default
``~/.cache/scandx/preprocessed``, beside the speed cache of ``core/speed.py``), named by a
key that hashes what the array depends on: the content digest of the input file(s)
(``data/identity.content_digest``, never the path, so a copied or renamed file still hits
and a changed file misses) and a stable hash of exactly the settings that change the array
(``stable_hash``: a task's preprocessing fields and the reader version). A changed file or
a changed plan therefore misses exactly what changed; nothing is ever invalidated by hand.

- **Reads** are ``np.load(mmap_mode="c")``: memory-mapped, so only the pages touched are
  read and the OS may drop them again (file-backed, not the process's own memory); "c"
  (copy-on-write) rather than "r" so code that receives the array (torch.from_numpy, an
  in-place operation) works as on an ordinary array, and a write stays private to the
  process: the file is never changed.
- **Writes** go to a unique temporary file in the entry's folder, then ``os.replace``:
  two processes building one entry both succeed (the arrays are deterministic, so either
  copy is right) and a reader never sees half a file. No fsync: a file cut short by a crash
  is detected on reading (the ``.npy`` header promises more bytes than there are), removed
  and rebuilt.
- **Size**: ``SCANDX_CACHE_MAX_GB`` (default 50). After every 5% of the limit written by
  this process, the least recently used entries (file mtime; a hit touches it) are removed
  until the cache holds 90% of the limit; entries this process has opened or written are
  never removed by it. Another process may remove an entry this one has mapped: the
  mapping stays valid (POSIX unlink), and a later open misses and rebuilds.
- **Off or unusable**: ``SCANDX_CACHE=off`` disables it; a folder that cannot be written
  (read-only, full disk, no permission) is reported once and the work goes on uncached.

The cache holds pixel data, so it is as confidential as the images: its folders are
created readable by their owner only (0700).
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from scandx.data.identity import content_digest

log = logging.getLogger(__name__)

DEFAULT_MAX_GB = 50.0
EVICT_TO = 0.9  # an eviction pass leaves the cache at this fraction of the limit
CHECK_EVERY = 0.05  # fraction of the limit written between eviction passes
STALE_TMP_S = 3600.0  # temporary files older than this are leftovers of killed builders
Arrays = dict[str, np.ndarray]


def cache_root() -> Path:
    """``$SCANDX_CACHE_DIR/preprocessed`` (default ``~/.cache/scandx/preprocessed``)."""
    root = os.environ.get("SCANDX_CACHE_DIR") or Path.home() / ".cache" / "scandx"
    return Path(root) / "preprocessed"


def cache_enabled() -> bool:
    return os.environ.get("SCANDX_CACHE", "").strip().lower() not in ("off", "0", "no", "false")


def cache_limit_bytes() -> int:
    raw = os.environ.get("SCANDX_CACHE_MAX_GB", "").strip()
    try:
        gb = float(raw) if raw else DEFAULT_MAX_GB
    except ValueError:
        log.warning("SCANDX_CACHE_MAX_GB=%r is not a number; using %g", raw, DEFAULT_MAX_GB)
        gb = DEFAULT_MAX_GB
    return int(max(gb, 0.0) * 1e9)


def stable_hash(*parts: Any) -> str:
    """A hash of JSON-able values that is the same in every process and on every run."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def decoder_versions() -> str:
    """The versions of the libraries that decode images: part of every reader key, so an
    upgrade that could change decoded pixels rebuilds what it could change."""
    from importlib import metadata

    libs = []
    for name in ("numpy", "pydicom", "pillow", "nibabel", "pylibjpeg", "imagecodecs", "torch"):
        try:
            libs.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            libs.append(f"{name} -")
    return ", ".join(libs)


def file_digest(path: str | Path) -> str:
    """``content_digest`` of a file (remembered per process for an unchanged file); a
    folder (a DICOM series) digests its files' relative names and contents."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file())
        return stable_hash([(str(f.relative_to(p)), file_digest(f)) for f in files])
    return content_digest(p)


class PreprocessedCache:
    """Entries of named arrays under ``root``, addressed by ``(kind, key)``."""

    def __init__(self, root: Path | None = None, max_bytes: int | None = None) -> None:
        self.root = Path(root) if root is not None else cache_root()
        self.max_bytes = cache_limit_bytes() if max_bytes is None else int(max_bytes)
        self.writable = True
        self.in_use: set[str] = set()  # paths this process opened or wrote: never evicted
        self._written = 0
        self._checked = False

    # -- addressing --
    def path(self, kind: str, key: str, part: str) -> Path:
        return self.root / kind / key[:2] / f"{key}.{part}.npy"

    # -- reading --
    def get(self, kind: str, key: str, parts: Iterable[str]) -> Arrays | None:
        """Every part of one entry, memory-mapped; None when any is missing or damaged."""
        out: Arrays = {}
        for part in parts:
            arr = self._load(self.path(kind, key, part))
            if arr is None:
                return None
            out[part] = arr
        return out

    def _load(self, p: Path) -> np.ndarray | None:
        try:
            arr = np.load(p, mmap_mode="c", allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError) as e:  # cut short, garbled, unreadable
            log.warning("damaged cache entry %s (%s): rebuilding it", p.name, e)
            self._remove(p)
            return None
        key = str(p)
        if key not in self.in_use:
            self.in_use.add(key)
            try:
                os.utime(p)  # recently used: the last to be evicted
            except OSError:
                pass  # a read-only cache still serves hits
        return arr

    # -- writing --
    def put(self, kind: str, key: str, arrays: Arrays) -> None:
        """Write every part atomically; a folder that cannot be written turns writing off
        (one warning) and the caller goes on with the arrays it computed."""
        if not self.writable:
            return
        for part, arr in arrays.items():
            p = self.path(kind, key, part)
            try:
                self._write(p, np.asarray(arr))
            except OSError as e:
                self.writable = False
                why = "the disk is full" if e.errno in (errno.ENOSPC, errno.EDQUOT) else e
                log.warning(
                    "preprocessed cache %s cannot be written (%s): going on without it; "
                    "set SCANDX_CACHE_DIR to another folder or SCANDX_CACHE=off",
                    self.root,
                    why,
                )
                return
            self.in_use.add(str(p))
            self._written += p.stat().st_size
        limit = self.max_bytes
        if not self._checked or self._written >= max(CHECK_EVERY * limit, 1):
            self._checked, self._written = True, 0
            self.evict()

    def _write(self, p: Path, arr: np.ndarray) -> None:
        folder = p.parent
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, arr, allow_pickle=False)
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _remove(self, p: Path) -> None:
        try:
            p.unlink(missing_ok=True)
        except OSError:
            pass

    # -- the size limit --
    def entries(self) -> list[tuple[float, int, Path]]:
        """(mtime, bytes, path) of every file in the cache; stale temporary files removed."""
        out: list[tuple[float, int, Path]] = []
        now = time.time()
        stack = [self.root]
        while stack:
            try:
                it = list(os.scandir(stack.pop()))
            except OSError:
                continue
            for e in it:
                try:
                    if e.is_dir(follow_symlinks=False):
                        stack.append(Path(e.path))
                        continue
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                if e.name.endswith(".tmp"):
                    if now - st.st_mtime > STALE_TMP_S:
                        self._remove(Path(e.path))
                    continue
                if e.name.endswith(".npy"):
                    out.append((st.st_mtime, st.st_size, Path(e.path)))
        return out

    def size_bytes(self) -> int:
        return sum(n for _, n, _ in self.entries())

    def evict(self) -> int:
        """Remove least recently used files until the cache holds ``EVICT_TO`` of its
        limit (when it is over it); never a file this process uses. Returns files removed."""
        files = self.entries()
        total = sum(n for _, n, _ in files)
        if total <= self.max_bytes:
            return 0
        removed = 0
        for _, n, p in sorted(files):
            if total <= EVICT_TO * self.max_bytes:
                break
            if str(p) in self.in_use:
                continue
            self._remove(p)
            total -= n
            removed += 1
        log.info("preprocessed cache: %d least recently used file(s) removed", removed)
        return removed

    # -- the one call most users need --
    def fetch(
        self, kind: str, key: str, parts: tuple[str, ...], build: Callable[[], Arrays]
    ) -> tuple[Arrays, bool]:
        """The entry's arrays (memory-mapped) and True on a hit; else ``build()``'s arrays,
        written and then mapped from the cache (so a first pass holds no more in memory than
        a later one; in memory when the cache cannot be written), and False. ``build``
        errors propagate (never cached)."""
        hit = self.get(kind, key, parts)
        if hit is not None:
            return hit, True
        arrays = build()
        self.put(kind, key, arrays)
        if self.writable:
            mapped = self.get(kind, key, parts)
            if mapped is not None:
                return mapped, False
        return arrays, False


_SHARED: dict[tuple[str, int], PreprocessedCache] = {}


def default_cache() -> PreprocessedCache | None:
    """This process's cache for the current environment (None with ``SCANDX_CACHE=off``)."""
    if not cache_enabled():
        return None
    sig = (str(cache_root()), cache_limit_bytes())
    cache = _SHARED.get(sig)
    if cache is None:
        cache = _SHARED[sig] = PreprocessedCache(Path(sig[0]), sig[1])
    return cache
