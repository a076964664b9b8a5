"""Sources: anything a user points ``--data`` at, converted to one Manifest.

Registered sources (tried in order):
  medmnist  a MedMNIST ``.npz`` (train/val/test kept; ChestMNIST is multi-label)
  csv       a CSV manifest: ``path,label`` [+ patient_id, split, metadata], or one
            0/1 column per label (multi-label), or ``sop_instance_uid`` instead of
            ``path`` to label a folder of DICOM files (``image_root``)
  folder    folder-per-class: ``DATA/<class>/**/<image>``, optionally under
            ``DATA/{train,val,test}/``; a folder ``unlabelled/`` (or ``unlabeled/``)
            beside the class folders (or beside train/val/test) holds unlabelled images

Unlabelled cases (target None, split ``unlabelled``) are for semi-supervised training;
a source needs labelled cases of at least two classes all the same.
  catalog   a selection file (``scandx index CATALOG --query Q --labels L.csv
            --save-selection SEL.json``): a DICOM catalog's rows, labels joined
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scandx.core.privacy import file_ref
from scandx.data.files import display_path, file_problem, is_printable_name, walk_files
from scandx.data.identity import content_digest
from scandx.data.readers import file_extension, reader_for, supported_extensions
from scandx.errors import BadImageError, ScandxError
from scandx.tasks.classification.data.csv_source import load_csv
from scandx.tasks.classification.data.manifest import (
    SPLITS,
    TASKS,
    UNLABELLED,
    UNLABELLED_FOLDERS,
    Case,
    Manifest,
    normalise_split,
    order_classes,
)
from scandx.tasks.classification.data.medmnist import load_medmnist
from scandx.tasks.classification.data.source_checks import (
    image_meta,
    link_patients,
    settle_identity,
    skip_or_raise,
)

log = logging.getLogger(__name__)

SourceLoader = Callable[..., Manifest]
SOURCES: dict[str, tuple[Callable[[Path], bool], SourceLoader]] = {}


def register_source(
    name: str, detect: Callable[[Path], bool]
) -> Callable[[SourceLoader], SourceLoader]:
    def wrap(fn: SourceLoader) -> SourceLoader:
        SOURCES[name] = (detect, fn)
        return fn

    return wrap


def load_source(
    src: str | Path, *, image_root: str | Path | None = None, skip_bad: bool = False
) -> Manifest:
    """Build a Manifest from a path; ScandxError with one clear line when it cannot."""
    path = Path(src).expanduser()
    if not path.exists():
        raise ScandxError("data source not found", path)
    for name, (detect, loader) in SOURCES.items():
        if detect(path):
            manifest = loader(path, image_root=image_root, skip_bad=skip_bad)
            _check_manifest(manifest, path)
            log.info(
                "source %s: %d cases (%d unlabelled), classes %s",
                name,
                len(manifest),
                len(manifest.unlabelled()),
                manifest.classes,
            )
            return manifest
    raise ScandxError(
        "not a supported data source (expected a folder-per-class directory, a .csv manifest, "
        "a MedMNIST .npz or a catalog selection .json)",
        path,
    )


def _check_manifest(m: Manifest, path: Path) -> None:
    if m.task not in TASKS:
        raise ScandxError(f"unknown task {m.task!r}", path)
    if not m.cases:
        raise ScandxError("no usable images found", path)
    if not m.labelled():
        raise ScandxError(
            f"no labelled case among {len(m.cases)} image(s): classification needs labelled "
            "cases of at least two classes (unlabelled ones only add to them)",
            path,
        )
    if len(m.classes) < 2:
        only = m.classes[0] if m.classes else "none"
        raise ScandxError(f"found only one class ({only}); classification needs at least two", path)
    counts = m.class_counts()
    if m.task != "multilabel":
        empty = [k for k, v in counts.items() if v == 0]
        if empty:
            raise ScandxError(f"class(es) {', '.join(empty)} have no labelled images", path)


register_source("medmnist", lambda p: p.is_file() and p.suffix.lower() == ".npz")(load_medmnist)


def identify_file(f: Path, folder: Path) -> tuple[dict[str, Any], str, list[str]]:
    """An image file's metadata, content digest and patient keys: its sub-folder of
    ``folder`` (``folder/<patient>/...``) and its DICOM PatientID (pseudonymised);
    BadImageError for a file no reader takes."""
    kind = reader_for(f)
    if kind is None:
        ext = file_extension(f) or "(no extension, not DICOM)"
        raise BadImageError(f"unsupported file type {ext}; supported: {supported_extensions()}", f)
    meta = image_meta(f, kind)
    digest = content_digest(f)
    inner = f.relative_to(folder).parts
    keys = [f"dir:{inner[0]}"] if len(inner) > 1 else []
    if meta.get("patient_id"):
        keys.append(meta.pop("patient_id"))
    return meta, digest, keys


@register_source("folder", lambda p: p.is_dir())
def load_folder(path: Path, image_root: Path | None = None, skip_bad: bool = False) -> Manifest:
    """Folder-per-class, optionally split: DATA/[train|val|test/]<class>/**/<file>.

    Everything under a class folder that is not a readable image (dangling symlinks,
    symlink loops, FIFOs, non-UTF-8 names, unknown types) ends the command, or with
    ``skip_bad`` is listed in skipped.csv; an empty class folder is a logged warning."""
    skipped: list[tuple[str, str]] = []
    subdirs = _class_folders(path, skipped, skip_bad)
    if not subdirs:
        raise ScandxError("empty folder: expected one sub-folder per class", path)
    top_unlabelled = [d for d in subdirs if _is_unlabelled(d)]
    split_dirs = {d: normalise_split(d.name) for d in subdirs if not _is_unlabelled(d)}
    if split_dirs and all(s in SPLITS for s in split_dirs.values()):
        roots = [(d, split_dirs[d]) for d in split_dirs]
        roots += [(d, UNLABELLED) for d in top_unlabelled]
    else:
        roots = [(path, "")]
    files: list[tuple[Path, Path, str]] = []  # (file, class folder, split)
    empty: list[Path] = []
    for root, split in roots:
        if split == UNLABELLED:
            class_dirs = [root]
        else:
            class_dirs = subdirs if root == path else _class_folders(root, skipped, skip_bad)
        for class_dir in class_dirs:
            entries = list(walk_files(class_dir))
            if _is_unlabelled(class_dir) and split in ("val", "test"):
                skipped += [(str(f), "unlabelled image in a held-out split: not used")
                            for f, _ in entries]  # fmt: skip
                continue
            if not entries and not _is_unlabelled(class_dir):
                empty.append(class_dir)
            for f, problem in entries:
                if problem:
                    skip_or_raise(BadImageError(problem, display_path(f)), skipped, skip_bad)
                else:
                    files.append((f, class_dir, split))
        stray = [f for f in root.iterdir() if not f.name.startswith(".") and not f.is_dir()]
        stray = [] if split == UNLABELLED else stray  # its own files are its images
        for f in stray:
            log.warning(
                "ignoring %s: files directly under the data folder have no class", file_ref(f)
            )
    if not files:
        raise ScandxError("no image files found in the class folders", path)
    classes = order_classes([c.name for _, c, _ in files if not _is_unlabelled(c)])
    cases: list[Case] = []
    digests: list[str] = []
    patient_keys: list[list[str]] = []
    origins: list[str] = []
    for f, class_dir, split in files:
        try:
            meta, digest, keys = identify_file(f, class_dir)
        except BadImageError as err:
            skip_or_raise(err, skipped, skip_bad)
            continue
        patient_keys.append(keys or [f"file:{class_dir.name}/{f.stem}"])
        digests.append(digest)
        origins.append(str(f))
        cases.append(
            Case(
                case_id="",
                patient_id="",
                path=str(f.resolve()),
                target=None if _is_unlabelled(class_dir) else classes.index(class_dir.name),
                split=UNLABELLED if _is_unlabelled(class_dir) else split,
                meta={k: v for k, v in meta.items() if v not in ("", None)},
            )
        )
    task = "binary" if len(classes) == 2 else "multiclass"
    manifest = Manifest(task=task, classes=classes, cases=cases, source=str(path), skipped=skipped)
    for d in empty:
        skipped.append((str(d), "empty class folder: no images, so not a class"))
        manifest.warn("empty_class_folder", f"class folder {d.name!r} holds no files; not a class")
    settle_identity(manifest, digests, patient_keys, origins)
    return manifest


def _is_unlabelled(folder: Path) -> bool:
    return folder.name.lower() in UNLABELLED_FOLDERS


def _class_folders(root: Path, skipped: list[tuple[str, str]], skip_bad: bool) -> list[Path]:
    """The visible sub-folders of root; a sub-folder that cannot be used is reported."""
    out = []
    for d in sorted(root.iterdir()):
        if d.name.startswith("."):
            continue
        problem = file_problem(d)
        if problem == "is a folder, not an image file":
            if not is_printable_name(d.name):
                err = BadImageError("folder name is not valid UTF-8; rename it", display_path(d))
                skip_or_raise(err, skipped, skip_bad)
                continue
            out.append(d)
        elif problem:  # a dangling link or a loop where a class folder would be
            skip_or_raise(BadImageError(problem, display_path(d)), skipped, skip_bad)
    return out


register_source("csv", lambda p: p.is_file() and p.suffix.lower() == ".csv")(load_csv)


def _catalog_selection(path: Path) -> bool:
    from scandx.catalog.source import is_selection

    return is_selection(path)


def _load_catalog_selection(path: Path, **kwargs: Any) -> Manifest:
    from scandx.catalog.source import load_selection

    return load_selection(path, **kwargs)


register_source("catalog", _catalog_selection)(_load_catalog_selection)

__all__ = ["SOURCES", "link_patients", "load_csv", "load_folder", "load_source"]
