"""One library function per CLI step: plan and train here; evaluate, predict, explain re-exported.

Input problems surface as ScandxError before anything is written: a run
directory is created only once the data has been read and checked.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from scandx.core.distributed import is_main, rank
from scandx.core.engine import Hook, fit
from scandx.core.health import refuse_non_finite
from scandx.core.run_dir import RunDir, atomic_path, write_json, write_skipped
from scandx.errors import ScandxError
from scandx.tasks.classification.data.images import load_cases
from scandx.tasks.classification.data.manifest import UNLABELLED, Manifest
from scandx.tasks.classification.data.sources import load_source
from scandx.tasks.classification.data.splits import assign_splits, select_labelled
from scandx.tasks.classification.evaluation.calibration import (
    apply_calibration,
    expected_calibration_error,
    fit_calibration,
)
from scandx.tasks.classification.evaluation.curves import choose_operating_points
from scandx.tasks.classification.evaluation.evaluate import evaluate_run
from scandx.tasks.classification.evaluation.metrics import youden_threshold
from scandx.tasks.classification.evaluation.model_card import write_model_card
from scandx.tasks.classification.inference.model_io import contract_of, save_model
from scandx.tasks.classification.inference.ood import fit_ood
from scandx.tasks.classification.inference.scoring import predict_logits, probabilities
from scandx.tasks.classification.plan import Plan
from scandx.tasks.classification.planner import fingerprint, make_plan
from scandx.tasks.classification.positive import (
    choose_positive,
    positive_of,
    put_positive_second,
    record_positive,
    settle_positive,
)
from scandx.tasks.classification.runs import apply_run_splits, labels_tensor
from scandx.tasks.classification.training.leftover import spend_leftover
from scandx.tasks.classification.training.loop import ClassificationTraining, TrainData
from scandx.tasks.classification.training.semi_supervised import (
    settle_scarce_labels,
    train_semi_supervised,
)

# evaluate lives with its package; re-exported for library users
__all__ = [
    "evaluate_run",
    "plan_run",
    "prepare_manifest",
    "train_run",
]

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
    positive_class: str | None = None,
) -> Plan:
    """Fingerprint the data and write ``OUT/plan.json`` (when ``out`` is given)."""
    manifest, plan = manifest_and_plan(
        data,
        time_budget_s=time_budget_s,
        seed=seed,
        model=model,
        image_root=image_root,
        skip_bad=skip_bad,
        positive_class=positive_class,
    )
    if out is not None:
        RunDir(out).save_plan(plan, manifest.skipped)
    return plan


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
    positive_class: str | None = None,
    init: str | Path | None = None,
    labelled_fraction: float | None = None,
    semi_supervised: str | None = None,
) -> dict[str, Any]:
    """Plan (or reuse a plan), train, choose thresholds on validation, save the model.

    ``init``: a pretraining run whose encoder starts the network (core/pretrained.py);
    ``labelled_fraction``: keep the labels of this fraction of the training patients;
    ``semi_supervised``: "auto" (on when unlabelled cases exist) or "off"."""
    run = RunDir(out)
    run.guard_new(resume)
    if resume:  # the saved plan as it is (never re-planned), the recorded splits
        run.check_resumable()
        plan = Plan.load(run.plan_json)
        if run.manifest_csv.exists():
            manifest = load_source(data, image_root=image_root, skip_bad=skip_bad)
            run.check_cases_present({c.case_id for c in manifest.cases}, data)
            apply_run_splits(manifest, run.manifest_csv, strict=True)
        else:  # killed before manifest.csv: the plan's seed deals the same splits
            manifest = prepare_manifest(
                data,
                image_root=image_root,
                skip_bad=skip_bad,
                seed=plan.seed,
                val_fraction=plan.val_fraction,
                test_fraction=plan.test_fraction,
            )
            if plan.labelled_fraction is not None:
                select_labelled(manifest, plan.labelled_fraction, plan.seed)
        settle_positive(plan, manifest, positive_class, data, locked="--resume keeps it")
    else:
        manifest, plan = manifest_and_plan(
            data,
            plan_path=plan_path,
            time_budget_s=time_budget_s,
            seed=seed,
            model=model,
            image_root=image_root,
            skip_bad=skip_bad,
            positive_class=positive_class,
            init=init,
            labelled_fraction=labelled_fraction,
            semi_supervised=semi_supervised,
        )
    summary, _ = train_prepared(
        manifest, plan, run, resuming=resume, skip_bad=skip_bad, hooks=hooks
    )
    return summary


def manifest_and_plan(
    data: str | Path,
    *,
    plan_path: str | Path | None = None,
    time_budget_s: float | None = None,
    seed: int | None = None,
    model: str | None = None,
    image_root: str | Path | None = None,
    skip_bad: bool = False,
    positive_class: str | None = None,
    locked: str = "",
    init: str | Path | None = None,
    labelled_fraction: float | None = None,
    semi_supervised: str | None = None,
) -> tuple[Manifest, Plan]:
    """Load and split the data, fingerprint it, and plan (or check and reuse a plan).

    The binary task's positive class (``positive.py``) is settled before the images are
    decoded, so a wrong ``--positive-class`` fails at once; ``locked`` says why a given
    plan's positive class cannot change (a resumed cross-validation)."""
    base = Plan.load(plan_path) if plan_path else None
    if base is not None and not locked:  # the user's plan, not a resumed run's
        base.as_given()
    enc = None
    if init is not None:  # train --init: a pretrained classifier encoder, checked now
        from scandx.tasks.classification import pretrained_init

        enc = pretrained_init.read_classifier_encoder(init, model)
        if base is not None:
            pretrained_init.check_plan_fits(enc, base)
    run_seed = seed if seed is not None else (base.seed if base else 0)
    manifest = prepare_manifest(
        data,
        image_root=image_root,
        skip_bad=skip_bad,
        seed=run_seed,
        val_fraction=base.val_fraction if base else 0.15,
        test_fraction=base.test_fraction if base else 0.15,
    )
    fraction = (
        labelled_fraction
        if labelled_fraction is not None
        else getattr(base, "labelled_fraction", None)
    )
    fraction_note = select_labelled(manifest, fraction, run_seed) if fraction else None
    if base:
        _check_plan_matches(base, manifest, plan_path)
        settle_positive(base, manifest, positive_class, plan_path, locked)
    else:
        positive, note = choose_positive(manifest.task, manifest.classes, positive_class)
        put_positive_second(manifest, positive)
    # decode every image once, whatever the split: bad files surface (or are
    # skipped and listed) now, not halfway through training or at evaluation
    fp = fingerprint(manifest, skip_bad=skip_bad)
    if enc is not None and not base:
        pretrained_init.check_data_fits(enc, fp)
    if not base:
        plan = make_plan(
            manifest,
            fp,
            time_budget_s=time_budget_s,
            seed=run_seed,
            model=model,
            network=enc.network if enc is not None else None,
        )
        record_positive(plan, positive, note)
        if enc is not None:
            pretrained_init.record_init(plan, enc)
        settle_scarce_labels(plan, manifest, fraction, fraction_note, semi_supervised)
        return manifest, plan.validate()
    base.seed = run_seed
    settle_scarce_labels(base, manifest, fraction, fraction_note, semi_supervised, given=True)
    if model is not None and model != base.model:
        base.model, base.model_kwargs = model, {}
        base.notes.append(f"model set to {model} on the command line")
    if time_budget_s is not None:
        log.warning("--time-budget is ignored with --plan: the plan's epochs are used")
    if enc is not None:
        pretrained_init.record_init(base, enc)
    return manifest, base


