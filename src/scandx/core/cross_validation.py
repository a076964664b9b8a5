"""``scandx train --folds k`` for every task: k models on patient folds and their ensemble.

The test split is held out. The task deals the other patients into k folds, plans
once (the time budget shared by the folds) and trains fold i on the rest, selecting on
fold i, in ``RUN/folds/fold<i>`` (a complete run directory: every command works on a
single fold). ``--resume`` skips finished folds and continues a started one. The
ensemble is ``RUN/model/model.json``: its members by relative path and the sha256 of
each (a member that changes is refused when loaded), and the decision rules the task
chose on the pooled out-of-fold predictions (each case predicted by the one model
that did not train on it). ``RUN/cv_summary.json``: each fold's validation metrics,
their mean and sd, and the out-of-fold metrics.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from scandx import __version__
from scandx.core.run_dir import RunDir, write_json
from scandx.core.task import Options, Task
from scandx.data.labels import UNLABELLED
from scandx.errors import ScandxError

log = logging.getLogger(__name__)

M = TypeVar("M")


@dataclass
class FoldSetup:
    """What a task's ``cv_prepare`` returns: its manifest (splits set, test held out),
    the one plan every fold trains with, and {patient: fold}."""

    manifest: Any
    plan: Any
    folds: dict[str, int]


def fold_manifest(manifest: M, folds: dict[str, int], i: int) -> M:
    """A copy of the manifest where fold i is "val", the other pooled folds "train"
    (any task's manifest: cases with ``patient_id`` and ``split``). Unlabelled cases
    stay unlabelled; those of fold i's patients leave the copy (they would train on a
    validation patient)."""
    m = copy.deepcopy(manifest)
    held = {p for p, fold in folds.items() if fold == i}
    m.cases = [  # type: ignore[attr-defined]
        c
        for c in m.cases
        if not (c.split == UNLABELLED and c.patient_id in held)  # type: ignore[attr-defined]
    ]
    for c in m.cases:  # type: ignore[attr-defined]
        if c.patient_id in folds and c.split != UNLABELLED:
            c.split = "val" if folds[c.patient_id] == i else "train"
    return m


def mean_sd(values: list[float | None]) -> dict[str, float | None]:
    v = np.array([x for x in values if x is not None], dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return {"mean": None, "sd": None}
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else None}


def train_folds(
    task: Task, data: str | Path, run: RunDir, k: int, options: Options
) -> dict[str, Any]:
    """Train k fold models and their ensemble; returns cv_summary.json's content."""
    if k < 2:
        raise ScandxError(f"--folds must be at least 2 (got {k})")
    from scandx.core.distributed import FOLDS_REFUSED, launched

    if launched():
        raise ScandxError(FOLDS_REFUSED)
    run.guard_new(options.resume)
    if options.resume:
        run.check_resumable()  # nothing to resume is a clear line, never a fresh run
    resume_plan = run.plan_json if options.resume else None
    setup = task.cv_prepare(data, k, options, resume_plan)
    t0 = time.perf_counter()
    run.path.mkdir(parents=True, exist_ok=True)
    if not options.resume:  # a resumed run keeps its plan.json as it is
        setup.plan.save(run.plan_json)
    task.cv_write_run_files(setup, run)
    per_fold, oof = [], []
    for i in range(k):
        fold_run = run.fold(i)
        if options.resume and fold_run.has_model() and fold_run.train_summary.exists():
            log.info("fold %d of %d already trained: kept", i + 1, k)
        else:
            resuming = options.resume and fold_run.can_resume()
            log.info("fold %d of %d -> %s", i + 1, k, fold_run)
            task.cv_train_fold(setup, i, fold_run, resuming, options)
        metrics, outcome = task.cv_fold_outcome(setup, i, fold_run)
        summary = fold_run.read_json(fold_run.train_summary)
        per_fold.append({"fold": i, "epochs_run": summary.get("epochs_run"), **metrics})
        oof.append(outcome)
    task_fields, oof_metrics = task.cv_ensemble(setup, oof, run)
    names = [n for n in per_fold[0] if n not in ("fold", "epochs_run", "val_cases", "best_epoch")]
    cv = {
        "folds": k,
        "unit": "patient",
        "per_fold": per_fold,
        "mean_sd": {n: mean_sd([f.get(n) for f in per_fold]) for n in names},
        "out_of_fold": oof_metrics,
    }
    info = _write_ensemble(run, setup.plan, k, task_fields, cv)
    write_json(run.cv_summary, cv)
    score = task_fields.get("selection_metric", names[0])
    write_json(
        run.train_summary,
        {
            "run": str(run),
            "folds": k,
            "epochs_run": int(np.mean([f["epochs_run"] or 0 for f in per_fold])),
            "seconds_this_call": round(time.perf_counter() - t0, 1),
            "best": {score: cv["mean_sd"].get(score, {}).get("mean")},
            "sha256": info["sha256"],
        },
    )
    task.write_model_card(run)
    return cv


def _write_ensemble(
    run: RunDir, plan: Any, k: int, task_fields: dict[str, Any], cv: dict[str, Any]
) -> dict[str, Any]:
    """RUN/model/model.json of the ensemble; its sha256 is that of its members' digests."""
    shas = [run.fold(i).read_json(run.fold(i).model_json)["sha256"] for i in range(k)]
    info = {
        "format": "scandx-ensemble/1",
        "scandx_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "task": plan.task,
        "ensemble": [f"../folds/fold{i}/model" for i in range(k)],
        "member_sha256": shas,
        "weights": "members",
        "sha256": hashlib.sha256("".join(shas).encode()).hexdigest(),
        **task_fields,
        "cross_validation": {
            "folds": k,
            "per_fold": cv["per_fold"],
            "mean_sd": cv["mean_sd"],
            "out_of_fold": cv["out_of_fold"],
        },
    }
    write_json(run.model_json, info)
    return info


def format_cv(cv: dict, out: str) -> str:
    """The printed summary of ``train --folds``: per-fold metrics, mean +- sd, out of fold."""
    lines = [f"{cv['folds']}-fold cross-validation (validation fold of each model), {out}:"]
    lines.append(f"  {'metric':<18} " + " ".join(f"fold{f['fold']:<3}" for f in cv["per_fold"]))
    for k, ms in cv["mean_sd"].items():
        vals = " ".join(
            f"{f[k]:<7.3f}" if isinstance(f.get(k), float) else f"{'n/a':<7}"
            for f in cv["per_fold"]
        )
        if ms["mean"] is None:
            summary = "n/a"
        else:
            sd = f"{ms['sd']:.3f}" if ms["sd"] is not None else "n/a"
            summary = f"{ms['mean']:.3f} +- {sd}"
        lines.append(f"  {k:<18} {vals} mean {summary}")
    oof = ", ".join(f"{k} {v:.3f}" for k, v in cv["out_of_fold"].items() if isinstance(v, float))
    lines.append(f"out of fold: {oof}")
    lines.append(f"ensemble of the {cv['folds']} models: {out}/model (evaluate/predict use it)")
    return "\n".join(lines)
