"""The index folder ``scandx embed`` writes and ``scandx similar`` reads:

  manifest.json    format, the embedder's space (kind, run, the run's weights sha256),
                   counts, the metric, the search (exact or approximate, with its
                   parameters), what the indexed images are like (modalities, channels,
                   sizes: for query checks), and the sha256 of every file below
  vectors.npy      (N, dim) float32, row i = case i (read without pickle)
  index.faiss      the FAISS index over those rows
  cases.parquet    the case table: row, case_id, patient_id, label, split, file (its
                   keyed pseudonym, never its path), modality, channels, size, ...,
                   thumb_offset, thumb_bytes
  thumbnails.bin   the cases' small PNG thumbnails end to end (offset and length in the
                   case table): a page shows a case without reopening its original, and
                   a million cases are one file, not a million

Search: exact (``IndexFlatIP`` on unit vectors, whose inner product is the cosine
similarity; ``IndexFlatL2`` otherwise) below ``EXACT_BELOW`` vectors; above it,
approximate IVF-Flat (``nlist`` about 4 sqrt(n) coarse cells, 4 sqrt(nlist) of them
visited per query: recall before speed, for cases a clinician compares), trained on a
seeded sample, so the same vectors give the same index.
Distances are reported as cosine distance (1 - similarity) or Euclidean distance.

The folder is written to a temporary sibling and renamed into place: a reader sees the
old index or the new one, never half of one.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from scandx import __version__
from scandx.core.predictor import sha256
from scandx.errors import ScandxError

log = logging.getLogger(__name__)
logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # which CPU build it picked

FORMAT = "scandx-index/1"
MANIFEST = "manifest.json"
VECTORS = "vectors.npy"
FAISS_FILE = "index.faiss"
CASES = "cases.parquet"
THUMBNAILS = "thumbnails.bin"
FILES = (VECTORS, FAISS_FILE, CASES, THUMBNAILS)
# hashed on every open: the FAISS reader trusts its file (a damaged one can crash the
# process) and the table names the cases; the vectors and thumbnails (gigabytes for a
# million cases) are checked by size, their sha256 kept for a full check
VERIFIED = (FAISS_FILE, CASES)
EXACT_BELOW = 20_000  # vectors; at and above this the index is approximate
MIN_POINTS_PER_CELL = 39  # FAISS's own minimum of training points per k-means centroid
TRAIN_POINTS_PER_CELL = 64


def choose_search(n: int, normalised: bool, exact_below: int = EXACT_BELOW) -> dict[str, Any]:
    """How ``n`` vectors are searched: exact below ``exact_below``, IVF-Flat beyond, with
    parameters chosen from ``n`` (written to the manifest)."""
    metric = "cosine" if normalised else "l2"
    if n < exact_below:
        return {"kind": "exact", "metric": metric, "faiss": "IndexFlatIP" if normalised else
                "IndexFlatL2", "exact_below": exact_below}  # fmt: skip
    nlist = max(1, min(round(4 * math.sqrt(n)), n // MIN_POINTS_PER_CELL, 65536))
    nprobe = min(nlist, max(64, math.ceil(4 * math.sqrt(nlist))))
    return {
        "kind": "approximate",
        "metric": metric,
        "faiss": "IndexIVFFlat",
        "exact_below": exact_below,
        "nlist": nlist,
        "nprobe": nprobe,
        "train_points": min(n, TRAIN_POINTS_PER_CELL * nlist),
        "rule": "nlist = 4 sqrt(n) (at least 39 training points each), nprobe = 4 sqrt(nlist) "
        "(at least 64): a sixth of the cells at 20,000 vectors, 6% at 1,000,000, for "
        "recall@10 above 0.9 on clustered data (benchmarks/retrieval.py: 0.9999 at 1M)",
    }


def build_faiss(vectors: np.ndarray, search: dict[str, Any], seed: int = 0) -> Any:
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    dim = x.shape[1]
    ip = search["metric"] == "cosine"
    if search["kind"] == "exact":
        index = faiss.IndexFlatIP(dim) if ip else faiss.IndexFlatL2(dim)
    else:
        metric = faiss.METRIC_INNER_PRODUCT if ip else faiss.METRIC_L2
        quantizer = faiss.IndexFlatIP(dim) if ip else faiss.IndexFlatL2(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, search["nlist"], metric)
        index.cp.seed = seed
        pick = np.sort(np.random.default_rng(seed).permutation(len(x))[: search["train_points"]])
        index.train(x[pick])
        index.nprobe = search["nprobe"]
    index.add(x)
    return index


def faiss_search(index: Any, search: dict[str, Any], queries: np.ndarray, k: int):
    """(distances, rows), each (Q, k): cosine distance (1 - similarity) or Euclidean
    distance, nearest first; a row of -1 where an approximate search found fewer."""
    if search["kind"] == "approximate":
        index.nprobe = search["nprobe"]
    scores, rows = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    if search["metric"] == "cosine":
        return 1.0 - scores, rows
    return np.sqrt(np.maximum(scores, 0.0)), rows


def write_index(
    out: Path,
    vectors: np.ndarray,
    rows: list[dict[str, Any]],
    thumbnails: list[bytes],
    manifest: dict[str, Any],
    exact_below: int = EXACT_BELOW,
    seed: int = 0,
) -> dict[str, Any]:
    """Write the whole index folder at ``out`` (replacing an older index there);
    returns the manifest written."""
    import faiss
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    _check_target(out)
    if not np.isfinite(vectors).all():
        raise ScandxError("the embedder gave non-finite vectors; nothing written", out)
    search = choose_search(len(vectors), bool(manifest["space"].get("normalised")), exact_below)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        np.save(tmp / VECTORS, np.ascontiguousarray(vectors, dtype=np.float32))
        start = time.perf_counter()
        faiss.write_index(build_faiss(vectors, search, seed), str(tmp / FAISS_FILE))
        search["build_seconds"] = round(time.perf_counter() - start, 3)
        offset = 0
        with open(tmp / THUMBNAILS, "wb") as f:
            for row, png in zip(rows, thumbnails, strict=True):
                f.write(png)
                row["thumb_offset"], row["thumb_bytes"] = offset, len(png)
                offset += len(png)
        pq.write_table(pa.Table.from_pylist(rows), tmp / CASES)
        full = {
            "format": FORMAT,
            "scandx_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **manifest,
            "count": len(vectors),
            "dim": int(vectors.shape[1]),
            "search": search,
            "files": {name: sha256(tmp / name) for name in FILES},
            "bytes": {name: (tmp / name).stat().st_size for name in FILES},
        }
        (tmp / MANIFEST).write_text(json.dumps(full, indent=2) + "\n")
        _replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("index of %d vectors (%s search) at %s", len(vectors), search["kind"], out)
    return full


def _check_target(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ScandxError("--out exists and is a file, not an index folder", out)
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise ScandxError(
            "--out is a folder that holds other files, not an index; not replaced", out
        )


def _replace(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``; an older index there is moved aside first, removed after."""
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of an index folder, with its files checked against their sha256;
    ScandxError (one line) for anything that is not a complete scandx index."""
    path = Path(path)
    where = path / MANIFEST
    if not path.is_dir() or not where.is_file():
        raise ScandxError(
            "not a scandx index (no manifest.json); build one with scandx embed", path
        )
    try:
        manifest = json.loads(where.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ScandxError(f"manifest.json is not readable JSON ({e})", where) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ScandxError(f"not a {FORMAT} manifest (key 'format')", where)
    for key in ("space", "search", "files", "bytes", "count", "dim", "images"):
        if key not in manifest:
            raise ScandxError(f"manifest has no {key!r}", where)
    for name in FILES:
        f = path / name
        if not f.is_file():
            raise ScandxError(f"index file {name} is missing", path)
        if f.stat().st_size != manifest["bytes"].get(name) or (
            name in VERIFIED and sha256(f) != manifest["files"].get(name)
        ):
            raise ScandxError(f"{name} does not match the sha256 in manifest.json", path)
    return manifest


def load_index(path: Path, manifest: dict[str, Any]) -> tuple[Any, Any]:
    """(the FAISS index, the case table as a pyarrow Table), after ``read_manifest``."""
    import faiss
    import pyarrow.parquet as pq

    index = faiss.read_index(str(Path(path) / FAISS_FILE))
    table = pq.read_table(Path(path) / CASES)
    if index.ntotal != manifest["count"] or table.num_rows != manifest["count"]:
        raise ScandxError("index and case table disagree with the manifest's count", path)
    return index, table


def read_thumbnail(path: Path, row: dict[str, Any]) -> bytes:
    with open(Path(path) / THUMBNAILS, "rb") as f:
        f.seek(int(row["thumb_offset"]))
        return f.read(int(row["thumb_bytes"]))
