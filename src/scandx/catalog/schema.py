"""The catalog's tables: their Parquet schemas, and writing a table atomically.

``instances`` (``part-<shard id>.parquet``): one row per readable DICOM instance.
``failures`` (``failures/part-<shard id>.parquet``, ``failures/walk.parquet``,
``failures/series.parquet``): ``kind`` ``file`` (the file gives no row), ``walk`` (not
a regular file: FIFO, socket, dangling link, symlink loop, unreadable folder, non-UTF-8
name) or ``series`` (the series' instances are all in ``instances``, but they do not
form one geometry: different sizes or orientations, or repeated slice positions).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

_TEXT = pa.string()

INSTANCE_SCHEMA = pa.schema(
    [
        ("path", _TEXT),  # relative to the catalog's root (manifest.json)
        ("patient", _TEXT),  # keyed pseudonym of PatientID, never the ID
        ("study_instance_uid", _TEXT),
        ("series_instance_uid", _TEXT),
        ("sop_instance_uid", _TEXT),
        ("sop_class_uid", _TEXT),
        ("modality", _TEXT),
        ("body_part", _TEXT),
        ("series_description", _TEXT),
        ("study_date", pa.date32()),
        ("series_date", pa.date32()),
        ("acquisition_date", pa.date32()),
        ("series_number", pa.int32()),
        ("instance_number", pa.int32()),
        ("rows", pa.int32()),
        ("columns", pa.int32()),
        ("number_of_frames", pa.int32()),
        ("bits_stored", pa.int32()),
        ("photometric_interpretation", _TEXT),
        ("pixel_spacing_row", pa.float64()),
        ("pixel_spacing_column", pa.float64()),
        ("slice_thickness", pa.float64()),
        ("image_position", pa.list_(pa.float64())),
        ("image_orientation", pa.list_(pa.float64())),
        ("acquisition_number", _TEXT),
        ("temporal_position", _TEXT),
        ("trigger_time", _TEXT),
        ("echo_numbers", _TEXT),
        ("transfer_syntax_uid", _TEXT),
        ("manufacturer", _TEXT),
        ("model", _TEXT),
        ("file_size", pa.int64()),
        ("mtime_ns", pa.int64()),
    ]
)

FAILURE_SCHEMA = pa.schema(
    [
        ("path", _TEXT),
        ("reason", _TEXT),
        ("kind", _TEXT),  # file | walk | series
        ("series_instance_uid", _TEXT),
        ("file_size", pa.int64()),
        ("mtime_ns", pa.int64()),
    ]
)


def failure(
    path: str,
    reason: str,
    kind: str = "file",
    series: str | None = None,
    size: int | None = None,
    mtime_ns: int | None = None,
) -> dict[str, Any]:
    return {
        "path": path,
        "reason": reason,
        "kind": kind,
        "series_instance_uid": series,
        "file_size": size,
        "mtime_ns": mtime_ns,
    }


def write_atomic(rows: list[dict[str, Any]], schema: pa.Schema, path: Path) -> None:
    """Write ``rows`` as one Parquet file: a temporary file renamed into place, so a
    reader (or a rerun after a kill) sees the whole file or none."""
    table = pa.Table.from_pylist(rows, schema=schema)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_rows(path: Path, columns: list[str] | None = None) -> list[dict[str, Any]]:
    return pq.read_table(path, columns=columns).to_pylist()
