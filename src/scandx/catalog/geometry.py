"""Series whose instances do not form one geometry, found from the catalog's rows.

Run once over every shard after the last one is written (a series may span shards).
A series is flagged when its image instances have different Rows x Columns, different
Image Orientation (Patient) (beyond 1e-3), or two instances at one Image Position
(Patient) (to 0.01 mm) that no temporal attribute (Acquisition Number, Temporal
Position Identifier, Trigger Time, Echo Numbers) separates. The rows stay in the
catalog; each flagged series gets one ``series`` row in ``failures/series.parquet``,
and the query view's ``geometry_problem`` column carries its reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scandx.catalog.schema import failure

SERIES_SQL = """
WITH image AS (
    SELECT * FROM read_parquet($files)
    WHERE series_instance_uid IS NOT NULL AND rows IS NOT NULL
),
sizes AS (
    SELECT series_instance_uid AS uid,
           string_agg(DISTINCT rows || 'x' || columns, ', ' ORDER BY rows || 'x' || columns)
               AS shapes,
           count(DISTINCT rows || 'x' || columns) AS n
    FROM image GROUP BY 1
),
orientations AS (
    SELECT series_instance_uid AS uid,
           count(DISTINCT list_transform(image_orientation, lambda v: round(v, 3))) AS n
    FROM image WHERE image_orientation IS NOT NULL GROUP BY 1
),
repeats AS (
    SELECT uid, sum(copies - 1) AS n FROM (
        SELECT series_instance_uid AS uid, count(*) AS copies
        FROM image WHERE image_position IS NOT NULL
        GROUP BY series_instance_uid,
                 list_transform(image_position, lambda v: round(v, 2)),
                 acquisition_number, temporal_position, trigger_time, echo_numbers
        HAVING count(*) > 1
    ) GROUP BY 1
),
folders AS (SELECT series_instance_uid AS uid, min(path) AS first FROM image GROUP BY 1)
SELECT f.uid, f.first, s.shapes, s.n AS shapes_n, o.n AS orientations_n, r.n AS repeats_n
FROM folders f
JOIN sizes s ON s.uid = f.uid
LEFT JOIN orientations o ON o.uid = f.uid
LEFT JOIN repeats r ON r.uid = f.uid
WHERE s.n > 1 OR o.n > 1 OR r.n > 0
ORDER BY f.first
"""


def series_problems(shard_files: list[Path]) -> list[dict[str, Any]]:
    """One ``series`` failure row per series with inconsistent geometry."""
    if not shard_files:
        return []
    import duckdb

    con = duckdb.connect(":memory:")
    try:
        found = con.execute(SERIES_SQL, {"files": [str(p) for p in shard_files]}).fetchall()
    finally:
        con.close()
    out = []
    for uid, first, shapes, shapes_n, orientations_n, repeats_n in found:
        reasons = []
        if shapes_n > 1:
            reasons.append(f"instances of different sizes ({shapes})")
        if (orientations_n or 0) > 1:
            reasons.append(f"instances in {orientations_n} different orientations")
        if (repeats_n or 0) > 0:
            reasons.append(
                f"{repeats_n} instance(s) repeat a slice position that no temporal attribute "
                "separates"
            )
        folder = first.rsplit("/", 1)[0] if "/" in first else "."
        reason = "inconsistent series geometry: " + "; ".join(reasons)
        out.append(failure(folder, reason, "series", uid))
    return out
