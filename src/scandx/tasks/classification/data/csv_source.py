"""The CSV source: ``path,label`` [+ patient_id, split, metadata], checked before any work.

Columns are matched without regard to case or surrounding spaces (``Label`` is the
label column). Without a label column, the CSV is multi-label only when its label
columns are declared (``label:<name>``) or recognisable (every column besides the
reserved ones holds only 0/1, and none is named like a label column); anything else
is one clear error naming the columns seen, never a task planned on metadata.
Labels are normalised (``data/labels.py``): ``1``/``1.0`` one class, ``Lesion``/
``lesion`` one class (reported in ``Manifest.notes``). A row whose label is missing
(empty, ``NaN``, ``None``; in a multi-label CSV every label cell) is an unlabelled case
(split ``unlabelled``, for semi-supervised training); a multi-label row with some cells
missing is refused, naming the rows; an unlabelled row the split column puts in val or
test is left out (listed in skipped.csv), never trained on. Case ids come from the image
content (``data/identity.py``).
"""

from __future__ import annotations

import csv
import difflib
import io
from pathlib import Path

from scandx.core.privacy import identifying_column, pseudonym
from scandx.data.dicom import read_dataset
from scandx.data.files import file_problem
from scandx.data.identity import content_digest
from scandx.data.labels import is_missing_label, normalise_labels
from scandx.data.readers import file_extension, reader_for
from scandx.errors import BadImageError, ScandxError
from scandx.tasks.classification.data.manifest import (
    SPLITS,
    UNLABELLED,
    Case,
    Manifest,
    normalise_split,
    order_classes,
)
from scandx.tasks.classification.data.source_checks import (
    image_meta,
    settle_identity,
    skip_or_raise,
)

RESERVED = ("path", "label", "patient_id", "split", "case_id", "sop_instance_uid")
DECLARED_PREFIX = "label:"
# column names a user may have meant as the label column: never read as 0/1 labels
LABEL_LIKE = ("label", "labels", "class", "target", "diagnosis", "finding", "y")
MAX_ROWS_SHOWN = 10


def load_csv(path: Path, image_root: Path | None = None, skip_bad: bool = False) -> Manifest:
    """CSV manifest; see the module docstring for the columns."""
    root = Path(image_root) if image_root else path.parent
    rows, cols = _read_rows(path)
    named = _reserved_columns(cols, path)
    key = "path" if "path" in named else "sop_instance_uid" if "sop_instance_uid" in named else None
    if key is None:
        raise ScandxError(
            f"CSV manifest needs a 'path' (or 'sop_instance_uid') column; columns: {_cols(cols)}",
            path,
        )
    label_cols = _label_columns(rows, cols, named, path)
    meta_cols = [c for c in cols if c not in named.values() and c not in label_cols]
    keyed_cols = {c for c in meta_cols if identifying_column(c)}
    skipped: list[tuple[str, str]] = []
    targets, label_notes = _targets(rows, named, label_cols, path, skipped, skip_bad)
    uid_index = _dicom_uid_index(root) if key == "sop_instance_uid" else {}

    kept: list[tuple[int, dict, Path]] = []
    for i, row in enumerate(rows, start=2):  # line 1 is the header
        if i not in targets:  # partly labelled, left out
            continue
        held_out = normalise_split(_cell(row, named.get("split"))) in ("val", "test")
        if targets[i] is None and held_out:
            skipped.append((f"{path}:{i}", "unlabelled row in a held-out split: not used"))
            continue
        try:
            img = _image_of(row, named[key], key, root, uid_index, f"{path}:{i}")
        except BadImageError as err:
            skip_or_raise(err, skipped, skip_bad)
            continue
        kept.append((i, row, img))

    if label_cols:
        classes, task = [_label_name(c) for c in label_cols], "multilabel"
    else:
        classes = order_classes([str(targets[i]) for i, _, _ in kept if targets[i] is not None])
        task = "binary" if len(classes) == 2 else "multiclass"
    cases: list[Case] = []
    digests: list[str] = []
    patient_keys: list[list[str]] = []
    rows_of: list[str] = []
    for i, row, img in kept:
        try:
            meta = image_meta(img, reader_for(img) or "")
            digest = content_digest(img)
        except BadImageError as err:
            skip_or_raise(err, skipped, skip_bad)
            continue
        target = targets[i]
        dicom_pid = meta.pop("patient_id", "")
        given_pid = _cell(row, named.get("patient_id"))
        patient_keys.append([f"pid:{given_pid}"] if given_pid else [dicom_pid] if dicom_pid else [])
        meta.update(
            {
                c: pseudonym(row[c], "meta") if c in keyed_cols else row[c]
                for c in meta_cols
                if row.get(c) not in (None, "")
            }
        )
        digests.append(digest)
        rows_of.append(f"line {i}")
        cases.append(
            Case(
                case_id="",
                patient_id="",
                path=str(img),
                target=_target_index(target, classes, bool(label_cols)),
                split=(
                    UNLABELLED
                    if target is None
                    else normalise_split(_cell(row, named.get("split")))
                ),
                meta={k: v for k, v in meta.items() if v not in ("", None)},
            )
        )
    bad_split = sorted({c.split for c in cases} - set(SPLITS) - {"", UNLABELLED})
    if bad_split:
        raise ScandxError(f"unknown split value(s) {bad_split}; use train, val or test", path)
    manifest = Manifest(task=task, classes=classes, cases=cases, source=str(path), skipped=skipped)
    manifest.notes.extend(label_notes)
    if keyed_cols:
        manifest.notes.append(
            f"column(s) {', '.join(sorted(keyed_cols))} named like identifiers: their values "
            "are stored as keyed pseudonyms"
        )
    origins = [f"{path}:{r.split()[1]}" for r in rows_of]
    settle_identity(manifest, digests, patient_keys, origins, rows_of)
    return manifest


