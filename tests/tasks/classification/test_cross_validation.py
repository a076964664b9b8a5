"""`scandx train --folds k`: patient-level folds, mean +- sd, and the ensemble behind RUN/model."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from scandx.cli import main
from scandx.errors import ScandxError
from scandx.tasks.classification.data.manifest import Case
from scandx.tasks.classification.data.splits import assign_folds


def _cases(n_patients: int) -> list[Case]:
    rng = np.random.default_rng(0)
    out = []
    for p in range(n_patients):
        label = int(rng.random() < 0.3)
        for i in range(1 + p % 3):
            out.append(Case(f"p{p}_{i}", f"p{p}", f"p{p}_{i}.png", label))
    return out


def test_folds_are_patient_level_balanced_stratified_and_seeded():
    cases = _cases(53)
    folds = assign_folds(cases, "binary", 5, seed=3)
    assert set(folds) == {c.patient_id for c in cases}
    sizes = Counter(folds.values())
    assert max(sizes.values()) - min(sizes.values()) <= 1
    label_of = {c.patient_id: c.target for c in cases}
    positives = Counter(folds[p] for p, y in label_of.items() if y == 1)
    assert max(positives.values()) - min(positives.values()) <= 1
    assert assign_folds(cases, "binary", 5, seed=3) == folds
    assert assign_folds(cases, "binary", 5, seed=4) != folds
    with pytest.raises(ScandxError, match="at least 2"):
        assign_folds(cases, "binary", 1, seed=0)
    with pytest.raises(ScandxError, match="cannot make 60 folds"):
        assign_folds(cases, "binary", 60, seed=0)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def cv_run(phantoms: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("cv") / "run"
    args = ["train", "--data", str(phantoms), "--out", str(run), "--folds", "3"]
    assert main(["-q", *args, "--time-budget", "9", "--model", "simple-cnn"]) == 0
    return run


def test_cross_validation_run_layout_and_summary(cv_run: Path):
    top = {r["case_id"]: r for r in _read_csv(cv_run / "manifest.csv")}
    test_patients = {r["patient_id"] for r in top.values() if r["split"] == "test"}
    val_patients: list[set[str]] = []
    for i in range(3):
        rows = _read_csv(cv_run / "folds" / f"fold{i}" / "manifest.csv")
        by_split = {s: {r["patient_id"] for r in rows if r["split"] == s} for s in ("train", "val")}
        assert not by_split["train"] & by_split["val"]
        assert not (by_split["train"] | by_split["val"]) & test_patients
        assert {r["fold"] for r in rows if r["split"] == "val"} == {str(i)}
        val_patients.append(by_split["val"])
    pool = {r["patient_id"] for r in top.values() if r["split"] in ("train", "val")}
    assert set().union(*val_patients) == pool
    assert sum(len(v) for v in val_patients) == len(pool)  # each patient validated once

    cv = json.loads((cv_run / "cv_summary.json").read_text())
    aucs = [f["auc"] for f in cv["per_fold"]]
    assert cv["mean_sd"]["auc"]["mean"] == pytest.approx(np.mean(aucs), abs=1e-6)
    assert cv["mean_sd"]["auc"]["sd"] == pytest.approx(np.std(aucs, ddof=1), abs=1e-6)
    info = json.loads((cv_run / "model" / "model.json").read_text())
    assert info["ensemble"] == [f"../folds/fold{i}/model" for i in range(3)]
    assert "Cross-validation" in (cv_run / "model" / "model_card.md").read_text()


def test_ensemble_predicts_the_mean_of_its_members(cv_run: Path, phantoms: Path, tmp_path):
    files = sorted(str(p) for p in phantoms.rglob("img0.*"))[:6]
    assert main(["-q", "predict", str(cv_run), *files, "--out", str(tmp_path / "e")]) == 0
    ens = np.array([float(r["prob_lesion"]) for r in _read_csv(tmp_path / "e" / "predictions.csv")])
    members = []
    for i in range(3):
        out = tmp_path / f"m{i}"
        assert (
            main(["-q", "predict", str(cv_run / "folds" / f"fold{i}"), *files, "--out", str(out)])
            == 0
        )
        members.append([float(r["prob_lesion"]) for r in _read_csv(out / "predictions.csv")])
    np.testing.assert_allclose(ens, np.mean(members, axis=0), atol=1e-6)
    flags = [r["ood_flag"] for r in _read_csv(tmp_path / "e" / "predictions.csv")]
    assert set(flags) <= {"True", "False"}


def test_ensemble_evaluate_report_and_explain(cv_run: Path, phantoms: Path, tmp_path):
    assert main(["-q", "evaluate", str(cv_run), "--data", str(phantoms), "--bootstrap", "100"]) == 0
    m = json.loads((cv_run / "eval" / "test" / "metrics.json").read_text())
    assert m["threshold"]["chosen_on"].startswith("out-of-fold")
    assert (cv_run / "eval" / "test" / "report.html").exists()
    lesion = next(phantoms.glob("lesion/*/img0.*"))
    assert main(["-q", "explain", str(cv_run), str(lesion), "--out", str(tmp_path / "x")]) == 0
    assert len(list((tmp_path / "x").glob("*.png"))) == 1


def test_resume_of_a_finished_cross_validation_gives_the_same_summary(cv_run, phantoms):
    before = json.loads((cv_run / "cv_summary.json").read_text())
    args = ["train", "--data", str(phantoms), "--out", str(cv_run), "--folds", "3", "--resume"]
    assert main(["-q", *args]) == 0
    assert json.loads((cv_run / "cv_summary.json").read_text()) == before


def test_bad_fold_count_is_one_line_and_writes_nothing(phantoms, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["-q", "train", "--data", str(phantoms), "--out", str(out), "--folds", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--folds must be at least 2" in err[0]
    assert not out.exists()
