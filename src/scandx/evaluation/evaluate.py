"""``scandx evaluate``: score one split of a data source with a run's Predictor."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from scandx.data.images import load_cases
from scandx.data.sources import load_source
from scandx.errors import ScandxError
from scandx.evaluation.calibration import expected_calibration_error
from scandx.evaluation.model_card import write_model_card
from scandx.evaluation.report import evaluate_predictions
from scandx.inference.predictor import Predictor
from scandx.runs import apply_run_splits, labels_tensor


def evaluate_run(
    run: str | Path,
    data: str | Path,
    *,
    split: str = "test",
    image_root: str | Path | None = None,
    skip_bad: bool = False,
    n_boot: int = 1000,
) -> dict[str, Any]:
    """Score a split with the run's Predictor; write eval/<split>/{metrics.json,predictions.csv}."""
    run = Path(run)
    predictor = Predictor.from_run(run)
    manifest = load_source(data, image_root=image_root, skip_bad=skip_bad)
    if list(manifest.classes) != list(predictor.classes) or manifest.task != predictor.task:
        raise ScandxError(
            f"data classes {manifest.classes} do not match the model's {predictor.classes}", data
        )
    apply_run_splits(manifest, run / "manifest.csv", strict=False)
    cases = manifest.in_split(split)
    if not cases:
        have = sorted({c.split for c in manifest.cases})
        raise ScandxError(f"no cases in split {split!r}; available: {', '.join(have)}", data)
    x, kept, skipped = load_cases(
        cases, predictor.contract, skip_bad=skip_bad, desc=f"{split} images"
    )
    logits, features = predictor.logits_and_features(x)
    probs = predictor.to_probabilities(logits)
    y = labels_tensor(manifest, kept).numpy()
    calibration = {
        **(predictor.info.get("calibration") or {"method": "none"}),
        "ece_before": expected_calibration_error(
            manifest.task, y, predictor.to_probabilities(logits, calibrated=False)
        ),
        "ece_after": expected_calibration_error(manifest.task, y, probs),
        "ece_bins": 15,
    }
    ood_scores = predictor.ood_scores(features=features)
    ood = {"method": "none"}
    if ood_scores is not None:
        threshold = predictor.info["ood"]["threshold"]
        ood = {"threshold": threshold, "flagged_fraction": float(np.mean(ood_scores > threshold))}
    thresholds = predictor.info["thresholds"]
    metrics = evaluate_predictions(
        manifest.task,
        manifest.classes,
        y,
        probs,
        thresholds,
        [c.patient_id for c in kept],
        n_boot=n_boot,
    )
    metrics = {
        "split": split,
        "cases": len(kept),
        "patients": len({c.patient_id for c in kept}),
        "task": manifest.task,
        "classes": manifest.classes,
        "threshold": {
            **thresholds,
            "note": "chosen on the validation split at training time; never tuned on test",
        },
        **metrics,
        "calibration": calibration,
        "ood": ood,
    }
    if skipped:
        metrics["skipped"] = [{"path": p, "reason": r} for p, r in skipped]
    out = run / "eval" / split
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_model_card(run)
    decisions = predictor.decide(probs)
    with open(out / "predictions.csv", "w", newline="") as f:
        w = csv.writer(f)
        label_cols = (
            ["label"] if manifest.task != "multilabel" else [f"label_{c}" for c in manifest.classes]
        )
        w.writerow(
            [
                "case_id",
                "patient_id",
                "path",
                *label_cols,
                *[f"prob_{c}" for c in manifest.classes],
                "predicted",
            ]
        )
        for c, pr, d, yy in zip(kept, probs, decisions, y, strict=True):
            labels = (
                [manifest.classes[int(yy)]]
                if manifest.task != "multilabel"
                else [int(v) for v in yy]
            )
            pred = (
                ";".join(n for n, v in zip(manifest.classes, d, strict=True) if v)
                if manifest.task == "multilabel"
                else manifest.classes[int(d)]
            )
            w.writerow([c.case_id, c.patient_id, c.path, *labels, *[f"{p:.6f}" for p in pr], pred])
    return metrics
