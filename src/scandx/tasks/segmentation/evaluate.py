"""``scandx evaluate`` for segmentation: metrics with patient-bootstrap CIs, the masks,
report.html and the model card, written to ``RUN/eval/<split>/`` only once every case
is done (``RunDir.atomic_eval``: a failure leaves the previous evaluation untouched)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from scandx.core.run_dir import RunDir, write_skipped
from scandx.errors import ScandxError
from scandx.tasks.segmentation.metrics import case_metrics, summarize
from scandx.tasks.segmentation.predictor import SegPredictor, write_mask
from scandx.tasks.segmentation.report import (
    case_panel,
    case_score,
    pick_gallery,
    seg_model_card,
    write_seg_model_card,
    write_seg_report,
)
from scandx.tasks.segmentation.sources import load_seg_source
from scandx.tasks.segmentation.workflow import apply_saved_splits, read_cases


def seg_evaluate_run(
    run: str | Path,
    data: str | Path,
    *,
    split: str = "test",
    n_boot: int = 1000,
    skip_bad: bool = False,
    gallery: int = 4,
) -> dict[str, Any]:
    """Score one split; ``gallery`` worst cases (and half as many median and best) are
    shown as overlays in the report (0: none)."""
    rd = RunDir(run)
    predictor = SegPredictor(rd.path)
    plan, info = predictor.plan, predictor.info
    manifest = load_seg_source(data)
    manifest.labels = predictor.labels
    apply_saved_splits(manifest, rd.manifest_csv)
    listed = [c for c in manifest.in_split(split) if c.label]
    if not listed:
        have = sorted({c.split for c in manifest.cases if c.label})
        raise ScandxError(f"no labelled cases in split {split!r}; available: {have}", data)
    labels = manifest.labels
    per_case, cases, panels, rows = [], [], {}, []
    with rd.atomic_eval(split) as out:
        (out / "masks").mkdir()
        for c, r in read_cases(listed, manifest, skip_bad):
            probs = predictor.probabilities(r)
            pred = predictor.decide(probs)
            per_case.append(
                case_metrics(pred, r.label, labels, r.spacing, probs, r.fov, plan.regions)
            )
            mask = write_mask(out / "masks", c, pred, r, labels)
            panels[c.case_id] = case_panel(r.image, r.label, pred, r.fov, r.affine)
            cases.append(c)
            rows.append((c, mask))
        if not cases:
            raise ScandxError(f"no usable cases in split {split!r}", data)
        metrics = {
            "split": split,
            "cases": len(cases),
            "patients": len({c.patient_id for c in cases}),
            "skipped": len(manifest.skipped),
            "task": "segmentation",
            "labels": plan.labels,
            "field_of_view": bool(plan.use_fov),
            "regions": plan.regions,
            **summarize(
                per_case,
                [c.case_id for c in cases],
                [c.patient_id for c in cases],
                n_boot,
                regions=list(plan.regions),
            ),
            "postprocessing": info["postprocessing"],
            "threshold": info.get("threshold"),
        }
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        write_skipped(out, manifest.skipped)
        scores = {c: case_score(v, list(plan.regions)) for c, v in metrics["per_case"].items()}
        _write_predictions(out / "predictions.csv", rows, scores, out)
        n = max(0, gallery)
        picks = pick_gallery(scores, n_worst=n, n_mid=n // 2, n_best=n // 2) if n else []
        shown = [(g, c, scores[c], panels[c]) for g, c in picks]
        card = seg_model_card(rd.path, {split: metrics})
        write_seg_report(out / "report.html", metrics, info, plan.notes, shown, card, rd.path.name)
    write_seg_model_card(rd.path)
    return metrics


def _write_predictions(path: Path, rows: list, scores: dict[str, float], out: Path) -> None:
    """One row per case: ids, its mask (relative to the eval folder) and its mean Dice
    over the foreground classes."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["case_id", "patient_id", "mask", "dice"])
        for c, mask in rows:
            rel = Path(mask).relative_to(out).as_posix()
            w.writerow([c.case_id, c.patient_id, rel, f"{scores[c.case_id]:.6f}"])
