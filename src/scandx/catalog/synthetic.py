"""A made-up DICOM archive for tests and benchmarks: real files, copied with fresh UIDs.

``make_archive`` copies image instances (real files: every codec and layout they hold
is kept) into ``OUT/<patient>/<study>/<series>/<n>.dcm`` with new Study, Series and SOP
Instance UIDs, a made-up PatientID per patient, several series per study and several
studies per patient. Instances of one series share one source file (one geometry) and
get consecutive slice positions, so a catalog of the archive flags no series.
"""

from __future__ import annotations

import random
import warnings
from pathlib import Path
from typing import Any

STUDIES_PER_PATIENT = (1, 3)
SERIES_PER_STUDY = (2, 4)
INSTANCES_PER_SERIES = (4, 24)


def image_templates(folder: Path, max_bytes: int = 2_000_000, limit: int = 40) -> list[Path]:
    """Image instances under ``folder`` that the catalog reads as whole rows (readable
    header, Rows, a SOP Instance UID, not truncated), smallest first."""
    from scandx.catalog.headers import HeaderProblem, read_row

    found = []
    for p in sorted(folder.rglob("*.dcm")):
        if not p.is_file() or p.stat().st_size > max_bytes:
            continue
        try:
            row = read_row(p, p.name, p.stat().st_size, 0)
        except HeaderProblem:
            continue
        if row["rows"] and row["columns"] and (row["number_of_frames"] or 1) == 1:
            found.append((p.stat().st_size, p))
    return [p for _, p in sorted(found)[:limit]]


def make_archive(
    templates: list[Path],
    out: Path,
    n_files: int,
    seed: int = 0,
    per_series: tuple[int, int] = INSTANCES_PER_SERIES,
) -> int:
    """Write ``n_files`` DICOM files under ``out`` (``per_series`` instances in each
    series, at random in that range); returns how many patients."""
    import pydicom
    from pydicom.uid import generate_uid

    rng = random.Random(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sources = [ds for ds in (pydicom.dcmread(p) for p in templates) if _writable(ds)]
    if not sources:
        raise ValueError("no template can be written back as DICOM")
    written, patient = 0, 0
    while written < n_files:
        patient += 1
        for study in range(rng.randint(*STUDIES_PER_PATIENT)):
            study_uid = generate_uid(entropy_srcs=[str(seed), "study", str(patient), str(study)])
            for series in range(rng.randint(*SERIES_PER_STUDY)):
                ds = sources[rng.randrange(len(sources))]
                series_uid = generate_uid(
                    entropy_srcs=[str(seed), "series", str(patient), str(study), str(series)]
                )
                folder = out / f"P{patient:05d}" / f"study{study}" / f"series{series}"
                folder.mkdir(parents=True, exist_ok=True)
                count = min(rng.randint(*per_series), n_files - written)
                for i in range(count):
                    ident = (patient, study_uid, series_uid, series + 1, i)
                    _write(ds, ident, folder / f"{i:04d}.dcm", seed)
                written += count
                if written >= n_files:
                    return patient
    return patient


def _writable(ds: Any) -> bool:
    """Whether pydicom can write the template back (some test files cannot be)."""
    import io

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds.save_as(io.BytesIO(), enforce_file_format=False)
    except Exception:  # an element pydicom reads but cannot encode
        return False
    return True


def _write(ds: Any, ident: tuple, path: Path, seed: int) -> None:
    from pydicom.uid import generate_uid

    patient, study_uid, series_uid, series_number, i = ident
    sop_uid = generate_uid(entropy_srcs=[str(seed), series_uid, str(i)])
    ds.PatientID = f"SYN{patient:06d}"
    ds.PatientName = f"Synthetic^{patient:06d}"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.SOPInstanceUID = sop_uid
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.SeriesNumber = series_number
    ds.InstanceNumber = i + 1
    if "ImagePositionPatient" in ds:
        x, y = (float(v) for v in ds.ImagePositionPatient[:2])
        ds.ImagePositionPatient = [x, y, 2.5 * i]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(path, enforce_file_format=False)
