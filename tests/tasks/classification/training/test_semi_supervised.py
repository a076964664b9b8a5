"""Issue 15: pseudo-labels with validation-chosen thresholds, through the engine,
resumable; --semi-supervised off uses no unlabelled image."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from scandx.tasks.classification.plan import Plan
from scandx.tasks.classification.training.semi_supervised import (
    choose_thresholds,
    most_confident,
    pseudo_label,
)
from scandx.tasks.classification.workflow import plan_run, train_run


def test_thresholds_are_the_lowest_confidence_with_the_precision():
    # class 1 predictions by confidence: right x5, wrong, right x4
    conf = np.array([0.99, 0.98, 0.97, 0.96, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7])
    y = np.array([1, 1, 1, 1, 1, 0, 1, 1, 1, 1])
    probs = np.stack([1 - conf, conf], 1)
    t = choose_thresholds(probs, y, precision=0.9)
    assert t[0] is None  # no class-0 prediction: no pseudo-label of class 0
    assert t[1] == pytest.approx(0.7)  # 9 of 10 right at 0.7
    assert choose_thresholds(probs, y, precision=0.95)[1] == pytest.approx(0.95)
    keep, labels = pseudo_label(np.array([[0.1, 0.9], [0.3, 0.7], [0.6, 0.4]]), [0.5, 0.8])
    assert keep.tolist() == [0, 2] and labels.tolist() == [1, 0]


def test_most_confident_keeps_class_shares():
    probs = np.array([[0.1, 0.9], [0.2, 0.8], [0.05, 0.95], [0.9, 0.1], [0.7, 0.3]])
    index, labels = np.arange(5), probs.argmax(1)
    kept, lab = most_confident(probs, index, labels, 3)
    assert kept.tolist() == [0, 2, 3] and lab.tolist() == [1, 1, 0]


@pytest.fixture(scope="module")
def easy_csv(tmp_path_factory):
    """Dark vs bright 16 px images: 4 labelled training images, 60 unlabelled ones,
    validation and test of 12 per class (each image its own patient)."""
    root = tmp_path_factory.mktemp("easy")
    rng = np.random.default_rng(0)
    rows = []
    plan = [("train", 2), ("val", 12), ("test", 12), ("", 30)]
    n = 0
    for split, per_class in plan:
        for k, name in enumerate(("dark", "bright")):
            for _ in range(per_class):
                level = 70 + 110 * k
                img = np.clip(rng.normal(level, 40, (16, 16)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(root / f"{n}.png")
                label = name if split else ""
                rows.append(f"{n}.png,{label},{split or 'train'}")
                n += 1
    (root / "m.csv").write_text("path,label,split\n" + "\n".join(rows) + "\n")
    return root / "m.csv"


@pytest.fixture(scope="module")
def easy_plan(easy_csv, tmp_path_factory):
    plan = plan_run(easy_csv, time_budget_s=20, model="simple-cnn", seed=2)
    assert plan.semi_supervised == "pseudo-label"
    assert any("semi-supervised training on: 60 unlabelled" in n for n in plan.notes)
    plan.epochs, plan.early_stopping_patience, plan.batch_size = 6, 100, 4
    plan.lr, plan.warmup_epochs = 3e-3, 0
    path = tmp_path_factory.mktemp("plan") / "plan.json"
    plan.save(path)
    return path


def _notes(run):
    return json.loads((run / "plan.json").read_text())["notes"]


def test_pseudo_labels_are_added_and_recorded(easy_csv, easy_plan, tmp_path):
    run = tmp_path / "run"
    summary = train_run(easy_csv, run, plan_path=easy_plan)
    semi = summary["semi_supervised"]
    assert semi["method"] == "pseudo-label" and semi["unlabelled"] == 60
    assert semi["used"] > 0 and sum(semi["per_class"].values()) == semi["used"]
    assert any(f"{semi['used']} of 60 unlabelled training images" in n for n in _notes(run))
    plan = Plan.load(run / "plan.json")
    assert plan.semi_supervised == "pseudo-label" and plan.labelled_fraction is None
    assert (run / "semi_supervised" / "pseudo_labels.json").exists()
    assert semi["val_auc_semi"] >= 0.9  # the easy task is learnt


def test_off_uses_no_unlabelled_image(easy_csv, easy_plan, tmp_path):
    run = tmp_path / "off"
    summary = train_run(easy_csv, run, plan_path=easy_plan, semi_supervised="off")
    assert "semi_supervised" not in summary and not (run / "semi_supervised").exists()
    assert Plan.load(run / "plan.json").semi_supervised == "off"
    assert any("60 unlabelled training images not used: --semi-supervised off" in n
               for n in _notes(run))  # fmt: skip


def test_resume_in_the_second_fit_equals_uninterrupted(easy_csv, easy_plan, tmp_path):
    full = tmp_path / "full"
    train_run(easy_csv, full, plan_path=easy_plan)
    if not (full / "semi_supervised" / "log.jsonl").exists():
        pytest.skip("no second fit on this machine's numbers")
    calls = []

    def stop_in_second_fit(epoch, record):
        calls.append(epoch)
        if calls.count(2) == 2:  # epoch 2 of the second fit
            raise KeyboardInterrupt

    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        train_run(easy_csv, cut, plan_path=easy_plan, hooks=[stop_in_second_fit])
    assert (cut / "semi_supervised" / "pseudo_labels.json").exists()
    train_run(easy_csv, cut, resume=True)
    a = (full / "semi_supervised" / "log.jsonl").read_text().splitlines()
    b = (cut / "semi_supervised" / "log.jsonl").read_text().splitlines()
    assert [json.loads(r)["train_loss"] for r in a] == [json.loads(r)["train_loss"] for r in b]
    wa = load_file(str(full / "model" / "weights.safetensors"))
    wb = load_file(str(cut / "model" / "weights.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_labelled_fraction_is_kept_by_resume_and_plan(easy_csv, easy_plan, tmp_path):
    run = tmp_path / "frac"
    train_run(easy_csv, run, plan_path=easy_plan, labelled_fraction=0.5, semi_supervised="off")
    plan = Plan.load(run / "plan.json")
    assert plan.labelled_fraction == 0.5
    assert any("labels kept for 2 of 4 training patients" in n for n in plan.notes)
    again = tmp_path / "again"  # --plan of that run: the same fraction, same cases
    train_run(easy_csv, again, plan_path=run / "plan.json", semi_supervised="off")
    assert (again / "manifest.csv").read_text() == (run / "manifest.csv").read_text()
