"""One library function per CLI step: plan, train, evaluate, predict.

Input problems surface as ScandxError before anything is written: a run
directory is created only once the data has been read and checked.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scandx.config import Plan
from scandx.data.images import load_cases
from scandx.data.manifest import Manifest, read_run_manifest
from scandx.data.sources import load_source
from scandx.data.splits import assign_splits, check_patient_leakage
from scandx.errors import ScandxError
from scandx.evaluation.calibration import (
    apply_calibration,
    expected_calibration_error,
    fit_calibration,
)
from scandx.evaluation.metrics import youden_threshold
from scandx.evaluation.model_card import write_model_card
from scandx.evaluation.report import evaluate_predictions
from scandx.inference.model_io import contract_of, save_model
from scandx.inference.ood import fit_ood
from scandx.inference.predictor import Predictor
from scandx.planning import fingerprint, make_plan
from scandx.training.loop import Hook, TrainData, fit, predict_logits, probabilities

log = logging.getLogger(__name__)


def prepare_manifest(
    data: str | Path,
    *,
    image_root: str | Path | None = None,
    skip_bad: bool = False,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
) -> Manifest:
    manifest = load_source(data, image_root=image_root, skip_bad=skip_bad)
    return assign_splits(
        manifest, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction
    )


def plan_run(
    data: str | Path,
    out: str | Path | None = None,
    *,
    time_budget_s: float | None = None,
    seed: int = 0,
    model: str | None = None,
    image_root: str | Path | None = None,
    skip_bad: bool = False,
) -> Plan:
    """Fingerprint the data and write ``OUT/plan.json`` (when ``out`` is given)."""
    manifest = prepare_manifest(data, image_root=image_root, skip_bad=skip_bad, seed=seed)
    fp = fingerprint(manifest, skip_bad=skip_bad)
    plan = make_plan(manifest, fp, time_budget_s=time_budget_s, seed=seed, model=model)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        plan.save(out / "plan.json")
        _write_skipped(out, manifest.skipped)
    return plan


def _labels(manifest: Manifest, cases: list) -> torch.Tensor:
    if manifest.task == "multilabel":
        return torch.tensor([list(c.target) for c in cases], dtype=torch.long)
    return torch.tensor([int(c.target) for c in cases], dtype=torch.long)


def train_run(
    data: str | Path,
    out: str | Path,
    *,
    plan_path: str | Path | None = None,
    time_budget_s: float | None = None,
    seed: int | None = None,
    model: str | None = None,
    resume: bool = False,
    image_root: str | Path | None = None,
    skip_bad: bool = False,
    hooks: list[Hook] | None = None,
) -> dict[str, Any]:
    """Plan (or reuse a plan), train, choose thresholds on validation, save the model."""
    out = Path(out)
    resuming = resume and (out / "checkpoints" / "last.ckpt").exists()
    if not resume and any((out / d).exists() for d in ("model", "checkpoints")):
        raise ScandxError("run directory already holds a run; use --resume or a new --out", out)
    if resuming:
        plan = Plan.load(out / "plan.json")
        manifest = load_source(data, image_root=image_root, skip_bad=skip_bad)
        _apply_run_splits(manifest, out / "manifest.csv", strict=True)
    else:
        base = Plan.load(plan_path) if plan_path else None
        run_seed = seed if seed is not None else (base.seed if base else 0)
        manifest = prepare_manifest(
            data,
            image_root=image_root,
            skip_bad=skip_bad,
            seed=run_seed,
            val_fraction=base.val_fraction if base else 0.15,
            test_fraction=base.test_fraction if base else 0.15,
        )
        # decode every image once, whatever the split: bad files surface (or are
        # skipped and listed) now, not halfway through training or at evaluation
        fp = fingerprint(manifest, skip_bad=skip_bad)
        if base:
            _check_plan_matches(base, manifest, plan_path)
            plan = base
            if seed is not None:
                plan.seed = seed
            if model is not None and model != plan.model:
                plan.model, plan.model_kwargs = model, {}
                plan.notes.append(f"model set to {model} on the command line")
            if time_budget_s is not None:
                log.warning("--time-budget is ignored with --plan: the plan's epochs are used")
        else:
            plan = make_plan(manifest, fp, time_budget_s=time_budget_s, seed=run_seed, model=model)
    contract = contract_of(plan)
    x_tr, tr_cases, bad_tr = load_cases(
        manifest.in_split("train"), contract, skip_bad=skip_bad, desc="train images"
    )
    x_va, va_cases, bad_va = load_cases(
        manifest.in_split("val"), contract, skip_bad=skip_bad, desc="val images"
    )
    skipped = manifest.skipped + bad_tr + bad_va
    unreadable = {p for p, _ in bad_tr + bad_va}
    manifest.cases = [c for c in manifest.cases if c.path not in unreadable]
    data_t = TrainData(x_tr, _labels(manifest, tr_cases), x_va, _labels(manifest, va_cases))

    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        if not resuming:
            plan.save(out / "plan.json")
            manifest.to_csv(out / "manifest.csv")
            _write_skipped(out, skipped)
        result = fit(plan, data_t, out, resume=resuming, hooks=hooks)
    except (KeyboardInterrupt, SystemExit):
        raise  # keep checkpoints: --resume continues
    except Exception:
        if created and not (out / "checkpoints" / "last.ckpt").exists():
            shutil.rmtree(out, ignore_errors=True)
        raise
    model_nn = result["model"]
    y_val = data_t.y_val.numpy()
    val_logits = predict_logits(model_nn, data_t.x_val, "cpu")
    calibration = fit_calibration(plan.task, val_logits.numpy(), y_val)
    val_probs = probabilities(plan.task, apply_calibration(val_logits, calibration)).numpy()
    raw_probs = probabilities(plan.task, val_logits).numpy()
    calibration.update(
        fitted_on="val",
        ece_val_before=expected_calibration_error(plan.task, y_val, raw_probs),
        ece_val_after=expected_calibration_error(plan.task, y_val, val_probs),
    )
    thresholds = choose_thresholds(plan, y_val, val_probs)  # on calibrated probabilities
    ood_tensors, ood_info = fit_ood(
        model_nn, data_t.x_train, data_t.y_train.numpy(), data_t.x_val, plan.seed
    )
    info = save_model(
        out / "model",
        model_nn,
        plan,
        thresholds,
        {
            "best_epoch": result["best"].get("epoch"),
            "val_auc": result["best"].get("val_auc"),
            "calibration": calibration,
            "ood": ood_info,
            "training_data": manifest.summary(),
        },
        ood_tensors,
    )
    summary = {
        "run": str(out),
        "best": result["best"],
        "epochs_run": len(result["history"]),
        "thresholds": thresholds,
        "sha256": info["sha256"],
    }
    (out / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_model_card(out)
    return summary


def choose_thresholds(plan: Plan, y_val: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """Operating thresholds from validation data only (Youden's J), never from test."""
    base = {"rule": "youden" if plan.task != "multiclass" else "argmax", "chosen_on": "val"}
    if plan.task == "binary":
        return {**base, "positive": youden_threshold(y_val == 1, probs[:, 1])}
    if plan.task == "multilabel":
        return {
            **base,
            **{c: youden_threshold(y_val[:, k], probs[:, k]) for k, c in enumerate(plan.classes)},
        }
    return base


def _check_plan_matches(plan: Plan, manifest: Manifest, where: Any) -> None:
    if plan.task != manifest.task or list(plan.classes) != list(manifest.classes):
        raise ScandxError(
            f"plan is for a {plan.task} task with classes {plan.classes}, the data has a "
            f"{manifest.task} task with classes {manifest.classes}",
            where,
        )


def _apply_run_splits(manifest: Manifest, manifest_csv: Path, strict: bool) -> None:
    """Give cases the split recorded in a run; unknown cases keep the source's or 'external'."""
    if not manifest_csv.exists():
        raise ScandxError("run has no manifest.csv", manifest_csv)
    recorded = read_run_manifest(manifest_csv)
    for c in manifest.cases:
        if c.case_id in recorded:
            c.split = recorded[c.case_id]
        elif strict:
            raise ScandxError(
                f"case {c.case_id} is not in the run's manifest; resume needs the same data", c.path
            )
        elif not c.split:
            c.split = "external"
    check_patient_leakage(manifest)


def _write_skipped(out: Path, skipped: list[tuple[str, str]]) -> None:
    if not skipped:
        return
    with open(out / "skipped.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "reason"])
        w.writerows(skipped)
    log.warning("skipped %d bad file(s); see %s", len(skipped), out / "skipped.csv")


def evaluate_run(
    run: str | Path,
    data: str | Path,
    *,
    split: str = "test",
    image_root: str | Path | None = None,
    skip_bad: bool = False,
    n_boot: int = 1000,
) -> dict[str, Any]:
    """Score a split with the run's Predictor; write eval/<split>/{metrics.json,predictions.csv}."""
    run = Path(run)
    predictor = Predictor.from_run(run)
    manifest = load_source(data, image_root=image_root, skip_bad=skip_bad)
    if list(manifest.classes) != list(predictor.classes) or manifest.task != predictor.task:
        raise ScandxError(
            f"data classes {manifest.classes} do not match the model's {predictor.classes}", data
        )
    _apply_run_splits(manifest, run / "manifest.csv", strict=False)
    cases = manifest.in_split(split)
    if not cases:
        have = sorted({c.split for c in manifest.cases})
        raise ScandxError(f"no cases in split {split!r}; available: {', '.join(have)}", data)
    x, kept, skipped = load_cases(
        cases, predictor.contract, skip_bad=skip_bad, desc=f"{split} images"
    )
    logits = predictor.logits(x)
    probs = predictor.to_probabilities(logits)
    y = _labels(manifest, kept).numpy()
    calibration = {
        **(predictor.info.get("calibration") or {"method": "none"}),
        "ece_before": expected_calibration_error(
            manifest.task, y, predictor.to_probabilities(logits, calibrated=False)
        ),
        "ece_after": expected_calibration_error(manifest.task, y, probs),
        "ece_bins": 15,
    }
    ood_scores = predictor.ood_scores(x)
    ood = {"method": "none"}
    if ood_scores is not None:
        threshold = predictor.info["ood"]["threshold"]
        ood = {"threshold": threshold, "flagged_fraction": float(np.mean(ood_scores > threshold))}
    thresholds = predictor.info["thresholds"]
    metrics = evaluate_predictions(
        manifest.task,
        manifest.classes,
        y,
        probs,
        thresholds,
        [c.patient_id for c in kept],
        n_boot=n_boot,
    )
    metrics = {
        "split": split,
        "cases": len(kept),
        "patients": len({c.patient_id for c in kept}),
        "task": manifest.task,
        "classes": manifest.classes,
        "threshold": {
            **thresholds,
            "note": "chosen on the validation split at training time; never tuned on test",
        },
        **metrics,
        "calibration": calibration,
        "ood": ood,
    }
    if skipped:
        metrics["skipped"] = [{"path": p, "reason": r} for p, r in skipped]
    out = run / "eval" / split
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_model_card(run)
    decisions = predictor.decide(probs)
    with open(out / "predictions.csv", "w", newline="") as f:
        w = csv.writer(f)
        label_cols = (
            ["label"] if manifest.task != "multilabel" else [f"label_{c}" for c in manifest.classes]
        )
        w.writerow(
            [
                "case_id",
                "patient_id",
                "path",
                *label_cols,
                *[f"prob_{c}" for c in manifest.classes],
                "predicted",
            ]
        )
        for c, pr, d, yy in zip(kept, probs, decisions, y, strict=True):
            labels = (
                [manifest.classes[int(yy)]]
                if manifest.task != "multilabel"
                else [int(v) for v in yy]
            )
            pred = (
                ";".join(n for n, v in zip(manifest.classes, d, strict=True) if v)
                if manifest.task == "multilabel"
                else manifest.classes[int(d)]
            )
            w.writerow([c.case_id, c.patient_id, c.path, *labels, *[f"{p:.6f}" for p in pr], pred])
    return metrics


def predict_run(
    run: str | Path,
    files: list[str | Path],
    out_csv: str | Path | None = None,
    *,
    skip_bad: bool = False,
) -> list[dict[str, Any]]:
    """Probabilities and decisions for image files, via the run's saved input contract."""
    predictor = Predictor.from_run(run)
    rows = predictor.predict_files(files, skip_bad=skip_bad)
    if out_csv:
        Path(out_csv).parent.mkdir(parents=True, exist_ok=True)
        keys = [
            "path",
            *[f"prob_{c}" for c in predictor.classes],
            "predicted",
            "uncertainty",
            "ood_score",
            "ood_flag",
            "error",
        ]
        with open(out_csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            for r in rows:
                w.writerow(
                    {
                        k: (f"{r[k]:.6f}" if isinstance(r.get(k), float) else r.get(k, ""))
                        for k in keys
                    }
                )
    return rows


def explain_run(
    run: str | Path,
    files: list[str | Path],
    out_dir: str | Path,
    *,
    method: str = "gradcam",
    class_name: str | None = None,
) -> list[dict[str, Any]]:
    """Heatmap overlays (PNG) and raw maps (.npy) for image files, plus explanations.csv."""
    from scandx.explain.explain import explain_file, write_explanation

    predictor = Predictor.from_run(run)
    results = [explain_file(predictor, f, method, class_name) for f in files]  # all or nothing
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, r in enumerate(results):
        png = write_explanation(r, out, i)
        rows.append(
            {k: r[k] for k in ("path", "class", "probability", "method", "layer")}
            | {"overlay": str(png)}
        )
    with open(out / "explanations.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return rows
