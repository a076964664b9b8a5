"""Unlabelled segmentation cases: images without a label map (issue 15).

A research group has a hundred labelled scans and ten thousand unlabelled ones; the
unlabelled ones are for ``scandx pretrain`` (the U-Net learns from every training
image), never for segmentation training, validation or testing. A source says which
cases are unlabelled:

- paired folders and Decathlon/nnU-Net layouts: a folder ``unlabelled/`` (or
  ``unlabeled/``) beside ``images/`` / ``imagesTr/`` (or at the top of a
  ``training/`` + ``test/`` root), holding image files named as the labelled ones
  (Decathlon: ``<case>_0000.nii.gz`` per channel, or one file per case);
- a case table: an empty ``label`` cell with an empty ``split`` (or ``split`` =
  ``unlabelled``); a case-folder spec: a ``splits`` entry named ``unlabelled``.

Their split is ``unlabelled``. Adding them never changes the labelled cases' splits
(only labelled patients are dealt). An unlabelled case of a patient whose labelled
cases are in validation or test leaves the run (listed in skipped.csv): pretraining on
it would learn from a held-out patient. Paired folders carry no patient ids, so every
file is its own patient there; a case table's ``patient_id`` column links them.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from scandx.data.labels import UNLABELLED, UNLABELLED_FOLDERS
from scandx.errors import ScandxError
from scandx.tasks.segmentation.sources import (
    IMAGE_EXT,
    SegCase,
    SegManifest,
    decathlon_case_files,
    folder_images,
)

HELD_OUT = ("val", "test", "external")


def unlabelled_folder(root: Path) -> Path | None:
    """``root/unlabelled`` (or ``unlabeled``) when it is a folder."""
    return next((root / d for d in UNLABELLED_FOLDERS if (root / d).is_dir()), None)


def paired_unlabelled(roots: list[Path]) -> list[SegCase]:
    """The unlabelled cases of a paired-folder source: one image file per case, each
    folder read once (a root and its parent may name the same one)."""
    seen: set[Path] = set()
    cases: list[SegCase] = []
    for root in roots:
        folder = unlabelled_folder(root)
        if folder is None or folder.resolve() in seen:
            continue
        seen.add(folder.resolve())
        for f in folder_images(folder):
            name = f.name
            stem = next(name[: -len(e)] for e in IMAGE_EXT if name.lower().endswith(e))
            cases.append(SegCase(f"unlabelled/{stem}", [str(f)], None, UNLABELLED))
    return cases


def decathlon_unlabelled(root: Path, ending: str, channels: int) -> list[SegCase]:
    """Decathlon-named unlabelled cases: ``<case>_0000<ending>`` per channel, or
    ``<case><ending>`` holding every channel."""
    folder = unlabelled_folder(root)
    if folder is None:
        return []
    cases = [
        SegCase(f"unlabelled/{key}", [str(f) for f in files], None, UNLABELLED)
        for key, files in decathlon_case_files(folder, ending, channels)
    ]
    if not cases:
        raise ScandxError(f"{folder.name}/ holds no {ending} files", folder)
    return cases


def settle_unlabelled(manifest: SegManifest) -> None:
    """Once the labelled cases are split: unlabelled cases of a held-out patient leave
    the run (``manifest.skipped``), and the plan's notes say what became of the rest."""
    held = {c.patient_id for c in manifest.cases if c.label and c.split in HELD_OUT}
    out = [c for c in manifest.cases if c.split == UNLABELLED and c.patient_id in held]
    if out:
        gone = {id(c) for c in out}
        manifest.cases = [c for c in manifest.cases if id(c) not in gone]
        manifest.skipped.extend(
            (c.case_id, "unlabelled image of a validation/test patient: not used") for c in out
        )
    n = len(manifest.in_split(UNLABELLED))
    notes = []
    if n:
        notes.append(
            f"{n} unlabelled case(s): not trained on (segmentation training needs label "
            "maps); scandx pretrain learns from them, and train --init starts from it"
        )
    if out:
        notes.append(f"{len(out)} unlabelled case(s) of validation/test patients left out")
    manifest.notes += [n for n in notes if n not in manifest.notes]


def usable_unlabelled(
    manifest: SegManifest, channels: int, dims: int, skip_bad: bool
) -> list[SegCase]:
    """The unlabelled cases, each read once (into the cache the pretraining then reads)
    and checked against the labelled ones: ``channels`` channels, ``dims`` spatial
    dimensions. One that differs, or cannot be read, raises one clear error, or with
    ``skip_bad`` is listed in ``manifest.skipped`` and left out."""
    from scandx.data.cache import default_cache
    from scandx.tasks.segmentation.case_cache import decoded_case

    cache, ok = default_cache(), []
    for case in manifest.in_split(UNLABELLED):
        try:
            image = decoded_case(case, manifest.labels, cache).image
            if image.shape[0] != channels or image.ndim - 1 != dims:
                raise ScandxError(
                    f"unlabelled case {case.case_id}: {image.shape[0]} channel(s) of shape "
                    f"{tuple(image.shape[1:])}; the labelled cases have {channels} channel(s) "
                    f"in {dims}D",
                    case.images[0],
                )
        except ScandxError as e:
            if not skip_bad:
                raise
            manifest.skipped.append((case.case_id, e.reason))
            continue
        ok.append(case)
    return ok


def select_labelled_cases(manifest: SegManifest, fraction: float, seed: int) -> None:
    """``--labelled-fraction``: keep the label maps of ``fraction`` of the training
    patients (at least one; seeded, on its own stream so the validation draw stays); the
    others' cases become unlabelled. Validation and test are untouched; the plan's note
    says what was kept."""
    if not 0 < fraction <= 1:
        raise ScandxError(f"--labelled-fraction must be in (0, 1], got {fraction}")
    patients = sorted({c.patient_id for c in manifest.in_split("train")})
    k = min(len(patients), max(1, math.floor(fraction * len(patients) + 0.5)))
    order = np.random.default_rng([seed, 15]).permutation(len(patients))
    kept = {patients[i] for i in order[:k]}
    for c in manifest.in_split("train"):
        if c.patient_id not in kept:
            c.label, c.split = None, UNLABELLED
    manifest.notes.append(
        f"labelled fraction {fraction:g}: label maps kept for {k} of {len(patients)} "
        f"training patients ({len(manifest.in_split('train'))} cases, seed {seed}); the "
        "other training cases are unlabelled"
    )
