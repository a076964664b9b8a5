"""Segmentation data sources -> a SegManifest of cases (image channels, label, FOV mask).

Layouts recognised (``load_seg_source``):

- Decathlon / nnU-Net: ``dataset.json`` + ``imagesTr/`` (``<case>_0000.nii.gz`` per
  channel, or one 4D file per case) + ``labelsTr/`` (+ ``imagesTs/``, the test split,
  labelled by ``labelsTs/`` when present).
- Cases listed in a JSON spec or a CSV table (``--data spec.json`` / ``cases.csv``),
  e.g. per-case folders holding several modalities, as for BraTS: see case_lists.py.
- DICOM series with DICOM SEG labels: one folder per case holding the series' slices
  and one SEG object (Modality SEG) whose segments are the labels.
- Paired folders: ``images/`` + one of ``masks/``, ``labels/``, ``1st_manual/`` (the
  DRIVE name), optionally ``mask/`` or ``fov/`` (field-of-view masks); files are
  matched by their case key (the name up to the first ``_`` or ``.``, so
  ``21_training.tif`` pairs with ``21_manual1.gif`` and ``21_training_mask.gif``).
  A root holding ``training/`` (or ``train/``) and ``test/`` such folders keeps that
  split.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scandx.core.json_file import read_json_object
from scandx.core.privacy import file_ref, is_pseudonym, pseudonym
from scandx.data.dicom import read_header
from scandx.data.files import display_path, file_problem
from scandx.data.labels import UNLABELLED
from scandx.errors import ScandxError

LABEL_DIRS = ("masks", "labels", "1st_manual", "manual")
FOV_DIRS = ("mask", "fov", "masks_fov")
SPLIT_DIRS = {
    "training": "train",
    "train": "train",
    "validation": "val",
    "val": "val",
    "test": "test",
    "testing": "test",
    "unlabelled": UNLABELLED,
    "unlabeled": UNLABELLED,
}
IMAGE_EXT = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".bmp", ".nii", ".nii.gz", ".dcm")


@dataclass
class SegCase:
    case_id: str
    images: list[str]  # one file per input channel (or one multi-channel file)
    label: str | None
    split: str = ""
    fov: str | None = None
    patient_id: str = ""

    def __post_init__(self) -> None:
        # ids only as keyed pseudonyms: case names are often patient names or ids
        raw = self.case_id
        if not _keyed(raw):
            self.case_id = pseudonym(raw, "case")
        if not _keyed(self.patient_id):
            self.patient_id = pseudonym(self.patient_id or raw)


def _keyed(text: str) -> bool:
    return any(is_pseudonym(text, kind) for kind in ("case", "file", "pid"))


@dataclass
class SegManifest:
    labels: dict[int, str]  # label value -> name, background 0 included
    cases: list[SegCase]
    source: str = ""
    modality: list[str] = field(default_factory=list)  # per channel, e.g. ["CT"] or ["MR", "MR"]
    layout: str = ""
    regions: dict[str, list[int]] = field(default_factory=dict)  # evaluated unions of labels
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (case, reason): --skip-bad
    notes: list[str] = field(default_factory=list)  # for the plan: what the splits did

    def in_split(self, split: str) -> list[SegCase]:
        return [c for c in self.cases if c.split == split]

    def summary(self) -> dict[str, Any]:
        per = {}
        for c in self.cases:
            per[c.split or "unsplit"] = per.get(c.split or "unsplit", 0) + 1
        return {
            "source": file_ref(self.source) if self.source else "",  # a path may name a patient
            "layout": self.layout,
            "cases": len(self.cases),
            "per_split": per,
            "labels": {str(k): v for k, v in self.labels.items()},
        }


def case_key(name: str) -> str:
    """'21_training.tif' -> '21'; 'case_00012_0000.nii.gz' is handled by Decathlon rules."""
    return re.split(r"[_.]", name, maxsplit=1)[0]


def folder_images(folder: Path) -> list[Path]:
    """The image files of a folder; an image-named entry that is not a readable regular
    file (a FIFO, a dangling symlink, a symlink loop) is an error, never silently left out."""
    found = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.name.lower().endswith(IMAGE_EXT):
            continue
        problem = file_problem(p)
        if problem and not p.is_dir():
            raise ScandxError(f"not a readable image file: {problem}", display_path(p))
        if not problem:
            found.append(p)
    return found


def is_seg_source(path: Path) -> bool:
    """True when ``path`` looks like a segmentation data set (used by the CLI to route)."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() in (".json", ".csv"):
        from scandx.tasks.segmentation.case_lists import is_case_list

        return is_case_list(path)
    if not path.is_dir():
        return False
    if (path / "dataset.json").exists():
        return True
    if _dicom_seg_case_dirs(path, first_only=True):
        return True
    if _paired_root(path) is not None:
        return True
    return any(_paired_root(path / d) is not None for d in SPLIT_DIRS if (path / d).is_dir())


def _paired_root(path: Path) -> tuple[Path, Path, Path | None] | None:
    if not (path / "images").is_dir():
        return None
    labels = next((path / d for d in LABEL_DIRS if (path / d).is_dir()), None)
    if labels is None:
        return None
    fov = next((path / d for d in FOV_DIRS if (path / d).is_dir()), None)
    return path / "images", labels, fov