def _read_rows(path: Path) -> tuple[list[dict], list[str]]:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ScandxError(
            f"not a UTF-8 text CSV file ({e.reason} at byte {e.start})", path
        ) from None
    except OSError as e:
        raise ScandxError(f"cannot read the CSV file ({e.strerror or e})", path) from None
    if "\0" in text:
        line = text.count("\n", 0, text.index("\0")) + 1
        raise ScandxError(f"line {line} holds a NUL byte: not a text CSV file", path)
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        rows = list(reader)
    except csv.Error as e:
        raise ScandxError(f"not a readable CSV file ({e})", path) from None
    if not rows:
        raise ScandxError("CSV manifest has no rows", path)
    for i, row in enumerate(rows, start=2):
        if None in row:
            raise ScandxError(f"line {i} has more cells than the header", path)
    return rows, list(reader.fieldnames or [])


def _reserved_columns(cols: list[str], path: Path) -> dict[str, str]:
    """{reserved name: the CSV's column}, matched ignoring case and surrounding spaces."""
    named: dict[str, str] = {}
    for c in cols:
        canonical = c.strip().lower()
        if canonical in RESERVED:
            if canonical in named:
                raise ScandxError(
                    f"columns {named[canonical]!r} and {c!r} both name {canonical!r}", path
                )
            named[canonical] = c
    return named


def _label_columns(
    rows: list[dict], cols: list[str], named: dict[str, str], path: Path
) -> list[str]:
    """[] for a single 'label' column; the multi-label columns otherwise."""
    if "label" in named:
        return []
    declared = [c for c in cols if c.strip().lower().startswith(DECLARED_PREFIX)]
    if declared:
        return declared
    others = [c for c in cols if c not in named.values()]
    binary = [c for c in others if _binary_column(rows, c)]
    like = [c for c in others if difflib.get_close_matches(c.strip().lower(), LABEL_LIKE, 1, 0.75)]
    if binary and len(binary) == len(others) and not like:
        return binary
    hint = f" ({', '.join(repr(c) for c in like)} looks like a label column)" if like else ""
    raise ScandxError(
        f"no 'label' column{hint}; columns seen: {_cols(cols)}. Name the label column "
        "'label', or for a multi-label CSV name each 0/1 label column 'label:<name>'",
        path,
    )


