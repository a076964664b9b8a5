"""load_series against dcm2niix on every DICOM series in ../shared/data/dicom and on the
3D (and 4D) series scandx writes: same shape, affine within 1e-3, same voxels."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import SHARED, needs_shared
from tests.data.series.builders import axial_positions, write_slices
from tests.data.series.dcm2niix_check import dcm2niix, table
from tests.system_tools import unavailable

# the differences that are explained (the file, and why); any other mismatch fails
EXPLAINED = {
    "mlut_18.dcm": "scandx applies the Modality LUT Sequence; dcm2niix keeps the stored values",
    "J2K_pixelrep_mismatch.dcm": "one oblique slice with Gantry/Detector Tilt -22: dcm2niix "
    "shears its affine by the tilt tag, scandx places it by Image Orientation as given",
}


@pytest.fixture(scope="module")
def tool():
    return dcm2niix() or unavailable(
        "dcm2niix (Debian package dcm2niix) is not installed", "dicom-tools"
    )


def test_scandx_series_match_dcm2niix(tool, tmp_path):
    from scandx.tasks.segmentation.synthetic import make_dicom_seg_cases

    make_dicom_seg_cases(tmp_path / "seg", n=2)
    slices, positions, extra = [], [], []
    for t in range(3):
        for z in range(4):
            slices.append(np.full((6, 5), 100 * t + z, np.int16))
            positions.append(axial_positions(4)[z])
            extra.append({"TemporalPositionIdentifier": t + 1, "AcquisitionNumber": t + 1})
    write_slices(tmp_path / "4d", slices, positions, extra=extra)
    rows = table([tmp_path / "seg", tmp_path / "4d"])
    assert len(rows) == 3
    assert [r.outcome for r in rows] == ["match"] * 3, rows
    assert "3x4x6x5" in {r.scandx for r in rows}


@needs_shared
def test_every_shared_series_matches_dcm2niix_or_the_difference_is_explained(tool):
    rows = table([SHARED / "dicom"])
    unexplained = [
        r
        for r in rows
        if r.outcome.startswith("mismatch") and r.name.split("/")[-1] not in EXPLAINED
    ]
    assert not unexplained, unexplained
    matched = [r for r in rows if r.outcome.startswith("match")]
    assert len(matched) >= 18  # measured: 12 placed series and 6 without position


def test_a_siemens_mosaic_matches_dcm2niix(tool, tmp_path):
    import gzip
    from pathlib import Path

    import nibabel

    source = Path(nibabel.__file__).parent / "nicom" / "tests" / "data" / "siemens_dwi_1000.dcm.gz"
    if not source.is_file():
        pytest.skip(f"nibabel's mosaic test file {source} is not installed")
    (tmp_path / "m.ima").write_bytes(gzip.decompress(source.read_bytes()))
    (row,) = table([tmp_path])
    assert (row.scandx, row.outcome) == ("48x128x128", "match")
