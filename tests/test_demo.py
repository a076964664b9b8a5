"""``scandx demo`` (what ``make demo`` runs): synthetic DICOM + PNG through every step."""

from __future__ import annotations

import json

import numpy as np

from scandx.data.readers import read_image
from scandx.tasks.classification import workflow
from scandx.tasks.classification.data.synthetic import phantom, write_dicom, write_png
from scandx.tasks.classification.demo import run_demo


def test_phantom_files_read_back_to_the_values_written(tmp_path):
    img, _ = phantom(np.random.default_rng(0), 48, lesion=True)
    for variant in (0, 1, 2):  # MONOCHROME2, MONOCHROME1, rescale slope/intercept + window
        write_dicom(tmp_path / f"v{variant}.dcm", img, "P1", variant, "F")
        back, meta = read_image(tmp_path / f"v{variant}.dcm")
        np.testing.assert_allclose(back[0], img, atol=0.5 / 4095 + 1e-6)
    write_png(tmp_path / "p.png", img)
    np.testing.assert_allclose(read_image(tmp_path / "p.png")[0][0], img, atol=0.5 / 255 + 1e-6)


def test_demo_runs_end_to_end(tmp_path, monkeypatch):
    # the demo plans for its time budget: the network this CPU affords in it and the epochs
    # depend on the CPU's speed, its load and its bf16 support, so pin them (the AUC
    # asserted below must not depend on the CPU); everything else is the demo's own plan
    plan_for_budget = workflow.make_plan

    def pinned_plan(manifest, fp, **kwargs):
        plan = plan_for_budget(manifest, fp, **{**kwargs, "model": "simple-cnn"})
        plan.epochs, plan.early_stopping_patience, plan.warmup_epochs = 10, 100, 1
        return plan

    monkeypatch.setattr(workflow, "make_plan", pinned_plan)
    metrics, table = run_demo(tmp_path / "demo", time_budget_s=30, seed=0, n_patients=200)
    run = tmp_path / "demo" / "run"
    plan = json.loads((run / "plan.json").read_text())
    assert (plan["model"], plan["epochs"]) == ("simple-cnn", 10)  # the pinned plan was used
    assert len((run / "log.jsonl").read_text().splitlines()) == 10
    for f in (
        "plan.json",
        "manifest.csv",
        "log.jsonl",
        "model/model.json",
        "model/weights.safetensors",
        "checkpoints/last.ckpt",
        "checkpoints/best.ckpt",
        "eval/test/metrics.json",
        "eval/test/predictions.csv",
        "eval/test/report.html",
        "model/model_card.md",
    ):
        assert (run / f).exists(), f
    assert metrics["auc"]["value"] > 0.7  # lesions are visible: far better than chance (0.83)
    assert "auc" in table and "operating threshold" in table and "report.html" in table
    card = (run / "model" / "model_card.md").read_text()
    assert "by manufacturer:" in card  # DICOM subgroups reported by default
    saved = json.loads((run / "eval" / "test" / "metrics.json").read_text())
    assert saved["auc"] == metrics["auc"]


def test_segmentation_demo_runs_end_to_end(tmp_path, capsys):
    """``scandx demo --task segmentation``: ellipses -> train -> evaluate -> predict."""
    from scandx.cli import main

    out = tmp_path / "seg-demo"
    assert (
        main(["-q", "demo", "--task", "segmentation", "--out", str(out), "--time-budget", "4"]) == 0
    )
    printed = capsys.readouterr().out
    assert "validation Dice" in printed
    for path in ("run/plan.json", "run/model/model_card.md", "run/eval/val/report.html"):
        assert (out / path).exists(), path
    assert len((out / "masks" / "predictions.csv").read_text().splitlines()) == 3
    assert main(["-q", "demo", "--task", "segmentation", "--out", str(tmp_path)]) == 2  # not a demo
