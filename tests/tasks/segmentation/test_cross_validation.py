"""Segmentation ``train --folds k``: patient folds, fold runs, the ensemble, resume."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from scandx.cli import main
from scandx.core.privacy import pseudonym
from scandx.errors import ScandxError
from scandx.tasks.segmentation.cross_validation import patient_folds
from scandx.tasks.segmentation.infer import normalize, predict_probabilities
from scandx.tasks.segmentation.predictor import load_seg_run
from scandx.tasks.segmentation.sources import load_seg_source
from scandx.tasks.segmentation.synthetic import make_ellipse_folders
from scandx.tasks.segmentation.volumes import read_case_arrays


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cv")
    make_ellipse_folders(root / "data" / "training", n=12, size=48, seed=1)
    make_ellipse_folders(root / "data" / "test", n=4, size=48, seed=2)
    # fixed epochs and steps, not a time budget: the ensemble's Dice asserted below must
    # not depend on this CPU's speed, its load or its bf16 support
    assert main(["-q", "plan", "--data", str(root / "data"), "--out", str(root / "p")]) == 0
    plan_path = root / "p" / "plan.json"
    plan = json.loads(plan_path.read_text())
    plan.update(epochs=6, steps_per_epoch=10, val_every=3)  # ensemble test Dice 0.96
    plan_path.write_text(json.dumps(plan))
    run = root / "run"
    args = ["-q", "train", "--data", str(root / "data"), "--out", str(run), "--folds", "3"]
    assert main([*args, "--plan", str(plan_path)]) == 0
    return root / "data", run


def test_folds_partition_the_training_patients_and_hold_out_test(cv_run):
    data, run = cv_run
    test_names = [p.stem for p in (data / "test" / "images").iterdir()]
    val_sets = []
    for i in range(3):
        with open(run / "folds" / f"fold{i}" / "manifest.csv", newline="") as f:
            cases = list(csv.DictReader(f))
        val_sets.append({c["case_id"] for c in cases if c["split"] == "val"})
        test_ids = {pseudonym(f"test/{n}", "case") for n in test_names}
        assert all(c["split"] == "test" for c in cases if c["case_id"] in test_ids)
    assert sum(len(v) for v in val_sets) == 12 and len(set().union(*val_sets)) == 12
    assert sorted(len(v) for v in val_sets) == [4, 4, 4]
    cv = json.loads((run / "cv_summary.json").read_text())
    assert cv["folds"] == 3 and len(cv["per_fold"]) == 3 and cv["out_of_fold"]["cases"] == 12
    d = [f["val_dice"] for f in cv["per_fold"]]
    assert cv["mean_sd"]["val_dice"]["mean"] == pytest.approx(np.mean(d))
    assert cv["mean_sd"]["val_dice"]["sd"] == pytest.approx(np.std(d, ddof=1))
    info = json.loads((run / "model" / "model.json").read_text())
    assert len(info["ensemble"]) == len(info["member_sha256"]) == 3
    assert "3-fold ensemble" in (run / "model" / "model_card.md").read_text()


def test_the_ensemble_is_the_mean_of_its_members_and_evaluates(cv_run):
    data, run = cv_run
    ensemble, plan, _ = load_seg_run(run)
    case = load_seg_source(data).in_split("test")[0]
    img = normalize(read_case_arrays(case).image, plan)
    got = predict_probabilities(ensemble, img, plan, tta=False)
    members = [load_seg_run(run / "folds" / f"fold{i}")[0] for i in range(3)]
    want = np.mean([predict_probabilities(m, img, plan, tta=False) for m in members], 0)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert main(["-q", "evaluate", str(run), "--data", str(data), "--bootstrap", "100"]) == 0
    m = json.loads((run / "eval" / "test" / "metrics.json").read_text())
    assert m["cases"] == 4 and m["dice"]["value"] > 0.9


def test_resume_skips_finished_folds_and_a_changed_member_is_refused(cv_run, capsys):
    data, run = cv_run
    stamp = (run / "folds" / "fold1" / "train_summary.json").stat().st_mtime_ns
    before = json.loads((run / "cv_summary.json").read_text())
    args = ["-q", "train", "--data", str(data), "--out", str(run), "--folds", "3", "--resume"]
    assert main(args) == 0
    after = json.loads((run / "cv_summary.json").read_text())
    assert (run / "folds" / "fold1" / "train_summary.json").stat().st_mtime_ns == stamp
    assert {k: v for k, v in after.items() if k != "seconds"} == {
        k: v for k, v in before.items() if k != "seconds"
    }
    weights = run / "folds" / "fold2" / "model" / "weights.safetensors"
    saved = weights.read_bytes()
    try:
        weights.write_bytes(saved[:-8] + b"\0" * 8)
        capsys.readouterr()
        assert main(["-q", "evaluate", str(run), "--data", str(data)]) == 2
        assert "do not match the checksum in model.json" in capsys.readouterr().err
    finally:
        weights.write_bytes(saved)


def test_patient_folds_rules(tmp_path):
    data = make_ellipse_folders(tmp_path / "f", n=5, size=32)
    manifest = load_seg_source(data)
    folds = patient_folds(manifest, 2, seed=0)
    assert sorted(np.bincount(list(folds.values())).tolist()) == [2, 3]
    assert folds == patient_folds(manifest, 2, seed=0)
    with pytest.raises(ScandxError, match="at least 2"):
        patient_folds(manifest, 1, seed=0)
    with pytest.raises(ScandxError, match="cannot make 6 folds"):
        patient_folds(manifest, 6, seed=0)
