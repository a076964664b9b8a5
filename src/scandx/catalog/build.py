"""``build_catalog``: a DICOM tree -> a catalog folder, resumable and incremental.

CATALOG/
  manifest.json                written last: root, shards (in path order), columns,
                               counts, scandx version; its absence means unfinished
  part-<shard id>.parquet      instance rows of one shard
  failures/part-<id>.parquet   files of that shard that gave no row, with the reason
  failures/walk.parquet        entries that are not regular files (FIFO, loop, ...)
  failures/series.parquet      series with inconsistent geometry

A rerun finds the shards already written (a kill leaves whole files only: each is
written to a temporary name and renamed) and reads only the others; over a changed
tree, a shard whose files changed is redone, copying the rows of its unchanged files
(same path, size, mtime) from the previous catalog. Shards no longer listed are
removed once the new manifest is in place.
"""

from __future__ import annotations

import bisect
import datetime as dt
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scandx import __version__
from scandx.catalog.geometry import series_problems
from scandx.catalog.run import ShardTask, default_workers, failures_file, rows_file, run_tasks
from scandx.catalog.schema import FAILURE_SCHEMA, INSTANCE_SCHEMA, failure, write_atomic
from scandx.catalog.walk import ROW_FORMAT, Shard, list_tree, make_shards
from scandx.errors import ScandxError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = "scandx-dicom-catalog"
DEFAULT_SHARD_SIZE = 256


@dataclass
class CatalogSummary:
    out: Path
    files: int  # regular files found
    instances: int
    failed_files: int  # files and walk entries in the failures table
    series_problems: int
    shards: int
    shards_done_before: int  # found finished from an earlier (killed) run
    read: int  # headers read in this run
    complete: bool = True


def is_catalog(path: Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def load_manifest(catalog: Path) -> dict[str, Any]:
    path = Path(catalog) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ScandxError(f"cannot read the catalog manifest ({e})", path) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ScandxError(f"not a scandx DICOM catalog (no format {FORMAT!r})", path)
    return manifest


def build_catalog(
    root: str | Path,
    out: str | Path,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    progress: bool = False,
    _stop_after: int | None = None,
) -> CatalogSummary:
    """Index every file under ``root`` into the catalog folder ``out``.

    ``workers`` processes (default: one per CPU; 1 = serial, in this process), or the
    Dask cluster at ``scheduler``. ``_stop_after`` (tests) stops after that many shards,
    as a kill would."""
    root, out = _check_root(Path(root)), Path(out).expanduser().absolute()
    previous = _previous_manifest(out, root)
    entries, walk_problems = list_tree(root, exclude=out)
    if not entries and not walk_problems:
        raise ScandxError("empty folder: no files to index", root)
    (out / "failures").mkdir(parents=True, exist_ok=True)
    shards = make_shards(entries, shard_size)
    todo = [s for s in shards if not rows_file(out, s.id).is_file()]
    reuse = _reuse_index(previous)
    tasks = [ShardTask(str(root), str(out), s, reuse(s)) for s in todo]
    summary = CatalogSummary(out, len(entries), 0, 0, 0, len(shards), len(shards) - len(todo), 0)
    log.info("%d files in %d shards, %d to index", len(entries), len(shards), len(todo))
    bar = _progress_bar(len(shards), len(shards) - len(todo), progress)
    results = run_tasks(tasks, workers or default_workers(), scheduler)
    try:
        for done, result in enumerate(results, start=1):
            summary.read += result.read
            bar.update(1)
            if _stop_after is not None and done >= _stop_after and done < len(tasks):
                summary.complete = False
                return summary
    finally:
        results.close()
        bar.close()
    _finish(root, out, shards, walk_problems, previous, summary)
    return summary


def _check_root(root: Path) -> Path:
    root = root.expanduser()
    if not root.exists():
        raise ScandxError("DICOM folder not found", root)
    if not root.is_dir():
        raise ScandxError("not a folder: give the root folder of the DICOM archive", root)
    return root.absolute()


def _previous_manifest(out: Path, root: Path) -> dict[str, Any] | None:
    if out.exists() and not out.is_dir():
        raise ScandxError("the catalog path is a file; give a folder", out)
    if not out.is_dir():
        return None
    if is_catalog(out):
        manifest = load_manifest(out)
        if manifest.get("root") != str(root):
            raise ScandxError(
                f"this folder holds the catalog of another root ({manifest.get('root')}); "
                "give another --out",
                out,
            )
        return manifest if manifest.get("row_format") == ROW_FORMAT else None
    stray = [p.name for p in out.iterdir() if p.name not in ("failures",)]
    if stray and not all(n.startswith(("part-", ".part-")) for n in stray):
        raise ScandxError("not a scandx catalog folder (and not empty); give a new folder", out)
    return None


def _reuse_index(previous: dict[str, Any] | None) -> Any:
    """shard -> ids of the previous catalog's shards whose path range meets its own."""
    old = (previous or {}).get("shards") or []
    firsts = [s["first"] for s in old]

    def covering(shard: Shard) -> tuple[str, ...]:
        found = []
        i = bisect.bisect_right(firsts, shard.last) - 1
        while i >= 0 and old[i]["last"] >= shard.first:
            found.append(old[i]["id"])
            i -= 1
        return tuple(reversed(found))

    return covering


def _finish(
    root: Path,
    out: Path,
    shards: list[Shard],
    walk_problems: list[tuple[str, str]],
    previous: dict[str, Any] | None,
    summary: CatalogSummary,
) -> None:
    """The tables written once every shard is: walk failures, series problems, the
    manifest (last), then old shards no longer listed are removed."""
    import pyarrow.parquet as pq

    walk_rows = [failure(path, reason, "walk") for path, reason in walk_problems]
    write_atomic(walk_rows, FAILURE_SCHEMA, out / "failures" / "walk.parquet")
    parts = [rows_file(out, s.id) for s in shards]
    problems = series_problems(parts)
    write_atomic(problems, FAILURE_SCHEMA, out / "failures" / "series.parquet")
    listed = []
    for s in shards:
        rows = pq.read_metadata(rows_file(out, s.id)).num_rows
        failed = pq.read_metadata(failures_file(out, s.id)).num_rows
        summary.instances += rows
        summary.failed_files += failed
        listed.append(
            {"id": s.id, "files": len(s.entries), "rows": rows, "failures": failed}
            | {"first": s.first, "last": s.last}
        )
    summary.failed_files += len(walk_rows)
    summary.series_problems = len(problems)
    manifest = {
        "format": FORMAT,
        "row_format": ROW_FORMAT,
        "scandx_version": __version__,
        "root": str(root),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "files": summary.files,
        "instances": summary.instances,
        "failed_files": summary.failed_files,
        "series_problems": summary.series_problems,
        "shards": listed,
        "columns": INSTANCE_SCHEMA.names,
        "failure_columns": FAILURE_SCHEMA.names,
    }
    tmp = out / f".{MANIFEST}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, out / MANIFEST)
    keep = {s.id for s in shards}
    for folder in (out, out / "failures"):
        for p in folder.glob("part-*.parquet"):
            if p.stem.removeprefix("part-") not in keep:
                p.unlink(missing_ok=True)


def _progress_bar(total: int, initial: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="shard", disable=not enabled, desc="index")
