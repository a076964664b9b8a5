"""Segmentation plan and train, in the run-directory layout every task shares
(``core/run_dir.py``); training runs through the shared engine (``core/engine.py``)."""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scandx import __version__
from scandx.core.distributed import is_main, rank
from scandx.core.engine import Hook, fit
from scandx.core.health import refuse_non_finite
from scandx.core.predictor import sha256
from scandx.core.privacy import file_ref
from scandx.core.run_dir import RunDir, atomic_path, atomic_write, write_json, write_skipped
from scandx.core.weights import save_weights
from scandx.data.cache import default_cache
from scandx.errors import ScandxError
from scandx.tasks.segmentation.case_cache import prepared_case
from scandx.tasks.segmentation.fingerprint import seg_fingerprint
from scandx.tasks.segmentation.infer import predict_probabilities
from scandx.tasks.segmentation.plan import SegPlan, make_seg_plan
from scandx.tasks.segmentation.postprocess import choose_components, choose_threshold
from scandx.tasks.segmentation.pretrained_init import (
    apply_init,
    check_declared_channels,
    check_resumed_init,
    read_segmenter_encoder,
)
from scandx.tasks.segmentation.report import write_seg_model_card
from scandx.tasks.segmentation.sources import SegCase, SegManifest, load_seg_source
from scandx.tasks.segmentation.train import SegData, SegTraining
from scandx.tasks.segmentation.unlabelled import select_labelled_cases, settle_unlabelled
from scandx.tasks.segmentation.volumes import Loaded, read_case_arrays

log = logging.getLogger(__name__)


def assign_seg_splits(
    manifest: SegManifest, val_fraction: float, seed: int, labelled: float | None = None
) -> None:
    """Unsplit labelled cases -> train/val by patient (seeded); given splits are kept;
    unlabelled cases stay ``unlabelled`` (unlabelled.py); ``labelled``: the fraction of
    training patients whose label maps are kept (``--labelled-fraction``)."""
    free = sorted({c.patient_id for c in manifest.cases if not c.split and c.label})
    has_val = any(c.split == "val" for c in manifest.cases)
    if not has_val:
        pool = free or sorted({c.patient_id for c in manifest.cases if c.split == "train"})
        rng = np.random.default_rng(seed)
        n_val = max(1, round(val_fraction * len(pool))) if len(pool) > 1 else 0
        val = set(rng.permutation(pool)[:n_val].tolist())
        for c in manifest.cases:
            if c.patient_id in val and c.split in ("", "train"):
                c.split = "val"
    for c in manifest.cases:
        if not c.split:
            c.split = "train" if c.label else "test"
    if labelled is not None:
        select_labelled_cases(manifest, labelled, seed)
    settle_unlabelled(manifest)
    if not manifest.in_split("train"):
        raise ScandxError("no training cases left after the validation split", manifest.source)
    if not manifest.in_split("val"):
        raise ScandxError(
            "need at least 2 labelled training patients (one is held out to choose the "
            "checkpoint, threshold and post-processing)",
            manifest.source,
        )


def read_cases(
    cases: list[SegCase], manifest: SegManifest, skip_bad: bool = False
) -> Iterator[tuple[SegCase, Loaded]]:
    """Each case read and checked, one at a time; with ``skip_bad`` a case that fails is
    listed in ``manifest.skipped`` instead of ending the run."""
    for c in cases:
        try:
            loaded = read_case_arrays(c, manifest.labels)
        except ScandxError as e:
            if not skip_bad:
                raise
            manifest.skipped.append((c.case_id, e.reason))
            continue
        yield c, loaded


def load_split(
    cases: list[SegCase], manifest: SegManifest, plan: SegPlan, skip_bad: bool = False
) -> SegData:
    """Cases read, normalised and resampled as the plan says (training and validation),
    one at a time, through the preprocessed cache (``case_cache.py``): the arrays are
    memory-mapped from it, so the split is never held in memory as a whole (with
    ``SCANDX_CACHE=off``, or a cache that cannot be written, they are in memory)."""
    cache = default_cache()
    images, labels, fovs, foreground, boxes = [], [], [], [], []
    for c in cases:
        try:
            p = prepared_case(c, manifest.labels, plan, cache)
        except ScandxError as e:
            if not skip_bad:
                raise
            manifest.skipped.append((c.case_id, e.reason))
            continue
        images.append(p.image)
        labels.append(p.label)
        fovs.append(p.fov)
        foreground.append(p.foreground)
        boxes.append(p.box)
    if cases and not images:
        split = cases[0].split
        raise ScandxError(f"every {split} case was skipped as unusable", manifest.source)
    return SegData(images, labels, fovs, foreground, boxes)  # type: ignore[arg-type]


