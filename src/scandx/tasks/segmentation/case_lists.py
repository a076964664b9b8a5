"""Segmentation cases listed by the user: a JSON spec of per-case folders, or a CSV table.

JSON spec (``--data spec.json``), per-case folders as BraTS ships them:
``root`` (relative to the JSON file), ``splits`` (split name -> folder under root holding
one folder per case), ``channels`` (file name per channel), ``label``, optional ``mask``
(region of interest: normalisation and metrics inside it), ``modality``, ``labels`` and
``regions`` (e.g. ``{"whole tumour": [1, 2, 3, 4]}``). Instead of ``root``/``splits``/
``channels``/``label`` the spec may name a CSV table (``"cases": "cases.csv"``), keeping
``labels``, ``regions`` and ``modality`` in the JSON.

CSV table (``--data cases.csv``), one row per case, paths relative to the CSV file:
``image`` or ``image_<name>`` columns (one per input channel, in column order),
``label``, optional ``case_id`` (or ``case``), ``patient_id``, ``split``
(train/val/test/unlabelled; empty = pooled for training), ``mask`` (or ``fov``: region
of interest). An empty ``label`` with an empty ``split`` is an unlabelled case, for
``scandx pretrain`` only (``unlabelled.py``); a spec's ``splits`` may name an
``unlabelled`` folder of case folders. A bare CSV declares no label names: the values
found in the training labels become ``label <k>``; name them with a JSON spec holding
``cases`` and ``labels``.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from scandx.core.json_file import read_json_object
from scandx.data.labels import UNLABELLED
from scandx.errors import ScandxError
from scandx.tasks.segmentation.sources import SPLIT_DIRS, SegCase, SegManifest

log = logging.getLogger(__name__)

ROI_COLUMNS = ("mask", "fov", "roi")


def _image_columns(cols: list[str]) -> list[str]:
    return [c for c in cols if c == "image" or c.startswith("image_")]


def _csv_header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        return [c.strip() for c in next(csv.reader(f), [])]


def is_case_list(path: Path) -> bool:
    """A segmentation JSON spec, or a CSV with ``image*`` and ``label`` columns (a
    classification CSV has ``path`` instead)."""
    try:
        if path.suffix.lower() == ".json":
            spec = json.loads(path.read_text())
            return isinstance(spec, dict) and ("channels" in spec or "cases" in spec)
        cols = _csv_header(path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error):
        return False
    return "label" in cols and bool(_image_columns(cols))


def load_case_list(path: Path) -> SegManifest:
    if path.suffix.lower() == ".csv":
        cases = _csv_cases(path)
        return SegManifest(_labels_found(cases, path), cases, str(path), [], "case-table")
    spec = read_json_object(path, "case spec")
    if "labels" not in spec:
        raise ScandxError("case spec lacks 'labels'", path)
    _check_spec_types(spec, path)
    labels = {int(k): str(v) for k, v in spec["labels"].items()}
    if "cases" in spec:
        cases, layout = _csv_cases((path.parent / spec["cases"]).resolve()), "case-table"
    else:
        cases, layout = _folder_cases(spec, path), "case-folders"
    regions = {str(k): [int(v) for v in vs] for k, vs in (spec.get("regions") or {}).items()}
    modality = [str(m) for m in spec.get("modality", [])]
    return SegManifest(labels, cases, str(path), modality, layout, regions)


def _check_spec_types(spec: dict[str, Any], path: Path) -> None:
    """Each key of a case spec has the type it needs: one line naming the key otherwise."""
    labels = spec["labels"]
    if not isinstance(labels, dict) or not all(str(k).isdigit() for k in labels):
        raise ScandxError("'labels' must map label values 0, 1, ... to names", path)
    expected = {
        "root": str,
        "label": str,
        "mask": str,
        "cases": str,
        "channels": list,
        "modality": list,
        "splits": dict,
        "regions": dict,
    }
    for key, kind in expected.items():
        if key in spec and spec[key] is not None and not isinstance(spec[key], kind):
            raise ScandxError(
                f"{key!r} must be a {'string' if kind is str else kind.__name__}, "
                f"found {type(spec[key]).__name__}",
                path,
            )
    if not all(isinstance(c, str) and c for c in spec.get("channels") or []):
        raise ScandxError("'channels' must list file names", path)
    for name, values in (spec.get("regions") or {}).items():
        if not isinstance(values, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in values
        ):
            raise ScandxError(f"'regions'[{name!r}] must list label values", path)


def _folder_cases(spec: dict[str, Any], spec_path: Path) -> list[SegCase]:
    for key in ("root", "channels", "label"):
        if key not in spec:
            raise ScandxError(f"case-folder spec lacks {key!r}", spec_path)
    root = (spec_path.parent / spec["root"]).resolve()
    cases = []
    for split, folder in (spec.get("splits") or {"": "."}).items():
        d = root / folder
        if not d.is_dir():
            raise ScandxError(f"split folder {folder!r} not found", d)
        for case_dir in sorted(p for p in d.iterdir() if p.is_dir()):
            files = [case_dir / c for c in spec["channels"]]
            missing = [f.name for f in files if not f.exists()]
            if missing:
                raise ScandxError(f"case {case_dir.name}: missing {', '.join(missing)}", case_dir)
            label = case_dir / spec["label"]
            mask = case_dir / spec["mask"] if spec.get("mask") else None
            cases.append(
                SegCase(
                    case_id=case_dir.name,
                    images=[str(f) for f in files],
                    label=str(label) if label.exists() and split != UNLABELLED else None,
                    split=split,
                    fov=str(mask) if mask and mask.exists() else None,
                )
            )
    if not cases:
        raise ScandxError("no case folders found", root)
    return cases


def _csv_cases(path: Path) -> list[SegCase]:
    if not path.is_file():
        raise ScandxError("case table not found", path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [
                {k.strip(): (v or "").strip() for k, v in r.items() if k} for r in csv.DictReader(f)
            ]
    except (UnicodeDecodeError, csv.Error) as e:
        raise ScandxError(f"not a readable CSV file ({e})", path) from None
    if not rows:
        raise ScandxError("case table has no rows", path)
    cols = list(rows[0])
    channels = _image_columns(cols)
    if not channels or "label" not in cols:
        raise ScandxError("case table needs 'image' (or 'image_<name>') and 'label' columns", path)
    roi = next((c for c in ROI_COLUMNS if c in cols), None)
    root, cases, seen = path.parent, [], set()
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        where = f"{path}:{line}"
        case_id = row.get("case_id") or row.get("case") or f"case{line - 1:04d}"
        if case_id in seen:
            raise ScandxError(f"case {case_id!r} listed twice", where)
        seen.add(case_id)
        split_raw = row.get("split", "").lower()
        if split_raw and split_raw not in SPLIT_DIRS:
            raise ScandxError(
                f"case {case_id}: unknown split {split_raw!r} (train/val/test/unlabelled)", where
            )
        split = SPLIT_DIRS.get(split_raw, "")
        if any(not row.get(c) for c in channels):
            raise ScandxError(f"case {case_id}: empty image column", where)
        if not row["label"] and split == "":
            split = UNLABELLED  # an empty label: an unlabelled case (for scandx pretrain)
        elif not row["label"] and split != "test" and split != UNLABELLED:
            raise ScandxError(
                f"case {case_id}: missing label ({split} cases need one; leave the split "
                "empty, or write 'unlabelled', for a case without a label map)",
                where,
            )
        elif row["label"] and split == UNLABELLED:
            raise ScandxError(
                f"case {case_id}: split 'unlabelled' with a label file: empty one of the two",
                where,
            )
        cases.append(
            SegCase(
                case_id=case_id,
                images=[_existing(root, row[c], c, case_id, where) for c in channels],
                label=_existing(root, row["label"], "label", case_id, where)
                if row["label"]
                else None,
                split=split,
                fov=_existing(root, row[roi], roi, case_id, where)
                if roi and row.get(roi)
                else None,
                patient_id=row.get("patient_id", ""),
            )
        )
    return cases


def _existing(root: Path, name: str, column: str, case_id: str, where: str) -> str:
    f = (root / name).resolve()
    if not f.exists():
        raise ScandxError(f"case {case_id}: {column} file not found: {f}", where)
    return str(f)


def _labels_found(cases: list[SegCase], path: Path) -> dict[int, str]:
    """Label values present in the training cases' label files (a bare CSV names none)."""
    from scandx.tasks.segmentation.volumes import read_label

    values: set[int] = {0}
    for case in cases:
        if case.label and case.split != "test":
            values |= {int(v) for v in np.unique(read_label(case.label))}
    if values == {0}:
        raise ScandxError("every training label is empty: nothing to learn", path)
    if any(v < 0 for v in values):
        raise ScandxError(f"negative label values {sorted(values)}", path)
    if values == {0, 1}:
        return {0: "background", 1: "foreground"}
    log.info("label values found in the table's labels: %s", sorted(values))
    return {v: ("background" if v == 0 else f"label {v}") for v in sorted(values)}