def load_seg_source(path: str | Path) -> SegManifest:
    path = Path(path)
    if not path.exists():
        raise ScandxError("data folder not found", path)
    if path.is_file() and path.suffix.lower() in (".json", ".csv"):
        from scandx.tasks.segmentation.case_lists import load_case_list

        return load_case_list(path)
    if (path / "dataset.json").exists():
        return _load_decathlon(path)
    if _dicom_seg_case_dirs(path, first_only=True):
        return _load_dicom_seg(path)
    roots = (
        [(path, "")]
        if _paired_root(path)
        else [
            (path / d, s)
            for d, s in SPLIT_DIRS.items()
            if (path / d).is_dir() and _paired_root(path / d)
        ]
    )
    if not roots:
        raise ScandxError(
            "not a segmentation data set: expected dataset.json (Decathlon/nnU-Net) or "
            f"images/ with one of {', '.join(LABEL_DIRS)}/ (optionally under training/ and test/)",
            path,
        )
    from scandx.tasks.segmentation.unlabelled import paired_unlabelled

    cases = []
    for root, split in roots:
        cases += _paired_cases(root, split)
    if not cases:
        raise ScandxError("no image/mask pairs found", path)
    cases += paired_unlabelled([path] + [root for root, _ in roots])
    return SegManifest({0: "background", 1: "foreground"}, cases, str(path), [], "paired")


def _paired_cases(root: Path, split: str) -> list[SegCase]:
    images, labels, fov = _paired_root(root)  # type: ignore[misc]
    label_by_key = {case_key(p.name): p for p in folder_images(labels)}
    fov_by_key = {case_key(p.name): p for p in folder_images(fov)} if fov else {}
    image_files = folder_images(images)
    if not image_files:
        raise ScandxError("images/ holds no image files", images)
    out = []
    for img in image_files:
        key = case_key(img.name)
        if key not in label_by_key:
            raise ScandxError(f"no mask for case {key!r} in {labels.name}/", img)
        if fov and key not in fov_by_key:
            raise ScandxError(f"no field-of-view mask for case {key!r} in {fov.name}/", img)
        prefix = f"{split}/" if split else ""
        out.append(
            SegCase(
                case_id=prefix + key,
                images=[str(img)],
                label=str(label_by_key[key]),
                split=split,
                fov=str(fov_by_key[key]) if fov else None,
            )
        )
    extra = set(label_by_key) - {case_key(p.name) for p in image_files}
    if extra:
        raise ScandxError(f"masks without an image: {', '.join(sorted(extra))}", labels)
    return out


def _load_decathlon(path: Path) -> SegManifest:
    meta = read_dataset_json(path / "dataset.json")
    labels = _declared_labels(meta, path / "dataset.json")
    modality = meta.get("modality") or meta.get("channel_names") or {"0": "unknown"}
    channels = [str(modality[k]) for k in sorted(modality, key=int)]
    ending = meta.get("file_ending", ".nii.gz")
    cases = []
    for folder, split in (("imagesTr", ""), ("imagesTs", "test")):
        d = path / folder
        if not d.is_dir():
            continue
        for key, files in decathlon_case_files(d, ending, len(channels)):
            label = path / ("labelsTr" if split == "" else "labelsTs") / f"{key}{ending}"
            if split == "" and not label.exists():
                raise ScandxError(f"case {key}: no label file in labelsTr/", label)
            cases.append(
                SegCase(key, [str(f) for f in files], str(label) if label.exists() else None, split)
            )
    if not cases:
        raise ScandxError("imagesTr/ holds no cases", path)
    from scandx.tasks.segmentation.unlabelled import decathlon_unlabelled

    cases += decathlon_unlabelled(path, ending, len(channels))
    return SegManifest(labels, cases, str(path), channels, "decathlon")


def decathlon_case_files(folder: Path, ending: str, channels: int) -> list[tuple[str, list[Path]]]:
    """(case key, its files) for every case of a Decathlon-named folder: one
    ``<case>_0000<ending>`` file per channel, or one ``<case><ending>`` (MSD style: a 4D
    file holding every channel); a case missing a channel file is an error."""
    keys = sorted(
        {
            re.sub(r"_\d{4}$", "", p.name[: -len(ending)])
            for p in folder.iterdir()
            if p.name.endswith(ending) and not p.name.startswith(".")
        }
    )
    out = []
    for key in keys:
        files = [folder / f"{key}_{i:04d}{ending}" for i in range(channels)]
        if not all(f.exists() for f in files):
            single = folder / f"{key}{ending}"
            if not single.exists():
                missing = [f.name for f in files if not f.exists()]
                raise ScandxError(f"case {key}: missing channel file(s) {missing}", folder)
            files = [single]
        out.append((key, files))
    return out


def _bad(key: str, reason: str, where: Path) -> ScandxError:
    return ScandxError(f"{key}: {reason}", where)


