"""Sources: anything a user points ``--data`` at, converted to one Manifest.

Registered sources (tried in order):
  medmnist  a MedMNIST ``.npz`` (train/val/test kept; ChestMNIST is multi-label)
  csv       a CSV manifest: ``path,label`` [+ patient_id, split, metadata], or one
            0/1 column per label (multi-label), or ``sop_instance_uid`` instead of
            ``path`` to label a folder of DICOM files (``image_root``)
  folder    folder-per-class: ``DATA/<class>/**/<image>``, optionally under
            ``DATA/{train,val,test}/``
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable
from pathlib import Path

from scandx.core.privacy import file_ref, pseudonym, scrub_paths, where_ref
from scandx.data.dicom import header_meta, read_dataset
from scandx.data.readers import file_extension, reader_for, supported_extensions
from scandx.errors import BadImageError, ScandxError
from scandx.tasks.classification.data.manifest import (
    SPLITS,
    TASKS,
    Case,
    Manifest,
    normalise_split,
    order_classes,
)
from scandx.tasks.classification.data.medmnist import load_medmnist

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
            log.info("source %s: %d cases, classes %s", name, len(manifest), manifest.classes)
            return manifest
    raise ScandxError(
        "not a supported data source (expected a folder-per-class directory, a .csv manifest "
        "or a MedMNIST .npz)",
        path,
    )


def _check_manifest(m: Manifest, path: Path) -> None:
    if m.task not in TASKS:
        raise ScandxError(f"unknown task {m.task!r}", path)
    if not m.cases:
        raise ScandxError("no usable images found", path)
    if len(m.classes) < 2:
        only = m.classes[0] if m.classes else "none"
        raise ScandxError(f"found only one class ({only}); classification needs at least two", path)
    counts = m.class_counts()
    if m.task != "multilabel":
        empty = [k for k, v in counts.items() if v == 0]
        if empty:
            raise ScandxError(f"class(es) {', '.join(empty)} have no images", path)


def _skip_or_raise(err: BadImageError, skipped: list[tuple[str, str]], skip_bad: bool) -> None:
    if not skip_bad:
        raise err
    skipped.append((err.where or "", err.reason))
    log.warning("skipped %s: %s", where_ref(err.where), scrub_paths(err.reason))


register_source("medmnist", lambda p: p.is_file() and p.suffix.lower() == ".npz")(load_medmnist)


def _image_meta(path: Path, kind: str) -> dict:
    """Header metadata for DICOM files (pseudonymised patient id); nothing for rasters."""
    if kind != "dicom":
        return {}
    return header_meta(read_dataset(path, pixels=False))


@register_source("folder", lambda p: p.is_dir())
def load_folder(path: Path, image_root: Path | None = None, skip_bad: bool = False) -> Manifest:
    """Folder-per-class, optionally split: DATA/[train|val|test/]<class>/**/<file>."""
    subdirs = sorted(d for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not subdirs:
        raise ScandxError("empty folder: expected one sub-folder per class", path)
    split_dirs = {d: normalise_split(d.name) for d in subdirs}
    if all(s in SPLITS for s in split_dirs.values()):
        roots = [(d, split_dirs[d]) for d in subdirs]
    else:
        roots = [(path, "")]
    files: list[tuple[Path, Path, str]] = []  # (file, class folder, split)
    patient_keys: list[list[str]] = []
    skipped: list[tuple[str, str]] = []
    for root, split in roots:
        for class_dir in sorted(
            d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")
        ):
            for f in sorted(class_dir.rglob("*")):
                if f.is_file() and not any(
                    part.startswith(".") for part in f.relative_to(root).parts
                ):
                    files.append((f, class_dir, split))
        stray = [f for f in root.iterdir() if f.is_file() and not f.name.startswith(".")]
        for f in stray:
            log.warning(
                "ignoring %s: files directly under the data folder have no class", file_ref(f)
            )
    if not files:
        raise ScandxError("no image files found in the class folders", path)
    classes = order_classes([c.name for _, c, _ in files])
    cases = []
    for f, class_dir, split in files:
        kind = reader_for(f)
        if kind is None:
            ext = file_extension(f) or "(no extension, not DICOM)"
            err = BadImageError(
                f"unsupported file type {ext}; supported: {supported_extensions()}", f
            )
            _skip_or_raise(err, skipped, skip_bad)
            continue
        try:
            meta = _image_meta(f, kind)
        except BadImageError as err:
            _skip_or_raise(err, skipped, skip_bad)
            continue
        rel = f.relative_to(path)
        # identifiers that tie this file to a patient: its sub-folder
        # (DATA/<class>/<patient>/...) and its DICOM PatientID (pseudonymised)
        inner = f.relative_to(class_dir).parts
        keys = [f"dir:{pseudonym(inner[0])}"] if len(inner) > 1 else []
        if meta.get("patient_id"):
            keys.append(meta.pop("patient_id"))
        patient_keys.append(keys or [f"file:{pseudonym(f'{class_dir.name}/{f.stem}')}"])
        cases.append(
            Case(
                case_id=pseudonym(rel.as_posix(), "case"),
                patient_id="",
                path=str(f.resolve()),
                target=classes.index(class_dir.name),
                split=split,
                meta={k: v for k, v in meta.items() if v not in ("", None)},
            )
        )
    for case, patient in zip(cases, link_patients(patient_keys), strict=True):
        case.patient_id = patient
    task = "binary" if len(classes) == 2 else "multiclass"
    return Manifest(task=task, classes=classes, cases=cases, source=str(path), skipped=skipped)


def link_patients(keys_per_case: list[list[str]]) -> list[str]:
    """One patient id per case, merging cases that share any identifier (union-find).

    A patient folder holding a DICOM and a PNG, or one PatientID spread over two
    study folders, becomes one patient, so no split can cut through it. The id
    is the group's smallest key without its ``dir:``/``file:`` prefix.
    """
    parent: dict[str, str] = {}

    def find(k: str) -> str:
        parent.setdefault(k, k)
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for keys in keys_per_case:
        for k in keys[1:]:
            a, b = find(keys[0]), find(k)
            if a != b:
                parent[max(a, b)] = min(a, b)
    return [find(keys[0]).split(":", 1)[-1] for keys in keys_per_case]


RESERVED = ("path", "label", "patient_id", "split", "case_id", "sop_instance_uid")


@register_source("csv", lambda p: p.is_file() and p.suffix.lower() == ".csv")
def load_csv(path: Path, image_root: Path | None = None, skip_bad: bool = False) -> Manifest:
    """CSV manifest; see the module docstring for the columns."""
    root = Path(image_root) if image_root else path.parent
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except (UnicodeDecodeError, csv.Error) as e:
        raise ScandxError(f"not a readable CSV file ({e})", path) from None
    if not rows:
        raise ScandxError("CSV manifest has no rows", path)
    cols = list(rows[0].keys())
    key = "path" if "path" in cols else "sop_instance_uid" if "sop_instance_uid" in cols else None
    if key is None:
        raise ScandxError("CSV manifest needs a 'path' (or 'sop_instance_uid') column", path)
    if "label" in cols:
        label_cols: list[str] = []
    else:
        label_cols = [c for c in cols if c not in RESERVED and _binary_column(rows, c)]
        if not label_cols:
            raise ScandxError("CSV manifest needs a 'label' column or 0/1 label columns", path)
    meta_cols = [c for c in cols if c not in RESERVED and c not in label_cols]
    uid_index = _dicom_uid_index(root) if key == "sop_instance_uid" else {}

    skipped: list[tuple[str, str]] = []
    kept: list[tuple[int, dict, Path]] = []
    for i, row in enumerate(rows, start=2):  # line 1 is the header
        where = f"{path}:{i}"
        try:
            if key == "path":
                if not (row.get("path") or "").strip():
                    raise BadImageError("empty 'path'", where)
                img = (root / row["path"].strip()).resolve()
                if not img.is_file():
                    raise BadImageError(f"image file not found: {img}", where)
            else:
                uid = (row.get("sop_instance_uid") or "").strip()
                if uid not in uid_index:
                    raise BadImageError(
                        "no DICOM file with this row's SOPInstanceUID under the image root", where
                    )
                img = uid_index[uid]
            if not label_cols and not (row.get("label") or "").strip():
                raise BadImageError("missing label", where)
            if reader_for(img) is None:
                raise BadImageError(f"unsupported file type {file_extension(img) or '(none)'}", img)
        except BadImageError as err:
            _skip_or_raise(err, skipped, skip_bad)
            continue
        kept.append((i, row, img))

    if label_cols:
        classes, task = label_cols, "multilabel"
    else:
        classes = order_classes([row["label"].strip() for _, row, _ in kept])
        task = "binary" if len(classes) == 2 else "multiclass"
    cases = []
    for i, row, img in kept:
        try:
            meta = _image_meta(img, reader_for(img) or "")
        except BadImageError as err:
            _skip_or_raise(err, skipped, skip_bad)
            continue
        if label_cols:
            target: int | tuple[int, ...] = tuple(int(float(row[c] or 0)) for c in label_cols)
        else:
            target = classes.index(row["label"].strip())
        dicom_pid = meta.pop("patient_id", "")
        meta.update({c: row[c] for c in meta_cols if row.get(c) not in (None, "")})
        cases.append(
            Case(
                case_id=_keyed((row.get("case_id") or "").strip(), "case") or f"row{i}",
                patient_id=_keyed((row.get("patient_id") or "").strip()) or dicom_pid or f"row{i}",
                path=str(img),
                target=target,
                split=normalise_split(row.get("split", "")),
                meta={k: v for k, v in meta.items() if v not in ("", None)},
            )
        )
    bad_split = sorted({c.split for c in cases} - set(SPLITS) - {""})
    if bad_split:
        raise ScandxError(f"unknown split value(s) {bad_split}; use train, val or test", path)
    return Manifest(task=task, classes=classes, cases=cases, source=str(path), skipped=skipped)


def _keyed(value: str, kind: str = "pid") -> str:
    """A user-given identifier as its keyed pseudonym ("" stays "")."""
    return pseudonym(value, kind) if value else ""


def _binary_column(rows: list[dict], col: str) -> bool:
    values = {(r.get(col) or "").strip() for r in rows}
    return bool(values) and values <= {"0", "1", "0.0", "1.0"}


def _dicom_uid_index(root: Path) -> dict[str, Path]:
    """SOPInstanceUID -> file for every DICOM file under root (headers only)."""
    index: dict[str, Path] = {}
    for f in sorted(root.rglob("*")):
        if f.is_file() and reader_for(f) == "dicom":
            try:
                ds = read_dataset(f, pixels=False)
            except BadImageError:
                continue
            uid = str(ds.get("SOPInstanceUID", ""))
            if uid:
                index[uid] = f.resolve()
    if not index:
        raise ScandxError("no DICOM files found to match sop_instance_uid against", root)
    return index
