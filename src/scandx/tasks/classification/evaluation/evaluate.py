"""``scandx evaluate``: score one split of a data source with a run's Predictor."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from scandx.core import model_card as core_card
from scandx.core.privacy import file_ref, scrub_paths, where_ref
from scandx.core.run_dir import RunDir
from scandx.errors import ScandxError
from scandx.tasks.classification.data.images import load_cases
from scandx.tasks.classification.data.manifest import UNLABELLED
from scandx.tasks.classification.data.sources import load_source
from scandx.tasks.classification.evaluation.analyses import (
    curves_for,
    operating_points_for,
    reliability_for,
)
from scandx.tasks.classification.evaluation.calibration import expected_calibration_error
from scandx.tasks.classification.evaluation.html_report import write_report
from scandx.tasks.classification.evaluation.model_card import card_sections, write_model_card
from scandx.tasks.classification.evaluation.report import collect_warnings, evaluate_predictions
from scandx.tasks.classification.evaluation.subgroups import resolve_columns, subgroup_metrics
from scandx.tasks.classification.inference.predictor import Predictor
from scandx.tasks.classification.positive import align_classes
from scandx.tasks.classification.runs import apply_run_splits, labels_tensor

log = logging.getLogger(__name__)


def evaluate_run(
    run: str | Path,
    data: str | Path,
    *,
    split: str = "test",
    image_root: str | Path | None = None,
    skip_bad: bool = False,
    n_boot: int = 1000,
    subgroups: Sequence[str] | None = None,
    gallery: int = 4,
) -> dict[str, Any]:
    """Score a split with the run's Predictor.

    Writes eval/<split>/ metrics.json, predictions.csv, curves.json and report.html, and
    refreshes model/model_card.md. ``subgroups`` names metadata columns to break the
    metrics down by (default for DICOM: sex, age band, manufacturer); ``gallery`` is the
    number of Grad-CAM overlays per category (true/false positive/negative), 0 for none.
    """
    run = Path(run)
    predictor = Predictor.from_run(run)
    manifest = load_source(data, image_root=image_root, skip_bad=skip_bad)
    align_classes(manifest, predictor.task, predictor.classes, data)  # the model's order
    apply_run_splits(manifest, run / "manifest.csv", strict=False)
    if split == UNLABELLED:
        raise ScandxError("the unlabelled split has no labels to evaluate against", data)
    cases = manifest.in_split(split)  # labelled only: apply_run_splits left out the rest
    if not cases:
        have = sorted({c.split for c in manifest.cases})
        raise ScandxError(f"no cases in split {split!r}; available: {', '.join(have)}", data)
    columns = resolve_columns(cases, subgroups)  # an unknown column fails before any work
    x, kept, skipped = load_cases(
        cases, predictor.contract, skip_bad=skip_bad, desc=f"{split} images"
    )
    logits, features = predictor.logits_and_features(x)
    probs = predictor.to_probabilities(logits)
    raw_probs = predictor.to_probabilities(logits, calibrated=False)
    y = labels_tensor(manifest, kept).numpy()
    task, classes = manifest.task, list(manifest.classes)
    patients = [c.patient_id for c in kept]
    calibration = {
        **(predictor.info.get("calibration") or {"method": "none"}),
        "ece_before": expected_calibration_error(task, y, raw_probs),
        "ece_after": expected_calibration_error(task, y, probs),
        "ece_bins": 15,
    }
    ood_scores = predictor.ood_scores(features=features)
    ood = {"method": "none"}
    if ood_scores is not None:
        threshold = predictor.info["ood"]["threshold"]
        ood = {"threshold": threshold, "flagged_fraction": float(np.mean(ood_scores > threshold))}
    thresholds = predictor.info["thresholds"]
    metrics = evaluate_predictions(task, classes, y, probs, thresholds, patients, n_boot=n_boot)
    curves = curves_for(task, classes, y, probs, patients, n_boot)
    metrics = {
        "split": split,
        "cases": len(kept),
        "patients": len({c.patient_id for c in kept}),
        "task": manifest.task,
        "classes": manifest.classes,
        **positive_fields(predictor),
        "threshold": {
            **thresholds,
            "note": "chosen on the validation split at training time; never tuned on test",
        },
        **metrics,
        "average_precision": {k: round(c["pr"]["average_precision"], 6) for k, c in curves.items()},
        "operating_points": operating_points_for(
            task, classes, y, probs, patients, predictor.info.get("operating_points"), n_boot
        ),
        "calibration": calibration,
        "ood": ood,
        "subgroups": subgroup_metrics(
            task, classes, y, probs, thresholds, kept, columns, n_boot=n_boot
        ),
    }
    metrics["warnings"] = collect_warnings(metrics)  # small samples, missing classes
    if skipped:
        metrics["skipped"] = [{"file": where_ref(p), "reason": scrub_paths(r)} for p, r in skipped]
    decisions = predictor.decide(probs)
    shown = None
    if gallery > 0:
        from scandx.tasks.classification.explain.gallery import render_gallery, select_gallery

        shown = render_gallery(predictor, kept, select_gallery(task, y, probs, decisions, gallery))
    with RunDir(run).atomic_eval(split) as out:  # swapped in only when complete
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        (out / "curves.json").write_text(json.dumps(curves) + "\n")
        card = core_card.model_card_text(run, card_sections, current={split: metrics})
        report = write_report(
            out / "report.html",
            {
                "run_name": run.resolve().name,
                "metrics": metrics,
                "info": predictor.info,
                "curves": curves,
                "reliability": reliability_for(task, y, raw_probs, probs),
                "gallery": shown,
                "gallery_method": next(
                    (it["method"] for items in (shown or {}).values() for it in items), "gradcam"
                ),
                "model_card": card,
                "created": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            },
        )
        log.info("report: %s", report)
        _write_predictions(out / "predictions.csv", predictor, kept, y, probs, decisions)
    write_model_card(run)  # now with this split's metrics
    return metrics


def positive_fields(predictor: Predictor) -> dict[str, Any]:
    """metrics.json: which class the binary metrics treat as positive, and the rule."""
    if predictor.task != "binary":
        return {}
    positive = predictor.positive_class
    return {
        "positive_class": positive,
        "negative_class": next(c for c in predictor.classes if c != positive),
        "positive_rule": f"{positive} is positive: sensitivity, specificity, PPV, NPV, AUC, "
        f"calibration and the operating threshold are about P({positive}); a case is "
        f"called {positive} when P({positive}) >= threshold",
    }


def _write_predictions(
    path: Path, predictor: Predictor, kept: list, y: np.ndarray, probs: np.ndarray, decisions
) -> None:
    """predictions.csv of an evaluated split: truth, probabilities and the decision (binary:
    the positive class and the threshold it was decided at; see ``Predictor.columns``)."""
    task, classes = predictor.task, predictor.classes
    label_cols = ["label"] if task != "multilabel" else [f"label_{c}" for c in classes]
    binary = ["positive_class", "threshold", "decision"] if task == "binary" else []
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "case_id",
                "patient_id",
                "file",
                *label_cols,
                *[f"prob_{c}" for c in classes],
                *binary,
                "predicted",
            ]
        )
        for c, pr, d, yy in zip(kept, probs, decisions, y, strict=True):
            labels = [classes[int(yy)]] if task != "multilabel" else [int(v) for v in yy]
            pred = (
                ";".join(n for n, v in zip(classes, d, strict=True) if v)
                if task == "multilabel"
                else classes[int(d)]
            )
            extra = (
                [predictor.positive_class, f"{predictor.info['thresholds']['positive']:.6f}", pred]
                if binary
                else []
            )
            w.writerow(
                [
                    c.case_id,
                    c.patient_id,
                    file_ref(c.path),
                    *labels,
                    *[f"{p:.6f}" for p in pr],
                    *extra,
                    pred,
                ]
            )
