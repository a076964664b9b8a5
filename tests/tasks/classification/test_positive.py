"""The positive class of a binary task (positive.py): chosen by name, overridable with
--positive-class, recorded in the plan, and what metrics, predictions.csv and predict use."""

from __future__ import annotations

import collections
import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import recall_score

from scandx.cli import main
from scandx.core.predictor import predict_run
from scandx.core.task import Options
from scandx.errors import ScandxError
from scandx.tasks.classification import cross_validation as cv
from scandx.tasks.classification import workflow
from scandx.tasks.classification.data.sources import load_source
from scandx.tasks.classification.plan import Plan
from scandx.tasks.classification.positive import choose_positive, is_negative_name

COVID, NOFINDING = "COVID-19", "No finding"


def _folder(root: Path, classes: dict[str, int], n: int = 24, size: int = 16) -> Path:
    """One PNG per patient and class; the classes differ in brightness (easy to learn)."""
    rng = np.random.default_rng(0)
    for name, level in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            img = np.clip(rng.normal(level, 20, (size, size)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def covid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _folder(tmp_path_factory.mktemp("covid") / "data", {COVID: 190, NOFINDING: 70})


def _short(plan: Plan, path: Path, epochs: int = 4) -> Path:
    plan.epochs, plan.early_stopping_patience, plan.warmup_epochs = epochs, 100, 0
    plan.save(path)
    return path


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize(
    ("classes", "positive", "fallback"),
    [
        ([COVID, NOFINDING], COVID, False),
        (["normal", "lesion"], "lesion", False),
        (["malignant", "normal_or_benign"], "malignant", False),  # BreastMNIST's names
        (["Pneumonia", "NO_FINDING"], "Pneumonia", False),
        (["no-effusion", "effusion"], "effusion", False),
        (["1", "0"], "1", False),
        (["Healthy Control", "Parkinson"], "Parkinson", False),
        (["cat", "dog"], "dog", True),  # neither: the second class, with a note
        (["normal", "benign"], "benign", True),  # both
    ],
)
def test_rule_names_the_positive_class(classes, positive, fallback):
    got, note = choose_positive("binary", classes)
    assert got == positive and note.startswith(f"positive class {positive}: ")
    assert ("--positive-class" in note) == fallback
    assert not is_negative_name("nodule") and is_negative_name("No Finding")


def test_override_and_refusals():
    assert choose_positive("binary", [COVID, NOFINDING], "No finding")[0] == NOFINDING
    assert choose_positive("binary", [COVID, NOFINDING], "no_finding")[0] == NOFINDING
    with pytest.raises(ScandxError, match=r"'nope' is not one of the classes: 'COVID-19', 'No f"):
        choose_positive("binary", [COVID, NOFINDING], "nope")
    with pytest.raises(ScandxError, match="applies to binary classification; this is a multic"):
        choose_positive("multiclass", ["a", "b", "c"], "a")
    assert choose_positive("multiclass", ["a", "b", "c"]) == (None, None)


def test_covid_vs_no_finding_end_to_end(covid, tmp_path):
    """COVID-19 is positive although it sorts first: the plan puts it second (the model's
    output 1); sensitivity is recall of COVID-19 (scikit-learn with pos_label agrees)."""
    assert load_source(covid).classes == [COVID, NOFINDING]  # the source's own order
    plan = workflow.plan_run(covid, time_budget_s=5, model="simple-cnn")
    assert plan.positive_class == COVID and plan.classes == [NOFINDING, COVID]
    assert any(n.startswith("positive class COVID-19: No finding is named") for n in plan.notes)
    run = tmp_path / "run"
    workflow.train_run(covid, run, plan_path=_short(plan, tmp_path / "plan.json"))
    info = json.loads((run / "model" / "model.json").read_text())
    assert info["positive_class"] == COVID and info["classes"] == [NOFINDING, COVID]
    assert json.loads((run / "plan.json").read_text())["positive_class"] == COVID
    stored = collections.Counter(r["label"] for r in _rows(run / "manifest.csv"))
    assert stored == collections.Counter(load_source(covid).class_counts())  # by name

    m = workflow.evaluate_run(run, covid, n_boot=50, gallery=0)
    assert m["positive_class"] == COVID and m["negative_class"] == NOFINDING
    assert m["auc"]["value"] > 0.9  # labels not swapped on the way
    rows = _rows(run / "eval" / "test" / "predictions.csv")
    truth = [r["label"] for r in rows]
    decided = [r["decision"] for r in rows]
    assert m["sensitivity"]["value"] == pytest.approx(
        recall_score(truth, decided, pos_label=COVID), abs=1e-6
    )
    assert m["specificity"]["value"] == pytest.approx(
        recall_score(truth, decided, pos_label=NOFINDING), abs=1e-6
    )
    threshold = m["threshold"]["positive"]
    for r in rows:
        assert r["positive_class"] == COVID and float(r["threshold"]) == pytest.approx(threshold)
        called = COVID if float(r["prob_COVID-19"]) >= float(r["threshold"]) else NOFINDING
        assert r["decision"] == called == r["predicted"]
    report = (run / "eval" / "test" / "report.html").read_text()
    assert "Positive class: <b>COVID-19</b>" in report
    card = (run / "model" / "model_card.md").read_text()
    assert "- Positive class: COVID-19" in card and "No finding is named like" in card

    row = predict_run(run, [covid / COVID / "0.png"])[0]
    assert row["positive_class"] == COVID and row["threshold"] == pytest.approx(threshold)
    assert row["decision"] == (COVID if row["prob_COVID-19"] >= threshold else NOFINDING)


def test_cli_positive_class_override_and_unknown_name(covid, tmp_path, capsys):
    out = tmp_path / "bad"
    code = main(["-q", "plan", "--data", str(covid), "--out", str(out), "--positive-class", "nope"])
    err = capsys.readouterr().err
    assert code != 0 and "'nope' is not one of the classes: 'COVID-19', 'No finding'" in err
    assert "Traceback" not in err and not out.exists()
    run = tmp_path / "ok"
    args = ["plan", "--data", str(covid), "--out", str(run), "--model", "simple-cnn"]
    assert main(["-q", *args, "--time-budget", "5", "--positive-class", "no finding"]) == 0
    plan = json.loads((run / "plan.json").read_text())
    assert plan["positive_class"] == NOFINDING and plan["classes"] == [COVID, NOFINDING]
    assert "positive class No finding: set with --positive-class" in plan["notes"]


def test_multiclass_refuses_positive_class(tmp_path, capsys):
    data = _folder(tmp_path / "data", {"a": 40, "b": 120, "c": 200}, n=4)
    out = tmp_path / "run"
    code = main(["-q", "plan", "--data", str(data), "--out", str(out), "--positive-class", "a"])
    assert code != 0 and "applies to binary classification" in capsys.readouterr().err
    assert not out.exists()


def test_old_plan_without_the_field_keeps_the_second_class(covid, tmp_path):
    """A plan.json written before positive_class: it loads, and the second class of its
    own order (here No finding, as scandx used to do) stays positive."""
    plan = workflow.plan_run(covid, time_budget_s=5, model="simple-cnn")
    old = plan.to_dict()
    del old["positive_class"]
    old["classes"] = [COVID, NOFINDING]  # the order scandx wrote then
    old["notes"] = [n for n in old["notes"] if not n.startswith("positive class")]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    loaded = Plan.load(path)
    assert loaded.positive_class is None and loaded.classes == [COVID, NOFINDING]
    run = tmp_path / "run"
    workflow.train_run(covid, run, plan_path=_short(loaded, tmp_path / "old2.json", 1))
    info = json.loads((run / "model" / "model.json").read_text())
    assert info["positive_class"] == NOFINDING and info["classes"] == [COVID, NOFINDING]
    saved = json.loads((run / "plan.json").read_text())
    assert saved["positive_class"] == NOFINDING
    assert any("names no positive_class" in n for n in saved["notes"])


def test_editing_positive_class_in_plan_json_reorders_the_plan(covid, tmp_path):
    plan = workflow.plan_run(covid, time_budget_s=5, model="simple-cnn")
    plan.positive_class = NOFINDING  # by hand, classes left as they were
    plan.save(tmp_path / "plan.json")
    manifest, used = workflow.manifest_and_plan(covid, plan_path=tmp_path / "plan.json")
    assert used.classes == manifest.classes == [COVID, NOFINDING]
    assert used.positive_class == NOFINDING
    assert [n for n in used.notes if n.startswith("positive class")] == [
        "positive class No finding: set in plan.json (positive_class)"
    ]
    assert all(manifest.classes[c.target] == Path(c.path).parent.name for c in manifest.cases)


def test_plan_rejects_a_positive_class_it_does_not_have(covid, tmp_path):
    plan = workflow.plan_run(covid, time_budget_s=5, model="simple-cnn").to_dict()
    with pytest.raises(ScandxError, match="positive_class 'x' is not one of the classes"):
        Plan.from_dict({**plan, "positive_class": "x"})


def test_cross_validation_honours_positive_class(covid, tmp_path):
    opts = Options(time_budget_s=5, model="simple-cnn", positive_class=NOFINDING)
    setup = cv.prepare(covid, 2, opts, None)
    assert setup.plan.positive_class == NOFINDING and setup.plan.classes == [COVID, NOFINDING]
    assert all(
        setup.manifest.classes[c.target] == Path(c.path).parent.name for c in setup.manifest.cases
    )
    # a resumed cross-validation keeps the positive class its folds were trained with
    path = tmp_path / "plan.json"
    setup.plan.save(path)
    with pytest.raises(ScandxError, match="a resumed cross-validation keeps it"):
        cv.prepare(covid, 2, Options(positive_class=COVID), path)
    assert cv.prepare(covid, 2, Options(), path).plan.positive_class == NOFINDING


def test_medmnist_labels_follow_the_reordered_classes(tmp_path):
    """BreastMNIST lists malignant (label 0) first: malignant is positive, so label 0 of
    the file becomes class index 1 of the plan."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 40), ("val", 12), ("test", 12)):
        y = (np.arange(n) % 2).astype(np.uint8)[:, None]
        arrays[f"{split}_images"] = rng.integers(0, 255, (n, 28, 28)).astype(np.uint8)
        arrays[f"{split}_labels"] = y
    data = tmp_path / "breastmnist.npz"
    np.savez(data, **arrays)
    manifest, plan = workflow.manifest_and_plan(data, time_budget_s=5, model="simple-cnn")
    assert plan.positive_class == "malignant"
    assert plan.classes == manifest.classes == ["normal_or_benign", "malignant"]
    for c in manifest.cases:
        label = int(arrays[c.meta["npz_key"].replace("images", "labels")][c.meta["npz_index"], 0])
        assert c.target == 1 - label
