"""``scandx demo --task segmentation``: synthetic ellipses (PNG images + masks) -> plan ->
train -> evaluate -> predict, through the same library functions a user's data would."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from scandx.core.predictor import predict_run
from scandx.core.run_dir import fresh_demo_folder
from scandx.tasks.segmentation.evaluate import seg_evaluate_run
from scandx.tasks.segmentation.synthetic import make_ellipse_folders
from scandx.tasks.segmentation.workflow import seg_train_run

log = logging.getLogger(__name__)


def run_seg_demo(out: str | Path, time_budget_s: float | None = None, seed: int = 0) -> str:
    out = fresh_demo_folder(out)
    t0 = time.perf_counter()
    data = make_ellipse_folders(out / "ellipses", n=24, size=64, seed=seed)
    run = out / "run"
    summary = seg_train_run(data, run, time_budget_s=time_budget_s or 60.0, seed=seed)
    m = seg_evaluate_run(run, data, split="val", n_boot=200)
    images = sorted((Path(data) / "images").iterdir())[:2]
    rows = predict_run(run, images, out / "masks")
    d = m["dice"]
    return "\n".join(
        [
            "",
            f"scandx demo (segmentation): synthetic ellipses, {summary['epochs_run']} epochs, "
            f"{time.perf_counter() - t0:.0f}s in all",
            f"validation Dice {d['value']:.3f} (95% CI {d['ci95'][0]:.3f}-{d['ci95'][1]:.3f}) "
            f"on {m['cases']} held-out cases",
            f"run directory: {run}  (plan.json, model/, log.jsonl, eval/val/report.html)",
            f"predict on {len(rows)} image(s) -> {out / 'masks'} (predictions.csv + masks)",
        ]
    )
