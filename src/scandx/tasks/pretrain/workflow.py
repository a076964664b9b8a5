"""``scandx pretrain``: the library function (``pretrain_run``) that plans, trains through
the shared engine and writes the encoder.

The run directory is a run like ``train``'s: plan.json (a PretrainPlan), manifest.csv
(the splits, test left out), log.jsonl, checkpoints/ (``--resume`` continues),
train_summary.json, and model/: ``encoder.safetensors`` + ``model.json``
(``core/pretrained.py``; the classifier's tensors under its own names, output layer left
out) and, for the autoencoder, ``autoencoder.safetensors`` with the anomaly threshold
fitted on the validation images (``anomaly.py``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.torch import save_file

from scandx.core.engine import fit
from scandx.core.health import refuse_non_finite
from scandx.core.predictor import sha256
from scandx.core.pretrained import write_encoder
from scandx.core.run_dir import RunDir, atomic_path, write_json, write_skipped
from scandx.core.task import Options
from scandx.errors import ScandxError
from scandx.tasks.classification.data.images import InputContract, load_cases
from scandx.tasks.pretrain.data import TRAIN_SPLITS, pretrain_manifest
from scandx.tasks.pretrain.methods import pretrained_encoder_state
from scandx.tasks.pretrain.plan import METHODS, PretrainPlan
from scandx.tasks.pretrain.planning import make_pretrain_plan
from scandx.tasks.pretrain.training import PretrainTraining

log = logging.getLogger(__name__)

AUTOENCODER_FILE = "autoencoder.safetensors"


def contract_of(network: dict[str, Any]) -> InputContract:
    """How a file becomes the pretrained network's input (the downstream classifier's)."""
    return InputContract(
        spatial_dims=network["spatial_dims"],
        channels=network["in_channels"],
        size=list(network["input_size"]),
        mean=list(network["intensity_mean"]),
        std=list(network["intensity_std"]),
    )


def pretrain_run(
    data: str | Path, out: str | Path, options: Options, method: str | None = None
) -> dict[str, Any]:
    """Pretrain an encoder on ``data`` (labels ignored) into the run ``out``; returns
    train_summary.json's content. Segmentation data sets pretrain the segmenter."""
    given = method or options.method  # None: the run's own (--resume) or the default
    if given is not None and given not in METHODS:
        raise ScandxError(f"--method must be one of {', '.join(METHODS)}, not {given!r}")
    from scandx.tasks.segmentation.sources import is_seg_source

    if is_seg_source(Path(data)):
        from scandx.tasks.pretrain.segmenter import DEFAULT_METHOD, pretrain_segmenter

        return pretrain_segmenter(data, RunDir(out), options, given or DEFAULT_METHOD)
    method = given or "simclr"
    run = RunDir(out)
    run.guard_new(options.resume)
    if options.resume:
        run.check_resumable()
        plan = PretrainPlan.load(run.plan_json)
        if given is not None and given != plan.method:
            raise ScandxError(f"--resume: this run pretrains with {plan.method}, not {given}")
        method = plan.method
        manifest = _manifest(data, options, plan.seed, plan)
    else:
        seed = options.seed or 0
        manifest = _manifest(data, options, seed, None)
        plan = make_pretrain_plan(
            manifest, method, time_budget_s=options.time_budget_s, seed=seed,
            skip_bad=options.skip_bad, model=options.model,
        )  # fmt: skip
    contract = contract_of(plan.network)
    learn = [c for c in manifest.cases if c.split in TRAIN_SPLITS]
    x_tr, _, bad_tr = load_cases(learn, contract, skip_bad=options.skip_bad, desc="train images")
    x_va, _, bad_va = load_cases(
        manifest.in_split("val"), contract, skip_bad=options.skip_bad, desc="val images"
    )
    task = PretrainTraining(plan, x_tr, x_va)
    with run.training():
        if not options.resume:
            plan.save(run.plan_json)
            with atomic_path(run.manifest_csv) as tmp:
                manifest.to_csv(tmp)
            write_skipped(run.path, manifest.skipped + bad_tr + bad_va)
        result = fit(task, run, resume=options.resume, hooks=options.hooks)
        if result.notes():
            plan.notes.extend(result.notes())
            plan.save(run.plan_json)
    net = result.model
    refuse_non_finite(net)
    info: dict[str, Any] = {
        "task": "pretrain",
        "method": plan.method,
        "network": {k: plan.network[k] for k in plan.network},
        "input": contract.to_dict(),
        "best_epoch": result.best.get("epoch"),
        "val_loss": result.best.get("val_loss"),
        "images": {"train": len(x_tr), "val": len(x_va)},
    }
    if plan.method == "autoencoder":
        info["autoencoder"] = _save_autoencoder(run, net, plan, x_va)
    sha = write_encoder(run.model_dir, pretrained_encoder_state(net), info)
    summary = {
        "run": str(run),
        "method": plan.method,
        "best": result.best,
        "epochs_run": len(result.history),
        "train_seconds": result.seconds,
        "stopped": result.stopped,
        "device": result.device,
        "precision": result.precision,
        "encoder_sha256": sha,
        "encoder_tensors": len(pretrained_encoder_state(net)),
    }
    write_json(run.train_summary, summary)
    return summary


def _manifest(data: str | Path, options: Options, seed: int, plan: PretrainPlan | None) -> Any:
    return pretrain_manifest(
        data,
        image_root=options.image_root,
        skip_bad=options.skip_bad,
        seed=seed,
        val_fraction=plan.val_fraction if plan else 0.15,
        test_fraction=plan.test_fraction if plan else 0.15,
    )


def _save_autoencoder(run: RunDir, net: Any, plan: PretrainPlan, x_val: Any) -> dict[str, Any]:
    """The autoencoder's full weights and its anomaly threshold (validation images)."""
    from scandx.models.autoencoder import reconstruction_error
    from scandx.tasks.pretrain.anomaly import fit_threshold

    run.model_dir.mkdir(parents=True, exist_ok=True)
    path = run.model_dir / AUTOENCODER_FILE
    state = {k: v.detach().cpu().contiguous().clone() for k, v in net.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))
    errors = reconstruction_error(net, x_val)
    threshold, rule = fit_threshold(errors)
    return {
        "weights": AUTOENCODER_FILE,
        "sha256": sha256(path),
        "code_dim": plan.code_dim,
        "anomaly": {
            "score": "mean squared reconstruction error per image (normalised input)",
            "threshold": threshold,
            "threshold_rule": rule,
            "fitted_on": "val",
            "val_images": len(errors),
            "val_median_error": float(np.median(errors)),
            "val_flag_rate": float(np.mean(errors > threshold)),
        },
    }
