"""``scandx index``: build a catalog of a DICOM archive, or query one.

    scandx index DICOM_ROOT --out CATALOG [--workers N | --scheduler ADDRESS] [--shard-size K]
    scandx index CATALOG --query "modality = 'CR' and rows >= 1024" [--count | --out-csv F]
    scandx index CATALOG --query Q --labels L.csv --label-column C --save-selection SEL.json

The first form indexes (a rerun resumes, and re-reads only what changed); the others
query the catalog made by the first. cli_service.py adds the subparser with
``add_index_command`` and calls ``run_index``; a ``ScandxError`` is one line, exit 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from scandx.catalog.build import DEFAULT_SHARD_SIZE, build_catalog, is_catalog
from scandx.errors import ScandxError

log = logging.getLogger(__name__)

EXAMPLE = (
    "scandx index /pacs/archive --out archive-catalog\n"
    "  scandx index archive-catalog --query \"modality = 'CR' and rows >= 1024\" --count"
)


def add_index_command(sub: Any) -> argparse.ArgumentParser:
    """Add ``index`` to an ``add_subparsers()`` object; returns its parser."""
    help_ = (
        "catalog a DICOM archive (headers only) into Parquet, in parallel, or query a "
        "catalog with a DuckDB WHERE condition"
    )
    s = sub.add_parser(
        "index",
        help=help_,
        description=help_,
        epilog=f"examples:\n  {EXAMPLE}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("source", type=Path, help="DICOM folder to index, or a catalog to query")
    s.add_argument("--out", type=Path, help="catalog folder to write (indexing)")
    s.add_argument(
        "--workers",
        type=int,
        help="local worker processes (default: one per CPU; 1 = serial, in this process)",
    )
    s.add_argument(
        "--scheduler",
        help="address of a Dask scheduler (tcp://host:8786): one task per shard on its "
        "workers, which must see the archive and the catalog folder at the same paths",
    )
    s.add_argument(
        "--shard-size",
        type=int,
        default=DEFAULT_SHARD_SIZE,
        help=f"files per shard, on average (default {DEFAULT_SHARD_SIZE})",
    )
    s.add_argument("--query", help="DuckDB WHERE condition over the catalog's columns")
    s.add_argument("--count", action="store_true", help="print only how many rows match")
    s.add_argument("--out-csv", type=Path, help="write the matching rows here (default stdout)")
    s.add_argument("--labels", type=Path, help="label CSV for --save-selection")
    s.add_argument("--label-column", help="the label CSV's label column")
    s.add_argument(
        "--join",
        choices=("sop_instance_uid", "path"),
        default="sop_instance_uid",
        help="the column joining labels to the catalog (default sop_instance_uid)",
    )
    s.add_argument(
        "--save-selection",
        type=Path,
        help="write a selection file (catalog + query + labels): a --data source for train",
    )
    s.set_defaults(run_command=run_index)
    return s


def run_index(args: argparse.Namespace) -> int:
    if is_catalog(args.source):
        return _run_query(args)
    for flag in ("query", "count", "out_csv", "save_selection"):
        if getattr(args, flag):
            raise ScandxError(
                f"--{flag.replace('_', '-')} needs a catalog (a folder with manifest.json)",
                args.source,
            )
    if args.out is None:
        raise ScandxError("--out CATALOG is needed to index a DICOM folder", args.source)
    if args.workers is not None and args.workers < 1:
        raise ScandxError("--workers must be 1 or more")
    if args.shard_size < 1:
        raise ScandxError("--shard-size must be 1 or more")
    summary = build_catalog(
        args.source,
        args.out,
        workers=args.workers,
        scheduler=args.scheduler,
        shard_size=args.shard_size,
        progress=sys.stderr.isatty(),
    )
    problems = f", {summary.series_problems} series with inconsistent geometry"
    print(
        f"indexed {summary.instances} instance(s) from {summary.files} file(s) into "
        f"{summary.out} ({summary.read} header(s) read, {summary.shards} shard(s)); "
        f"{summary.failed_files} failed{problems if summary.series_problems else ''} "
        f"(see {summary.out / 'failures'})"
    )
    return 0


def _run_query(args: argparse.Namespace) -> int:
    from scandx.catalog import query

    if args.out is not None:
        raise ScandxError("--out is for indexing; use --out-csv for query results", args.out)
    if args.save_selection is not None:
        return _save_selection(args)
    if args.count:
        print(query.count(args.source, args.query))
        return 0
    if args.out_csv is None:
        query.write_csv(args.source, args.query)
        return 0
    tmp = args.out_csv.with_name(f".{args.out_csv.name}.tmp")
    try:
        with open(tmp, "w", newline="") as f:
            n = query.write_csv(args.source, args.query, f)
        tmp.replace(args.out_csv)
    finally:
        tmp.unlink(missing_ok=True)
    print(f"wrote {n} row(s) to {args.out_csv}")
    return 0


def _save_selection(args: argparse.Namespace) -> int:
    from scandx.catalog.query import count
    from scandx.catalog.source import save_selection

    if args.labels is None or not args.label_column:
        raise ScandxError("--save-selection needs --labels L.csv and --label-column C")
    n = count(args.source, args.query)  # refuses a bad query before anything is written
    save_selection(
        args.save_selection,
        args.source,
        args.query or "",
        args.labels,
        args.label_column,
        args.join,
    )
    print(
        f"wrote {args.save_selection}: {n} instance(s) selected; train with "
        f"scandx train --data {args.save_selection} --out RUN"
    )
    return 0
