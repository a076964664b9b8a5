"""Segmentation predict reads an input exactly as evaluate reads the same case: with the
field-of-view mask the model was trained with (``--fov``), the same normalisation, and
nothing predicted outside the FOV (issue 11: Dice 0.30 vs 0.63 on DRIVE image 01, 35,704
vessel pixels outside the FOV)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from scandx.cli import main
from scandx.core.privacy import file_ref
from scandx.errors import ScandxError
from scandx.tasks.segmentation.infer import normalize
from scandx.tasks.segmentation.plan import SegPlan
from scandx.tasks.segmentation.predictor import SegPredictor
from scandx.tasks.segmentation.sources import load_seg_source
from scandx.tasks.segmentation.volumes import read_case_arrays
from tests.conftest import SHARED, needs_shared

pytestmark = needs_shared

DRIVE = SHARED / "drive"
IMAGE = DRIVE / "test" / "images" / "01_test.tif"
FOV = DRIVE / "test" / "mask" / "01_test_mask.gif"


def _predictor(use_fov: bool = True) -> SegPredictor:
    """A SegPredictor around an untrained 3 -> 2 channel convolution (what matters here is
    the path an image takes, not the weights)."""
    torch.manual_seed(0)
    p = SegPredictor.__new__(SegPredictor)
    p.plan = SegPlan(
        labels={"0": "background", "1": "vessel"},
        in_channels=3,
        patch_size=[256, 256],
        batch_size=4,
        use_fov=use_fov,
        tta_flips=False,
    )
    p.info = {"postprocessing": {}, "threshold": None}
    p.task, p.device, p.labels = "segmentation", "cpu", {0: "background", 1: "vessel"}
    p.model = torch.nn.Conv2d(3, 2, 3, padding=1).eval()
    return p


def _evaluate_case():
    manifest = load_seg_source(DRIVE)
    case = next(c for c in manifest.cases if c.images[0].endswith("01_test.tif"))
    return read_case_arrays(case, manifest.labels)


def test_predict_preprocesses_drive_01_exactly_as_evaluate():
    predictor = _predictor()
    evaluated = _evaluate_case()
    predictor.set_fov_masks([str(IMAGE)], [str(FOV)])
    _, predicted = predictor.prepare(str(IMAGE))
    np.testing.assert_array_equal(predicted.fov, evaluated.fov)
    np.testing.assert_array_equal(predicted.image, evaluated.image)
    plan = predictor.plan
    np.testing.assert_array_equal(
        normalize(predicted.image, plan, predicted.fov),
        normalize(evaluated.image, plan, evaluated.fov),
    )
    probs = predictor.probabilities(predicted)
    np.testing.assert_array_equal(probs, predictor.probabilities(evaluated))
    mask = predictor.decide(probs)
    assert mask[predicted.fov].any() and not mask[~predicted.fov].any()


def test_a_model_trained_with_fov_masks_needs_one_per_input():
    predictor = _predictor()
    with pytest.raises(ScandxError, match="--fov MASK"):
        predictor.prepare(str(IMAGE))
    with pytest.raises(ScandxError, match=r"1 input\(s\), 0 mask\(s\)"):
        predictor.set_fov_masks([str(IMAGE)], None)
    with pytest.raises(ScandxError, match="trained without field-of-view masks"):
        _predictor(use_fov=False).set_fov_masks([str(IMAGE)], [str(FOV)])


def test_predict_cli_takes_the_fov_and_masks_outside_it(tmp_path, monkeypatch, capsys):
    import scandx.core.predictor as core_predictor

    run = tmp_path / "run"
    run.mkdir()
    predictor = _predictor()
    predictor.plan.save(run / "plan.json")
    monkeypatch.setattr(core_predictor, "load_predictor", lambda run, device=None: predictor)
    out = tmp_path / "pred"
    assert main(["-q", "predict", str(run), str(IMAGE), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--fov" in err[0] and not out.exists()
    args = ["-q", "predict", str(run), str(IMAGE), "--fov", str(FOV), "--out", str(out)]
    assert main(args) == 0
    mask = np.asarray(Image.open(out / f"{file_ref(IMAGE)}.png")) > 0
    fov = np.asarray(Image.open(FOV).convert("L")) > 0
    assert mask[fov].any() and not mask[~fov].any()
    with open(out / "predictions.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert row["fov"] == str(FOV)


def test_a_model_trained_without_fov_masks_needs_none():
    predictor = _predictor(use_fov=False)
    predictor.set_fov_masks([str(IMAGE)], None)
    _, loaded = predictor.prepare(str(IMAGE))
    assert loaded.fov is None
