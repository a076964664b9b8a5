"""``scandx train --folds k`` for segmentation: k U-Nets on patient-level folds and their
ensemble, as nnU-Net trains its five folds.

The test split is held out. The other labelled patients are dealt into k folds (seeded
shuffle, round-robin); fold i trains on the rest and selects its checkpoint on fold i,
in ``RUN/folds/fold<i>`` (a full run directory). One plan, planned once with the time
budget shared between the folds, drives every fold. ``RUN/model`` is the ensemble (mean
of the folds' softmax probabilities); its binary threshold and component rules are
chosen on the pooled out-of-fold predictions (each case predicted by the fold that did
not train on it). ``RUN/cv_summary.json``: per-fold validation Dice, mean and sd, and
the out-of-fold Dice. ``--resume`` skips finished folds and continues a started one.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from scandx import __version__
from scandx.errors import ScandxError
from scandx.tasks.classification.cross_validation import fold_manifest
from scandx.tasks.classification.runs import write_skipped
from scandx.tasks.segmentation.infer import predict_probabilities
from scandx.tasks.segmentation.metrics import dice
from scandx.tasks.segmentation.plan import SegPlan, make_seg_plan, seg_fingerprint
from scandx.tasks.segmentation.postprocess import (
    apply_postprocessing,
    choose_components,
    choose_threshold,
)
from scandx.tasks.segmentation.report import write_seg_model_card
from scandx.tasks.segmentation.sources import SegManifest, load_seg_source
from scandx.tasks.segmentation.workflow import load_seg_run, load_split, save_cases, train_prepared

log = logging.getLogger(__name__)


def patient_folds(manifest: SegManifest, k: int, seed: int) -> dict[str, int]:
    """{patient: fold} for the labelled non-test patients, dealt round-robin after a
    seeded shuffle (fold sizes differ by at most one patient)."""
    if k < 2:
        raise ScandxError(f"--folds must be at least 2 (got {k})")
    patients = sorted({c.patient_id for c in manifest.cases if c.label and c.split != "test"})
    if len(patients) < k:
        raise ScandxError(f"{len(patients)} labelled patients cannot make {k} folds")
    order = np.random.default_rng(seed).permutation(len(patients))
    return {patients[j]: n % k for n, j in enumerate(order)}


def seg_train_folds(
    data: str | Path,
    out: str | Path,
    folds: int,
    *,
    time_budget_s: float | None = None,
    seed: int | None = None,
    resume: bool = False,
    dims: int | None = None,
    skip_bad: bool = False,
    memory_budget_gb: float | None = None,
    plan_path: str | Path | None = None,
) -> dict[str, Any]:
    out = Path(out)
    if not resume and any((out / d).exists() for d in ("model", "folds")):
        raise ScandxError("run directory already holds a run; use --resume or a new --out", out)
    manifest = load_seg_source(data)
    for c in manifest.cases:  # the CV pool: every labelled case outside the test split
        if c.split != "test":
            c.split = "train" if c.label else "test"
    if resume and (out / "plan.json").exists():
        plan = SegPlan.load(out / "plan.json")
    elif plan_path:
        plan = SegPlan.load(plan_path)
    else:
        fp = seg_fingerprint(manifest, skip_bad=skip_bad)
        budget = (time_budget_s or 600.0) / folds
        plan = make_seg_plan(
            manifest,
            fp,
            time_budget_s=budget,
            seed=seed or 0,
            dims=dims,
            memory_budget_gb=memory_budget_gb,
        )
        plan.notes.append(f"{folds}-fold cross-validation: {budget:.0f}s per fold")
    assignment = patient_folds(manifest, folds, plan.seed)
    out.mkdir(parents=True, exist_ok=True)
    plan.save(out / "plan.json")
    save_cases(out / "cases.json", manifest)
    write_skipped(out, manifest.skipped)
    t0 = time.perf_counter()
    summaries = []
    for i in range(folds):
        fold_dir = out / "folds" / f"fold{i}"
        if (fold_dir / "train_summary.json").exists() and resume:
            log.info("fold %d already trained; skipped", i)
            summaries.append(json.loads((fold_dir / "train_summary.json").read_text()))
            continue
        m = fold_manifest(manifest, assignment, i)
        resuming = resume and (fold_dir / "checkpoints" / "last.ckpt").exists()
        log.info(
            "fold %d/%d: %d training, %d validation cases",
            i + 1,
            folds,
            len(m.in_split("train")),
            len(m.in_split("val")),
        )
        summaries.append(train_prepared(m, plan, fold_dir, resuming=resuming, skip_bad=skip_bad))
    return _ensemble(out, manifest, plan, assignment, summaries, time.perf_counter() - t0)


def _ensemble(
    out: Path,
    manifest: SegManifest,
    plan: SegPlan,
    assignment: dict[str, int],
    summaries: list[dict[str, Any]],
    seconds: float,
) -> dict[str, Any]:
    """Out-of-fold predictions -> the ensemble's threshold and component rules; writes
    RUN/model/model.json (members by relative path and sha256) and cv_summary.json."""
    k = len(summaries)
    fg, preds, labels, fovs = [], [], [], []
    for i in range(k):
        model, _, _ = load_seg_run(out / "folds" / f"fold{i}")
        val = load_split(fold_manifest(manifest, assignment, i).in_split("val"), manifest, plan)
        for img, fov, lab in zip(val.images, val.fovs, val.labels, strict=True):
            probs = predict_probabilities(model, img, plan, fov=fov)
            fg.append(probs[1] if plan.n_classes == 2 else None)
            preds.append(probs.argmax(0))
            labels.append(lab)
            fovs.append(fov)
    threshold = choose_threshold(fg, labels, fovs) if plan.n_classes == 2 else None
    if threshold:
        preds = [(p >= threshold["value"]).astype(np.int64) for p in fg]
    post = choose_components(preds, labels, fovs, plan.n_classes)
    oof = []
    for p, lab, fov in zip(preds, labels, fovs, strict=True):
        final = apply_postprocessing(p, post)
        inside = np.ones(lab.shape, bool) if fov is None else fov
        per = [dice((final == c) & inside, (lab == c) & inside) for c in range(1, plan.n_classes)]
        oof.append(float(np.mean(per)))
    members = [f"../folds/fold{i}/model/weights.safetensors" for i in range(k)]
    first = json.loads((out / "folds" / "fold0" / "model" / "model.json").read_text())
    fold_dice = [float(s["best"]["val_dice"]) for s in summaries]
    info = {
        **{key: first[key] for key in ("format", "task", "labels", "model", "spatial_dims")},
        "slice_axis": first.get("slice_axis"),
        "in_channels": first["in_channels"],
        "scandx_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "ensemble": members,
        "member_sha256": [s["sha256"] for s in summaries],
        "weights": f"ensemble of {k} folds",
        "sha256": _combined([s["sha256"] for s in summaries]),
        "postprocessing": post,
        "threshold": threshold,
        "best_epoch": None,
        "val_dice": float(np.mean(oof)),
        "training_data": manifest.summary(),
        "cross_validation": {"folds": k, "fold_val_dice": fold_dice},
    }
    (out / "model").mkdir(parents=True, exist_ok=True)
    (out / "model" / "model.json").write_text(json.dumps(info, indent=2) + "\n")
    summary = {
        "folds": k,
        "per_fold": [
            {"fold": i, "val_dice": fold_dice[i], "best_epoch": s["best"].get("epoch")}
            for i, s in enumerate(summaries)
        ],
        "val_dice": {"mean": float(np.mean(fold_dice)), "sd": float(np.std(fold_dice, ddof=1))},
        "out_of_fold_dice": float(np.mean(oof)),
        "out_of_fold_cases": len(oof),
        "threshold": threshold,
        "postprocessing": post,
        "seconds": round(seconds, 1),
        "patients_per_fold": [sum(1 for f in assignment.values() if f == i) for i in range(k)],
    }
    (out / "cv_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_seg_model_card(out)
    return summary


def _combined(digests: list[str]) -> str:
    import hashlib

    return hashlib.sha256("".join(digests).encode()).hexdigest()