def read_dataset_json(where: Path) -> dict[str, Any]:
    """A Decathlon / nnU-Net ``dataset.json``, checked key by key before any work: one line
    naming the file and the key for anything malformed, of the wrong type or missing."""
    meta = read_json_object(where)
    for key in ("labels", "modality", "channel_names"):
        if key in meta and not isinstance(meta[key], dict):
            raise _bad(key, f"must be an object, found {type(meta[key]).__name__}", where)
    for key in ("modality", "channel_names"):
        for k in meta.get(key) or {}:
            if not str(k).isdigit():
                raise _bad(f"{key}[{k!r}]", "channel keys must be 0, 1, ...", where)
    ending = meta.get("file_ending", ".nii.gz")
    if not isinstance(ending, str) or not ending.startswith("."):
        raise _bad("file_ending", f"must be a string like '.nii.gz', found {ending!r}", where)
    if "numTraining" in meta and (
        isinstance(meta["numTraining"], bool) or not isinstance(meta["numTraining"], int)
    ):
        raise _bad("numTraining", f"must be a whole number, found {meta['numTraining']!r}", where)
    _check_listed_cases(meta, where, ending)
    return meta


def _check_listed_cases(meta: dict[str, Any], where: Path, ending: str) -> None:
    """``training`` (and ``test``): lists of {image, label} (test: paths) that exist."""
    for key, needs in (("training", ("image", "label")), ("test", ())):
        if key not in meta:
            continue
        entries = meta[key]
        if not isinstance(entries, list):
            raise _bad(key, f"must be a list, found {type(entries).__name__}", where)
        for i, entry in enumerate(entries):
            item = f"{key}[{i}]"
            if not needs:  # MSD test: a list of image paths
                paths = {"": entry}
            elif not isinstance(entry, dict):
                raise _bad(item, f"must be an object, found {type(entry).__name__}", where)
            else:
                missing = [k for k in needs if k not in entry]
                if missing:
                    raise _bad(item, f"lacks {', '.join(repr(k) for k in missing)}", where)
                paths = {k: entry[k] for k in needs}
            for k, value in paths.items():
                name = f"{item}.{k}" if k else item
                if not isinstance(value, str) or not value.strip():
                    raise _bad(name, f"must be a file path, found {value!r}", where)
                f = where.parent / value
                channel0 = f.with_name(f.name[: -len(ending)] + "_0000" + ending)
                if not f.exists() and not (k != "label" and channel0.exists()):
                    raise _bad(name, f"file not found: {value}", where)


def _declared_labels(meta: dict[str, Any], where: Path) -> dict[int, str]:
    """MSD {"0": "background", "1": "tumour"} or nnU-Net v2 {"background": 0, "tumour": 1}."""
    raw = meta.get("labels") or {}
    try:
        if raw and all(str(k).isdigit() for k in raw):
            labels = {int(k): str(v) for k, v in raw.items()}
        else:
            labels = {}
            for k, v in raw.items():
                if isinstance(v, list):  # an nnU-Net region: a union of labels
                    continue
                if isinstance(v, bool) or not isinstance(v, (int, str)):
                    raise ValueError(f"{k!r} is {v!r}")
                labels[int(v)] = str(k)
    except ValueError as e:
        raise _bad("labels", f"label values must be whole numbers ({e})", where) from None
    if not labels:
        raise ScandxError("dataset.json declares no labels", where)
    if any(v < 0 for v in labels):
        raise _bad("labels", f"negative label value {min(labels)}", where)
    return labels


def _dicom_seg_case_dirs(path: Path, first_only: bool = False) -> list[tuple[Path, Path]]:
    """[(case folder, its SEG file)] for folders that hold a DICOM SEG object.

    ``first_only``: a quick layout check (the CLI runs it on every classification data
    folder too): the first sub-folder, at most 400 files, only their Modality read."""
    from scandx.tasks.segmentation.dicom_series import series_files

    out = []
    subdirs = sorted(p for p in path.iterdir() if p.is_dir()) if path.is_dir() else []
    for d in subdirs[:1] if first_only else subdirs:
        if (d / "images").is_dir():
            return []  # a paired-folder layout, not DICOM cases
        images, segs = series_files(d, limit=400 if first_only else None)
        if len(segs) > 1:
            raise ScandxError(f"case {d.name}: {len(segs)} SEG objects; expected one", d)
        if segs and images:
            out.append((d, segs[0]))
    return out


def _load_dicom_seg(path: Path) -> SegManifest:
    pairs = _dicom_seg_case_dirs(path)
    if not pairs:
        raise ScandxError("no case folder holds a DICOM series with a SEG", path)
    first = read_header(pairs[0][1])
    labels = {0: "background"}
    labels.update({int(d.SegmentNumber): str(d.SegmentLabel) for d in first.SegmentSequence})
    cases = [SegCase(d.name, [str(d)], str(seg)) for d, seg in pairs]
    slice0 = next(f for f in sorted(pairs[0][0].iterdir()) if f.is_file() and f != pairs[0][1])
    modality = [str(read_header(Path(slice0)).get("Modality", ""))]
    return SegManifest(labels, cases, str(path), modality, "dicom-seg")
