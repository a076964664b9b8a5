"""``scandx explain`` on image files, through a run's Predictor."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from scandx.core.predictor import input_ref
from scandx.tasks.classification.inference.predictor import Predictor


def explain_run(
    run: str | Path,
    files: list[str | Path],
    out_dir: str | Path,
    *,
    method: str = "auto",
    class_name: str | None = None,
) -> list[dict[str, Any]]:
    """Heatmap overlays (PNG) and raw maps (.npy) for image files, plus explanations.csv;
    inputs are named by position and keyed pseudonym (``core.predictor.input_ref``)."""
    from scandx.tasks.classification.explain.explain import explain_file, write_explanation

    predictor = Predictor.from_run(run)
    results = [explain_file(predictor, f, method, class_name) for f in files]  # all or nothing
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, r in enumerate(results):
        png = write_explanation(r, out, i)
        rows.append(
            input_ref(i + 1, r["path"])
            | {k: r[k] for k in ("class", "probability", "method", "layer")}
            | {"overlay": str(png)}
        )
    with open(out / "explanations.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return rows
