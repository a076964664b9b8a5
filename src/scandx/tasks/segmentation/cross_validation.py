"""Segmentation's part of ``train --folds k`` (the driver is ``core/cross_validation.py``),
as nnU-Net trains its five folds.

The labelled non-test patients are dealt into k folds (seeded shuffle, round-robin);
one plan, planned once with the time budget shared by the folds, drives every fold.
The ensemble is the mean of the folds' softmax probabilities; its binary threshold and
component rules are chosen on the pooled out-of-fold predictions (each case predicted
by the fold model that did not train on it).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from scandx.core.cross_validation import FoldSetup, fold_manifest
from scandx.core.run_dir import RunDir, write_skipped
from scandx.core.task import Options
from scandx.data.labels import UNLABELLED
from scandx.errors import ScandxError
from scandx.tasks.segmentation.fingerprint import seg_fingerprint
from scandx.tasks.segmentation.infer import predict_probabilities
from scandx.tasks.segmentation.metrics import dice
from scandx.tasks.segmentation.plan import SegPlan, make_seg_plan
from scandx.tasks.segmentation.postprocess import (
    apply_postprocessing,
    choose_components,
    choose_threshold,
)
from scandx.tasks.segmentation.predictor import load_seg_run
from scandx.tasks.segmentation.pretrained_init import (
    apply_init,
    check_declared_channels,
    read_segmenter_encoder,
)
from scandx.tasks.segmentation.sources import SegManifest, load_seg_source
from scandx.tasks.segmentation.unlabelled import select_labelled_cases, settle_unlabelled
from scandx.tasks.segmentation.workflow import (
    load_split,
    train_prepared,
    use_model,
    write_manifest,
)

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


def prepare(data: str | Path, k: int, options: Options, resume_plan: Path | None) -> FoldSetup:
    init = options.init if options.init and not resume_plan else None
    enc = read_segmenter_encoder(init) if init else None  # before any case is read
    manifest = load_seg_source(data)
    if enc is not None:
        check_declared_channels(enc, manifest)
    plan = None
    if resume_plan or options.plan_path:
        plan = SegPlan.load(resume_plan or options.plan_path)  # type: ignore[arg-type]
        if not resume_plan:
            plan.as_given()
        if options.seed is not None and not resume_plan:
            plan.seed = options.seed
    for c in manifest.cases:  # the CV pool: every labelled case outside the test split
        if c.split not in ("test", UNLABELLED):
            c.split = "train" if c.label else "test"
    given = options.labelled_fraction if not resume_plan else None
    fraction = given if given is not None else (plan.labelled_fraction if plan else None)
    if fraction is not None:  # of the pool's patients; folds are dealt from those kept
        select_labelled_cases(manifest, fraction, plan.seed if plan else options.seed or 0)
    settle_unlabelled(manifest)
    if plan is None:
        fp = seg_fingerprint(manifest, skip_bad=options.skip_bad)
        budget = (options.time_budget_s or 600.0) / k
        plan = make_seg_plan(
            manifest,
            fp,
            time_budget_s=budget,
            seed=options.seed or 0,
            dims=options.dims,
            memory_budget_gb=options.memory_budget_gb,
        )
        plan.notes.append(f"{k}-fold cross-validation: {budget:.0f}s per fold")
        use_model(plan, options.model)
    plan.labelled_fraction = fraction
    if enc is not None:  # every fold's fresh network starts from it (plan.init)
        apply_init(plan, enc, reuse_network=not options.plan_path, model=options.model)
    return FoldSetup(manifest, plan, patient_folds(manifest, k, plan.seed))


def write_run_files(setup: FoldSetup, run: RunDir) -> None:
    write_manifest(run.manifest_csv, setup.manifest)
    write_skipped(run.path, setup.manifest.skipped)


def train_fold(
    setup: FoldSetup, i: int, fold_run: RunDir, resuming: bool, options: Options
) -> None:
    m = fold_manifest(setup.manifest, setup.folds, i)
    log.info(
        "fold %d: %d training, %d validation cases",
        i + 1,
        len(m.in_split("train")),
        len(m.in_split("val")),
    )
    train_prepared(m, setup.plan, fold_run, resuming=resuming, skip_bad=options.skip_bad)


def fold_outcome(setup: FoldSetup, i: int, fold_run: RunDir) -> tuple[dict[str, Any], Any]:
    """This fold's validation Dice (as selected in training) and its out-of-fold
    probabilities on its validation cases (predicted again by the fold's model)."""
    plan = setup.plan
    model, _, _ = load_seg_run(fold_run.path)
    m = fold_manifest(setup.manifest, setup.folds, i)
    val = load_split(m.in_split("val"), m, plan)
    fg, preds = [], []
    for img, fov in zip(val.images, val.fovs, strict=True):
        probs = predict_probabilities(model, img, plan, fov=fov)
        fg.append(probs[1] if plan.n_classes == 2 else None)
        preds.append(probs.argmax(0))
    summary = fold_run.read_json(fold_run.train_summary)
    row = {
        "val_cases": len(preds),
        "val_dice": summary["best"].get("val_dice"),
        "best_epoch": summary["best"].get("epoch"),
    }
    return row, {"fg": fg, "preds": preds, "labels": val.labels, "fovs": val.fovs}


def ensemble(setup: FoldSetup, oof: list[Any], run: RunDir) -> tuple[dict[str, Any], dict]:
    plan = setup.plan
    fg = [p for o in oof for p in o["fg"]]
    preds = [p for o in oof for p in o["preds"]]
    labels = [x for o in oof for x in o["labels"]]
    fovs = [x for o in oof for x in o["fovs"]]
    threshold = choose_threshold(fg, labels, fovs) if plan.n_classes == 2 else None
    if threshold:
        preds = [(p >= threshold["value"]).astype(np.int64) for p in fg]
    post = choose_components(preds, labels, fovs, plan.n_classes)
    scores = []
    for p, lab, fov in zip(preds, labels, fovs, strict=True):
        final = apply_postprocessing(p, post)
        inside = np.ones(lab.shape, bool) if fov is None else fov
        per = [dice((final == c) & inside, (lab == c) & inside) for c in range(1, plan.n_classes)]
        scores.append(float(np.mean(per)))
    fields = {
        "selection_metric": "val_dice",
        "labels": plan.labels,
        "model": f"ensemble of {len(oof)} x {plan.model}",
        "spatial_dims": plan.spatial_dims,
        "slice_axis": plan.slice_axis,
        "in_channels": plan.in_channels,
        "combine": "mean of the members' softmax probabilities",
        "postprocessing": post,
        "threshold": threshold,
        "val_dice": float(np.mean(scores)),
        "training_data": setup.manifest.summary(),
    }
    out = {"dice": float(np.mean(scores)), "cases": len(scores), "threshold": threshold}
    return fields, out
