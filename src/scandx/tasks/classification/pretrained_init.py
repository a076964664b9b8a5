"""``scandx train --init PRETRAIN_RUN`` for classification: the pretrained encoder is
checked against what this data needs, the plan takes its network instead of the
ladder's, and ``plan.init`` records what the engine loads (``core/pretrained.py``).

What must agree, each named when it does not (one line, exit 2): the family (a
classifier's encoder, not a segmenter's), the network when ``--model`` names one, 2D vs
3D, the channel count (1 for grey images, 3 for colour) and the input size, which must
be one the planner could choose for these images (their median edge when <= 64 px;
else one of the ladder's sizes up to it; for volumes also the planned depth).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scandx.core.pretrained import (
    PretrainedEncoder,
    check_fits,
    describe_init,
    init_record,
    load_matching,
    read_encoder,
)
from scandx.models import min_input_size
from scandx.tasks.classification.ladder import rungs
from scandx.tasks.classification.plan import Plan


def read_classifier_encoder(init: str | Path, model: str | None = None) -> PretrainedEncoder:
    """The pretrained run's encoder, refused at once (before any image is decoded) when
    it is not a classifier's or not the ``--model`` asked for."""
    enc = read_encoder(init)
    check_fits(enc, family="classifier", model=model)
    return enc


def needed_shapes(fp: dict[str, Any], model: str) -> list[list[int]]:
    """The input sizes the planner could choose for ``model`` on these images, the one it
    prefers first."""
    from scandx.tasks.classification.planner import _plan_depth

    dims = int(fp.get("spatial_dims", 2))
    native = int(max(fp["median_size"][-2:]))
    sizes = [size for _, _, _, size in rungs(native, model, dims)]
    if dims == 2:
        return [[s, s] for s in sizes]
    depth = max(_plan_depth(fp["median_size"][0]), min_input_size(model))
    return [[depth, s, s] for s in sizes]


def check_data_fits(enc: PretrainedEncoder, fp: dict[str, Any]) -> None:
    """The encoder's dimensionality, channels and input size against this data's."""
    net = enc.network
    dims = int(fp.get("spatial_dims", 2))
    channels = 3 if fp["colour_fraction"] > 0.5 else 1
    shapes = needed_shapes(fp, str(net["model"]))
    size = list(net.get("input_size") or [])
    check_fits(
        enc,
        spatial_dims=dims,
        in_channels=channels,
        input_size=size if size in shapes else shapes[0],
    )


def check_plan_fits(enc: PretrainedEncoder, plan: Plan) -> None:
    """A given plan (``--plan``) and the encoder name the same network."""
    check_fits(
        enc,
        model=plan.model,
        spatial_dims=plan.spatial_dims,
        in_channels=plan.in_channels,
        input_size=plan.input_size,
    )


def record_init(plan: Plan, enc: PretrainedEncoder) -> None:
    """``plan.init`` and a note saying what is loaded (tensors by name and shape) and what
    starts new (the output layer)."""
    from scandx.tasks.classification.training.loop import build_model

    report = load_matching(build_model(plan), enc)
    plan.init = init_record(enc, report)
    plan.notes.append(describe_init(plan.init, report))
