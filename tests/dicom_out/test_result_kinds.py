"""Multi-class and multi-label rows, without training: the SR encodes each task's
decision rule and stays valid."""

from __future__ import annotations

import copy

import numpy as np
import pydicom
import pytest

from scandx.dicom_out import ResultModel, results_as_dicom
from scandx.dicom_out.report_text import NOTICE, classification_text
from scandx.errors import ScandxError
from scandx.tasks.segmentation.synthetic import write_ct_series
from tests.dicom_out.conftest import assert_valid
from tests.dicom_out.sr_tree import one, values

CLASSES = ["normal", "nodule", "effusion"]


def _model(task: str) -> ResultModel:
    thresholds = {"normal": 0.5, "nodule": 0.3, "effusion": 0.6} if task == "multilabel" else {}
    return ResultModel(
        name="toy",
        version="2026-01-01T00:00:00+0000",
        weights_sha256="ab" * 32,
        scandx_version="0.1.0",
        task=task,
        classes=CLASSES,
        thresholds=thresholds,
        limitations=["Low input resolution (32 px)"],
    )


def _row(predicted: str) -> dict:
    probs = {"normal": 0.2, "nodule": 0.7, "effusion": 0.1}
    return {
        **{f"prob_{c}": p for c, p in probs.items()},
        "predicted": predicted,
        "uncertainty": 0.15,
    }


@pytest.fixture
def source(tmp_path) -> pydicom.Dataset:
    return write_ct_series(tmp_path / "ct", np.zeros((1, 8, 8), np.int16), "KIND")[0]


def test_multiclass_and_multilabel_rows(source, tmp_path):
    sr = results_as_dicom(_row("nodule"), [source], _model("multiclass"))[0]
    assert one(sr, "Finding", "CODE") == "nodule"
    assert values(sr, "Decision threshold") == [] and values(sr, "Out-of-distribution") == []
    assert "uncertain" in one(sr, "Impression", "TEXT")  # spread 0.15 > 0.1

    sr_ml = results_as_dicom(_row("nodule;effusion"), [source], _model("multilabel"))[0]
    assert one(sr_ml, "nodule", "CODE") == "Yes" and one(sr_ml, "normal", "CODE") == "No"
    assert "nodule 0.300" in one(sr_ml, "Finding", "TEXT")
    paths = []
    for i, ds in enumerate((sr, sr_ml)):
        paths.append(tmp_path / f"{i}.dcm")
        ds.save_as(paths[-1], enforce_file_format=True)
    assert_valid(paths)


def test_report_text_and_bad_sources(source):
    text = classification_text(_row("nodule"), _model("multiclass"))
    whole = text.as_text()
    assert whole.index("FINDINGS") < whole.index("IMPRESSION") < whole.index("LIMITATIONS")
    assert NOTICE in whole and "Low input resolution (32 px)." in whole
    other = copy.deepcopy(source)
    other.StudyInstanceUID = "1.2.3"
    with pytest.raises(ScandxError, match="one study"):
        results_as_dicom(_row("nodule"), [source, other], _model("multiclass"))
    with pytest.raises(ScandxError, match="no source"):
        results_as_dicom(_row("nodule"), [], _model("multiclass"))
