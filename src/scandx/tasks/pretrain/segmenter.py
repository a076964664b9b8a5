"""Pretraining a segmenter: ``scandx pretrain --data SEGSRC`` (issue 15).

The network pretrained is the U-Net the segmentation planner chooses for the data and
the time budget (``downstream_plan``: the SegPlan, labels aside), with one output per
input channel; it learns to reconstruct corrupted patches (``segmenter_objectives.py``).
Patches come from the training cases of the split segmentation training draws with the
same seed and from the source's unlabelled cases (``segmentation/unlabelled.py``;
validation: its validation cases; test cases never), read, normalised and
resampled as the SegPlan says through the segmentation cache, so the later
``scandx train --init RUN`` on the same data reads them from the cache.

The run directory holds plan.json (a PretrainPlan), manifest.csv (the splits),
log.jsonl, checkpoints/, train_summary.json and model/encoder.safetensors + model.json
(``core/pretrained.py``): the U-Net's state under the segmenter's own parameter names,
minus its output layer (the reconstruction head is not a segmentation head).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from scandx.core.engine import fit
from scandx.core.pretrained import write_encoder
from scandx.core.run_dir import RunDir, write_json, write_skipped
from scandx.core.task import Options
from scandx.data.labels import UNLABELLED
from scandx.errors import ScandxError
from scandx.tasks.pretrain.plan import PretrainPlan
from scandx.tasks.pretrain.segmenter_objectives import (
    DENOISE_MASK_RATIO,
    DENOISE_STD,
    SEGMENTER_METHODS,
    VAL_BATCHES,
    SegmenterPretraining,
    output_layer_names,
)
from scandx.tasks.pretrain.segmenter_simclr import SegmenterSimCLR, encoder_state
from scandx.tasks.segmentation.fingerprint import seg_fingerprint
from scandx.tasks.segmentation.plan import SegPlan, make_seg_plan
from scandx.tasks.segmentation.sources import SegManifest, load_seg_source
from scandx.tasks.segmentation.unlabelled import usable_unlabelled
from scandx.tasks.segmentation.workflow import (
    apply_saved_splits,
    assign_seg_splits,
    load_split,
    write_manifest,
)

log = logging.getLogger(__name__)

# what ``scandx pretrain`` should use on segmentation data when --method is not given:
# it pretrains the whole U-Net (decoder and skips too) and works at 3D's batch of 2
DEFAULT_METHOD = "mae"


def check_segmenter_method(method: str) -> None:
    """Refuse, in one line, a method a segmenter cannot be pretrained with."""
    if method not in SEGMENTER_METHODS:
        raise ScandxError(
            f"--method {method} is not available for segmenters; use --method "
            f"{', '.join(SEGMENTER_METHODS)} for segmentation data"
        )


def network_of(seg: SegPlan) -> dict[str, Any]:
    """The short form of the pretrained network (``core/pretrained.py`` ``network``)."""
    return {
        "family": "segmenter",
        "model": seg.model,
        "model_kwargs": seg.model_kwargs,
        "spatial_dims": seg.spatial_dims,
        "in_channels": seg.in_channels,
        "patch_size": list(seg.patch_size),
        "slice_axis": seg.slice_axis,
        "target_spacing": seg.target_spacing,
    }


def plan_segmenter_pretraining(
    manifest: SegManifest, options: Options, method: str, seed: int
) -> tuple[PretrainPlan, SegPlan]:
    """(the pretraining plan, the segmentation plan it pretrains for); the manifest is
    already split."""
    seg = make_seg_plan(
        manifest,
        seg_fingerprint(manifest, skip_bad=options.skip_bad),
        time_budget_s=options.time_budget_s,
        seed=seed,
        dims=options.dims,
        memory_budget_gb=options.memory_budget_gb,
    )
    mask_patch = max(4, min(seg.patch_size) // 8)
    n_unlabelled = len(manifest.in_split(UNLABELLED))
    notes = [
        f"pretraining the segmentation planner's network: {seg.spatial_dims}D {seg.model}, "
        f"patch {seg.patch_size}, {seg.in_channels} channel(s), normalised as its plan says "
        "(downstream_plan); labels ignored",
        f"patches from the {len(manifest.in_split('train'))} training cases of the split "
        f"segmentation training draws with seed {seed}"
        + (f" and {n_unlabelled} unlabelled cases" if n_unlabelled else "")
        + f"; validation: {VAL_BATCHES} fixed "
        f"batches from its {len(manifest.in_split('val'))} validation cases; test cases "
        "never used",
    ]
    if method == "mae":
        notes.append(
            f"mae: {mask_patch}-voxel blocks covering {PretrainPlan.mask_ratio:.0%} of each "
            "patch hidden (set to the mean); the U-Net reconstructs the patch, loss on the "
            "hidden voxels only"
        )
    elif method == "simclr":
        notes.append(
            "simclr: the U-Net's encoder half (input block, down-sampling blocks, "
            "bottleneck) pooled, with a projection head, matches two strongly augmented "
            f"views of each patch against the other {2 * seg.batch_size - 2} views of the "
            "batch; only the encoder half is pretrained (train --init starts the decoder "
            "fresh)" + ("; few negatives at this batch: mae suits small batches" if
                        seg.batch_size < 4 else "")
        )  # fmt: skip
    else:
        notes.append(
            f"autoencoder (denoising): Gaussian noise (std {DENOISE_STD} of the z-scored "
            f"image) and {DENOISE_MASK_RATIO:.0%} of the patch hidden; loss on every voxel. "
            "A U-Net's skip connections would copy a clean input to its output (the "
            "identity reconstructs perfectly), so the input is corrupted"
        )
    if method != "simclr":
        notes.append(
            "the encoder written is the whole U-Net minus its output layer (a "
            "reconstruction head is not a segmentation head): train --init loads it by "
            "name and shape"
        )
    notes += [f"segmentation plan: {n}" for n in seg.notes]
    steps = seg.steps_per_epoch
    plan = PretrainPlan(
        method=method,
        family="segmenter",
        network=network_of(seg),
        downstream_plan=seg.to_dict(),
        batch_size=max(2, seg.batch_size),
        # the segmentation planner's epochs include its sliding-window validations,
        # which pretraining does not run: more epochs fit, and the engine's deadline
        # shortens the schedule to end within the budget
        epochs=max(seg.epochs, math.ceil(seg.epochs * 1.5)),
        steps_per_epoch=steps,
        lr=seg.lr,
        weight_decay=seg.weight_decay,
        warmup_epochs=1,
        early_stopping_patience=max(10, seg.epochs // 5),
        min_epochs=1,
        mask_patch=mask_patch,
        val_fraction=seg.val_fraction,
        test_fraction=0.0,  # the source's own test cases are held out
        fingerprint=seg.fingerprint,
        seed=seed,
        device=seg.device,
        precision=seg.precision,
        time_budget_s=seg.time_budget_s,
        notes=notes,
    )
    return plan.validate(), seg


def pretrain_segmenter(
    data: str | Path, run: RunDir, options: Options, method: str
) -> dict[str, Any]:
    """Pretrain the segmentation planner's U-Net for ``data`` on its training images
    (labels ignored); ``run`` is held by the caller. Returns train_summary.json's content."""
    if not options.resume:
        check_segmenter_method(method)
    run.guard_new(options.resume)
    if options.resume:
        run.check_resumable()
    manifest = load_seg_source(data)
    if options.resume:
        run.check_cases_present({c.case_id for c in manifest.cases}, data)
        plan = PretrainPlan.load(run.plan_json)
        if plan.family != "segmenter":
            raise ScandxError(f"plan.json pretrains a {plan.family}, not a segmenter", run.path)
        if options.method and options.method != plan.method:
            raise ScandxError(
                f"--method {options.method}: this run pretrains with {plan.method}; resume "
                "it without --method, or pretrain a new --out",
                run.path,
            )
        method = plan.method
        seg = SegPlan.from_dict(plan.downstream_plan, f"{run.plan_json}: downstream_plan")
        assign_seg_splits(manifest, seg.val_fraction, plan.seed)
        apply_saved_splits(manifest, run.manifest_csv)
    else:
        seed = options.seed or 0
        assign_seg_splits(manifest, 0.2, seed)  # as seg_train_run draws them
        plan, seg = plan_segmenter_pretraining(manifest, options, method, seed)
    dims = int(seg.fingerprint.get("spatial_dims", seg.spatial_dims))
    extra = usable_unlabelled(manifest, seg.in_channels, dims, options.skip_bad)
    train = load_split(manifest.in_split("train") + extra, manifest, seg, options.skip_bad)
    val = load_split(manifest.in_split("val"), manifest, seg, options.skip_bad)
    with run.training():
        if not options.resume:
            plan.save(run.plan_json)
        if not options.resume or not run.manifest_csv.exists():
            write_manifest(run.manifest_csv, manifest)
            write_skipped(run.path, manifest.skipped)
        task = SegmenterSimCLR if method == "simclr" else SegmenterPretraining
        result = fit(task(plan, seg, train, val), run, resume=options.resume, hooks=options.hooks)
        if result.notes():
            plan.notes.extend(result.notes())
            plan.save(run.plan_json)
    if method == "simclr":  # the encoder half, under every name the segmenter gives it
        state = encoder_state(result.model, seg)  # type: ignore[arg-type]
        dropped = {k for k in result.model.state_dict() if k.startswith("projection.")}
    else:
        dropped = output_layer_names(seg)
        state = {k: v for k, v in result.model.state_dict().items() if k not in dropped}
    info = {
        "task": "pretrain",
        "method": method,
        "network": plan.network,
        "dropped": sorted(dropped),
        "best_epoch": result.best.get("epoch"),
        "val_loss": result.best.get("val_loss"),
        "training_data": manifest.summary(),
    }
    sha = write_encoder(run.model_dir, state, info)
    summary = {
        "run": str(run),
        "task": "pretrain",
        "family": "segmenter",
        "method": method,
        "best": result.best,
        "epochs_run": len(result.history),
        "train_seconds": result.seconds,
        "device": result.device,
        "precision": result.precision,
        "encoder_tensors": len(state),
        "encoder_sha256": sha,
        "cases": manifest.summary(),
    }
    write_json(run.train_summary, summary)
    log.info("pretrained %s (%s): %d tensors in %s", seg.model, method, len(state), run.model_dir)
    return summary
