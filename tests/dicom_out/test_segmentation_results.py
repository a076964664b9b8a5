"""A 3D segmenter's result objects on a synthetic CT series: SEG (frames = the mask),
SR (volumes = voxel count x voxel size, referencing the SEG's segments) and the mask
overlay as an SC, checked with dciodvfy, pydicom and highdicom."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
import pytest

from scandx.core.predictor import load_predictor
from scandx.dicom_out import ResultModel, predict_study, results_as_dicom
from scandx.dicom_out.overlay_sc import mask_overlay
from scandx.errors import ScandxError
from scandx.tasks.segmentation.dicom_seg import read_dicom_seg
from scandx.tasks.segmentation.dicom_series import read_series, series_files
from tests.dicom_out.conftest import assert_no_new_identifiers, assert_valid
from tests.dicom_out.sr_tree import items, one, values


def _predicted(run, case):
    predictor = load_predictor(run)
    return predictor, predictor.score([predictor.prepare(case)])[0]


def test_segmentation_seg_sr_and_sc(seg_series_run, tmp_path):
    run, data = seg_series_run
    case = data / "case00"
    paths = predict_study(run, case, tmp_path / "out")
    objs = {pydicom.dcmread(p).Modality: pydicom.dcmread(p) for p in paths}
    assert sorted(objs) == ["OT", "SEG", "SR"] and len(paths) == 3
    seg, sr, sc = objs["SEG"], objs["SR"], objs["OT"]
    predictor, output = _predicted(run, case)
    mask, loaded = output["mask"], output["loaded"]
    assert mask.any(), "the 5 s model segments the synthetic ellipsoid"

    # SEG frames equal the mask (read back on the series' slices, and by highdicom)
    _, _, _, uids = read_series(case)
    back, names = read_dicom_seg(next(p for p in paths if p.stem == seg.SOPInstanceUID), uids)
    assert names == {1: "lesion"} and np.array_equal(back, mask)
    hseg = hd.seg.segread(next(p for p in paths if p.stem == seg.SOPInstanceUID))
    assert hseg.number_of_segments == 1
    algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmName == run.name
    assert algorithm.AlgorithmVersion == predictor.info["created"]
    assert f"weights_sha256={predictor.info['sha256']}" in algorithm.AlgorithmParameters

    # SR: the volume of each region is voxels x voxel size, on the SEG's segment
    voxels = int((mask == 1).sum())
    volume, unit = one(sr, "Volume")
    assert unit == "ml"
    assert volume == pytest.approx(voxels * float(np.prod(loaded.spacing)) / 1000, rel=1e-9)
    assert one(sr, "Finding", "CODE") == "lesion"
    segment_refs = [
        item
        for item in _all(sr)
        if item.get("ValueType") == "IMAGE"
        and item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == seg.SOPInstanceUID
    ]
    assert segment_refs[0].ReferencedSOPSequence[0].ReferencedSegmentNumber == 1
    assert one(sr, "Algorithm Name") == run.name
    assert f"weights_sha256={predictor.info['sha256']}" in values(sr, "Algorithm Parameters")
    text = {n: v for n, k, v in items(sr) if k == "TEXT"}
    assert f"{volume:.3f} ml" in text["Finding"] and "lesion" in text["Impression"]
    assert text["Model limitations"] and "one series only" in text["What the model cannot see"]
    assert isinstance(
        hd.sr.srread(next(p for p in paths if p.stem == sr.SOPInstanceUID)), hd.sr.Comprehensive3DSR
    )

    # every object: the source study, a new series, the source's identifiers only
    source = pydicom.dcmread(series_files(case)[0][0])
    for ds in (seg, sr, sc):
        assert_no_new_identifiers(ds, source)
    assert len({seg.SeriesInstanceUID, sr.SeriesInstanceUID, sc.SeriesInstanceUID}) == 3
    evidence = {
        s.SeriesInstanceUID: len(s.ReferencedSOPSequence)
        for study in sr.CurrentRequestedProcedureEvidenceSequence
        for s in study.ReferencedSeriesSequence
    }
    assert evidence == {source.SeriesInstanceUID: len(uids), seg.SeriesInstanceUID: 1}
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID

    # SC: the mask over the image
    expected, shown = mask_overlay(loaded.image, mask)
    assert np.array_equal(sc.pixel_array, expected)
    assert [s.ReferencedSOPInstanceUID for s in sc.SourceImageSequence] == [uids[z] for z in shown]
    assert_valid(paths)


def _all(ds):
    for item in ds.get("ContentSequence", []):
        yield item
        yield from _all(item)


def test_files_of_a_series_and_an_empty_mask(seg_series_run, tmp_path):
    """The series given as its files (the node's case), and a mask with nothing in it: no
    SEG (a SEG must hold a segment), the SR says volume 0 on the source images."""
    run, data = seg_series_run
    files, _ = series_files(data / "case01")
    paths = predict_study(run, files, tmp_path / "files")
    assert {pydicom.dcmread(p).Modality for p in paths} >= {"SR", "OT"}
    assert_valid(paths)

    predictor, output = _predicted(run, data / "case01")
    empty = {**output, "mask": np.zeros_like(output["mask"])}
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    model = ResultModel.from_predictor(predictor, run)
    objs = results_as_dicom(empty, sources, model)
    assert [ds.Modality for ds in objs] == ["SR", "OT"]
    sr = objs[0]
    assert one(sr, "Volume") == (0.0, "ml")
    assert sorted(v for _, k, v in items(sr) if k == "IMAGE") == sorted(
        s.SOPInstanceUID for s in sources
    )
    assert "Nothing was segmented" in one(sr, "Impression", "TEXT")
    with pytest.raises(ScandxError, match="slice"):
        results_as_dicom(output, sources[:-1], model)
