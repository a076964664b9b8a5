"""OOD score and uncertainty: hand-worked distances, and real out-of-domain images end to end."""

from __future__ import annotations

import csv
import json

import numpy as np
import torch

from scandx.core.privacy import locate
from scandx.tasks.classification import workflow
from scandx.tasks.classification.evaluation.metrics import roc_auc
from scandx.tasks.classification.inference import Predictor
from scandx.tasks.classification.inference.ood import mahalanobis
from tests.conftest import DICOM_DATA, DICOM_TEST, needs_shared


def test_mahalanobis_with_identity_precision_is_distance_to_nearest_mean():
    tensors = {"means": torch.tensor([[0.0, 0.0], [10.0, 0.0]]), "precision": torch.eye(2)}
    f = np.array([[3.0, 4.0], [10.0, 1.0], [5.0, 0.0]])
    np.testing.assert_allclose(mahalanobis(f, tensors), [5.0, 1.0, 5.0])


def test_mahalanobis_uses_the_covariance():
    # variance 100 along x, 1 along y: a step of 10 in x weighs like a step of 1 in y
    tensors = {"means": torch.zeros(1, 2), "precision": torch.diag(torch.tensor([0.01, 1.0]))}
    np.testing.assert_allclose(
        mahalanobis(np.array([[10.0, 0.0], [0.0, 1.0]]), tensors), [1.0, 1.0]
    )


@needs_shared
def test_other_modalities_score_as_out_of_distribution(phantoms, tmp_path):
    # a fixed plan (model, epochs), not a time budget: which network the planner affords,
    # and for how many epochs, depends on this CPU; the assertions below must not
    plan = workflow.plan_run(phantoms, model="simple-cnn", seed=0)
    plan.epochs, plan.early_stopping_patience, plan.warmup_epochs = 30, 100, 1
    plan.save(tmp_path / "plan.json")
    run = tmp_path / "run"
    workflow.train_run(phantoms, run, plan_path=tmp_path / "plan.json")  # OOD AUC 0.99-1
    info = json.loads((run / "model" / "model.json").read_text())
    assert info["ood"]["threshold"] > 0 and (run / "model" / "ood.safetensors").exists()
    m = workflow.evaluate_run(run, phantoms, n_boot=50)
    assert 0 <= m["ood"]["flagged_fraction"] <= 1
    with open(run / "eval" / "test" / "predictions.csv") as f:
        inside = list(locate([r["file"] for r in csv.DictReader(f)], phantoms).values())
    outside = [
        DICOM_TEST / "CT_small.dcm",
        DICOM_TEST / "MR_small.dcm",
        DICOM_DATA / "693_UNCR.dcm",
        DICOM_DATA / "MR2_UNCR.dcm",
        DICOM_TEST / "JPGExtended.dcm",
    ]
    p = Predictor.from_run(run)
    rows_in = p.predict_files(inside)
    rows_out = p.predict_files(outside)
    assert all({"ood_score", "ood_flag", "uncertainty"} <= set(r) for r in rows_in + rows_out)
    s_in = np.array([r["ood_score"] for r in rows_in])
    s_out = np.array([r["ood_score"] for r in rows_out])
    labels = np.r_[np.zeros(len(s_in)), np.ones(len(s_out))]
    assert roc_auc(labels, np.r_[s_in, s_out]) > 0.9  # CT/MR slices are not chest phantoms
    assert all(0 <= r["uncertainty"] <= 0.5 for r in rows_in)