def seg_plan_run(
    data: str | Path,
    out: str | Path | None = None,
    *,
    time_budget_s: float | None = None,
    seed: int = 0,
    dims: int | None = None,
    skip_bad: bool = False,
    memory_budget_gb: float | None = None,
    model: str | None = None,
    init: str | Path | None = None,
    labelled_fraction: float | None = None,
) -> SegPlan:
    """Fingerprint and plan; writes ``OUT/plan.json`` (when ``out`` is given); ``init``:
    a pretraining run whose network the plan takes (pretrained_init.py);
    ``labelled_fraction``: keep the label maps of this fraction of training patients."""
    enc = read_segmenter_encoder(init) if init else None  # before any case is read
    manifest = load_seg_source(data)
    if enc is not None:
        check_declared_channels(enc, manifest)
    assign_seg_splits(manifest, 0.2, seed, labelled_fraction)
    fp = seg_fingerprint(manifest, skip_bad=skip_bad)
    plan = make_seg_plan(
        manifest,
        fp,
        time_budget_s=time_budget_s,
        seed=seed,
        dims=dims,
        memory_budget_gb=memory_budget_gb,
    )
    use_model(plan, model)
    plan.labelled_fraction = labelled_fraction
    if enc is not None:
        apply_init(plan, enc, reuse_network=True, model=model)
    if out is not None:
        RunDir(out).save_plan(plan, manifest.skipped)
    return plan


def check_segmenter(model: str) -> None:
    """Refuse a --model that is not a registered segmentation network."""
    from scandx.models import list_models

    choices = list_models("segmenter")
    if model not in choices:
        raise ScandxError(f"--model {model!r} is not a segmentation network; choose from {choices}")


def use_model(plan: SegPlan, model: str | None) -> None:
    """The network asked for on the command line, recorded in the plan's notes."""
    if model and model != plan.model:
        check_segmenter(model)
        plan.model = model
        plan.notes.append(f"model set to {model} on the command line")


def seg_train_run(
    data: str | Path,
    out: str | Path,
    *,
    time_budget_s: float | None = None,
    seed: int | None = None,
    resume: bool = False,
    plan_path: str | Path | None = None,
    dims: int | None = None,
    skip_bad: bool = False,
    memory_budget_gb: float | None = None,
    hooks: list[Hook] | None = None,
    model: str | None = None,
    init: str | Path | None = None,
    labelled_fraction: float | None = None,
) -> dict[str, Any]:
    """Plan (unless resuming or given ``plan_path``), train, choose post-processing and
    save the model; ``dims`` (2 or 3) overrides the planner's 2D/3D choice; ``skip_bad``
    leaves out unusable cases (listed in RUN/skipped.csv); ``init``: a pretraining run
    whose encoder starts the U-Net (core/pretrained.py); ``labelled_fraction``: as
    seg_plan_run's."""
    started = time.monotonic()  # the time budget covers the whole command
    run = RunDir(out)
    run.guard_new(resume)
    resuming = resume  # the saved plan as it is (never re-planned), the recorded splits
    if resuming:
        run.check_resumable()
    enc = read_segmenter_encoder(init) if init and not resuming else None  # before the cases
    manifest = load_seg_source(data)
    if enc is not None:
        check_declared_channels(enc, manifest)
    if resuming:
        run.check_cases_present({c.case_id for c in manifest.cases}, data)
    if resuming or plan_path:
        plan = SegPlan.load(run.plan_json if resuming else plan_path)  # type: ignore[arg-type]
        if not resuming:
            plan.as_given()
        if seed is not None and not resuming:
            plan.seed = seed
    else:
        plan = None
    run_seed = plan.seed if plan else (seed or 0)
    fraction = (
        plan.labelled_fraction
        if plan and (resuming or labelled_fraction is None)
        else (labelled_fraction)
    )
    assign_seg_splits(manifest, plan.val_fraction if plan else 0.2, run_seed, fraction)
    if plan is None:
        plan = make_seg_plan(
            manifest,
            seg_fingerprint(manifest, skip_bad=skip_bad),
            time_budget_s=time_budget_s,
            seed=run_seed,
            dims=dims,
            memory_budget_gb=memory_budget_gb,
        )
    if not resuming:
        use_model(plan, model)
        plan.labelled_fraction = fraction
    if enc is not None:  # a fresh plan takes the pretrained network; a given one keeps its own
        apply_init(plan, enc, reuse_network=not plan_path, model=model)
    if resuming:
        if init:
            check_resumed_init(plan, init)
        apply_saved_splits(manifest, run.manifest_csv)
    return train_prepared(
        manifest,
        plan,
        run,
        resuming=resuming,
        skip_bad=skip_bad,
        hooks=hooks,
        started=started,
    )


