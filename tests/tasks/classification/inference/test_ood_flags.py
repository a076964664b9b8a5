"""The out-of-distribution flag against both kinds of error (issue 11): new
in-distribution images are flagged at about the stated false-flag rate, and clearly
foreign inputs (CT, MR, a fundus photograph, constant and noise images) are flagged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from scandx.tasks.classification.data.synthetic import make_phantom_dataset
from scandx.tasks.classification.inference import Predictor
from scandx.tasks.classification.inference.ood import (
    CONFIDENCE,
    FALSE_FLAG_RATE,
    _held_out_distances,
    flag_threshold,
)
from tests.conftest import DICOM_DATA, DICOM_TEST, SHARED, needs_shared

SLACK = 0.04  # a few dozen held-out images: the observed rate varies around the target


def _images(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix in (".png", ".dcm"))


def test_threshold_from_a_small_validation_split_is_not_just_its_maximum():
    rng = np.random.default_rng(0)
    val = rng.lognormal(1.0, 0.3, 12)
    t = flag_threshold(val, 0.005)
    assert t > val.max()
    new = rng.lognormal(1.0, 0.3, 20_000)  # fresh in-distribution scores
    assert np.mean(new > t) < 0.03


def test_threshold_is_a_tolerance_bound_whatever_the_sample_size():
    # over many draws of n in-distribution scores, the threshold lets through more than
    # `rate` of new ones in at most about 1 - CONFIDENCE of the draws, for small n too
    from scipy.stats import norm

    rng = np.random.default_rng(1)
    rate = FALSE_FLAG_RATE / 2
    for n in (8, 12, 30, 200, 600):
        thresholds = [flag_threshold(rng.lognormal(1.0, 0.3, n), rate) for _ in range(400)]
        exceed = 1 - norm.cdf((np.log(thresholds) - 1.0) / 0.3)  # true rate above each
        assert np.mean(exceed > rate) < (1 - CONFIDENCE) + 0.05, n
        assert np.median(exceed) < rate, n


def test_threshold_on_many_scores_is_not_below_their_order_statistic_bound():
    rng = np.random.default_rng(2)
    heavy = np.exp(rng.standard_t(2, 2000) * 0.2 + 1.0)  # a tail heavier than log-normal
    t = flag_threshold(heavy, 0.005)
    assert t >= np.sort(heavy)[-6]  # n = 2000: the 6th largest bounds the 99.5% quantile
    assert np.mean(heavy > t) <= 0.005


def test_cross_fitted_distances_hold_out_whole_patients():
    rng = np.random.default_rng(3)
    rows = rng.normal(size=(40, 30))
    rows = np.r_[rows, rows]  # every patient imaged twice, identically
    labels = np.zeros(80, int)
    by_image = _held_out_distances(rows, labels, np.arange(80).astype(str), 0)
    by_patient = _held_out_distances(rows, labels, np.r_[np.arange(40), np.arange(40)], 0)
    # an image whose twin is in the fit looks closer than a new patient's image would
    assert np.median(by_patient) > 1.1 * np.median(by_image)


def test_new_in_distribution_images_are_rarely_flagged(quick_run, tmp_path):
    info = json.loads((quick_run / "model" / "model.json").read_text())
    assert info["ood"]["threshold"] == 1.0
    assert info["ood"]["target_false_flag_rate"] == FALSE_FLAG_RATE
    # the input-statistics threshold rests on every training and validation image
    n_images = sum(1 for r in (quick_run / "manifest.csv").read_text().splitlines()[1:])
    assert info["ood"]["input_images"] > info["ood"]["val_images"]
    assert info["ood"]["input_images"] <= n_images
    # phantoms from another seed: the same distribution, images the model never saw
    held_out = _images(make_phantom_dataset(tmp_path / "more", n_patients=30, size=32, seed=7))
    rows = Predictor.from_run(quick_run).predict_files(held_out)
    flagged = np.mean([r["ood_flag"] for r in rows])
    assert flagged <= FALSE_FLAG_RATE + SLACK, flagged


def _synthetic(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    arrays = {
        "white": np.full((64, 64), 255, np.uint8),
        "black": np.zeros((64, 64), np.uint8),
        "grey": np.full((64, 64), 128, np.uint8),
        "noise": rng.integers(0, 256, (64, 64), dtype=np.uint8),
    }
    out = {}
    for name, a in arrays.items():
        out[name] = tmp_path / f"{name}.png"
        Image.fromarray(a).save(out[name])
    return out


@needs_shared
def test_foreign_inputs_are_flagged(quick_run, tmp_path):
    fundus = tmp_path / "fundus_green.png"  # the green channel, as fundus work uses it
    rgb = np.asarray(Image.open(SHARED / "drive" / "test" / "images" / "01_test.tif"))
    Image.fromarray(rgb[..., 1]).save(fundus)
    foreign = {
        "CT": DICOM_TEST / "CT_small.dcm",
        "MR": DICOM_TEST / "MR_small.dcm",
        "CT 2": DICOM_DATA / "693_UNCR.dcm",
        "MR 2": DICOM_DATA / "MR2_UNCR.dcm",
        "fundus": fundus,
        **_synthetic(tmp_path),
    }
    p = Predictor.from_run(quick_run)
    rows = p.predict_files(list(foreign.values()))
    missed = [name for name, r in zip(foreign, rows, strict=True) if not r["ood_flag"]]
    assert not missed, missed
    # a colour fundus photograph is not scored at all by a greyscale model
    colour = SHARED / "drive" / "test" / "images" / "02_test.tif"
    row = p.predict_files([colour], skip_bad=True)[0]
    assert "colour" in row["error"]
