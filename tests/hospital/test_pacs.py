"""scandx pacs (the DICOMweb loop) against a real Orthanc with its DICOMweb plugin,
seeded by dcmtk's storescu: QIDO, WADO, STOW, a restart in the middle."""

from __future__ import annotations

from pathlib import Path

import pytest

from scandx.hospital.dicomweb import DicomWebClient
from scandx.hospital.pacs import PacsConfig, PacsLoop
from scandx.hospital.pipeline import RetryPolicy
from scandx.hospital.state import PROCESSED, SENT
from tests.hospital.conftest import CLIENT_AET, fake_processor, make_study, send_with_storescu


class Crash(BaseException):
    """A kill in the middle (not an error the loop handles)."""


def seed(orthanc, storescu, tmp_path: Path, n: int) -> list[list[Path]]:
    orthanc.clear()
    studies = [make_study(tmp_path / f"src{i}", seed=10 + i) for i in range(n)]
    for files in studies:
        done = send_with_storescu(storescu, files, orthanc.dicom_port, orthanc.aet, CLIENT_AET)
        assert done.returncode == 0, done.stderr
    return studies


def results_in(orthanc) -> list[dict]:
    return [i for i in orthanc.instances() if i.get("SeriesDescription") == "scandx result"]


def loop(orthanc, state: Path, processor, client=None) -> PacsLoop:
    config = PacsConfig(orthanc.dicomweb, state, retry=RetryPolicy(max_attempts=3, base_s=0))
    return PacsLoop(config, processor, client)


def test_once_stores_results_back(tmp_path, orthanc, storescu):
    studies = seed(orthanc, storescu, tmp_path, 2)
    seen: list[int] = []

    def counting(study_dir: Path, out_dir: Path) -> list[Path]:
        seen.append(len(list(study_dir.rglob("*.dcm"))))
        return fake_processor(study_dir, out_dir)

    pacs = loop(orthanc, tmp_path / "state", counting)
    try:
        assert pacs.poll() == 2
        assert {r.status for r in pacs.db.all()} == {SENT}
        assert pacs.poll() == 0  # its own results made the studies bigger: not taken again
    finally:
        pacs.close()
    assert seen == [len(studies[0]), len(studies[1])]
    assert len(results_in(orthanc)) == 2
    # a loop that lost its state folder still never takes its own results as input
    fresh = loop(orthanc, tmp_path / "state2", counting)
    try:
        fresh.poll()
    finally:
        fresh.close()
    assert seen[2:] == [len(studies[0]), len(studies[1])]


def test_restart_in_the_middle_processes_nothing_twice(tmp_path, orthanc, storescu, monkeypatch):
    seed(orthanc, storescu, tmp_path, 2)
    calls: list[str] = []

    def counting(study_dir: Path, out_dir: Path) -> list[Path]:
        calls.append(study_dir.name)
        return fake_processor(study_dir, out_dir)

    client = DicomWebClient(orthanc.dicomweb)

    def killed(files):
        raise Crash

    monkeypatch.setattr(client, "store", killed)
    first = loop(orthanc, tmp_path / "state", counting, client)
    with pytest.raises(Crash):
        first.poll()  # killed while storing the first study's results
    statuses = [r.status for r in first.db.all()]
    first.close()
    assert PROCESSED in statuses and calls and not results_in(orthanc)
    second = loop(orthanc, tmp_path / "state", counting)
    try:
        second.poll()
        assert [r.status for r in second.db.all()] == [SENT, SENT]
        assert second.poll() == 0
    finally:
        second.close()
    assert len(calls) == 2 and len(set(calls)) == 2  # each study processed once
    assert len(results_in(orthanc)) == 2  # each result stored once
