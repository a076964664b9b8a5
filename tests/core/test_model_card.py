"""The model-card skeleton: one file name and the same common headings for every task."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from scandx.core.model_card import (
    CARD_NAME,
    HEADINGS,
    CardSections,
    card_path,
    read_run_files,
    render_model_card,
    write_model_card,
)
from scandx.tasks.classification.evaluation.model_card import (
    write_model_card as write_classification_card,
)
from scandx.tasks.segmentation.report import seg_model_card, write_seg_model_card

METRIC = {"value": 0.8, "ci95": [0.7, 0.9]}


def _write_run(run: Path, info: dict, plan: dict) -> Path:
    (run / "model").mkdir(parents=True)
    (run / "model" / "model.json").write_text(json.dumps(info))
    (run / "plan.json").write_text(json.dumps(plan))
    return run


def _evaluate(run: Path, split: str, metrics: dict) -> None:
    (run / "eval" / split).mkdir(parents=True)
    (run / "eval" / split / "metrics.json").write_text(json.dumps(metrics))


def _common(info: dict) -> dict:
    return {
        "weights": "weights.safetensors",
        "sha256": "ab" * 32,
        "scandx_version": "9.9.9",
        "created": "2025-01-02T03:04:05+0000",
        "in_channels": 1,
        "best_epoch": 3,
        **info,
    }


@pytest.fixture
def classification_run(tmp_path: Path) -> Path:
    info = _common(
        {
            "task": "binary",
            "classes": ["normal", "lesion"],
            "positive_class": "lesion",
            "model": "resnet18",
            "model_kwargs": {},
            "spatial_dims": 2,
            "input": {
                "size": [64, 64],
                "resize": "pad",
                "intensity": "minmax",
                "mean": 0.5,
                "std": 0.2,
            },
            "calibration": {"method": "temperature"},
            "thresholds": {"rule": "youden", "chosen_on": "val", "positive": 0.42},
            "ood": {"method": "mahalanobis", "threshold": 3.0},
            "training_data": {
                "source": "/data/phantoms",
                "cases": 40,
                "patients": 20,
                "per_split": {"train": {"normal": 10, "lesion": 10}},
            },
        }
    )
    plan = {"epochs": 5, "loss": "ce", "lr": 1e-3, "batch_size": 8, "precision": "32", "seed": 7}
    return _write_run(tmp_path / "cls-run", info, plan)


@pytest.fixture
def segmentation_run(tmp_path: Path) -> Path:
    info = _common(
        {
            "task": "segmentation",
            "labels": {"1": "tumour"},
            "model": "unet",
            "spatial_dims": 2,
            "threshold": {"value": 0.4},
            "val_dice": 0.75,
            "training_data": {"layout": "folders", "cases": 16, "per_split": {"train": 12}},
        }
    )
    plan = {
        "patch_size": [48, 48],
        "normalization": "zscore",
        "epochs": 4,
        "steps_per_epoch": 10,
        "lr": 1e-3,
        "batch_size": 2,
        "precision": "32",
        "seed": 3,
    }
    return _write_run(tmp_path / "seg-run", info, plan)


def _headings(card: str) -> list[str]:
    return re.findall(r"^## (.*)$", card, flags=re.M)


def _common_headings(card: str) -> list[str]:
    return [h for h in _headings(card) if h in HEADINGS]


def test_both_tasks_write_model_card_md_with_the_same_headings(
    classification_run: Path, segmentation_run: Path
):
    cls_path = write_classification_card(classification_run)
    seg_path = write_seg_model_card(segmentation_run)
    assert cls_path == card_path(classification_run) == classification_run / "model" / CARD_NAME
    assert seg_path == card_path(segmentation_run) == segmentation_run / "model" / "model_card.md"
    assert not (segmentation_run / "model" / "MODEL_CARD.md").exists()
    cls_card, seg_card = cls_path.read_text(), seg_path.read_text()
    assert _common_headings(cls_card) == _common_headings(seg_card) == list(HEADINGS)
    assert cls_card.startswith("# Model card: cls-run\n")
    assert seg_card.startswith("# Model card: seg-run\n")
    for card in (cls_card, seg_card):
        assert "Not evaluated yet" in card
        assert f"sha256 {'ab' * 32}" in card and "- Version: scandx 9.9.9" in card
        assert "- Created: 2025-01-02T03:04:05+0000" in card
        assert "--plan RUN/plan.json" in card and "Research use only" in card
    assert "- Task: binary classification of normal, lesion (positive class: lesion)" in cls_card
    assert "seed 7)" in cls_card and "seed 3)" in seg_card
    assert "- Task: segmentation of 1 tumour" in seg_card
    # the task's own headings stay where the skeleton puts them
    assert _headings(cls_card).index("Calibration") > _headings(cls_card).index("Evaluation")
    assert _headings(cls_card)[-1] == "Reporting checklist (TRIPOD+AI, CLAIM)"
    listing = sorted(p.name for p in (classification_run / "model").iterdir())
    assert listing == sorted([CARD_NAME, "model.json"])  # no temporary file left behind


def test_evaluation_fills_the_cards(classification_run: Path, segmentation_run: Path):
    metrics = {"cases": 12, "patients": 6, "auc": METRIC, "accuracy": METRIC}
    _evaluate(classification_run, "test", metrics)
    _evaluate(classification_run, ".partial", metrics)  # an evaluation being written
    cls_card = write_classification_card(classification_run).read_text()
    assert "Not evaluated yet" not in cls_card
    assert "| test | 12 | 6 | 0.800 (0.700-0.900) |" in cls_card
    assert ".partial" not in cls_card
    assert _common_headings(cls_card) == list(HEADINGS)

    seg_metrics = {"split": "val", "cases": 4, "dice": METRIC}
    text = seg_model_card(segmentation_run, {"val": seg_metrics})  # not yet on disk
    assert "- val (4 cases): dice 0.800 (0.700-0.900)" in text
    assert "Few evaluation cases (val)" in text
    assert not card_path(segmentation_run).exists()  # seg_model_card only renders
    _evaluate(segmentation_run, "val", seg_metrics)
    assert write_seg_model_card(segmentation_run).read_text() == text
    assert _common_headings(text) == list(HEADINGS)


def test_skeleton_slots_task_sections_in_order(tmp_path: Path):
    info = _common(
        {
            "ensemble": ["../folds/fold0/model", "../folds/fold1/model"],
            "member_sha256": ["1" * 64, "2" * 64],
            "cross_validation": {"folds": 2},
        }
    )
    sections = CardSections(
        task="toy",
        network="net",
        details=["- Detail: yes"],
        intended_use=["- Use: toys"],
        training_data=["- Data: toys"],
        evaluation=["- test: fine"],
        limitations=["- Limit: toys only"],
        before_evaluation=[("Cross-validation", ["- folds: 2"])],
        after_evaluation=[("Calibration", ["- none"])],
        appendix=[("Checklist", ["- all"])],
    )
    card = render_model_card("r", info, {"seed": 1}, {"test": {}}, sections, skipped=3)
    assert _headings(card) == [
        "Model details",
        "Intended use",
        "Training data",
        "Cross-validation",
        "Evaluation",
        "Calibration",
        "Limitations",
        "How to reproduce",
        "Checklist",
    ]
    assert "- Files skipped as unusable: 3 (listed in skipped.csv)" in card
    assert "ensemble of 2 members" in card and "member sha256 111111111111, 222222222222" in card
    assert "--plan RUN/plan.json --folds 2" in card
    assert "- test: fine" in card and card.endswith("- all\n")
    unevaluated = render_model_card("r", info, {"seed": 1}, {}, sections)
    assert "- test: fine" not in unevaluated and "Not evaluated yet" in unevaluated


def test_write_model_card_counts_skipped_files_and_replaces_the_card(segmentation_run: Path):
    (segmentation_run / "skipped.csv").write_text("path,reason\na.nii,bad\nb.nii,bad\n")
    card_path(segmentation_run).write_text("old card")

    def build(info: dict, plan: dict, evals: dict) -> CardSections:
        return CardSections(task="toy", network="net")

    path = write_model_card(segmentation_run, build)
    text = path.read_text()
    assert "Files skipped as unusable: 2" in text and "old card" not in text
    assert sorted(p.name for p in path.parent.iterdir()) == sorted(["model.json", CARD_NAME])


def test_read_run_files_leaves_out_hidden_evaluations(classification_run: Path):
    _evaluate(classification_run, "test", {"cases": 1})
    _evaluate(classification_run, ".tmp-val", {"cases": 2})
    info, plan, evals = read_run_files(classification_run)
    assert info["task"] == "binary" and plan["seed"] == 7
    assert list(evals) == ["test"]
