"""A classifier's result objects: SR (TID 1500) + heatmap SC, on a phantom DICOM and a
real CT, checked against the Predictor's own numbers, dciodvfy and highdicom."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

from scandx.core.predictor import load_predictor
from scandx.dicom_out import ResultModel, predict_study
from scandx.dicom_out.model_info import card_limitations
from scandx.errors import ScandxError
from tests.conftest import DICOM_TEST, needs_shared
from tests.dicom_out.conftest import assert_no_new_identifiers, assert_valid
from tests.dicom_out.sr_tree import items, one, values


def _by_modality(paths: list[Path]) -> dict[str, pydicom.Dataset]:
    out = {}
    for p in paths:
        ds = pydicom.dcmread(p)
        assert p.name == f"{ds.SOPInstanceUID}.dcm"  # files named by SOP Instance UID
        out[ds.Modality] = ds
    return out


def _phantom_dicom(phantoms: Path) -> Path:
    return sorted(phantoms.rglob("*.dcm"))[0]


def test_classifier_sr_and_sc_carry_the_predictors_result(quick_run, phantoms, tmp_path):
    from scandx.data.readers import read_image
    from scandx.dicom_out.overlay_sc import heatmap_overlay
    from scandx.tasks.classification.explain.explain import explain_display

    image = _phantom_dicom(phantoms)
    paths = predict_study(quick_run, [image], tmp_path / "out")
    assert len(paths) == 2
    objs = _by_modality(paths)
    sr, sc = objs["SR"], objs["OT"]
    source = pydicom.dcmread(image)
    predictor = load_predictor(quick_run)
    row = predictor.score([predictor.prepare(image)])[0]

    # findings: the Predictor's numbers (DS keeps 16 characters)
    for c in predictor.classes:
        value, unit = one(sr, f"Probability of {c}")
        assert value == pytest.approx(row[f"prob_{c}"], abs=1e-12) and unit == "{ratio}"
    assert one(sr, "Decision threshold")[0] == pytest.approx(row["threshold"], abs=1e-12)
    assert one(sr, "Finding", "CODE") == row["predicted"]
    assert one(sr, "Uncertainty (TTA spread)")[0] == pytest.approx(row["uncertainty"], abs=1e-12)
    assert one(sr, "Out-of-distribution score")[0] == pytest.approx(row["ood_score"], abs=1e-12)
    assert one(sr, "Out-of-distribution") == ("Yes" if row["ood_flag"] else "No")

    # the algorithm, as IHE AIR asks: TID 4019 + a device observer
    info = predictor.info
    assert one(sr, "Algorithm Name") == quick_run.name
    assert one(sr, "Algorithm Version") == info["created"]
    assert f"weights_sha256={info['sha256']}" in values(sr, "Algorithm Parameters")
    assert one(sr, "Device Observer Serial Number") == info["sha256"]
    assert one(sr, "Device Observer Name") == quick_run.name

    # the report text, from the same result, with the model card's limitations
    text = {n: v for n, k, v in items(sr) if k == "TEXT"}
    assert f"{row['prob_lesion']:.3f}" in text["Finding"]
    assert row["predicted"] in text["Impression"]
    assert "one image only" in text["What the model cannot see"]
    limits = card_limitations(quick_run)
    assert limits and all(line.rstrip(".") in text["Model limitations"] for line in limits)

    # references: same study, new series, the source image as evidence
    for ds in (sr, sc):
        assert_no_new_identifiers(ds, source)
    assert sr.SeriesInstanceUID != sc.SeriesInstanceUID
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0]
    assert evidence.StudyInstanceUID == source.StudyInstanceUID
    series = evidence.ReferencedSeriesSequence[0]
    assert series.SeriesInstanceUID == source.SeriesInstanceUID
    assert series.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    images = [v for _, k, v in items(sr) if k == "IMAGE"]  # the measurement group's image
    assert images == [source.SOPInstanceUID]
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID

    # the SC is the heatmap overlay, RGB
    display, _ = read_image(image)
    expected = heatmap_overlay(display, explain_display(predictor, display, "x")["heatmap"])
    assert sc.PhotometricInterpretation == "RGB" and sc.SamplesPerPixel == 3
    assert np.array_equal(sc.pixel_array, expected)

    # reads back in highdicom; dciodvfy finds no error
    back = hd.sr.srread(next(p for p in paths if p.stem == sr.SOPInstanceUID))
    assert isinstance(back.content, hd.sr.MeasurementReport)
    assert len(back.content.get_image_measurement_groups()) == 1
    assert_valid(paths)


@needs_shared
def test_a_real_ct_through_a_loaded_predictor(quick_run, tmp_path):
    """A loaded Predictor (as the DICOM node holds it) on CT_small.dcm, without the
    heatmap: an SR only, valid, with the CT's patient and study."""
    image = DICOM_TEST / "CT_small.dcm"
    predictor = load_predictor(quick_run)
    model = ResultModel.from_predictor(predictor, quick_run)
    paths = predict_study(predictor, [image], tmp_path / "out", model=model, heatmap=False)
    assert len(paths) == 1
    sr, source = pydicom.dcmread(paths[0]), pydicom.dcmread(image)
    assert sr.Modality == "SR" and sr.PatientID == source.PatientID
    assert_no_new_identifiers(sr, source)
    assert sr.VerificationFlag == "UNVERIFIED" and sr.CompletionFlag == "COMPLETE"
    assert_valid(paths)


def test_a_non_dicom_input_is_one_line_and_writes_nothing(quick_run, phantoms, tmp_path):
    png = sorted(phantoms.rglob("*.png"))[0]
    out = tmp_path / "out"
    with pytest.raises(ScandxError, match="not a DICOM file"):
        predict_study(quick_run, [png], out)
    assert not out.exists() or not any(out.iterdir())
