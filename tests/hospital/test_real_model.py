"""The node with a real model: dcmtk's storescu sends a CT series to ``scandx listen``,
a trained 3D segmenter predicts through ``dicom_out.predict_study`` and the structured
report (and its SEG when the mask is not empty) arrives in a real Orthanc, in the
source study; a selector that does not match leaves the study unprocessed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scandx.cli import main
from scandx.hospital.process import make_processor
from scandx.hospital.state import NO_APPLICABLE, SENT
from tests.hospital.conftest import make_study, send_with_storescu, wait_for
from tests.hospital.test_node import start_node, statuses


@pytest.fixture(scope="module")
def seg_run(tmp_path_factory) -> Path:
    from scandx.tasks.segmentation.synthetic import make_dicom_seg_cases

    root = tmp_path_factory.mktemp("ct")
    data = make_dicom_seg_cases(root / "data", n=4, seed=3)
    run = root / "run"
    assert main(["-q", "train", "--data", str(data), "--out", str(run), "--time-budget", "5"]) == 0
    return run


def test_a_real_segmenter_answers_in_orthanc(tmp_path, seg_run, orthanc, storescu):
    import pydicom

    orthanc.clear()
    files = make_study(tmp_path / "src", n_slices=8, seed=5)
    node = start_node(tmp_path / "state", orthanc.dest, processor=make_processor([seg_run]))
    try:
        assert send_with_storescu(storescu, files, node.port).returncode == 0
        assert wait_for(lambda: list(statuses(tmp_path / "state").values()) == [SENT], 120)
    finally:
        node.stop()
    study = pydicom.dcmread(files[0]).StudyInstanceUID
    results = [i for i in orthanc.instances() if i.get("Manufacturer") == "scandx"]
    modalities = sorted(i["Modality"] for i in results)
    assert "SR" in modalities and all(i["StudyInstanceUID"] == study for i in results)
    assert set(modalities) <= {"SR", "SEG", "OT"}


def test_a_selector_that_does_not_match_sends_nothing(tmp_path, seg_run, orthanc, storescu):
    orthanc.clear()
    selector = tmp_path / "mr-only.json"
    selector.write_text(json.dumps({"all": [{"modality": ["MR"]}]}))
    files = make_study(tmp_path / "src", n_slices=8, seed=6)
    processor = make_processor([seg_run], selector=selector)
    node = start_node(tmp_path / "state", orthanc.dest, processor=processor)
    try:
        assert send_with_storescu(storescu, files, node.port).returncode == 0
        assert wait_for(lambda: list(statuses(tmp_path / "state").values()) == [NO_APPLICABLE])
    finally:
        node.stop()
    assert not [i for i in orthanc.instances() if i.get("Manufacturer") == "scandx"]


def _wait_port(port: int, proc, timeout: float = 60) -> None:
    import socket
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError("scandx listen did not open its port")


def test_the_commands_as_a_user_runs_them(tmp_path, seg_run, orthanc, storescu):
    """``scandx listen`` and ``scandx pacs --once`` as subprocesses: the node answers a
    storescu study into Orthanc and stops cleanly on SIGTERM; the DICOMweb loop then
    finds a study seeded straight into Orthanc and stores its report back."""
    import signal
    import subprocess
    import sys

    import pydicom

    from tests.hospital.conftest import CLIENT_AET, free_port
    from tests.serve.live import child_env

    orthanc.clear()
    port = free_port()
    listen = [sys.executable, "-m", "scandx", "listen", "--port", str(port), "--run",
              str(seg_run), "--dest", orthanc.dest, "--idle", "1", "--state",
              str(tmp_path / "node"), "--retry-wait", "1"]  # fmt: skip
    proc = subprocess.Popen(listen, env=child_env(), stdout=subprocess.PIPE, text=True,
                            stderr=subprocess.STDOUT)  # fmt: skip
    try:
        _wait_port(port, proc)
        files = make_study(tmp_path / "a", n_slices=8, seed=7)
        assert send_with_storescu(storescu, files, port).returncode == 0
        study = pydicom.dcmread(files[0]).StudyInstanceUID

        def answered(uid: str) -> bool:
            return any(
                i.get("Manufacturer") == "scandx" and i["StudyInstanceUID"] == uid
                and i["Modality"] == "SR" for i in orthanc.instances()
            )  # fmt: skip

        assert wait_for(lambda: answered(study), 120)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    files = make_study(tmp_path / "b", n_slices=8, seed=8)
    seeded = send_with_storescu(storescu, files, orthanc.dicom_port, orthanc.aet, CLIENT_AET)
    assert seeded.returncode == 0
    pacs = [sys.executable, "-m", "scandx", "pacs", "--dicomweb", orthanc.dicomweb, "--run",
            str(seg_run), "--state", str(tmp_path / "web"), "--once"]  # fmt: skip
    done = subprocess.run(pacs, env=child_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert answered(pydicom.dcmread(files[0]).StudyInstanceUID)
    again = subprocess.run(pacs, env=child_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0
    srs = [
        i
        for i in orthanc.instances()
        if i.get("Manufacturer") == "scandx" and i["Modality"] == "SR"
    ]
    assert len(srs) == 2  # one per study: the second pass processed nothing again
