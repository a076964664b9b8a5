"""Received instances: checked, then written atomically into the state folder.

``incoming/<study-key>/<series-key>/<sop-key>.dcm``: every name is a keyed pseudonym
(``core.privacy.pseudonym`` of the UID), never a UID or a patient identifier. An
instance that cannot be decoded (truncated, malformed, without its UIDs) is refused
with a failure status, so the sender keeps it, and its bytes are kept in
``rejected/`` with a status row: nothing is lost, nothing half-read is processed.
"""

from __future__ import annotations

import io
import logging
import os
import uuid
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID

from scandx.core.privacy import pseudonym
from scandx.core.run_dir import atomic_write
from scandx.data.dicom import pixel_data_problem
from scandx.errors import ScandxError
from scandx.hospital.state import StateDB

log = logging.getLogger("scandx.hospital")
OWN_MANUFACTURER = "scandx"  # results scandx writes say so (exact, case ignored)


class BadInstance(ScandxError):
    """A received dataset that cannot be used (the reason names no identifier)."""


def keys_of(study_uid: str, series_uid: str, sop_uid: str) -> tuple[str, str, str]:
    return pseudonym(study_uid, "study"), pseudonym(series_uid, "series"), pseudonym(sop_uid, "sop")


def check_instance(ds: Dataset) -> tuple[str, str, str]:
    """``(study, series, sop)`` UIDs of a fully decodable dataset, else ``BadInstance``:
    every element is parsed (pydicom defers it), the three UIDs are present, and the
    pixel data is as long as its header says (a truncated instance is refused)."""
    try:
        for _ in ds.iterall():  # converts every raw element: a corrupt one raises here
            pass
        uids = tuple(str(ds.get(k, "") or "").strip() for k in _UID_KEYWORDS)
        problem = pixel_data_problem(ds)
    except Exception as e:  # pydicom raises many types on corrupt bytes
        raise BadInstance(f"cannot decode the dataset ({type(e).__name__})") from None
    if problem:
        raise BadInstance(problem)
    missing = [k for k, v in zip(_UID_KEYWORDS, uids, strict=True) if not v]
    if missing:
        raise BadInstance(f"missing {', '.join(missing)}")
    invalid = [k for k, v in zip(_UID_KEYWORDS, uids, strict=True) if not UID(v).is_valid]
    if invalid:
        raise BadInstance(f"invalid {', '.join(invalid)}")
    return uids  # type: ignore[return-value]


_UID_KEYWORDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")


def read_instance(raw: bytes) -> Dataset:
    """A Part-10 byte string as a dataset (``BadInstance`` when it is not one)."""
    try:
        return pydicom.dcmread(io.BytesIO(raw), force=False)
    except Exception as e:
        raise BadInstance(f"not a DICOM Part-10 instance ({type(e).__name__})") from None


def is_own_result(ds: Dataset, db: StateDB) -> bool:
    """A result scandx wrote: its series is remembered as ours, or its Manufacturer is
    ``scandx`` (results that outlived the state folder)."""
    series = str(ds.get("SeriesInstanceUID", "") or "")
    if series and db.is_own_series(pseudonym(series, "series")):
        return True
    return str(ds.get("Manufacturer", "") or "").strip().lower() == OWN_MANUFACTURER


class Inbox:
    """The ``incoming/`` folder of a state folder, with its rows in the database."""

    def __init__(self, state_dir: Path, db: StateDB):
        self.root = Path(state_dir) / "incoming"
        self.rejected = Path(state_dir) / "rejected"
        self.db = db
        for folder in (self.root, self.rejected):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)

    def study_dir(self, study: str) -> Path:
        return self.root / study

    def store(self, raw: bytes, uids: tuple[str, str, str], now: float) -> str:
        """Write one checked instance; ``stored`` or ``duplicate`` (already received)."""
        study, series, sop = keys_of(*uids)
        if self.db.has_instance(sop):
            return "duplicate"
        path = self.root / study / series / f"{sop}.dcm"
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # a name unique to this write: two associations sending one instance never clash
        atomic_write(path, raw, tmp=path.with_name(f".{uuid.uuid4().hex}.tmp"))
        if not self.db.add_instance(study, sop, now):
            return "duplicate"
        return "stored"

    def reject(self, raw: bytes, calling_aet: str, reason: str) -> Path:
        """Keep refused bytes (``rejected/<file-key>.bin``) and a status row."""
        name = pseudonym(uuid.uuid4().hex, "file") + ".bin"
        path = self.rejected / name
        atomic_write(path, raw, tmp=path.with_name(f".{name}.tmp"))
        os.chmod(path, 0o600)
        self.db.add_reject(calling_aet, reason, name)
        log.warning(
            "refused an instance from %s: %s (kept as rejected/%s)", calling_aet, reason, name
        )
        return path
