"""A catalog plus a query plus a label CSV: a ``--data`` source for ``train``.

The selection file (JSON, written by ``scandx index CATALOG --query Q --labels L.csv
--label-column C --save-selection SEL.json``)::

    {"format": "scandx-catalog-selection", "catalog": "catalog", "query": "modality = 'CR'",
     "labels": "labels.csv", "label_column": "finding", "join": "sop_instance_uid"}

Relative paths are resolved against the JSON file's folder. ``join`` is
``sop_instance_uid`` or ``path`` (as the catalog records it: relative to the archive
root; an absolute path under the root is accepted too); the label CSV needs that column
and the label column (an optional ``split`` column is honoured). Every instance the
query selects is a case when the CSV labels it; the others are listed in skipped.csv
with the reason. The patient is the catalog's ``patient`` pseudonym, so splits stay
patient-level. Case ids come from each file's content, as for every source.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from scandx.catalog.build import load_manifest
from scandx.catalog.query import select_rows
from scandx.core.privacy import pseudonym
from scandx.data.identity import content_digest
from scandx.data.labels import normalise_labels
from scandx.errors import BadImageError, ScandxError
from scandx.tasks.classification.data.manifest import (
    Case,
    Manifest,
    normalise_split,
    order_classes,
)
from scandx.tasks.classification.data.source_checks import settle_identity, skip_or_raise

FORMAT = "scandx-catalog-selection"
JOINS = ("sop_instance_uid", "path")
COLUMNS = [
    "path",
    "sop_instance_uid",
    "patient",
    "modality",
    "photometric_interpretation",
    "manufacturer",
    "pixel_spacing_row",
    "pixel_spacing_column",
]


def is_selection(path: Path) -> bool:
    """A small JSON file with the selection format marker."""
    if not (path.is_file() and path.suffix.lower() == ".json" and path.stat().st_size < 1 << 20):
        return False
    try:
        return json.loads(path.read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def save_selection(
    path: Path, catalog: Path, query: str, labels: Path, label_column: str, join: str
) -> dict[str, Any]:
    """Write a selection file (paths relative to its folder); returns what it holds."""
    if join not in JOINS:
        raise ScandxError(f"--join must be one of {', '.join(JOINS)}, not {join!r}")
    load_manifest(catalog)
    _read_labels(labels, label_column, join)  # refuse a CSV that cannot be used now
    folder = Path(path).absolute().parent
    selection = {
        "format": FORMAT,
        "catalog": os.path.relpath(Path(catalog).absolute(), folder),
        "query": query,
        "labels": os.path.relpath(Path(labels).absolute(), folder),
        "label_column": label_column,
        "join": join,
    }
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{Path(path).name}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(selection, indent=1) + "\n")
    os.replace(tmp, path)
    return selection


def load_selection(path: Path, image_root: Path | None = None, skip_bad: bool = False) -> Manifest:
    """The Manifest of a selection file (see the module docstring)."""
    sel = _read_selection(path)
    folder = path.absolute().parent
    catalog, labels_csv = folder / sel["catalog"], folder / sel["labels"]
    root = Path(load_manifest(catalog)["root"])
    labels, label_notes = _read_labels(labels_csv, sel["label_column"], sel["join"])
    if sel["join"] == "path":  # an absolute path under the root is the catalog's relative one
        labels = {_relative(k, root): v for k, v in labels.items()}
    _names, rows = select_rows(catalog, sel.get("query"), COLUMNS)
    skipped: list[tuple[str, str]] = []
    cases: list[Case] = []
    digests: list[str] = []
    patient_keys: list[list[str]] = []
    origins: list[str] = []
    for values in rows:
        row = dict(zip(COLUMNS, values, strict=True))
        key = row[sel["join"]]
        where = str(root / row["path"])
        if key not in labels:
            skipped.append((where, f"no label in {labels_csv.name} for its {sel['join']}"))
            continue
        label, split, line = labels[key]
        if label is None:
            skipped.append((where, f"missing label ({labels_csv.name} line {line})"))
            continue
        try:
            digests.append(content_digest(where))
        except BadImageError as err:
            reason = f"{err.reason}: the catalog is out of date, run scandx index again"
            skip_or_raise(BadImageError(reason, where), skipped, skip_bad)
            continue
        patient_keys.append([row["patient"]] if row["patient"] else [])
        origins.append(f"{labels_csv}:{line}")
        cases.append(Case("", "", where, label, split, _meta(row)))  # type: ignore[arg-type]
    classes = order_classes([str(c.target) for c in cases])
    for case in cases:
        case.target = classes.index(str(case.target))
    task = "binary" if len(classes) == 2 else "multiclass"
    manifest = Manifest(task, classes, cases, source=str(path), skipped=skipped)
    manifest.notes.extend(label_notes)
    if skipped:
        manifest.notes.append(f"{len(skipped)} selected instance(s) without a usable label")
    settle_identity(manifest, digests, patient_keys, origins)
    return manifest


def _read_selection(path: Path) -> dict[str, Any]:
    try:
        sel = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ScandxError(f"cannot read the selection file ({e})", path) from None
    for key in ("catalog", "labels", "label_column", "join"):
        if not isinstance(sel.get(key), str) or not sel[key]:
            raise ScandxError(f"the selection file needs a text {key!r}", path)
    if sel["join"] not in JOINS:
        raise ScandxError(f"'join' must be one of {', '.join(JOINS)}", path)
    return sel


def _read_labels(
    path: Path, label_column: str, join: str
) -> tuple[dict[str, tuple[str | None, str, int]], list[str]]:
    """{join key: (class name or None, split, line)} and the label vocabulary's notes."""
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ScandxError(f"cannot read the label CSV ({e})", path) from None
    if not rows:
        raise ScandxError("the label CSV has no rows", path)
    cols = {c.strip().lower(): c for c in rows[0] if c is not None}
    for wanted in (join, label_column.strip().lower()):
        if wanted not in cols:
            raise ScandxError(
                f"the label CSV has no {wanted!r} column; columns: {list(cols)}", path
            )
    key_col, label_col, split_col = (
        cols[join],
        cols[label_column.strip().lower()],
        cols.get("split"),
    )
    vocabulary = normalise_labels([r.get(label_col) for r in rows])
    out: dict[str, tuple[str | None, str, int]] = {}
    for line, (r, label) in enumerate(zip(rows, vocabulary.labels, strict=True), start=2):
        key = (r.get(key_col) or "").strip()
        if not key:
            continue
        if key in out and out[key][0] != label:
            raise ScandxError(
                f"line {line} labels {join} {key!r} again, differently (line {out[key][2]})", path
            )
        split = normalise_split((r.get(split_col) or "") if split_col else "")
        out[key] = (label, split, line)
    return out, vocabulary.notes


def _relative(path: str, root: Path) -> str:
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix()
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        return path


def _meta(row: dict[str, Any]) -> dict[str, Any]:
    spacing = [row["pixel_spacing_row"], row["pixel_spacing_column"]]
    meta = {
        "modality": row["modality"],
        "photometric": row["photometric_interpretation"],
        "manufacturer": row["manufacturer"],
        "sop_instance_uid": pseudonym(row["sop_instance_uid"], "uid"),
        "spacing": spacing if None not in spacing else None,
    }
    return {k: v for k, v in meta.items() if v not in ("", None)}
