"""Multi-label and multi-class runs end to end (train, evaluate, predict), known answers."""

from __future__ import annotations

import csv
import json

import numpy as np
from PIL import Image

from scandx.core.predictor import predict_run
from scandx.tasks.classification import workflow


def _short_plan(data, tmp_path, epochs):
    plan = workflow.plan_run(data, time_budget_s=10, model="simple-cnn")
    # every schedule setting fixed: the planner derives warm-up from the epochs this CPU
    # fits in the budget, and the AUCs asserted below must not depend on this CPU
    plan.epochs, plan.early_stopping_patience, plan.warmup_epochs = epochs, 100, 1
    path = tmp_path / "plan.json"
    plan.save(path)
    return path


def test_multilabel_npz(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 300), ("val", 80), ("test", 80)):
        y = rng.integers(0, 2, (n, 3)).astype(np.uint8)
        x = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for k, (r, c) in enumerate([(2, 2), (2, 16), (16, 9)]):  # label k: a square in place k
            x[y[:, k] == 1, r : r + 8, c : c + 8] += 150
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = x, y
    np.savez(tmp_path / "toymnist.npz", **arrays)
    data, run = tmp_path / "toymnist.npz", tmp_path / "run"
    summary = workflow.train_run(data, run, plan_path=_short_plan(data, tmp_path, 8))
    assert set(summary["thresholds"]) >= {"class_0", "class_1", "class_2"}
    m = workflow.evaluate_run(run, data, n_boot=100)
    assert m["task"] == "multilabel" and m["auc"]["value"] > 0.95
    assert set(m["per_class"]) == {"class_0", "class_1", "class_2"}
    assert set(m["confusion_matrices"]) == {"class_0", "class_1", "class_2"}
    with open(run / "eval" / "test" / "predictions.csv") as f:
        header = next(csv.reader(f))
    assert {"label_class_0", "prob_class_2", "predicted"} <= set(header)


def test_multiclass_folder(tmp_path):
    rng = np.random.default_rng(1)
    for cls, v in (("a", 40), ("b", 120), ("c", 200)):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i in range(40):
            img = np.clip(rng.normal(v, 25, (24, 24)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(tmp_path / "data" / cls / f"{i}.png")
    data, run = tmp_path / "data", tmp_path / "run"
    workflow.train_run(data, run, plan_path=_short_plan(data, tmp_path, 15))
    m = workflow.evaluate_run(run, data, n_boot=100)
    assert m["task"] == "multiclass" and m["auc"]["value"] > 0.9
    cm = np.array(m["confusion_matrix"]["matrix"])
    assert cm.shape == (3, 3) and cm.sum() == m["cases"]
    assert json.loads((run / "model" / "model.json").read_text())["thresholds"]["rule"] == "argmax"
    row = predict_run(run, [data / "c" / "0.png"])[0]
    assert row["predicted"] == "c" and abs(sum(row[f"prob_{k}"] for k in "abc") - 1) < 1e-5
