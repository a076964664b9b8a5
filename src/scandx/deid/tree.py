"""``scandx deid IN OUT``: a folder of DICOM files de-identified into another.

OUT is what leaves the hospital: it holds the de-identified instances only, as
``OUT/<patient pseudonym>/<new Study UID>/<new Series UID>/<new SOP Instance UID>.dcm``
(never an input name: file and folder names often carry patient names). What stays in
the hospital goes to the mapping folder (default ``OUT-mapping`` beside OUT, never inside
it), created 0700 with files 0600:

- ``uid_mapping.csv`` and ``patid_mapping.csv``: ``id_old,id_new``, the columns the TCIA
  MIDI-B validation script reads (it loads them with ``pd.read_csv(...,
  converters={'id_old': str, 'id_new': str})``); they hold the original identifiers.
  A later run into the same folders adds its rows (the keyed mapping gives the same new
  identifiers, so the files stay consistent);
- ``skipped.csv`` (``file,reason``; inputs named by their keyed ``file-<hex>``
  reference, core/privacy.py) and ``deid_summary.json``.

Each output is written to a temporary name and renamed: never half a file.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from scandx.core.privacy import file_ref
from scandx.core.run_dir import atomic_path, atomic_write
from scandx.data.files import walk_files
from scandx.deid.instance import deidentify_instance, read_instance
from scandx.deid.table import load_table
from scandx.errors import BadImageError, ScandxError

log = logging.getLogger(__name__)
MAPPING_FIELDS = ("id_old", "id_new")


@dataclass(frozen=True)
class DeidOptions:
    keep_longitudinal_dates: bool = False  # Modified Dates option (keyed shift per patient)
    keep_descriptors: bool = False  # Clean Descriptors option
    mapping_dir: Path | None = None

    def profile_options(self) -> frozenset[str]:
        chosen = set()
        if self.keep_longitudinal_dates:
            chosen.add("modified_dates")
        if self.keep_descriptors:
            chosen.add("clean_descriptors")
        return frozenset(chosen)


@dataclass
class DeidSummary:
    written: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file ref, reason)
    burned_in: list[str] = field(default_factory=list)  # output paths (relative to OUT)
    actions: Counter = field(default_factory=Counter)
    outputs: dict[Path, Path] = field(default_factory=dict)  # input -> output (in memory)
    mapping_dir: Path | None = None
    edition: str = ""

    def as_json(self) -> dict:
        return {
            "table": f"DICOM PS3.15 Table E.1-1, edition {self.edition}",
            "written": self.written,
            "skipped": len(self.skipped),
            "burned_in_warnings": sorted(self.burned_in),
            "actions": dict(sorted(self.actions.items())),
        }


def default_mapping_dir(out: Path) -> Path:
    return out.parent / f"{out.name}-mapping"


def check_folders(src: Path, out: Path, mapping: Path) -> None:
    """IN must be a folder; OUT and the mapping folder may not be inside IN (they would be
    read as input), IN not inside OUT, and the mapping folder not inside OUT."""
    if not src.is_dir():
        raise ScandxError("input folder not found (or not a folder)", src)
    s, o, m = (p.resolve() for p in (src, out, mapping))
    if o == s or o.is_relative_to(s):
        raise ScandxError("the output folder is inside the input folder; choose another", out)
    if s.is_relative_to(o):
        raise ScandxError("the input folder is inside the output folder", src)
    if m == o or m.is_relative_to(o):
        raise ScandxError(
            "the mapping folder holds the original identifiers; it may not be inside the "
            "output folder",
            mapping,
        )
    if m.is_relative_to(s):
        raise ScandxError("the mapping folder is inside the input folder; choose another", mapping)


def deidentify_tree(src: str | Path, out: str | Path, options: DeidOptions) -> DeidSummary:
    """De-identify every DICOM file under ``src`` into ``out`` (see the module doc)."""
    src, out = Path(src), Path(out)
    mapping = Path(options.mapping_dir) if options.mapping_dir else default_mapping_dir(out)
    check_folders(src, out, mapping)
    table = load_table()
    chosen = options.profile_options()
    summary = DeidSummary(mapping_dir=mapping, edition=table.edition)
    uid_map: dict[str, str] = {}
    pid_map: dict[str, str] = {}
    written_uids: set[str] = set()
    out.mkdir(parents=True, exist_ok=True)
    for path, problem in walk_files(src):
        if problem:
            summary.skipped.append((file_ref(path), problem))
            continue
        # pydicom's warnings quote values (a UID, a name): recorded, never printed
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            try:
                ds = read_instance(path)
            except BadImageError as e:
                summary.skipped.append((file_ref(path), e.reason))
                log.warning("skipped %s: %s", file_ref(path), e.reason)
                continue
            instance = deidentify_instance(ds, table, chosen)
        new_uid = str(instance.dataset.SOPInstanceUID)
        if new_uid in written_uids:
            reason = "duplicate SOP Instance UID (an earlier file of this run has it)"
            summary.skipped.append((file_ref(path), reason))
            continue
        target = _output_path(out, instance.dataset)
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            _write(instance.dataset, target)
        written_uids.add(new_uid)
        summary.written += 1
        summary.outputs[path] = target
        summary.actions.update(instance.actions)
        uid_map.update(instance.uids)
        pid_map.setdefault(instance.patient_id, str(instance.dataset.PatientID))
        if instance.burned_in:
            rel = str(target.relative_to(out))
            summary.burned_in.append(rel)
            log.warning(
                "%s may show burned-in text (%s): review its pixels", rel, instance.burned_in
            )
    _write_mapping_folder(mapping, uid_map, pid_map, summary)
    return summary


def _output_path(out: Path, ds) -> Path:
    def part(keyword: str) -> str:
        value = str(ds.get(keyword, "") or "").strip()
        return value if value and "/" not in value and value not in (".", "..") else "unknown"

    return (
        out
        / part("PatientID")
        / part("StudyInstanceUID")
        / part("SeriesInstanceUID")
        / f"{part('SOPInstanceUID')}.dcm"
    )


def _write(ds, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        ds.save_as(tmp, enforce_file_format=True)


def _write_mapping_folder(
    folder: Path, uid_map: dict[str, str], pid_map: dict[str, str], summary: DeidSummary
) -> None:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    _merge_mapping(folder / "uid_mapping.csv", uid_map)
    _merge_mapping(folder / "patid_mapping.csv", pid_map)
    rows = ["file,reason", *(f"{ref},{_csv_field(reason)}" for ref, reason in summary.skipped)]
    _private_write(folder / "skipped.csv", "\n".join(rows) + "\n")
    _private_write(folder / "deid_summary.json", json.dumps(summary.as_json(), indent=2) + "\n")


def _csv_field(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text


def _merge_mapping(path: Path, new: dict[str, str]) -> None:
    """``id_old,id_new`` rows: those already in ``path`` (an earlier run) kept, new ones
    added; one row per old identifier."""
    rows: dict[str, str] = {}
    if path.exists():
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                if row.get("id_old") is not None:
                    rows.setdefault(row["id_old"], row.get("id_new", ""))
    for old, value in new.items():
        rows.setdefault(old, value)
    lines = [
        ",".join(MAPPING_FIELDS),
        *(f"{_csv_field(o)},{_csv_field(n)}" for o, n in rows.items()),
    ]
    _private_write(path, "\n".join(lines) + "\n")


def _private_write(path: Path, text: str) -> None:
    """``text`` written atomically, readable by its owner only (0600)."""
    old = os.umask(0o077)
    try:
        atomic_write(path, text)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
