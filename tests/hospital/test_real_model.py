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
