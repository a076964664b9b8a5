"""The images a pretraining run learns from, and its splits.

Any classification source (a folder per class, a CSV, a DICOM folder, a MedMNIST .npz,
a catalog selection) with its labels ignored, or a plain folder of images: one whose
image files lie directly in it, or with a single sub-folder, or only one, under which
the files may sit in patient folders (``DATA/<patient>/...``, the first folder level
ties a file to its patient, as does a DICOM PatientID).

The splits are the ones ``scandx train`` would draw with the same seed (patient-level,
``classification.workflow.prepare_manifest``): pretraining learns from the ``train``
split and any cases in a split named ``unlabelled``, is validated on ``val``, and never
reads ``test``, so a later supervised run on the same data and seed is evaluated on
images the encoder never saw.
"""

from __future__ import annotations

import logging
from pathlib import Path

from scandx.data.files import display_path, walk_files
from scandx.errors import BadImageError, ScandxError
from scandx.tasks.classification.data.manifest import SPLITS, Case, Manifest, normalise_split
from scandx.tasks.classification.data.source_checks import (
    settle_identity,
    skip_or_raise,
)
from scandx.tasks.classification.data.sources import identify_file
from scandx.tasks.classification.data.splits import assign_splits

log = logging.getLogger(__name__)

TRAIN_SPLITS = ("train", "unlabelled")  # what pretraining learns from
PLAIN_CLASSES = ["image", "other"]  # a plain folder's placeholder classes (never used)


def is_plain_folder(path: Path) -> bool:
    """A folder of images without class sub-folders: files directly inside it, or fewer
    than two visible sub-folders that are not train/val/test split folders."""
    if not path.is_dir():
        return False
    entries = [e for e in path.iterdir() if not e.name.startswith(".")]
    if any(not e.is_dir() for e in entries):
        return True
    folders = [e for e in entries if normalise_split(e.name) not in SPLITS]
    return len(folders) < 2 and len(folders) == len(entries)


def load_plain_folder(path: Path, skip_bad: bool = False) -> Manifest:
    """Every readable image under ``path`` as one unlabelled case (target 0)."""
    skipped: list[tuple[str, str]] = []
    cases: list[Case] = []
    digests: list[str] = []
    keys: list[list[str]] = []
    origins: list[str] = []
    for f, problem in sorted(walk_files(path)):
        try:
            if problem:
                raise BadImageError(problem, display_path(f))
            meta, digest, key = identify_file(f, path)
        except BadImageError as err:
            skip_or_raise(err, skipped, skip_bad)
            continue
        keys.append(key or [f"file:{f.stem}"])
        digests.append(digest)
        origins.append(str(f))
        cases.append(Case("", "", str(f.resolve()), 0, "", {k: v for k, v in meta.items() if v}))
    if not cases:
        raise ScandxError("no image files found", path)
    manifest = Manifest("binary", list(PLAIN_CLASSES), cases, str(path), skipped)
    settle_identity(manifest, digests, keys, origins)
    manifest.notes.append("a plain folder of images: no labels, every image unlabelled")
    return manifest


def pretrain_manifest(
    data: str | Path,
    *,
    image_root: str | Path | None = None,
    skip_bad: bool = False,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
) -> Manifest:
    """The source's cases with ``scandx train``'s splits (same seed), the ``test`` split
    left out; a plain folder gets the same patient-level split, labels aside."""
    path = Path(data).expanduser()
    if is_plain_folder(path):
        manifest = assign_splits(
            load_plain_folder(path, skip_bad),
            seed=seed,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
        )
    else:
        from scandx.tasks.classification.workflow import prepare_manifest

        manifest = prepare_manifest(
            path,
            image_root=image_root,
            skip_bad=skip_bad,
            seed=seed,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
        )
    kept = [c for c in manifest.cases if c.split in (*TRAIN_SPLITS, "val")]
    held = len(manifest.cases) - len(kept)
    manifest.cases = kept
    if not any(c.split in TRAIN_SPLITS for c in kept) or not manifest.in_split("val"):
        raise ScandxError("pretraining needs images in the train and val splits", path)
    manifest.notes.append(
        f"pretraining on {sum(c.split in TRAIN_SPLITS for c in kept)} train/unlabelled "
        f"images, validated on {len(manifest.in_split('val'))}; labels ignored; {held} test "
        "images never read (the splits scandx train draws with this seed)"
    )
    return manifest
