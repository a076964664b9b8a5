"""Classification's part of ``train --folds k`` (the driver is ``core/cross_validation.py``).

The remaining patients (train + val; test held out) are dealt into k folds stratified
by label; fold i trains on the other k-1 folds and is validated (early stopping,
calibration, thresholds) on fold i. Each fold stores its calibrated validation
probabilities exactly (``val_predictions.csv``) so a resumed run pools the same
out-of-fold predictions. The ensemble averages the members' calibrated probabilities;
its thresholds and operating points are chosen on the pooled out-of-fold predictions.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import numpy as np

from scandx.core.cross_validation import FoldSetup, fold_manifest
from scandx.core.run_dir import RunDir
from scandx.core.task import Options
from scandx.tasks.classification.data.manifest import Manifest
from scandx.tasks.classification.data.splits import assign_folds
from scandx.tasks.classification.evaluation.calibration import expected_calibration_error
from scandx.tasks.classification.evaluation.report import flat_metrics, json_number
from scandx.tasks.classification.inference.model_io import contract_of
from scandx.tasks.classification.planner import DEFAULT_BUDGET_S
from scandx.tasks.classification.positive import positive_of
from scandx.tasks.classification.runs import labels_tensor
from scandx.tasks.classification.workflow import (
    choose_all_operating_points,
    choose_thresholds,
    manifest_and_plan,
    train_prepared,
)

log = logging.getLogger(__name__)

FOLD_METRICS = ("auc", "accuracy", "balanced_accuracy", "sensitivity", "specificity", "ece")


def prepare(data: str | Path, k: int, options: Options, resume_plan: Path | None) -> FoldSetup:
    plan_path = resume_plan or options.plan_path  # resume: the plan every fold used
    manifest, plan = manifest_and_plan(
        data,
        plan_path=plan_path,
        time_budget_s=None
        if plan_path
        else (options.time_budget_s or DEFAULT_BUDGET_S) / k,  # the budget covers all folds
        seed=options.seed,
        model=options.model,
        image_root=options.image_root,
        skip_bad=options.skip_bad,
        positive_class=options.positive_class,
        locked="a resumed cross-validation keeps it" if resume_plan else "",
    )
    if not any(f"{k}-fold" in n for n in plan.notes):
        plan.notes.append(f"{k}-fold cross-validation: the time budget is split over folds")
    pool = [c for c in manifest.cases if c.split in ("train", "val")]
    folds = assign_folds(pool, manifest.task, k, plan.seed)
    for c in pool:
        c.meta["fold"] = folds[c.patient_id]
    return FoldSetup(manifest, plan, folds)


def write_run_files(setup: FoldSetup, run: RunDir) -> None:
    setup.manifest.to_csv(run.manifest_csv)


def train_fold(
    setup: FoldSetup, i: int, fold_run: RunDir, resuming: bool, options: Options
) -> None:
    m = fold_manifest(setup.manifest, setup.folds, i)
    _, val = train_prepared(m, setup.plan, fold_run, resuming=resuming, skip_bad=options.skip_bad)
    _write_val_predictions(fold_run.path, val)


def fold_outcome(setup: FoldSetup, i: int, fold_run: RunDir) -> tuple[dict[str, Any], Any]:
    plan = setup.plan
    val = _read_val_predictions(fold_run.path, setup.manifest)
    thresholds = fold_run.read_json(fold_run.train_summary)["thresholds"]
    metrics = flat_metrics(plan.task, plan.classes, val["y"], val["probs"], thresholds)
    metrics["ece"] = expected_calibration_error(plan.task, val["y"], val["probs"])
    row = {"val_cases": len(val["y"]), **{k: json_number(metrics.get(k)) for k in FOLD_METRICS}}
    return row, val


def ensemble(setup: FoldSetup, oof: list[Any], run: RunDir) -> tuple[dict[str, Any], dict]:
    plan, k = setup.plan, len(oof)
    y = np.concatenate([v["y"] for v in oof])
    probs = np.concatenate([v["probs"] for v in oof])
    thresholds = choose_thresholds(plan, y, probs)
    thresholds["chosen_on"] = "out-of-fold (train + val patients)"
    oof_metrics = flat_metrics(plan.task, plan.classes, y, probs, thresholds)
    fields = {
        "selection_metric": "auc",
        "classes": list(plan.classes),
        "positive_class": positive_of(plan),
        "model": f"ensemble of {k} x {plan.model}",
        "model_kwargs": plan.model_kwargs,
        "spatial_dims": plan.spatial_dims,
        "in_channels": plan.in_channels,
        "out_channels": len(plan.classes),
        "input": contract_of(plan).to_dict(),
        "combine": "mean of the members' calibrated probabilities",
        "thresholds": thresholds,
        "operating_points": choose_all_operating_points(plan, y, probs, thresholds),
        "calibration": None,
        "ood": {
            "method": "mean over members of Mahalanobis score / member threshold",
            "threshold": 1.0,
        },
        "training_data": setup.manifest.summary(),
    }
    out = {k: json_number(v) for k, v in oof_metrics.items() if "/" not in k}
    return fields, out


def _write_val_predictions(fold_dir: Path, val: dict[str, Any]) -> None:
    with open(fold_dir / "val_predictions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["case_id", *[f"prob_{k}" for k in range(val["probs"].shape[1])]])
        for c, p in zip(val["cases"], val["probs"], strict=True):
            w.writerow([c.case_id, *[repr(float(v)) for v in p]])  # exact: resume == run


def _read_val_predictions(fold_dir: Path, manifest: Manifest) -> dict[str, Any]:
    by_id = {c.case_id: c for c in manifest.cases}
    with open(fold_dir / "val_predictions.csv", newline="") as f:
        rows = list(csv.reader(f))[1:]
    cases = [by_id[r[0]] for r in rows]
    probs = np.array([[float(v) for v in r[1:]] for r in rows], dtype=np.float32)
    return {"cases": cases, "y": labels_tensor(manifest, cases).numpy(), "probs": probs}
