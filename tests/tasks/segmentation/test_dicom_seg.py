"""DICOM SEG as a label: the real SEG objects of ../shared (every transfer syntax) and
scandx's own SEG output."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from scandx.errors import ScandxError
from scandx.tasks.segmentation.dicom_seg import decode_frames, read_dicom_seg
from scandx.tasks.segmentation.dicom_series import read_series, slice_positions
from scandx.tasks.segmentation.sources import load_seg_source
from scandx.tasks.segmentation.synthetic import write_ct_series
from scandx.tasks.segmentation.volumes import read_case_arrays
from tests.conftest import DICOM_DATA, needs_shared

# every SEG object in pydicom-data: native, deflated frames, big endian, JPEG 2000 and
# RLE, each with byte-aligned (512 x 512) and non-byte-aligned (510 x 510) 1-bit frames
LIVER_SEGS = [
    "liver.dcm",
    "liver_deflate.dcm",
    "liver_expb.dcm",
    "liver_j2k.dcm",
    "liver_rle.dcm",
    "liver_nonbyte_aligned.dcm",
    "liver_nonbyte_aligned_deflate.dcm",
    "liver_nonbyte_aligned_j2k.dcm",
    "liver_nonbyte_aligned_rle.dcm",
]


def _reference(aligned: bool) -> np.ndarray:
    """Frames of the uncompressed file as pydicom decodes it (the independent reading)."""
    name = "liver.dcm" if aligned else "liver_nonbyte_aligned.dcm"
    return pydicom.dcmread(str(DICOM_DATA / name)).pixel_array


@needs_shared
@pytest.mark.parametrize("name", LIVER_SEGS)
def test_every_transfer_syntax_of_the_real_liver_seg_decodes_to_the_same_frames(name):
    frames = decode_frames(pydicom.dcmread(str(DICOM_DATA / name)))
    ref = _reference("nonbyte" not in name)
    assert frames.shape == ref.shape and ref.sum() == 107098
    assert np.array_equal(frames, ref)


def _series_for(seg_path: Path, folder: Path, rng: np.random.Generator) -> np.ndarray:
    """Write a CT series with the slices (UIDs, positions, spacing) the real SEG
    references (the series itself is not in ../shared); returns its positions."""
    ds = pydicom.dcmread(str(seg_path), stop_before_pixels=True)
    uids, positions = [], []
    for group in ds.PerFrameFunctionalGroupsSequence:
        src = group.DerivationImageSequence[0].SourceImageSequence[0]
        uids.append(str(src.ReferencedSOPInstanceUID))
        positions.append([float(v) for v in group.PlanePositionSequence[0].ImagePositionPatient])
    dy, dx = (
        float(v) for v in ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
    )
    hu = rng.normal(40, 20, (len(uids), int(ds.Rows), int(ds.Columns)))
    order = np.argsort(np.array(positions)[:, 2])[::-1]  # written in another order
    write_ct_series(
        folder, hu, "LIVER", np.array(positions)[order], (1.0, dy, dx), [uids[i] for i in order]
    )
    return np.array(positions)


@needs_shared
@pytest.mark.parametrize("variant", ["", "_rle", "_deflate"])
def test_the_real_liver_seg_labels_a_dicom_series_case(tmp_path, variant):
    case = tmp_path / "data" / "liver01"
    positions = _series_for(DICOM_DATA / "liver.dcm", case, np.random.default_rng(0))
    shutil.copy(DICOM_DATA / f"liver{variant}.dcm", case / "seg.dcm")
    manifest = load_seg_source(tmp_path / "data")
    assert manifest.layout == "dicom-seg" and manifest.labels == {0: "background", 1: "Liver"}
    loaded = read_case_arrays(manifest.cases[0], manifest.labels)
    ref = _reference(True)  # frames listed from the highest slice down
    by_z = np.argsort(positions[:, 2])
    assert loaded.label.shape == loaded.image.shape[1:] == ref.shape
    assert np.array_equal(loaded.label, ref[by_z])
    assert np.allclose(loaded.spacing, (1.0, 0.810547, 0.810547), atol=1e-5)


@needs_shared
def test_seg_frames_without_source_references_are_placed_by_position(tmp_path):
    case = tmp_path / "liver01"
    positions = _series_for(DICOM_DATA / "liver.dcm", case, np.random.default_rng(1))
    ds = pydicom.dcmread(str(DICOM_DATA / "liver.dcm"))
    for group in ds.PerFrameFunctionalGroupsSequence:
        del group.DerivationImageSequence
    ds.save_as(tmp_path / "nosrc.dcm")
    _, _, affine, uids = read_series(case)
    labels, _ = read_dicom_seg(tmp_path / "nosrc.dcm", uids, slice_positions(affine, len(uids)))
    assert np.array_equal(labels, _reference(True)[np.argsort(positions[:, 2])])
    with pytest.raises(ScandxError, match="no slice of this series"):
        read_dicom_seg(tmp_path / "nosrc.dcm", uids, slice_positions(affine, len(uids)) + 5)
    with pytest.raises(ScandxError, match="not in this series"):  # references other images
        read_dicom_seg(DICOM_DATA / "liver.dcm", ["1.2.3"] * 3)


def test_a_truncated_seg_is_one_clear_error(tmp_path):
    from scandx.errors import BadImageError
    from scandx.tasks.segmentation.synthetic import make_dicom_seg_cases

    data = make_dicom_seg_cases(tmp_path / "dicom", n=1, seed=2)
    seg = data / "case00" / "seg.dcm"
    seg.write_bytes(seg.read_bytes()[:-500])
    _, _, _, uids = read_series(data / "case00")
    with pytest.raises(BadImageError, match="unreadable DICOM SEG"):
        read_dicom_seg(seg, uids)


def test_dicom_seg_written_by_scandx_reads_back_to_the_same_labels(tmp_path):
    from scandx.tasks.segmentation.dicom_seg import write_dicom_seg
    from scandx.tasks.segmentation.synthetic import make_dicom_seg_cases

    data = make_dicom_seg_cases(tmp_path / "dicom", n=1, seed=5)
    case = data / "case00"
    _, _, _, uids = read_series(case)
    truth, _ = read_dicom_seg(case / "seg.dcm", uids)
    pred = truth.copy()
    pred[0, :3, :3] = 2  # a second label, to check segment numbering
    out = write_dicom_seg(case, pred, {0: "bg", 1: "lesion", 2: "other"}, tmp_path / "p.dcm")
    back, names = read_dicom_seg(out, uids)
    assert names == {1: "lesion", 2: "other"}
    assert np.array_equal(back, pred)
    assert write_dicom_seg(case, np.zeros_like(pred), {0: "bg", 1: "x"}, tmp_path / "e.dcm") is None
