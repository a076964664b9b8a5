"""Segmentation report.html and model card: complete, self-contained, rendered by Chromium."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
from PIL import Image

from scandx.cli import main
from scandx.tasks.segmentation.report import case_panel, pick_gallery
from scandx.tasks.segmentation.synthetic import make_ellipse_folders
from tests.tasks.classification.evaluation.test_report_html import browser_check

SECTIONS = [
    "Metrics",
    "Chosen on validation",
    "Worst, median and best cases",
    "Cases, lowest Dice first",
    "Plan",
    "Model card",
]


def _decode(png: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(png))).convert("RGB"))


def test_report_and_model_card_after_evaluate(tmp_path: Path):
    data = make_ellipse_folders(tmp_path / "f", n=16, size=48)
    run = tmp_path / "run"
    assert main(["-q", "train", "--data", str(data), "--out", str(run), "--time-budget", "6"]) == 0
    card = (run / "model" / "model_card.md").read_text()
    assert "Not evaluated yet" in card
    assert not (run / "model" / "MODEL_CARD.md").exists()  # one file name for every task
    assert main(["-q", "evaluate", str(run), "--data", str(data), "--split", "val"]) == 0
    out = run / "eval" / "val"
    page = (out / "report.html").read_text()
    assert re.findall(r"<h2>(.*?)</h2>", page) == SECTIONS
    assert "<script" not in page
    assert not re.search(r"""(src|href)=['"]?(https?:|//|file:)""", page)
    m = json.loads((out / "metrics.json").read_text())
    assert page.count("data:image/png;base64,") == min(8, m["cases"])
    assert f"{m['dice']['value']:.3f}" in page
    card = (run / "model" / "model_card.md").read_text()
    assert f"val ({m['cases']} cases): dice {m['dice']['value']:.3f}" in card
    result = browser_check(out / "report.html", tmp_path / "profile")
    assert result["problems"] == []
    assert result["images"] and all(done and w > 0 for done, w in result["images"])


def test_volume_panel_shows_the_slice_with_the_most_reference_foreground():
    image = np.random.default_rng(0).normal(size=(1, 40, 40, 12)).astype(np.float32)
    truth = np.zeros((40, 40, 12), np.int64)
    truth[10:20, 10:20, 3] = 1  # a small square on slice 3 only
    truth[5:35, 5:35, 8] = 1  # a large one on slice 8
    pred = np.zeros_like(truth)
    pred[5:35, 5:35, 8] = 1
    pred[30:35, 30:40, 8] = 1  # some false positive there
    rgb = _decode(case_panel(image, truth, pred, affine=np.diag([1.0, 1.0, 3.0, 1.0])))
    green = (rgb[..., 1] > 150) & (rgb[..., 0] < 120)
    red = (rgb[..., 0] > 150) & (rgb[..., 1] < 120)
    assert green.mean() > 0.3 and red.any()  # slice 8 (30 x 30 square of 40 x 40), not 3


def test_gallery_picks_worst_median_and_best_without_repeats():
    scores = {f"c{i}": i / 10 for i in range(10)}
    picked = pick_gallery(scores)
    assert [c for g, c in picked if g == "worst"] == ["c0", "c1", "c2", "c3"]
    assert [c for g, c in picked if g == "median"] == ["c4", "c5"]
    assert [c for g, c in picked if g == "best"] == ["c9", "c8"]
    few = pick_gallery({"a": 0.5, "b": 0.7, "c": float("nan")})
    assert sorted(c for _, c in few) == ["a", "b"]  # each case once, NaN left out
