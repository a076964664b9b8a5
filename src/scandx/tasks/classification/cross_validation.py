"""``scandx train --folds k``: k models on patient-level folds, their spread, their ensemble.

The test split is held out as in a single run. The remaining patients (train + val)
are dealt into k folds stratified by label; fold i trains on the other k-1 folds and
is validated (early stopping, calibration, thresholds) on fold i. Each fold is a full
run directory under ``RUN/folds/fold<i>``. ``RUN/cv_summary.json`` holds every fold's
validation metrics with their mean and standard deviation, and ``RUN/model`` is the
ensemble (mean of the members' calibrated probabilities) with its thresholds chosen
on the pooled out-of-fold predictions, so ``evaluate`` and ``predict`` on RUN use it.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from scandx import __version__
from scandx.errors import ScandxError
from scandx.tasks.classification.data.manifest import Manifest
from scandx.tasks.classification.data.splits import assign_folds
from scandx.tasks.classification.evaluation.calibration import expected_calibration_error
from scandx.tasks.classification.evaluation.model_card import write_model_card
from scandx.tasks.classification.evaluation.report import flat_metrics, json_number
from scandx.tasks.classification.inference.model_io import contract_of
from scandx.tasks.classification.plan import Plan
from scandx.tasks.classification.planner import DEFAULT_BUDGET_S
from scandx.tasks.classification.workflow import (
    choose_all_operating_points,
    choose_thresholds,
    manifest_and_plan,
    train_prepared,
)

log = logging.getLogger(__name__)

AnyManifest = TypeVar("AnyManifest")

FOLD_METRICS = ("auc", "accuracy", "balanced_accuracy", "sensitivity", "specificity", "ece")


def fold_manifest(manifest: AnyManifest, folds: dict[str, int], i: int) -> AnyManifest:
    """A copy of the manifest where fold i is "val", the other pooled folds "train"
    (classification or segmentation: cases with ``patient_id`` and ``split``)."""
    m = copy.deepcopy(manifest)
    for c in m.cases:
        if c.patient_id in folds:
            c.split = "val" if folds[c.patient_id] == i else "train"
    return m


def train_folds(
    data: str | Path,
    out: str | Path,
    folds: int,
    *,
    plan_path: str | Path | None = None,
    time_budget_s: float | None = None,
    seed: int | None = None,
    model: str | None = None,
    resume: bool = False,
    image_root: str | Path | None = None,
    skip_bad: bool = False,
) -> dict[str, Any]:
    """Train ``folds`` models; ``time_budget_s`` is for all of them together."""
    out = Path(out)
    if not resume and any((out / d).exists() for d in ("model", "folds", "checkpoints")):
        raise ScandxError("run directory already holds a run; use --resume or a new --out", out)
    if folds < 2:
        raise ScandxError(f"--folds must be at least 2 (got {folds})")
    if resume and (out / "plan.json").exists():
        plan_path = out / "plan.json"  # the plan every fold was trained with
    manifest, plan = manifest_and_plan(
        data,
        plan_path=plan_path,
        time_budget_s=None
        if plan_path
        else (time_budget_s or DEFAULT_BUDGET_S) / folds,  # the budget covers all folds
        seed=seed,
        model=model,
        image_root=image_root,
        skip_bad=skip_bad,
    )
    if not any(f"{folds}-fold" in n for n in plan.notes):
        plan.notes.append(f"{folds}-fold cross-validation: the time budget is split over folds")
    pool = [c for c in manifest.cases if c.split in ("train", "val")]
    assignment = assign_folds(pool, manifest.task, folds, plan.seed)
    for c in pool:
        c.meta["fold"] = assignment[c.patient_id]
    out.mkdir(parents=True, exist_ok=True)
    plan.save(out / "plan.json")
    manifest.to_csv(out / "manifest.csv")

    per_fold, oof = [], []
    for i in range(folds):
        fold_dir = out / "folds" / f"fold{i}"
        log.info("fold %d of %d -> %s", i + 1, folds, fold_dir)
        m = fold_manifest(manifest, assignment, i)
        if resume and (fold_dir / "model" / "model.json").exists():
            val = _read_val_predictions(fold_dir, manifest)
            summary = json.loads((fold_dir / "train_summary.json").read_text())
        else:
            resuming = resume and (fold_dir / "checkpoints" / "last.ckpt").exists()
            summary, val = train_prepared(m, plan, fold_dir, resuming=resuming, skip_bad=skip_bad)
            _write_val_predictions(fold_dir, val)
        metrics = flat_metrics(
            plan.task, plan.classes, val["y"], val["probs"], summary["thresholds"]
        )
        metrics["ece"] = expected_calibration_error(plan.task, val["y"], val["probs"])
        per_fold.append(
            {
                "fold": i,
                "val_cases": len(val["y"]),
                "epochs_run": summary["epochs_run"],
                **{k: json_number(metrics.get(k)) for k in FOLD_METRICS},
            }
        )
        oof.append(val)
    return _save_ensemble(out, plan, manifest, per_fold, oof, folds)


def _save_ensemble(
    out: Path, plan: Plan, manifest: Manifest, per_fold: list, oof: list, folds: int
) -> dict[str, Any]:
    y = np.concatenate([v["y"] for v in oof])
    probs = np.concatenate([v["probs"] for v in oof])
    thresholds = choose_thresholds(plan, y, probs)
    thresholds["chosen_on"] = "out-of-fold (train + val patients)"
    oof_metrics = flat_metrics(plan.task, plan.classes, y, probs, thresholds)
    summary = {k: _mean_sd([f[k] for f in per_fold]) for k in FOLD_METRICS}
    members = [f"../folds/fold{i}/model" for i in range(folds)]
    shas = [
        json.loads((out / "folds" / f"fold{i}" / "model" / "model.json").read_text())["sha256"]
        for i in range(folds)
    ]
    info = {
        "format": "scandx-ensemble/1",
        "scandx_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "task": plan.task,
        "classes": list(plan.classes),
        "positive_class": plan.classes[1] if plan.task == "binary" else None,
        "model": f"ensemble of {folds} x {plan.model}",
        "model_kwargs": plan.model_kwargs,
        "spatial_dims": plan.spatial_dims,
        "in_channels": plan.in_channels,
        "out_channels": len(plan.classes),
        "input": contract_of(plan).to_dict(),
        "ensemble": members,
        "combine": "mean of the members' calibrated probabilities",
        "thresholds": thresholds,
        "operating_points": choose_all_operating_points(plan, y, probs, thresholds),
        "calibration": None,
        "ood": {
            "method": "mean over members of Mahalanobis score / member threshold",
            "threshold": 1.0,
        },
        "weights": "members",
        "sha256": hashlib.sha256("".join(shas).encode()).hexdigest(),
        "member_sha256": shas,
        "training_data": manifest.summary(),
        "cross_validation": {"folds": folds, "per_fold": per_fold, "mean_sd": summary},
    }
    (out / "model").mkdir(parents=True, exist_ok=True)
    (out / "model" / "model.json").write_text(json.dumps(info, indent=2) + "\n")
    cv = {
        "folds": folds,
        "unit": "patient",
        "per_fold": per_fold,
        "mean_sd": summary,
        "out_of_fold": {k: json_number(v) for k, v in oof_metrics.items() if "/" not in k},
        "ensemble_thresholds": thresholds,
    }
    (out / "cv_summary.json").write_text(json.dumps(cv, indent=2) + "\n")
    train_summary = {
        "run": str(out),
        "folds": folds,
        "epochs_run": int(np.mean([f["epochs_run"] for f in per_fold])),
        "best": {"val_auc": summary["auc"]["mean"]},
        "thresholds": thresholds,
        "sha256": info["sha256"],
    }
    (out / "train_summary.json").write_text(json.dumps(train_summary, indent=2) + "\n")
    write_model_card(out)
    return cv


def _write_val_predictions(fold_dir: Path, val: dict[str, Any]) -> None:
    with open(fold_dir / "val_predictions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["case_id", *[f"prob_{k}" for k in range(val["probs"].shape[1])]])
        for c, p in zip(val["cases"], val["probs"], strict=True):
            w.writerow([c.case_id, *[repr(float(v)) for v in p]])  # exact: resume == run


def _read_val_predictions(fold_dir: Path, manifest: Manifest) -> dict[str, Any]:
    from scandx.tasks.classification.runs import labels_tensor

    by_id = {c.case_id: c for c in manifest.cases}
    with open(fold_dir / "val_predictions.csv", newline="") as f:
        rows = list(csv.reader(f))[1:]
    cases = [by_id[r[0]] for r in rows]
    probs = np.array([[float(v) for v in r[1:]] for r in rows], dtype=np.float32)
    return {"cases": cases, "y": labels_tensor(manifest, cases).numpy(), "probs": probs}


def _mean_sd(values: list[float | None]) -> dict[str, float | None]:
    v = np.array([x for x in values if x is not None], dtype=float)
    if len(v) == 0:
        return {"mean": None, "sd": None}
    return {"mean": json_number(v.mean()), "sd": json_number(v.std(ddof=1)) if len(v) > 1 else None}
