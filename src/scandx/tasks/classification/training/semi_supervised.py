"""Semi-supervised training with pseudo-labels whose confidence thresholds are chosen on
validation (``plan.semi_supervised == "pseudo-label"``).

Two fits of the shared engine (``core/engine.py``), each resumable:

1. the supervised network: the labelled training images, in ``RUN/`` as any run,
   within ``PHASE1_SHARE`` of the time budget;
2. its predictions on the unlabelled training images become labels where they are
   confident enough. Per class k, the threshold is the lowest confidence at which the
   first network's validation predictions of class k are at least
   ``plan.pseudo_label_precision`` precise (with ``MIN_SUPPORT`` such predictions at
   least); a class whose predictions never get there gets no pseudo-label. The chosen
   thresholds, the pseudo-labels and the second fit's budget are written once to
   ``RUN/semi_supervised/pseudo_labels.json``, so a resumed run uses the same ones;
3. the second network starts from the first's weights and trains on labelled +
   pseudo-labelled images for the rest of the budget, in ``RUN/semi_supervised/``.

Validation decides: the second network is kept unless its validation AUC is below the
first's. Test cases are never seen: the unlabelled images are training images (the
splits put a held-out patient's unlabelled images out of the run). Why pseudo-labels
rather than consistency training (FixMatch): on a CPU each consistency step costs two
more forward passes of an unlabelled batch for every labelled one, and needs many
epochs to pay off; one pass of predictions and an ordinary second fit spend a small
budget on more labelled-looking data, and the thresholds come from held-out evidence.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from typing import Any

import numpy as np
import torch

from scandx.core.distributed import is_main, world_size
from scandx.core.engine import DEADLINE_FRACTION, FitResult, Hook, fit
from scandx.core.run_dir import RunDir, atomic_write
from scandx.errors import ScandxError
from scandx.tasks.classification.data.manifest import UNLABELLED, Manifest
from scandx.tasks.classification.inference.scoring import predict_logits, probabilities
from scandx.tasks.classification.plan import Plan
from scandx.tasks.classification.training.leftover import RESERVE, _val_auc
from scandx.tasks.classification.training.loop import ClassificationTraining, TrainData

log = logging.getLogger(__name__)

PHASE1_SHARE = 0.4  # of the time budget for the supervised network
MIN_SUPPORT = 5  # validation predictions of a class a threshold must rest on
SECOND_EPOCHS = 5  # the pseudo-labelled set is cut (least confident first) to allow these
MIN_PSEUDO = 8  # fewer pseudo-labels than this: no second fit
VAL_COST = 1 / 3  # a validation image's cost relative to a training image (forward only)
SEMI_DIR = "semi_supervised"


def choose_thresholds(probs: np.ndarray, y: np.ndarray, precision: float) -> list[float | None]:
    """Per class, the lowest confidence at which validation predictions of that class
    (argmax) are at least ``precision`` precise, over ``MIN_SUPPORT`` of them at least;
    None where no confidence gets there."""
    pred = probs.argmax(1)
    out: list[float | None] = []
    for k in range(probs.shape[1]):
        conf = probs[pred == k, k]
        right = y[pred == k] == k
        order = np.argsort(-conf, kind="stable")
        conf, right = conf[order], right[order]
        hits = np.cumsum(right) / np.arange(1, len(right) + 1)
        ok = [i for i in range(len(conf)) if i + 1 >= MIN_SUPPORT and hits[i] >= precision]
        out.append(float(conf[ok[-1]]) if ok else None)
    return out


def pseudo_label(
    probs: np.ndarray, thresholds: list[float | None]
) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the unlabelled images kept, their labels): the argmax class where
    its confidence reaches that class's threshold."""
    pred = probs.argmax(1)
    conf = probs[np.arange(len(probs)), pred]
    limit = np.array([math.inf if t is None else t for t in thresholds])[pred]
    keep = np.flatnonzero(conf >= limit)
    return keep, pred[keep]