def train_prepared(
    manifest: SegManifest,
    plan: SegPlan,
    run: RunDir,
    *,
    resuming: bool = False,
    skip_bad: bool = False,
    hooks: list[Hook] | None = None,
    started: float | None = None,
) -> dict[str, Any]:
    """Train on the manifest's train split, select on its val split (its first
    ``plan.val_cases`` when the budget cannot afford them all: budget.py), save the model
    and post-processing in ``run`` (a single run, or one fold of ``train --folds``);
    ``started``: the command's ``time.monotonic()`` at its start (default: now), from
    which the time budget counts."""
    started = time.monotonic() if started is None else started
    train = load_split(manifest.in_split("train"), manifest, plan, skip_bad)
    all_val = manifest.in_split("val")
    val_cases = all_val[: plan.val_cases]  # [:None]: all
    if len(val_cases) < len(all_val):
        log.info("validating on %d of %d cases (plan.val_cases)", len(val_cases), len(all_val))
    val = load_split(val_cases, manifest, plan, skip_bad)
    with run.training():  # rank 0 writes the run; every rank trains (DDP)
        if not resuming and is_main():
            plan.save(run.plan_json)
        if is_main() and (not resuming or not run.manifest_csv.exists()):
            write_manifest(run.manifest_csv, manifest)
            write_skipped(run.path, manifest.skipped)
        elapsed = time.monotonic() - started
        result = fit(SegTraining(plan, train, val, elapsed), run, resume=resuming, hooks=hooks)
        if not is_main():  # DDP: what follows training is rank 0's
            return {"run": str(run), "rank": rank(), "best": result.best}
        if result.notes():  # recoveries, a budget stop: the plan says how training went
            plan.notes.extend(result.notes())
            plan.save(run.plan_json)
    model = result.model
    threshold, post = choose_postprocessing(model, val, plan)
    info = save_seg_model(run.model_dir, model, plan, post, result.best, manifest, threshold)
    summary = {
        "run": str(run),
        "best": result.best,
        "epochs_run": len(result.history),
        "train_seconds": result.seconds,
        "validation_cases": len(val.images),
        "device": result.device,
        "precision": result.precision,
        "postprocessing": post,
        "threshold": threshold,
        "sha256": info["sha256"],
        "cases": manifest.summary(),
    }
    write_json(run.train_summary, summary)
    write_seg_model_card(run.path)
    return summary


def choose_postprocessing(
    model: torch.nn.Module, val: SegData, plan: SegPlan
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(binary threshold or None, per-class component rules), both chosen on the
    validation cases (postprocess.py)."""
    preds, fg = [], []
    for img, fov in zip(val.images, val.fovs, strict=True):
        probs = predict_probabilities(model, img, plan, fov=fov)
        if plan.n_classes == 2:
            fg.append(probs[1])
        preds.append(probs.argmax(0))
    threshold = choose_threshold(fg, val.labels, val.fovs) if plan.n_classes == 2 else None
    if threshold:
        preds = [(p >= threshold["value"]).astype(np.int64) for p in fg]
    return threshold, choose_components(preds, val.labels, val.fovs, plan.n_classes)


def save_seg_model(
    model_dir: Path,
    model: torch.nn.Module,
    plan: SegPlan,
    post: dict,
    best: dict,
    manifest: SegManifest,
    threshold: dict[str, Any] | None = None,
) -> dict[str, Any]:
    refuse_non_finite(model)
    model_dir.mkdir(parents=True, exist_ok=True)
    weights = model_dir / "weights.safetensors"
    save_weights(model, weights)  # DynUNet shares tensors between submodules
    info = {
        "format": "scandx-segmentation/1",
        "scandx_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "task": "segmentation",
        "labels": plan.labels,
        "model": plan.model,
        "spatial_dims": plan.spatial_dims,
        "slice_axis": plan.slice_axis,
        "in_channels": plan.in_channels,
        "postprocessing": post,
        "threshold": threshold,  # binary tasks: foreground probability cut, chosen on val
        "best_epoch": best.get("epoch"),  # counted from 1
        "val_dice": best.get("val_dice"),
        "training_data": manifest.summary(),
        "weights": weights.name,
        "sha256": sha256(weights),
    }
    atomic_write(model_dir / "model.json", json.dumps(info, indent=2) + "\n")
    return info


def write_manifest(path: Path, manifest: SegManifest) -> None:
    """manifest.csv: every case with its patient, split and files (the same file name and
    first columns as classification's); files by keyed pseudonym (``core.privacy``)."""

    def ref(f: str | None) -> str:
        return file_ref(f) if f else ""

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["case_id", "patient_id", "split", "images", "label", "fov"])
        for c in manifest.cases:
            images = ";".join(ref(i) for i in c.images)
            w.writerow([c.case_id, c.patient_id, c.split, images, ref(c.label), ref(c.fov)])


def apply_saved_splits(manifest: SegManifest, path: Path) -> None:
    """Give each case the split the run recorded; unknown cases keep theirs or "external"."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        saved = {row["case_id"]: row["split"] for row in csv.DictReader(f)}
    for c in manifest.cases:
        c.split = saved.get(c.case_id, c.split or "external")
