"""Fixtures for the result objects: a 3D segmentation run on a synthetic CT series, and
helpers that validate DICOM with dicom3tools' ``dciodvfy`` and read it back.

``dciodvfy`` (Debian ``dicom3tools``) is needed for the validation checks: without it
they skip, saying why; with ``SCANDX_REQUIRE_DICOM_TOOLS=1`` (``make test``) they fail."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pydicom
import pytest

from tests.system_tools import require_tool


@pytest.fixture(scope="session")
def seg_series_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(run, data): a 3D segmenter trained for 5 s on four synthetic CT series, each
    ``data/caseNN/`` holding its slices and a SEG label; read them, don't write them."""
    from scandx.cli import main
    from scandx.tasks.segmentation.synthetic import make_dicom_seg_cases

    root = tmp_path_factory.mktemp("dcmout-seg")
    data = make_dicom_seg_cases(root / "data", n=4, seed=3)
    run = root / "run"
    assert main(["-q", "train", "--data", str(data), "--out", str(run), "--time-budget", "5"]) == 0
    return run, data


def dciodvfy(path: Path) -> tuple[list[str], list[str]]:
    """(errors, warnings) dciodvfy reports for a file."""
    tool = require_tool("dciodvfy", kind="dicom-tools", what="dciodvfy (Debian dicom3tools)")
    done = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=60)
    lines = (done.stdout + done.stderr).splitlines()
    errors = [line for line in lines if line.startswith("Error")]
    warnings = [line for line in lines if line.startswith("Warning")]
    return errors, warnings


def assert_valid(paths: list[Path]) -> None:
    """Every file passes dciodvfy without errors (warnings allowed) and reads back."""
    for path in paths:
        errors, _ = dciodvfy(path)
        assert not errors, f"{path.name} ({pydicom.dcmread(path).Modality}): {errors}"


# patient and study attributes a result must copy from its source, never invent
IDENTIFYING = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "OtherPatientIDs",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "InstitutionName",
    "StudyDescription",
)


def assert_no_new_identifiers(result: pydicom.Dataset, source: pydicom.Dataset) -> None:
    for keyword in IDENTIFYING:
        value = str(result.get(keyword, "") or "")
        if value:
            assert value == str(source.get(keyword, "")), keyword
    assert result.StudyInstanceUID == source.StudyInstanceUID
    assert result.SeriesInstanceUID != source.SeriesInstanceUID
