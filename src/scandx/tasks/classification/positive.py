"""The positive class of a binary task: the class that sensitivity, PPV, the ROC curve, the
calibration curve and the operating threshold are about.

The rule: a class named like a negative finding (normal, no finding, negative, healthy,
benign, 0, ...; case, spaces, underscores and hyphens ignored) is the negative one when
exactly one of the two is so named; otherwise the second class in the data's order is
positive (as before scandx knew the difference) and a plan note says so.
``--positive-class NAME`` overrides.

One invariant keeps the rest of the code simple: in a plan, and so in ``model.json``,
the metrics and every output, the positive class of a binary task is the *second* class
(the model's output 1). A source lists its classes in its own order, so a manifest is
put in the plan's (or model's) order before training or evaluation (``align_classes``);
labels are recorded by name (manifest.csv), never by index, so nothing else moves.
"""

from __future__ import annotations

import re
import shlex
from typing import TYPE_CHECKING

from scandx.errors import ScandxError

if TYPE_CHECKING:
    from scandx.tasks.classification.data.manifest import Manifest
    from scandx.tasks.classification.plan import Plan

# names of a negative finding, normalised (lower case; no spaces, underscores, hyphens)
NEGATIVE_NAMES = frozenset(
    {
        "normal",
        "nofinding",
        "nofindings",
        "negative",
        "neg",
        "healthy",
        "healthycontrol",
        "healthycontrols",
        "benign",
        "normalorbenign",  # BreastMNIST
        "benignornormal",
        "0",
        "false",
        "no",
        "none",
        "absent",
        "control",
        "controls",
        "unremarkable",
        "nodisease",
        "withoutfinding",
    }
)
_NO_PREFIX = re.compile(r"^no[\s_-]+\w")  # "no pneumonia", "no_tumour", "No-effusion"
NOTE_PREFIX = "positive class "


def normalise(name: str) -> str:
    return re.sub(r"[\s_-]+", "", name.strip().lower())


def is_negative_name(name: str) -> bool:
    return normalise(name) in NEGATIVE_NAMES or bool(_NO_PREFIX.match(name.strip().lower()))


def resolve_class(requested: str, classes: list[str]) -> str:
    """The class ``--positive-class`` names: exact, else the one equal once normalised."""
    if requested in classes:
        return requested
    same = [c for c in classes if normalise(c) == normalise(requested)]
    if len(same) == 1:
        return same[0]
    raise ScandxError(
        f"--positive-class {requested!r} is not one of the classes: "
        + ", ".join(repr(c) for c in classes)
    )


def _refuse_for(task: str, classes: list[str]) -> ScandxError:
    return ScandxError(
        f"--positive-class applies to binary classification; this is a {task} task "
        f"({len(classes)} classes: {', '.join(classes)}), each class is scored on its own"
    )


def choose_positive(
    task: str, classes: list[str], requested: str | None = None
) -> tuple[str | None, str | None]:
    """(positive class, plan note saying why); (None, None) for multi-class/multi-label."""
    if task != "binary":
        if requested:
            raise _refuse_for(task, classes)
        return None, None
    if requested:
        positive = resolve_class(requested, classes)
        return positive, f"{NOTE_PREFIX}{positive}: set with --positive-class"
    negative = [c for c in classes if is_negative_name(c)]
    if len(negative) == 1:
        positive = next(c for c in classes if c != negative[0])
        return positive, (
            f"{NOTE_PREFIX}{positive}: {negative[0]} is named like a negative finding, so "
            f"sensitivity, PPV, the ROC curve and the threshold are about {positive}"
        )
    why = (
        "both class names look like a negative finding"
        if negative
        else "neither class name looks like a negative finding (normal, no finding, ...)"
    )
    return classes[1], (
        f"{NOTE_PREFIX}{classes[1]}: {why}, so the second class in the data's order is "
        f"positive; if {classes[0]} is the finding to detect, plan again with "
        f"--positive-class {shlex.quote(classes[0])}"
    )


def positive_of(plan: Plan) -> str | None:
    """The positive class of a plan being trained: its second class (``settle_positive``
    and ``record_positive`` put it there); None for multi-class and multi-label."""
    if plan.task != "binary":
        return None
    if plan.positive_class not in (None, plan.classes[1]):
        raise ScandxError(
            f"plan's positive_class {plan.positive_class!r} is not its second class "
            f"{plan.classes}; settle_positive() puts it there before training"
        )
    return plan.classes[1]


def reorder(manifest: Manifest, classes: list[str]) -> None:
    """Put a manifest's classes in the given order (same names), remapping every target."""
    old = list(manifest.classes)
    if old == list(classes):
        return
    if manifest.task == "multilabel":
        where = [old.index(c) for c in classes]
        for case in manifest.labelled():
            case.target = tuple(case.target[k] for k in where)  # type: ignore[index]
    else:
        new_index = [classes.index(c) for c in old]
        for case in manifest.labelled():
            case.target = new_index[int(case.target)]  # type: ignore[arg-type]
    manifest.classes = list(classes)


def put_positive_second(manifest: Manifest, positive: str | None) -> None:
    if manifest.task == "binary" and positive is not None and manifest.classes[1] != positive:
        reorder(manifest, [manifest.classes[1], manifest.classes[0]])


def align_classes(manifest: Manifest, task: str, classes: list[str], where: object) -> None:
    """Put a data source's manifest in a plan's or model's class order (by name)."""
    if manifest.task != task or sorted(manifest.classes) != sorted(classes):
        raise ScandxError(
            f"data classes {manifest.classes} ({manifest.task}) do not match the model's "
            f"{list(classes)} ({task})",
            where,
        )
    reorder(manifest, list(classes))


def record_positive(plan: Plan, positive: str | None, note: str | None) -> None:
    """Set a plan's positive class (second in its classes, weights following) and its note."""
    if plan.task != "binary" or positive is None:
        return
    if plan.classes[1] != positive:
        plan.classes = [plan.classes[1], plan.classes[0]]
        if plan.class_weights is not None:
            plan.class_weights = list(reversed(plan.class_weights))
    plan.positive_class = positive
    if note:
        plan.notes = [n for n in plan.notes if not n.startswith(NOTE_PREFIX)] + [note]


def settle_positive(
    plan: Plan, manifest: Manifest, requested: str | None, where: object, locked: str = ""
) -> None:
    """A given plan (``--plan``, ``--resume``): its positive class, or the one requested
    (``locked``: why it cannot change, e.g. a resumed run); the manifest in its order."""
    if plan.task != "binary" and requested:
        raise _refuse_for(plan.task, plan.classes)
    current = plan.positive_class or plan.classes[1]  # an old plan.json: the second class
    note = None
    if requested and plan.task == "binary":
        positive = resolve_class(requested, plan.classes)
        if positive != current and locked:
            raise ScandxError(
                f"--positive-class {requested!r}: this run is trained with positive class "
                f"{current!r} ({locked})"
            )
        if positive != current:
            note = f"{NOTE_PREFIX}{positive}: set with --positive-class (the plan had {current})"
        current = positive
    if note is None and plan.task == "binary" and current != plan.classes[1]:
        note = f"{NOTE_PREFIX}{current}: set in plan.json (positive_class)"  # edited by hand
    elif note is None and plan.task == "binary" and plan.positive_class is None:
        note = (
            f"{NOTE_PREFIX}{current}: plan.json names no positive_class (written before scandx "
            "recorded it), so the second class stays positive; set positive_class in plan.json "
            "or use --positive-class to change it"
        )
    record_positive(plan, current, note)
    align_classes(manifest, plan.task, plan.classes, where)
