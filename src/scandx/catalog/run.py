"""Indexing shards: one task per shard, run serially, on a process pool or on Dask.

A task reads its files' headers (``headers.read_row``) and writes its own two Parquet
files (rows, failures) into the catalog folder, atomically, the failures first: a
shard whose rows file exists is finished. So the workers must see the archive and the
catalog folder at the same paths as the machine that starts the command (a cluster's
shared file system). Rows of files unchanged since a previous catalog (same path, size
and mtime) are copied from its shards instead of read again.

Each task returns a small summary (counts, never rows) and a check value of the
pseudonym secret, so a Dask worker keyed with another secret (other ``patient``
pseudonyms) is refused instead of silently mixing two keys in one catalog.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scandx.catalog.headers import HeaderProblem, read_row
from scandx.catalog.schema import FAILURE_SCHEMA, INSTANCE_SCHEMA, failure, read_rows, write_atomic
from scandx.catalog.walk import Shard
from scandx.core.privacy import pseudonym
from scandx.errors import ScandxError

log = logging.getLogger(__name__)

SECRET_CHECK = "scandx catalog secret check"
CONNECT_TIMEOUT_S = 30  # waiting for a Dask scheduler


@dataclass(frozen=True)
class ShardTask:
    root: str
    out: str
    shard: Shard
    previous: tuple[str, ...] = ()  # shard files of the previous catalog covering its paths


@dataclass
class ShardResult:
    id: str
    rows: int
    failures: int
    read: int  # files whose header was read (not copied from a previous catalog)
    secret_check: str = field(default="", repr=False)


def rows_file(out: Path, shard_id: str) -> Path:
    return out / f"part-{shard_id}.parquet"


def failures_file(out: Path, shard_id: str) -> Path:
    return out / "failures" / f"part-{shard_id}.parquet"


def index_shard(task: ShardTask) -> ShardResult:
    """Read one shard's headers and write its rows and failures (the worker's job)."""
    root, out = Path(task.root), Path(task.out)
    known_rows, known_failures = _previous(task)
    rows: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    read = 0
    for e in task.shard.entries:
        key = (e.relative, e.size, e.mtime_ns)
        if key in known_rows:
            rows.append(known_rows[key])
            continue
        if key in known_failures:
            failures.append(known_failures[key])
            continue
        read += 1
        try:
            rows.append(read_row(root / e.relative, e.relative, e.size, e.mtime_ns))
        except HeaderProblem as problem:
            failures.append(failure(e.relative, str(problem), "file", None, e.size, e.mtime_ns))
    write_atomic(failures, FAILURE_SCHEMA, failures_file(out, task.shard.id))
    write_atomic(rows, INSTANCE_SCHEMA, rows_file(out, task.shard.id))
    check = pseudonym(SECRET_CHECK, "chk")
    return ShardResult(task.shard.id, len(rows), len(failures), read, check)


def _previous(task: ShardTask) -> tuple[dict, dict]:
    """{(path, size, mtime): row} and the same for failures, from the previous
    catalog's shards that cover this shard's paths."""
    if not task.previous:
        return {}, {}
    wanted = {e.relative for e in task.shard.entries}
    rows: dict = {}
    fails: dict = {}
    out = Path(task.out)
    for shard_id in task.previous:
        for store, path in (
            (rows, rows_file(out, shard_id)),
            (fails, failures_file(out, shard_id)),
        ):
            try:
                found = read_rows(path)
            except (OSError, ValueError) as e:  # gone or damaged: read the files again
                log.info("previous shard %s not reused (%s)", shard_id, type(e).__name__)
                continue
            for r in found:
                if r["path"] in wanted and r.get("mtime_ns") is not None:
                    store[(r["path"], r["file_size"], r["mtime_ns"])] = r
    return rows, fails


def run_tasks(
    tasks: list[ShardTask], workers: int, scheduler: str | None = None
) -> Iterator[ShardResult]:
    """Each task's result as it finishes: serially (``workers`` 1), on a local process
    pool, or on the Dask cluster at ``scheduler``. Closing the iterator early cancels the
    tasks not started."""
    if scheduler:
        yield from _run_dask(tasks, scheduler)
    elif workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield _checked(index_shard(task))
    else:
        yield from _run_pool(tasks, workers)


def _checked(result: ShardResult) -> ShardResult:
    if result.secret_check != pseudonym(SECRET_CHECK, "chk"):
        raise ScandxError(
            "a worker uses another pseudonym secret than this machine, so its patient "
            "pseudonyms would not match; give every worker the same secret file "
            "(SCANDX_SECRET_FILE on a shared, private path)"
        )
    return result


def _run_pool(tasks: list[ShardTask], workers: int) -> Iterator[ShardResult]:
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks))) as pool:
        pending: set[Future] = {pool.submit(index_shard, t) for t in tasks}
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield _checked(future.result())
        finally:
            for future in pending:
                future.cancel()


def _run_dask(tasks: list[ShardTask], scheduler: str) -> Iterator[ShardResult]:
    try:
        from dask.distributed import Client, as_completed
    except ImportError:
        raise ScandxError(
            "--scheduler needs dask.distributed (pip install 'dask[distributed]')"
        ) from None
    try:
        client = Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S}s")
    except (OSError, TimeoutError, ValueError) as e:
        raise ScandxError(f"cannot reach the Dask scheduler ({e})", scheduler) from None
    futures = []
    try:
        futures = client.map(
            index_shard, tasks, key=[f"scandx-index-{t.shard.id}" for t in tasks], pure=False
        )
        for future in as_completed(futures):
            yield _checked(future.result())
    finally:
        for future in futures:
            future.cancel()
        client.close()


def default_workers() -> int:
    return os.cpu_count() or 1
