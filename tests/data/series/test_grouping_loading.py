"""group_studies and load_series on synthetic series (4D, gaps, duplicates, tilt,
non-uniform spacing, mixed sizes/orientations) and on real files."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from scandx.data.series import group_studies, load_series
from scandx.errors import ScandxError
from tests.conftest import DICOM_DATA, DICOM_TEST, needs_shared
from tests.data.series.builders import SAGITTAL, axial_positions, write_slices


def _only_series(folder):
    studies = group_studies(folder)
    assert len(studies) == 1 and len(studies[0].series) == 1
    return studies[0].series[0]


def _values(n, shape=(6, 5), base=0):
    return [np.full(shape, base + 10 * k, np.int16) for k in range(n)]


def test_series_and_non_image_objects_are_grouped_apart(tmp_path):
    write_slices(tmp_path / "a", _values(3), axial_positions(3), study_uid="1.2.3", description="A")
    write_slices(tmp_path / "b", _values(2), axial_positions(2), study_uid="1.2.3", description="B")
    shutil.copy(
        DICOM_TEST / "test-SR.dcm", tmp_path / "report.dcm"
    ) if DICOM_TEST.is_dir() else None
    shutil.copy(next((tmp_path / "a").iterdir()), tmp_path / "copy_of_a_slice.dcm")
    (tmp_path / "README.txt").write_text("not DICOM")
    skipped = []
    studies = group_studies(tmp_path, skipped)
    mine = next(s for s in studies if s.uid == "1.2.3")
    assert sorted(s.description for s in mine.series) == ["A", "B"]
    a = next(s for s in mine.series if s.description == "A")
    assert len(a.instances) == 3  # the copied slice (same SOP Instance UID) is kept once
    assert any(p.name == "README.txt" for p, _ in skipped)
    if DICOM_TEST.is_dir():
        assert any(o.modality == "SR" for st in studies for o in st.others)


@pytest.mark.parametrize("key", ["TemporalPositionIdentifier", "TriggerTime", "AcquisitionNumber"])
def test_a_4d_series_becomes_a_time_axis_not_interleaved_slices(tmp_path, key):
    slices, positions, extra = [], [], []
    order = [(t, z) for z in range(4) for t in range(3)]  # files interleave time points
    for t, z in order:
        slices.append(np.full((6, 5), 100 * t + z, np.int16))
        positions.append(axial_positions(4)[z])
        extra.append({key: t + 1 if key != "TriggerTime" else 40.0 * t})
    write_slices(tmp_path, slices, positions, extra=extra)
    series = _only_series(tmp_path)
    assert series.time_key == key and len(series.phases) == 3 and series.n_slices == 4
    volume = load_series(series)
    assert volume.array.shape == (3, 4, 6, 5) and volume.is_4d and volume.time_key == key
    expected = 100 * np.arange(3)[:, None] + np.arange(4)[None, :]
    assert np.array_equal(volume.array[:, :, 0, 0], expected)
    assert len(volume.slice_uids) == 3 and len(set(sum(volume.slice_uids, []))) == 12


def test_slices_are_ordered_along_the_normal_and_the_affine_places_them(tmp_path):
    positions = [(5.0 + 3.0 * k, -40.0, 60.0) for k in range(5)]  # sagittal: x grows
    order = [3, 0, 4, 1, 2]
    write_slices(tmp_path, [_values(5)[k] for k in order], [positions[k] for k in order], SAGITTAL)
    volume = load_series(_only_series(tmp_path))
    # the normal (row x column) of this orientation points to -x: slices run from x = 17 to 5
    assert volume.array[:, 0, 0].tolist() == [10 * k for k in reversed(range(5))]
    positions = positions[::-1]
    assert volume.spacing == pytest.approx((3.0, 0.8, 0.7))
    for z in range(5):
        ras = volume.affine @ np.array([z, 0, 0, 1.0])
        assert ras[:3] == pytest.approx([-positions[z][0], -positions[z][1], positions[z][2]])
    # one row down moves along the column direction (0, 0, -1) in LPS = (0, 0, -1) in RAS
    assert volume.affine[:3, 1] == pytest.approx([0, 0, -0.8])


def _refusal(folder) -> str:
    series = _only_series(folder)
    with pytest.raises(ScandxError) as e:
        load_series(series)
    text = str(e.value)
    assert series.ref in text and series.uid not in text  # named by pseudonym only
    return text


def test_missing_slices_are_refused_naming_the_gap(tmp_path):
    positions = [p for k, p in enumerate(axial_positions(6)) if k != 3]
    write_slices(tmp_path, _values(5), positions)
    assert "missing slices: a gap of 4.00 mm between slices 3 and 4 of 5" in _refusal(tmp_path)


def test_duplicate_positions_without_a_time_attribute_are_refused(tmp_path):
    write_slices(tmp_path, _values(4), axial_positions(3) + axial_positions(3)[1:2])
    assert "duplicate slice positions" in _refusal(tmp_path)


def test_mixed_sizes_and_orientations_are_refused(tmp_path):
    slices = _values(2) + [np.zeros((7, 5), np.int16)]
    write_slices(tmp_path / "sizes", slices, axial_positions(3))
    assert "different sizes" in _refusal(tmp_path / "sizes")
    write_slices(
        tmp_path / "orient", _values(3), axial_positions(3), [SAGITTAL] + [(1, 0, 0, 0, 1, 0)] * 2
    )
    assert "different orientations" in _refusal(tmp_path / "orient")


def test_gantry_tilt_is_resampled_onto_an_orthogonal_grid(tmp_path):
    # a tilted stack: slice k's origin moves 1 row spacing (0.8 mm) along y per slice, and
    # a bright column fixed in the patient therefore sits one row higher in each slice
    n, shape = 5, (12, 6)
    slices, positions = [], []
    for k in range(n):
        img = np.zeros(shape, np.int16)
        img[8 - k, 2] = 500
        slices.append(img)
        positions.append((0.0, 0.8 * k, 2.0 * k))
    write_slices(tmp_path, slices, positions)
    volume = load_series(_only_series(tmp_path))
    assert any("gantry tilt" in note for note in volume.notes)
    column = volume.array[:, :, 2]
    assert (np.argmax(column, axis=1) == 8).all()  # the column is straight on the new grid
    assert volume.array[:, 8, 2] == pytest.approx([500] * n)
    assert np.allclose(volume.affine[:3, 0], [0, 0, 2.0])  # the slice axis is the normal


def test_non_uniform_spacing_is_resampled_to_the_median(tmp_path):
    z = [0.0, 2.0, 4.0, 7.0, 9.0, 11.0]  # one 3 mm step among 2 mm steps (< 1.5x)
    slices = [np.full((4, 4), int(10 * v), np.int16) for v in z]
    write_slices(tmp_path, slices, [(0.0, 0.0, v) for v in z])
    volume = load_series(_only_series(tmp_path))
    assert volume.spacing[0] == pytest.approx(2.0) and volume.array.shape[0] == 6
    assert volume.array[:, 0, 0] == pytest.approx([10 * v for v in (0, 2, 4, 6, 8, 10)])
    assert any("non-uniform" in note for note in volume.notes)


@needs_shared
def test_real_series_load_or_are_refused_with_the_reason():
    folder = DICOM_TEST / "dicomdirtests" / "98892001" / "CT5N"
    volume = load_series(_only_series(folder))
    assert volume.array.shape == (5, 16, 16) and volume.has_geometry
    refused = _refusal(DICOM_TEST / "dicomdirtests" / "77654033" / "CT2")
    assert "missing slices" in refused  # 4 slices: one at -99.5 mm, three from 103 mm


@needs_shared
def test_an_enhanced_multiframe_ct_is_placed_by_its_per_frame_groups(tmp_path):
    shutil.copy(DICOM_DATA / "eCT_Supplemental.dcm", tmp_path / "e.dcm")
    import pydicom

    ds = pydicom.dcmread(tmp_path / "e.dcm")
    volume = load_series(_only_series(tmp_path))
    assert volume.array.shape == (2, 512, 512) and volume.frame_numbers[0] in ([1, 2], [2, 1])
    frame = volume.frame_numbers[0][0] - 1
    group = ds.PerFrameFunctionalGroupsSequence[frame]
    ipp = [float(v) for v in group.PlanePositionSequence[0].ImagePositionPatient]
    assert volume.affine[:3, 3] == pytest.approx([-ipp[0], -ipp[1], ipp[2]])
    expected = ds.pixel_array[frame].astype(np.float32) - 1024.0  # shared rescale
    assert np.array_equal(volume.array[0], expected)


@needs_shared
def test_a_multiframe_without_geometry_is_a_stack_without_placement(tmp_path):
    shutil.copy(DICOM_DATA / "emri_small.dcm", tmp_path / "m.dcm")
    volume = load_series(_only_series(tmp_path))
    assert volume.array.shape == (10, 64, 64) and not volume.has_geometry


def test_a_siemens_mosaic_is_unpacked_into_slices(tmp_path):
    import gzip
    from pathlib import Path

    import nibabel
    import pydicom
    from nibabel.nicom.dicomwrappers import wrapper_from_data

    source = Path(nibabel.__file__).parent / "nicom" / "tests" / "data" / "siemens_dwi_1000.dcm.gz"
    if not source.is_file():
        pytest.skip(f"nibabel's mosaic test file {source} is not installed")
    (tmp_path / "mosaic.ima").write_bytes(gzip.decompress(source.read_bytes()))
    series = _only_series(tmp_path)
    wrapper = wrapper_from_data(pydicom.dcmread(tmp_path / "mosaic.ima"))
    rows, cols, n = wrapper.image_shape
    assert series.n_slices == n
    volume = load_series(series)
    assert volume.array.shape == (n, rows, cols)
    data = wrapper.get_data()  # (rows, columns, slices) in the mosaic's slice order
    normal = np.cross(*np.asarray(wrapper.image_orient_patient).T[::-1])
    first = 0 if float(normal @ wrapper.slice_normal) > 0 else n - 1
    assert np.allclose(volume.array[0], data[:, :, first])
