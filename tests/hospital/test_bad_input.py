"""Bad input to the node and the loop: refused with a clear line and a status row, kept,
never a crash, and the node still works afterwards."""

from __future__ import annotations

import struct
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, _config
from pynetdicom.sop_class import CTImageStorage, Verification

from scandx.errors import ScandxError
from scandx.hospital.dicomweb import SeriesRef, StudyRef
from scandx.hospital.pacs import PacsConfig, PacsLoop
from scandx.hospital.state import FAILED, NO_APPLICABLE, SENT, StateDB
from tests.hospital.conftest import fake_processor, make_study, send_with_storescu, wait_for
from tests.hospital.test_node import start_node, statuses

SECRET_BIT = "Phantom^SEG00"  # the synthetic patient's name: must never reach a log


def send_raw(port: int, path: Path, calling: str = "STORESCU") -> int:
    """C-STORE a file's bytes as they are (pynetdicom's chunked mode: not decoded)."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
    assoc = ae.associate("127.0.0.1", port, ae_title="SCANDX")
    assert assoc.is_established
    old, _config.STORE_SEND_CHUNKED_DATASET = _config.STORE_SEND_CHUNKED_DATASET, True
    try:
        return assoc.send_c_store(path).Status
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = old
        assoc.release()


def test_truncated_and_undecodable_instances_are_refused_and_kept(
    tmp_path, orthanc, storescu, caplog
):
    files = make_study(tmp_path / "src")
    raw = files[0].read_bytes()
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(raw[:-100])
    corrupt = tmp_path / "corrupt.dcm"  # an element longer than what follows it
    corrupt.write_bytes(raw[:600] + struct.pack("<HH2sH", 0x0010, 0x0010, b"PN", 0xFFF0) + b"ab")
    node = start_node(tmp_path / "state", orthanc.dest)
    try:
        assert send_raw(node.port, truncated) == 0xC210
        assert send_raw(node.port, corrupt) == 0xC210
        assert send_with_storescu(storescu, files, node.port).returncode == 0  # still works
        assert wait_for(lambda: list(statuses(tmp_path / "state").values()) == [SENT])
    finally:
        node.stop()
    db = StateDB(tmp_path / "state" / "state.db")
    rejects = db.rejects()
    db.close()
    reasons = [r[1] for r in rejects]
    assert any("pixel data truncated" in r for r in reasons)
    assert any("missing StudyInstanceUID" in r or "invalid" in r for r in reasons)
    kept = sorted((tmp_path / "state" / "rejected").glob("*.bin"))
    assert len(kept) == 2  # nothing lost
    assert "refused an instance from STORESCU: pixel data truncated" in caplog.text
    assert SECRET_BIT not in caplog.text


def test_unknown_transfer_syntax_is_refused_in_negotiation(tmp_path, orthanc, caplog):
    node = start_node(tmp_path / "state", orthanc.dest)
    try:
        ae = AE(ae_title="STORESCU")
        ae.add_requested_context(Verification)
        ae.add_requested_context(CTImageStorage, ["1.2.826.0.1.3680043.9.9999.1"])
        assoc = ae.associate("127.0.0.1", node.port, ae_title="SCANDX")
        assert assoc.is_established
        assert not [c for c in assoc.accepted_contexts if c.abstract_syntax == CTImageStorage]
        assert assoc.send_c_echo().Status == 0
        assoc.release()
    finally:
        node.stop()
    assert "refused a presentation context (CT Image Storage in transfer syntax " in caplog.text
    assert "1.2.826.0.1.3680043.9.9999.1: not supported" in caplog.text


def test_unknown_calling_aet_is_refused(tmp_path, orthanc, storescu, caplog):
    files = make_study(tmp_path / "src")
    node = start_node(tmp_path / "state", orthanc.dest, allow_aet=["CT01"])
    try:
        refused = send_with_storescu(storescu, files, node.port, calling="EVIL")
        assert refused.returncode != 0
        accepted = send_with_storescu(storescu, files, node.port, calling="CT01")
        assert accepted.returncode == 0, accepted.stderr
        assert wait_for(lambda: list(statuses(tmp_path / "state").values()) == [SENT])
    finally:
        node.stop()
    assert "refused an association from EVIL: calling AE title not allowed" in caplog.text


def test_processing_error_goes_to_dead_letter_with_a_scrubbed_reason(tmp_path, orthanc, storescu):
    files = make_study(tmp_path / "src")

    def broken(study_dir: Path, out_dir: Path) -> list[Path]:
        raise ScandxError("cannot read the series", files[0])

    node = start_node(tmp_path / "state", orthanc.dest, broken)
    try:
        assert send_with_storescu(storescu, files, node.port).returncode == 0
        assert wait_for(lambda: list(statuses(tmp_path / "state").values()) == [FAILED])
    finally:
        node.stop()
    db = StateDB(tmp_path / "state" / "state.db")
    (row,) = db.all()
    db.close()
    assert row.reason.startswith("processing failed") and str(tmp_path) not in row.reason
    dead = tmp_path / "state" / "dead-letter" / row.study / "incoming"
    assert len(list(dead.rglob("*.dcm"))) == len(files)


class GarbageWeb:
    """A DICOMweb server whose WADO answer holds a non-DICOM part and a real one."""

    def __init__(self, good: Path):
        self.good = good.read_bytes()
        self.study = pydicom.dcmread(good).StudyInstanceUID

    def find_studies(self, since=None):
        return [StudyRef(self.study, 2), StudyRef("1.2.3.4", 1)]

    def find_series(self, study_uid):
        return [SeriesRef("1.2.3.4.5", "", "")]

    def retrieve_series(self, study_uid, series_uid):
        if study_uid != self.study:  # a server answering another study's instance
            return [self.good]
        return [b"this is not DICOM at all", self.good]

    def store(self, files):
        self.stored = list(files)

    def close(self):
        pass


def test_non_dicom_part_from_dicomweb_is_refused_and_kept(tmp_path, caplog):
    files = make_study(tmp_path / "src")
    web = GarbageWeb(files[0])
    pacs = PacsLoop(PacsConfig("http://x", tmp_path / "state"), fake_processor, web)
    try:
        assert pacs.poll() == 2
        assert sorted(r.status for r in pacs.db.all()) == [NO_APPLICABLE, SENT]
        assert [r[1] for r in pacs.db.rejects()] == [
            "not a DICOM Part-10 instance (InvalidDicomError)",
            "the server answered an instance of another study",
        ]
    finally:
        pacs.close()
    assert len(web.stored) == 1
    assert "refused an instance from DICOMWEB: not a DICOM Part-10" in caplog.text


@pytest.fixture(autouse=True)
def _info_logs(caplog):
    caplog.set_level("INFO", logger="scandx.hospital")