def most_confident(
    probs: np.ndarray, index: np.ndarray, labels: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """At most ``n`` of the pseudo-labels, each class keeping its share, the most
    confident of each class first; in the images' order."""
    if len(index) <= n:
        return index, labels
    keep: list[np.ndarray] = []
    for k in np.unique(labels):
        mine = index[labels == k]
        share = math.floor(n * len(mine) / len(index) + 0.5)
        order = np.argsort(-probs[mine, k], kind="stable")
        keep.append(mine[order[:share]])
    chosen = np.sort(np.concatenate(keep)) if keep else index[:0]
    return chosen, probs[chosen].argmax(1)


class _Continued(ClassificationTraining):
    """The second fit: the network starts from the first fit's weights."""

    def __init__(self, plan: Plan, data: TrainData, start: dict[str, torch.Tensor]) -> None:
        super().__init__(plan, data)
        self.start = start

    def build_model(self) -> torch.nn.Module:
        model = super().build_model()
        model.load_state_dict(self.start)
        return model


def train_semi_supervised(
    plan: Plan,
    data: TrainData,
    x_unlabelled: torch.Tensor,
    run: RunDir,
    *,
    resuming: bool = False,
    hooks: list[Hook] | None = None,
) -> tuple[torch.nn.Module, FitResult, dict[str, Any]]:
    """(the network kept, its fit, what was done for train_summary.json); the plan's
    notes say what was done (the caller saves the plan)."""
    p1 = copy.deepcopy(plan)
    if plan.time_budget_s:
        p1.time_budget_s = PHASE1_SHARE * plan.time_budget_s
    first = fit(ClassificationTraining(p1, data), run, resume=resuming, hooks=hooks)
    plan.notes.extend(first.notes())
    info: dict[str, Any] = {"method": "pseudo-label", "unlabelled": len(x_unlabelled)}
    if world_size() > 1:
        plan.notes.append("semi-supervised: not under DDP; the supervised network is kept")
        return first.model, first, {**info, "used": 0, "kept": "supervised"}
    semi_run = RunDir(run.path / SEMI_DIR)
    record = _pseudo_record(plan, data, x_unlabelled, first, semi_run)
    used = len(record["index"])
    info.update(used=used, thresholds=record["thresholds"], per_class=record["per_class"])
    cut = record["found"] - used
    what = (
        f"semi-supervised (pseudo-labels): {used} of {len(x_unlabelled)} unlabelled training "
        f"images pseudo-labelled (per class {record['per_class']}"
        + (f"; {cut} less confident ones left out to fit the time budget" if cut else "")
        + ") at validation-chosen "
        f"confidence thresholds {_shown(record['thresholds'])} (the lowest at which the "
        f"supervised network's validation predictions of the class are >= "
        f"{plan.pseudo_label_precision:.0%} precise)"
    )
    if record.get("skip"):
        plan.notes.append(f"{what}; no second fit: {record['skip']}")
        return first.model, first, {**info, "kept": "supervised"}
    idx = torch.as_tensor(record["index"], dtype=torch.long)
    labels = torch.as_tensor(record["labels"], dtype=torch.long)
    data2 = TrainData(
        torch.cat([data.x_train, x_unlabelled[idx]]),
        torch.cat([data.y_train, labels]),
        data.x_val,
        data.y_val,
    )
    p2 = copy.deepcopy(plan)
    p2.init = None  # the first network's weights, which already hold any --init
    p2.time_budget_s = record["budget_s"]
    p2.batch_size = int(record["batch_size"])
    p2.warmup_epochs = 0
    p2.min_epochs = 1
    semi_run.path.mkdir(parents=True, exist_ok=True)
    start = {k: v.clone() for k, v in first.model.state_dict().items()}
    second = fit(_Continued(p2, data2, start), semi_run, resume=resuming, hooks=hooks)
    y = data.y_val.numpy()
    auc1, auc2 = (_val_auc(plan, m, data.x_val, y) for m in (first.model, second.model))
    keep_second = not (auc2 < auc1)  # NaN (one class in val) keeps the second
    kept = "semi-supervised" if keep_second else "supervised"
    plan.notes.append(
        f"{what}; second network trained on {len(data.y_train)} labelled + {used} "
        f"pseudo-labelled images for {len(second.history)} epochs: validation AUC "
        f"{auc1:.4f} (supervised) vs {auc2:.4f}: the {kept} network kept"
    )
    plan.notes.extend(f"second fit: {n}" for n in second.notes())
    info.update(kept=kept, val_auc_supervised=auc1, val_auc_semi=auc2)
    return (second.model, second, info) if keep_second else (first.model, first, info)


def settle_scarce_labels(
    plan: Plan,
    manifest: Manifest,
    fraction: float | None,
    fraction_note: str | None,
    semi_supervised: str | None,
    given: bool = False,
) -> None:
    """Record ``--labelled-fraction`` and decide ``plan.semi_supervised``: "auto" (or
    nothing said) uses the unlabelled training images when there are any; "off" never;
    a given plan keeps its choice unless the flag is given."""
    plan.labelled_fraction = fraction
    if fraction_note and fraction_note not in plan.notes:
        plan.notes.append(fraction_note)
    unlabelled = len(manifest.in_split(UNLABELLED))
    if semi_supervised not in (None, "auto", "off"):
        raise ScandxError(f"--semi-supervised must be auto or off, not {semi_supervised!r}")
    if given and semi_supervised is None:
        wanted = plan.semi_supervised != "off"
    else:
        wanted = semi_supervised != "off"
    why = ""
    if wanted and not unlabelled:
        why = "no unlabelled training images"
    elif wanted and manifest.task == "multilabel":
        why = "pseudo-labels are for binary and multi-class tasks, not multi-label"
    plan.semi_supervised = "pseudo-label" if wanted and not why else "off"
    if plan.semi_supervised == "pseudo-label":
        note = f"semi-supervised training on: {unlabelled} unlabelled training images"
    elif unlabelled:
        note = f"{unlabelled} unlabelled training images not used: " + (
            why or "--semi-supervised off"
        )
    else:
        return
    if note not in plan.notes:
        plan.notes.append(note)


def _pseudo_record(
    plan: Plan, data: TrainData, x_unlabelled: torch.Tensor, first: FitResult, semi_run: RunDir
) -> dict[str, Any]:
    """The pseudo-labels and the second fit's budget: read when a resumed run has them,
    else chosen now and written before the second fit starts."""
    path = semi_run.path / "pseudo_labels.json"
    if path.exists():
        return json.loads(path.read_text())
    t0 = time.perf_counter()
    val_probs = probabilities(plan.task, predict_logits(first.model, data.x_val, "cpu")).numpy()
    thresholds = choose_thresholds(val_probs, data.y_val.numpy(), plan.pseudo_label_precision)
    probs = probabilities(plan.task, predict_logits(first.model, x_unlabelled, "cpu")).numpy()
    index, labels = pseudo_label(probs, thresholds)
    found = len(index)
    n_lab, n_val = len(data.y_train), len(data.y_val)
    if plan.time_budget_s and first.history:  # what SECOND_EPOCHS epochs can hold
        spent = sum(float(r.get("seconds", 0.0)) for r in first.history)
        per_image = spent / len(first.history) / (n_lab + VAL_COST * n_val)
        left = (DEADLINE_FRACTION - RESERVE) * plan.time_budget_s - spent
        left -= time.perf_counter() - t0
        room = int(left / SECOND_EPOCHS / max(per_image, 1e-9) - n_lab - VAL_COST * n_val)
        index, labels = most_confident(probs, index, labels, max(room, 0))
    n2 = n_lab + len(index)
    record: dict[str, Any] = {
        "found": found,
        "thresholds": thresholds,
        "index": index.tolist(),
        "labels": labels.tolist(),
        "per_class": {c: int((labels == k).sum()) for k, c in enumerate(plan.classes)},
        "batch_size": _batch_size(plan, n2),
        "budget_s": None,
    }
    if len(index) < MIN_PSEUDO:
        record["skip"] = f"{len(index)} pseudo-labels in the time left"
    elif len(np.unique(labels)) < 2:
        record["skip"] = "pseudo-labels of fewer than two classes would skew the network"
    if plan.time_budget_s:
        spent = sum(float(r.get("seconds", 0.0)) for r in first.history)
        left = (DEADLINE_FRACTION - RESERVE) * plan.time_budget_s - spent
        left -= time.perf_counter() - t0
        record["budget_s"] = round(max(left, 1.0) / DEADLINE_FRACTION, 2)
    if is_main():
        semi_run.path.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(record) + "\n")
    return record


def _batch_size(plan: Plan, n: int) -> int:
    """The planner's rule (``planner.plan_batch_size``) for the larger training set."""
    from scandx.tasks.classification.planner import plan_batch_size

    return plan_batch_size(n, int(max(plan.input_size[-2:])), plan.spatial_dims)


def _shown(thresholds: list[float | None]) -> str:
    return "[" + ", ".join("none" if t is None else f"{t:.3f}" for t in thresholds) + "]"
