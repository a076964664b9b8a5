"""Patient-level, stratified, seeded train/val/test splits.

Splits given by the source are kept. Cases without a split are assigned by
patient: every case of a patient lands in the same split, and patients are
spread over the splits per stratum (their label) so class balance holds.

Only labelled cases are dealt, so adding unlabelled images never changes the splits
of the labelled ones. Unlabelled cases (split ``unlabelled``) are training images: one
of a patient whose labelled cases are in val or test is left out of the run (listed
in skipped.csv), since training on it would train on a held-out patient.
``select_labelled`` keeps the labels of a fraction of the training patients
(``--labelled-fraction``) and makes the rest unlabelled.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import defaultdict

import numpy as np

from scandx.errors import ScandxError
from scandx.tasks.classification.data.manifest import SPLITS, UNLABELLED, Case, Manifest

log = logging.getLogger(__name__)


def _stratum(cases: list[Case], task: str) -> str:
    if task == "multilabel":
        pos = np.sum([c.target for c in cases], axis=0)
        return "none" if pos.sum() == 0 else f"l{int(np.argmax(pos))}"
    values, counts = np.unique([int(c.target) for c in cases], return_counts=True)  # type: ignore[arg-type]
    return f"c{int(values[np.argmax(counts)])}"


def check_patient_leakage(manifest: Manifest) -> None:
    """Raise when one patient appears in more than one split (unlabelled images count
    as training images: a patient may have both)."""
    seen: dict[str, str] = {}
    for c in manifest.cases:
        if not c.split:
            continue
        split = "train" if c.split == UNLABELLED else c.split
        other = seen.setdefault(c.patient_id, split)
        if other != split:
            raise ScandxError(
                f"patient {c.patient_id} appears in both '{other}' and '{c.split}' splits; "
                "fix the split column, or drop it and let scandx split by patient",
                c.path,
            )


def assign_splits(
    manifest: Manifest, seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.15
) -> Manifest:
    """Fill in missing splits in place (patient-level, stratified, seeded); returns the
    manifest. Only the labelled cases are dealt (see the module docstring)."""
    labelled = dataclasses.replace(manifest, cases=manifest.labelled())  # same lists
    _assign_labelled(labelled, seed, val_fraction, test_fraction)
    settle_unlabelled(manifest)
    check_patient_leakage(manifest)
    return manifest


def settle_unlabelled(manifest: Manifest) -> None:
    """Unlabelled cases go to the ``unlabelled`` split, except those of a patient whose
    labelled cases are held out (val, test, external): those leave the run."""
    held = {c.patient_id for c in manifest.labelled() if c.split not in ("train", UNLABELLED)}
    out = [c for c in manifest.unlabelled() if c.patient_id in held]
    for c in manifest.unlabelled():
        c.split = UNLABELLED
    if out:
        gone = {id(c) for c in out}
        manifest.cases = [c for c in manifest.cases if id(c) not in gone]
        manifest.skipped.extend(
            (c.path, "unlabelled image of a validation/test patient: not used") for c in out
        )
        manifest.notes.append(
            f"{len(out)} unlabelled image(s) belong to validation/test patients: not used"
        )


def _assign_labelled(
    manifest: Manifest, seed: int, val_fraction: float, test_fraction: float
) -> None:
    check_patient_leakage(manifest)
    given = {c.split for c in manifest.cases if c.split}
    todo = [c for c in manifest.cases if not c.split]
    rng = np.random.default_rng(seed)

    fractions: dict[str, float] = {}
    if todo:
        # cases without a split: their patients go to train/val/test in proportion,
        # except that a split the source already provides is not filled again.
        fractions = {"val": val_fraction, "test": test_fraction}
        fractions = {k: v for k, v in fractions.items() if k not in given}
        _assign(todo, manifest.task, fractions, rng)
    elif "val" not in given and "train" in given:
        # a source with train/test only: carve validation patients out of train.
        train = [c for c in manifest.cases if c.split == "train"]
        for c in train:
            c.split = ""
        todo = train
        fractions = {"val": val_fraction / (1 - test_fraction)}
        _assign(train, manifest.task, fractions, rng)
    if todo:
        _cover_classes(manifest, todo, [s for s, f in fractions.items() if f > 0], rng)
    missing = [s for s in ("train", "val") if not manifest.in_split(s)]
    if missing:
        raise ScandxError(
            f"no cases in the {' and '.join(missing)} split; need a few patients per split",
            manifest.source,
        )
    check_patient_leakage(manifest)
    _warn_missing_classes(manifest)


def _has_class(case: Case, k: int, task: str) -> bool:
    if task == "multilabel":
        return bool(case.target[k])  # type: ignore[index]
    return int(case.target) == k  # type: ignore[arg-type]


def _cover_classes(
    manifest: Manifest, assigned: list[Case], held_out: list[str], rng: np.random.Generator
) -> None:
    """Every class with >= 3 patient groups among the cases just assigned gets at least one
    group in each held-out split: a group holding it moves there from train (seeded)."""
    by_patient: dict[str, list[Case]] = defaultdict(list)
    for c in assigned:
        by_patient[c.patient_id].append(c)
    for k in range(len(manifest.classes)):
        groups = sorted(
            p for p, cs in by_patient.items() if any(_has_class(c, k, manifest.task) for c in cs)
        )
        if len(groups) < 3:
            continue
        for split in held_out:
            if any(_has_class(c, k, manifest.task) for c in manifest.in_split(split)):
                continue
            in_train = [p for p in groups if by_patient[p][0].split == "train"]
            if len(in_train) < 2:  # train keeps at least one
                continue
            chosen = in_train[int(rng.integers(len(in_train)))]
            for c in by_patient[chosen]:
                c.split = split
            log.info(
                "moved one patient group to %s so it holds class %s", split, manifest.classes[k]
            )


def _warn_missing_classes(manifest: Manifest) -> None:
    """A split that lacks a class cannot measure it: a warning the report shows."""
    for k, name in enumerate(manifest.classes):
        groups = {c.patient_id for c in manifest.cases if _has_class(c, k, manifest.task)}
        for split in SPLITS:
            cases = manifest.in_split(split)
            if cases and not any(_has_class(c, k, manifest.task) for c in cases):
                manifest.warn(
                    "class_missing_from_split",
                    f"class {name!r} has no case in the {split} split ({len(groups)} patient "
                    f"group(s) hold it; 3 are needed to have one in each split): its "
                    f"{'training' if split == 'train' else 'metrics'} cannot rest on it",
                    class_name=name,
                    split=split,
                    patient_groups=len(groups),
                )


def _assign(
    cases: list[Case], task: str, fractions: dict[str, float], rng: np.random.Generator
) -> None:
    by_patient: dict[str, list[Case]] = defaultdict(list)
    for c in cases:
        by_patient[c.patient_id].append(c)
    by_stratum: dict[str, list[str]] = defaultdict(list)
    for pid in sorted(by_patient):
        by_stratum[_stratum(by_patient[pid], task)].append(pid)
    for stratum in sorted(by_stratum):
        patients = by_stratum[stratum]
        order = rng.permutation(len(patients))
        n = len(patients)
        start = 0
        for split, frac in fractions.items():
            k = int(round(n * frac))
            if k == 0 and n >= 3:
                k = 1  # every split sees every class when there are enough patients
            for i in order[start : start + k]:
                for c in by_patient[patients[i]]:
                    c.split = split
            start += k
        for i in order[start:]:
            for c in by_patient[patients[i]]:
                c.split = "train"


def assign_folds(cases: list[Case], task: str, k: int, seed: int) -> dict[str, int]:
    """{patient_id: fold} for k patient-level folds, stratified by the patients' labels.

    Patients of each stratum are shuffled (seeded) and dealt round-robin, continuing
    from where the previous stratum stopped, so fold sizes differ by at most one patient.
    """
    if k < 2:
        raise ScandxError(f"--folds must be at least 2 (got {k})")
    by_patient: dict[str, list[Case]] = defaultdict(list)
    for c in cases:
        by_patient[c.patient_id].append(c)
    if len(by_patient) < k:
        raise ScandxError(f"{len(by_patient)} patients cannot make {k} folds")
    strata: dict[str, list[str]] = defaultdict(list)
    for pid in sorted(by_patient):
        strata[_stratum(by_patient[pid], task)].append(pid)
    rng = np.random.default_rng(seed)
    folds, turn = {}, 0
    for name in sorted(strata):
        pids = strata[name]
        for i in rng.permutation(len(pids)):
            folds[pids[i]] = turn % k
            turn += 1
    return folds


def select_labelled(manifest: Manifest, fraction: float, seed: int) -> str:
    """Keep the labels of ``fraction`` of the training patients, per stratum (class), at
    least one patient per stratum, seeded; the other training cases become unlabelled.
    Validation and test are untouched. Returns the note for the plan."""
    if not 0 < fraction <= 1:
        raise ScandxError(f"--labelled-fraction must be in (0, 1], got {fraction}")
    by_patient: dict[str, list[Case]] = defaultdict(list)
    for c in manifest.in_split("train"):
        if c.target is not None:
            by_patient[c.patient_id].append(c)
    strata: dict[str, list[str]] = defaultdict(list)
    for pid in sorted(by_patient):
        strata[_stratum(by_patient[pid], manifest.task)].append(pid)
    rng = np.random.default_rng([seed, 15])  # its own stream: the splits' draws stay
    kept = 0
    for name in sorted(strata):
        pids = strata[name]
        k = min(len(pids), max(1, math.floor(fraction * len(pids) + 0.5)))
        for rank, i in enumerate(rng.permutation(len(pids))):
            if rank < k:
                kept += 1
                continue
            for c in by_patient[pids[i]]:
                c.target, c.split = None, UNLABELLED
    images = len(manifest.in_split("train"))
    return (
        f"labelled fraction {fraction:g}: labels kept for {kept} of {len(by_patient)} training "
        f"patients ({images} images, stratified by class, seed {seed}); the other training "
        f"images are unlabelled ({len(manifest.unlabelled())} unlabelled in all)"
    )