def train_prepared(
    manifest: Manifest,
    plan: Plan,
    run: RunDir,
    *,
    resuming: bool = False,
    skip_bad: bool = False,
    hooks: list[Hook] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train on a manifest whose splits are set, with a plan; save model, card, summary.

    Returns the summary and the validation outcome ({"cases", "y", "probs"}: calibrated
    probabilities), which cross-validation collects as out-of-fold predictions.
    """
    contract = contract_of(plan)
    x_tr, tr_cases, bad_tr = load_cases(
        _labelled(manifest, "train"), contract, skip_bad=skip_bad, desc="train images"
    )
    x_va, va_cases, bad_va = load_cases(
        _labelled(manifest, "val"), contract, skip_bad=skip_bad, desc="val images"
    )
    # unlabelled training images (never a val or test patient's: see data/splits.py)
    pool = [c for c in manifest.unlabelled() if c.split in ("train", UNLABELLED)]
    x_unl, bad_unl = None, []
    if plan.semi_supervised == "pseudo-label" and pool:
        x_unl, _, bad_unl = load_cases(pool, contract, skip_bad=skip_bad, desc="unlabelled")
    skipped = manifest.skipped + bad_tr + bad_va + bad_unl
    unreadable = {p for p, _ in bad_tr + bad_va + bad_unl}
    manifest.cases = [c for c in manifest.cases if c.path not in unreadable]
    data_t = TrainData(
        x_tr, labels_tensor(manifest, tr_cases), x_va, labels_tensor(manifest, va_cases)
    )

    with run.training():  # rank 0 writes the run; every rank trains (DDP)
        if not resuming and is_main():
            plan.save(run.plan_json)
        if is_main() and (not resuming or not run.manifest_csv.exists()):
            with atomic_path(run.manifest_csv) as tmp:
                manifest.to_csv(tmp)
            write_skipped(run.path, skipped)
        noted = len(plan.notes)
        semi: dict[str, Any] = {}
        if x_unl is not None:  # training/semi_supervised.py: two fits, budget shared
            model_nn, result, semi = train_semi_supervised(
                plan, data_t, x_unl, run, resuming=resuming, hooks=hooks
            )
        else:
            result = fit(ClassificationTraining(plan, data_t), run, resume=resuming, hooks=hooks)
            plan.notes.extend(result.notes())  # recoveries, a budget stop
            model_nn = spend_leftover(plan, data_t, run, result, resuming=resuming, hooks=hooks)
        if not is_main():  # DDP: what follows training is rank 0's
            return {"run": str(run), "rank": rank(), "best": result.best}, {}
        if len(plan.notes) > noted:  # the plan says how training went
            plan.save(run.plan_json)
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
    operating_points = choose_all_operating_points(plan, y_val, val_probs, thresholds)
    ood_tensors, ood_info = fit_ood(
        model_nn,
        data_t.x_train,
        data_t.y_train.numpy(),
        data_t.x_val,
        plan.seed,
        groups=[c.patient_id for c in tr_cases + va_cases],  # cross-fitted by patient
    )
    refuse_non_finite(model_nn)  # a model with NaN weights is never written
    info = save_model(
        run.model_dir,
        model_nn,
        plan,
        thresholds,
        {
            "best_epoch": result.best.get("epoch"),
            "val_auc": result.best.get("val_auc"),
            "calibration": calibration,
            "operating_points": operating_points,
            "ood": ood_info,
            "training_data": manifest.summary(),
        },
        ood_tensors,
    )
    summary = {
        "run": str(run),
        "best": result.best,
        "epochs_run": len(result.history),
        "train_seconds": result.seconds,
        "device": result.device,
        "precision": result.precision,
        "thresholds": thresholds,
        "sha256": info["sha256"],
    }
    if semi:
        summary["semi_supervised"] = semi
    write_json(run.train_summary, summary)
    write_model_card(run.path)
    return summary, {"cases": va_cases, "y": y_val, "probs": val_probs}


def _labelled(manifest: Manifest, split: str) -> list:
    return [c for c in manifest.in_split(split) if c.target is not None]


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


def choose_all_operating_points(
    plan: Plan, y_val: np.ndarray, probs: np.ndarray, thresholds: dict[str, Any]
) -> dict[str, dict[str, float]]:
    """{target: {rule: threshold}} for the report's operating-point table, chosen on val.

    Binary: the positive class; multi-label: each label; multi-class: none (argmax).
    """
    if plan.task == "binary":
        positive = positive_of(plan)
        return {positive: choose_operating_points(y_val == 1, probs[:, 1], thresholds["positive"])}
    if plan.task == "multilabel":
        return {
            c: choose_operating_points(y_val[:, k], probs[:, k], thresholds[c])
            for k, c in enumerate(plan.classes)
        }
    return {}


def _check_plan_matches(plan: Plan, manifest: Manifest, where: Any) -> None:
    """Same task and class names (the order is the plan's: ``settle_positive`` aligns)."""
    if plan.task != manifest.task or sorted(plan.classes) != sorted(manifest.classes):
        raise ScandxError(
            f"plan is for a {plan.task} task with classes {plan.classes}, the data has a "
            f"{manifest.task} task with classes {manifest.classes}",
            where,
        )
