"""``scandx train --init RUN`` for segmentation: start the U-Net from a pretrained
segmenter (``scandx pretrain`` on segmentation data; ``tasks/pretrain/segmenter.py``).

The encoder is read and its family checked before any case is read; its channel count
is checked against the source's declared modalities as soon as the source is listed,
and its dimensionality and channels against the plan once the data are fingerprinted.
A freshly planned run then takes the pretrained network as it is (model, kernels and
strides, patch, target spacing), so every tensor but the output layer fits by name and
shape; the batch is halved if the pretrained patch needs more memory than the budget.
A given plan (``--plan``) keeps its own network: what fits is loaded, what does not is
reported. The plan's ``init`` records the encoder (run, sha256, tensors loaded); the
engine loads it into every fresh network (``core.pretrained.apply_plan_init``).
"""

from __future__ import annotations

from pathlib import Path

from scandx.core.pretrained import (
    PretrainedEncoder,
    check_fits,
    describe_init,
    init_record,
    load_matching,
    read_encoder,
)
from scandx.errors import ScandxError
from scandx.tasks.segmentation.memory import estimate_train_bytes
from scandx.tasks.segmentation.plan import SegPlan
from scandx.tasks.segmentation.sources import SegManifest


def read_segmenter_encoder(run: str | Path) -> PretrainedEncoder:
    """The pretrained run's encoder, refused in one line unless it is a segmenter's."""
    enc = read_encoder(run)
    family = enc.network.get("family")
    if family != "segmenter":
        raise ScandxError(
            f"--init: this run pretrained a {family or 'unknown'} network "
            f"({enc.network.get('model')}), not a segmenter; for segmentation, pretrain on "
            "segmentation data (scandx pretrain --data SEGSRC --out RUN)",
            enc.run,
        )
    return enc


def check_declared_channels(enc: PretrainedEncoder, manifest: SegManifest) -> None:
    """Before reading any case: the channel count the source declares (dataset.json's
    modalities, or several image files per case) against the encoder's."""
    declared = len(manifest.modality)
    per_case = {len(c.images) for c in manifest.cases if len(c.images) > 1}
    if not declared and len(per_case) == 1:
        declared = per_case.pop()
    if declared:
        check_fits(enc, in_channels=declared)


def check_encoder_fits(enc: PretrainedEncoder, plan: SegPlan, model: str | None = None) -> None:
    """The planned network's dimensionality and channels (and a --model) against the
    pretrained one's; one line naming every difference."""
    try:
        check_fits(
            enc,
            family="segmenter",
            spatial_dims=plan.spatial_dims,
            in_channels=plan.in_channels,
            model=model,
        )
    except ScandxError as e:
        dims = enc.network.get("spatial_dims")
        if dims != plan.spatial_dims and dims in (2, 3) and plan.data_dims == 3:
            hint = f" (--dims {dims} plans a {dims}D U-Net for these volumes)"
            raise ScandxError(e.reason + hint, e.where) from None
        raise


def adopt_pretrained_network(plan: SegPlan, enc: PretrainedEncoder) -> list[str]:
    """Give a freshly planned ``plan`` the pretrained network; returns the notes."""
    net = enc.network
    reused = []
    for key in ("model", "model_kwargs", "patch_size"):
        if net.get(key) is not None and net[key] != getattr(plan, key):
            reused.append(f"{key} {net[key]} (planned: {getattr(plan, key)})")
            setattr(plan, key, net[key])
    spacing = net.get("target_spacing")
    if spacing and len(spacing) == plan.data_dims and spacing != plan.target_spacing:
        reused.append(f"target spacing {spacing} (planned: {plan.target_spacing})")
        plan.target_spacing = list(spacing)
    notes = [
        "--init: the network is the pretrained one, so every tensor but the output layer "
        "fits by name and shape: "
        + ("; ".join(reused) if reused else "the planner chose the same network")
    ]
    strides = plan.model_kwargs.get("strides") or [[1] * plan.spatial_dims]
    budget = (plan.memory_budget_gb or 0) * 2**30
    batch = plan.batch_size
    while budget and batch > 2:
        if estimate_train_bytes(plan.patch_size, strides, batch, plan.precision) <= budget:
            break
        batch = max(2, batch // 2)
    if batch != plan.batch_size:
        notes.append(
            f"--init: batch {plan.batch_size} -> {batch} so that the pretrained patch "
            f"{plan.patch_size} fits the memory budget"
        )
        plan.batch_size = batch
    plan.validate()
    return notes


def apply_init(
    plan: SegPlan, enc: PretrainedEncoder, *, reuse_network: bool, model: str | None = None
) -> None:
    """Check the encoder fits, take its network when ``reuse_network`` (a fresh plan),
    and record it in ``plan.init`` with a note saying what was loaded."""
    from scandx.tasks.segmentation.predictor import build_seg_model

    check_encoder_fits(enc, plan, model)
    if reuse_network:
        plan.notes.extend(adopt_pretrained_network(plan, enc))
    report = load_matching(build_seg_model(plan), enc)
    plan.init = init_record(enc, report)
    plan.notes.append(describe_init(plan.init, report))


def check_resumed_init(plan: SegPlan, init: str | Path) -> None:
    """``--resume`` with ``--init``: the run must have been planned with that encoder."""
    planned = (plan.init or {}).get("run")
    if planned is None or Path(planned) != Path(init).resolve():
        raise ScandxError(
            f"--init {init}: this run was planned "
            + (f"with --init {planned}" if planned else "without --init")
            + "; resume it without --init, or train a new --out"
        )