def _targets(
    rows: list[dict],
    named: dict[str, str],
    label_cols: list[str],
    path: Path,
    skipped: list[tuple[str, str]],
    skip_bad: bool,
) -> tuple[dict[int, str | tuple[int, ...] | None], list[str]]:
    """Each line's target (the normalised class name, or the 0/1 vector; None when
    missing: an unlabelled case), and the notes of what the label vocabulary merged. A
    multi-label row with only some cells missing is refused (partial labels are not
    supported)."""
    if label_cols:
        raw = [[_cell(r, c) for c in label_cols] for r in rows]
    else:
        raw = [[_cell(r, named["label"])] for r in rows]
    out: dict[int, str | tuple[int, ...] | None] = {}
    missing: list[int] = []
    vocabulary = normalise_labels([] if label_cols else [cells[0] for cells in raw])
    for i, cells in enumerate(raw, start=2):
        gaps = [is_missing_label(v) for v in cells]
        if all(gaps):
            out[i] = None
        elif any(gaps):
            missing.append(i)
        elif label_cols:
            out[i] = tuple(
                _zero_one(v, c, f"{path}:{i}") for v, c in zip(cells, label_cols, strict=True)
            )
        else:
            out[i] = vocabulary.labels[i - 2]
    if missing and not skip_bad:
        shown = ", ".join(map(str, missing[:MAX_ROWS_SHOWN]))
        more = f" and {len(missing) - MAX_ROWS_SHOWN} more" if len(missing) > MAX_ROWS_SHOWN else ""
        raise ScandxError(
            f"some label cells missing (empty, NaN or None) on line(s) {shown}{more}: a row "
            "has every label or none (unlabelled); fill them or use --skip-bad to leave "
            "them out",
            path,
        )
    for i in missing:  # left out (--skip-bad): no entry in ``out``
        skip_or_raise(BadImageError("partly missing labels", f"{path}:{i}"), skipped, skip_bad)
    return out, vocabulary.notes


def _target_index(
    target: str | tuple[int, ...] | None, classes: list[str], multilabel: bool
) -> int | tuple[int, ...] | None:
    if target is None or multilabel:
        return target  # type: ignore[return-value]
    return classes.index(str(target))


def _zero_one(value: str, column: str, where: str) -> int:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if number not in (0.0, 1.0):
        raise ScandxError(f"label column {column!r} holds {value!r}; expected 0 or 1", where)
    return int(number)


def _image_of(
    row: dict, column: str, key: str, root: Path, uid_index: dict[str, Path], where: str
) -> Path:
    cell = _cell(row, column)
    if key == "path":
        if not cell:
            raise BadImageError("empty 'path'", where)
        img = (root / cell).resolve()
        if not img.exists() and not img.is_symlink():
            raise BadImageError(f"image file not found: {img}", where)
        problem = file_problem(img)
        if problem:
            raise BadImageError(f"{problem}: {img}", where)
    else:
        if cell not in uid_index:
            raise BadImageError(
                "no DICOM file with this row's SOPInstanceUID under the image root", where
            )
        img = uid_index[cell]
    if reader_for(img) is None:
        raise BadImageError(f"unsupported file type {file_extension(img) or '(none)'}", img)
    return img


def _cell(row: dict, column: str | None) -> str:
    return (row.get(column) or "").strip() if column else ""


def _cols(cols: list[str]) -> str:
    return ", ".join(repr(c) for c in cols)


def _label_name(column: str) -> str:
    c = column.strip()
    return c[len(DECLARED_PREFIX) :].strip() if c.lower().startswith(DECLARED_PREFIX) else c


def _binary_column(rows: list[dict], col: str) -> bool:
    values = {(r.get(col) or "").strip() for r in rows}
    try:
        return bool(values) and {float(v) for v in values} <= {0.0, 1.0}
    except ValueError:
        return False


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
