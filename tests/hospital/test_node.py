"""scandx listen against real DICOM software: dcmtk's storescu sends a study to the node,
the node's results arrive in a real Orthanc; the destination down; a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from scandx.hospital.dimse import Destination
from scandx.hospital.node import DicomNode, NodeConfig
from scandx.hospital.pipeline import RetryPolicy
from scandx.hospital.state import FAILED, NO_APPLICABLE, RECEIVING, SENT, StateDB
from tests.hospital.conftest import (
    fake_processor,
    free_port,
    make_study,
    send_with_storescu,
    wait_for,
)


def start_node(state: Path, dest: str, processor=fake_processor, **kw) -> DicomNode:
    config = NodeConfig(
        state_dir=state,
        dest=Destination.parse(dest),
        port=0,
        idle_s=kw.pop("idle_s", 0.5),
        retry=kw.pop("retry", RetryPolicy(max_attempts=3, base_s=0.2, max_s=1)),
        tick_s=0.1,
        **kw,
    )
    node = DicomNode(config, processor)
    node.start()
    return node


def statuses(state: Path) -> dict[str, str]:
    db = StateDB(state / "state.db")
    try:
        return {row.study: row.status for row in db.all()}
    finally:
        db.close()


def test_storescu_study_reaches_orthanc(tmp_path, orthanc, storescu, caplog):
    orthanc.clear()
    files = make_study(tmp_path / "src")
    node = start_node(tmp_path / "state", orthanc.dest)
    try:
        sent = send_with_storescu(storescu, files, node.port)
        assert sent.returncode == 0, sent.stderr
        assert wait_for(lambda: list(statuses(tmp_path / "state").values()) == [SENT])
    finally:
        node.stop()
    results = [i for i in orthanc.instances() if i.get("SeriesDescription") == "scandx result"]
    assert len(results) == 1
    source = __import__("pydicom").dcmread(files[0])
    assert results[0]["StudyInstanceUID"] == source.StudyInstanceUID
    # nothing identifying in the state folder's names; sent studies leave no images behind
    names = [p.name for p in (tmp_path / "state").rglob("*")]
    assert not any(source.StudyInstanceUID in n or source.PatientID in n for n in names)
    assert not list((tmp_path / "state" / "incoming").rglob("*.dcm"))
    db_bytes = b"".join(p.read_bytes() for p in (tmp_path / "state").glob("state.db*"))
    for secret in (source.StudyInstanceUID, source.SeriesInstanceUID, source.PatientID):
        assert secret not in caplog.text and secret.encode() not in db_bytes


def test_destination_down_retries_then_dead_letter(tmp_path, storescu, caplog):
    files = make_study(tmp_path / "src")
    node = start_node(tmp_path / "state", f"NOBODY@127.0.0.1:{free_port()}")
    try:
        assert send_with_storescu(storescu, files, node.port).returncode == 0
        assert wait_for(lambda: list(statuses(tmp_path / "state").values()) == [FAILED], 30)
    finally:
        node.stop()
    db = StateDB(tmp_path / "state" / "state.db")
    (row,) = db.all()
    db.close()
    assert row.attempts == 3 and "not delivered after 3 attempt(s)" in row.reason
    dead = tmp_path / "state" / "dead-letter" / row.study
    assert len(list((dead / "incoming").rglob("*.dcm"))) == len(files)  # nothing lost
    assert len(list((dead / "results").rglob("*.dcm"))) == 1
    assert (dead / "reason.json").is_file()
    assert "delivery attempt 1 failed" in caplog.text


def test_restart_loses_nothing_and_redoes_nothing(tmp_path, orthanc, storescu):
    orthanc.clear()
    calls: list[str] = []

    def counting(study_dir: Path, out_dir: Path) -> list[Path]:
        calls.append(study_dir.name)
        return fake_processor(study_dir, out_dir)

    state = tmp_path / "state"
    first = make_study(tmp_path / "a", seed=1)
    second = make_study(tmp_path / "b", seed=2)
    # 1) a node that never considers a study complete: stopped with a study received
    node = start_node(state, orthanc.dest, counting, idle_s=3600)
    try:
        assert send_with_storescu(storescu, first, node.port).returncode == 0
        assert wait_for(lambda: list(statuses(state).values()) == [RECEIVING])
    finally:
        node.stop()
    assert calls == []
    # 2) restarted: the received study is processed and sent; a second study too
    node = start_node(state, orthanc.dest, counting)
    try:
        assert wait_for(lambda: list(statuses(state).values()) == [SENT])
        assert send_with_storescu(storescu, second, node.port).returncode == 0
        assert wait_for(lambda: list(statuses(state).values()) == [SENT, SENT])
    finally:
        node.stop()
    # 3) restarted again, the first study sent once more by the modality: not redone
    node = start_node(state, orthanc.dest, counting)
    try:
        assert send_with_storescu(storescu, first, node.port).returncode == 0
        wait_for(lambda: False, timeout=1.5)
    finally:
        node.stop()
    assert len(calls) == 2 and len(set(calls)) == 2
    results = [i for i in orthanc.instances() if i.get("SeriesDescription") == "scandx result"]
    assert len(results) == 2


def test_no_applicable_series_sends_nothing(tmp_path, orthanc, storescu, caplog):
    orthanc.clear()
    files = make_study(tmp_path / "src")
    node = start_node(tmp_path / "state", orthanc.dest, lambda study, out: [])
    try:
        assert send_with_storescu(storescu, files, node.port).returncode == 0
        assert wait_for(lambda: list(statuses(tmp_path / "state").values()) == [NO_APPLICABLE])
    finally:
        node.stop()
    assert "no series a model applies to; nothing sent" in caplog.text
    assert not [i for i in orthanc.instances() if i.get("SeriesDescription") == "scandx result"]


@pytest.fixture(autouse=True)
def _info_logs(caplog):
    caplog.set_level("INFO", logger="scandx.hospital")
