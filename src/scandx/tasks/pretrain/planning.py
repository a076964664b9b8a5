"""Fingerprint -> PretrainPlan for the classifier family.

The network is the one ``scandx train`` would plan for these images and this budget
(``classification.planner.make_plan`` on the same splits): its model, width, input size,
channels and intensity normalisation, so ``train --init`` builds exactly the network the
encoder was trained as. The epochs are the supervised plan's divided by how much more a
step of the method costs (two views for SimCLR; the decoder for MAE and the
autoencoder) and by the extra unlabelled images; the engine's deadline holds the budget
whatever the estimate.
"""

from __future__ import annotations

import logging

from scandx.tasks.classification.data.manifest import Manifest
from scandx.tasks.classification.planner import DEFAULT_BUDGET_S, fingerprint, make_plan
from scandx.tasks.pretrain.data import TRAIN_SPLITS
from scandx.tasks.pretrain.plan import PretrainPlan

log = logging.getLogger(__name__)

STEP_COST = {"simclr": 2.5, "mae": 1.3, "autoencoder": 1.6}  # x a supervised step


def make_pretrain_plan(
    manifest: Manifest,
    method: str,
    *,
    time_budget_s: float | None = None,
    seed: int = 0,
    skip_bad: bool = False,
    model: str | None = None,
) -> PretrainPlan:
    """Decode the train/unlabelled and val images once (never test), plan the
    downstream classifier (``model``: that network, as ``train --model``), and the
    pretraining around it."""
    fp = fingerprint(manifest, skip_bad=skip_bad)
    budget = float(time_budget_s or DEFAULT_BUDGET_S)
    down = make_plan(manifest, fp, time_budget_s=budget, seed=seed, model=model)
    n_down = max(1, len(manifest.in_split("train")))
    n_pre = sum(1 for c in manifest.cases if c.split in TRAIN_SPLITS)
    epochs = max(3, int(down.epochs / STEP_COST[method] * n_down / max(n_pre, 1)))
    network = {
        "family": "classifier",
        "model": down.model,
        "model_kwargs": dict(down.model_kwargs),
        "spatial_dims": down.spatial_dims,
        "in_channels": down.in_channels,
        "input_size": list(down.input_size),
        "intensity_mean": list(down.intensity_mean),
        "intensity_std": list(down.intensity_std),
    }
    in_plane = min(down.input_size[-2:])
    batch = down.batch_size if method != "simclr" else min(max(down.batch_size, 32), n_pre)
    notes = [
        f"pretraining ({method}) the network scandx train plans for these images: "
        f"{down.model} {down.model_kwargs or ''} at {down.input_size}, {down.in_channels} "
        "channel(s)",
        f"{epochs} epochs: the supervised plan's {down.epochs} / {STEP_COST[method]} (a "
        f"{method} step's cost) x {n_down}/{n_pre} (train / train + unlabelled images); "
        "the deadline holds the budget",
        "views: random resized crop, rotation, gamma, brightness/contrast, blur, noise; "
        "no flips (laterality), no colour jitter",
        *manifest.notes,
    ]
    plan = PretrainPlan(
        method=method,
        family="classifier",
        network=network,
        downstream_plan=down.to_dict(),
        batch_size=max(2, batch),
        epochs=epochs,
        lr=down.lr,
        weight_decay=down.weight_decay if method != "simclr" else 1e-4,
        warmup_epochs=1 if epochs >= 5 else 0,
        early_stopping_patience=max(8, epochs // 2),
        min_epochs=max(1, epochs // 2),
        mask_patch=max(2, round(in_plane / 7)),
        device=down.device,
        precision=down.precision,
        seed=seed,
        time_budget_s=budget,
        notes=notes,
        fingerprint=fp,
    )
    return plan.validate()
