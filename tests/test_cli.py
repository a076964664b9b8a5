"""What a user hits at the command line: bad input, --skip-bad, edited plans, predict parity."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from scandx.cli import main
from scandx.core.privacy import file_ref, locate
from tests.conftest import DICOM_TEST, PNEUMONIA, REQUIRED_BINARY_METRICS, needs_shared


def _run(capsys, *args):
    code = main(["-q", *map(str, args)])
    return code, capsys.readouterr()


def _png(path, value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((16, 16), value, np.uint8)).save(path)


def _two_class_folder(root, n=6):
    for cls, v in (("normal", 60), ("lesion", 200)):
        for i in range(n):
            _png(root / cls / f"{cls}{i}.png", v + i)
    return root


BROKEN = ["MR_truncated.dcm", "badVR.dcm", "no_meta.dcm", "meta_missing_tsyntax.dcm"]


def _bad_cases():
    cases = {
        "empty-folder": (lambda d: d.mkdir(), "empty folder"),
        "single-class": (lambda d: _png(d / "only" / "a.png"), "only one class"),
        "unknown-extension": (
            lambda d: (_two_class_folder(d), (d / "normal" / "x.xyz").write_text("?")),
            "unsupported file type .xyz",
        ),
        "non-image-file": (
            lambda d: (_two_class_folder(d), (d / "lesion" / "fake.png").write_text("text")),
            "not a readable image",
        ),
        "csv-missing-files": (
            lambda d: (d.mkdir(), (d / "m.csv").write_text("path,label\na.png,x\nb.png,y\n")),
            "image file not found",
        ),
    }
    for name in BROKEN:
        cases[name] = (
            lambda d, name=name: (
                _two_class_folder(d),
                shutil.copy(DICOM_TEST / name, d / "lesion" / name),
            ),
            name,
        )
    return cases


@needs_shared
@pytest.mark.parametrize("case", list(_bad_cases()))
def test_bad_input_one_line_exit_2_nothing_written(case, tmp_path, capsys):
    make, expected = _bad_cases()[case]
    data = tmp_path / "data"
    make(data)
    src = data / "m.csv" if (data / "m.csv").exists() else data
    out = tmp_path / "run"
    code, io = _run(capsys, "train", "--data", src, "--out", out, "--time-budget", "5")
    assert code == 2
    lines = io.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("scandx: error:") and expected in lines[0], (
        io.err
    )
    assert "Traceback" not in io.err
    assert not out.exists(), "no half-written run directory"


@needs_shared
def test_skip_bad_trains_on_the_rest_and_lists_what_was_skipped(phantoms, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(phantoms, data)
    shutil.copy(DICOM_TEST / "MR_truncated.dcm", data / "lesion" / "MR_truncated.dcm")
    (data / "normal" / "readme.txt").write_text("notes")
    code, _ = _run(
        capsys, "train", "--data", data, "--out", tmp_path / "strict", "--time-budget", "5"
    )
    assert code == 2 and not (tmp_path / "strict").exists()
    out = tmp_path / "run"
    code, io = _run(
        capsys,
        "train",
        "--data",
        data,
        "--out",
        out,
        "--time-budget",
        "8",
        "--model",
        "simple-cnn",
        "--skip-bad",
    )
    assert code == 0, io.err
    with open(out / "skipped.csv") as f:
        skipped = {r["file"]: r["reason"] for r in csv.DictReader(f)}
    names = {ref: p.name for ref, p in locate(skipped, data).items()}  # files by pseudonym
    assert set(names.values()) == {"MR_truncated.dcm", "readme.txt"}
    truncated = next(ref for ref, name in names.items() if name == "MR_truncated.dcm")
    assert "cannot decode pixel data" in skipped[truncated]
    manifest = (out / "manifest.csv").read_text()
    assert "MR_truncated" not in manifest and "readme" not in manifest


def test_plan_then_train_with_edited_plan_evaluate_and_predict_parity(phantoms, tmp_path, capsys):
    run = tmp_path / "run"
    code, io = _run(capsys, "plan", "--data", phantoms, "--out", run, "--time-budget", "20")
    assert code == 0, io.err
    plan = json.loads((run / "plan.json").read_text())
    for key in (
        "input_size",
        "intensity_mean",
        "model",
        "loss",
        "batch_size",
        "epochs",
        "precision",
        "augmentation",
    ):
        assert key in plan
    plan.update(model="simple-cnn", model_kwargs={}, epochs=3, lr=0.003)
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(plan))
    code, io = _run(capsys, "train", "--data", phantoms, "--out", tmp_path / "r2", "--plan", edited)
    assert code == 0, io.err
    r2 = tmp_path / "r2"
    assert json.loads((r2 / "model" / "model.json").read_text())["model"] == "simple-cnn"
    assert len((r2 / "log.jsonl").read_text().splitlines()) == 3
    assert json.loads((r2 / "plan.json").read_text())["epochs"] == 3

    code, io = _run(
        capsys, "evaluate", r2, "--data", phantoms, "--split", "test", "--bootstrap", "200"
    )
    assert code == 0, io.err
    metrics = json.loads((r2 / "eval" / "test" / "metrics.json").read_text())
    for key in REQUIRED_BINARY_METRICS:
        assert {"value", "ci95"} <= set(metrics[key])
    assert metrics["threshold"]["chosen_on"] == "val"
    cal = metrics["calibration"]
    # a 12-image validation split is too small to fit a temperature on (issue 11)
    assert cal["method"] == "none" and "not calibrated" in cal["note"]
    assert cal["fitted_on"] == "val"
    assert 0 <= cal["ece_after"] <= 1 and 0 <= cal["ece_before"] <= 1
    model_json = json.loads((r2 / "model" / "model.json").read_text())
    assert model_json["calibration"]["note"] == cal["note"]
    assert any("not calibrated" in w for w in metrics["warnings"])
    with open(r2 / "eval" / "test" / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    files = locate([r["file"] for r in rows[:6]], phantoms)  # rows name files by pseudonym
    assert len(files) == 6
    code, io = _run(capsys, "predict", r2, *files.values(), "--out", tmp_path / "p")
    assert code == 0, io.err
    with open(tmp_path / "p" / "predictions.csv") as f:
        preds = {r["file"]: float(r["prob_lesion"]) for r in csv.DictReader(f)}
    for r in rows[:6]:
        assert preds[r["file"]] == pytest.approx(float(r["prob_lesion"]), abs=2e-6)


def test_existing_run_is_not_overwritten(phantoms, tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    code, io = _run(capsys, "train", "--data", phantoms, "--out", run)
    assert code == 2 and "--resume" in io.err


def test_predict_bad_file_and_wrong_channels(quick_run, phantoms, tmp_path, capsys):
    run = quick_run
    (tmp_path / "x.png").write_text("not an image")
    code, io = _run(capsys, "predict", run, tmp_path / "x.png")
    assert code == 2 and "x.png" in io.err
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[..., 0] = 255
    Image.fromarray(rgb).save(tmp_path / "red.png")
    code, io = _run(capsys, "predict", run, tmp_path / "red.png")
    assert code == 2 and "colour image given to a model trained on greyscale" in io.err


@needs_shared
def test_pneumoniamnist_end_to_end(tmp_path, capsys):
    """Real data: a short run of the seed articles' simple CNN beats chance by far."""
    run = tmp_path / "run"
    code, io = _run(
        capsys,
        "plan",
        "--data",
        PNEUMONIA,
        "--out",
        run,
        "--model",
        "simple-cnn",
        "--time-budget",
        "30",
    )
    assert code == 0, io.err
    plan = json.loads((run / "plan.json").read_text())
    assert plan["input_size"] == [28, 28] and plan["loss"] == "weighted_ce"  # 3494 vs 1214
    # fixed epochs and warm-up (the planner derives warm-up from the epochs this CPU fits
    # in the budget): the AUC below must not depend on this CPU
    plan["epochs"], plan["warmup_epochs"] = 3, 1
    (run / "plan.json").write_text(json.dumps(plan))
    code, io = _run(capsys, "train", "--data", PNEUMONIA, "--out", run, "--plan", run / "plan.json")
    assert code == 0, io.err
    code, io = _run(capsys, "evaluate", run, "--data", PNEUMONIA, "--bootstrap", "200")
    assert code == 0, io.err
    m = json.loads((run / "eval" / "test" / "metrics.json").read_text())
    assert m["cases"] == 624 and m["auc"]["value"] > 0.9
    assert m["auc"]["ci95"][0] < m["auc"]["value"] < m["auc"]["ci95"][1]


@needs_shared
def test_edited_plan_with_skip_bad_and_model_override(phantoms, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(phantoms, data)
    shutil.copy(DICOM_TEST / "badVR.dcm", data / "normal" / "badVR.dcm")
    run = tmp_path / "run"
    assert (
        _run(capsys, "plan", "--data", data, "--out", run, "--time-budget", "5", "--skip-bad")[0]
        == 0
    )
    plan = json.loads((run / "plan.json").read_text())
    plan["epochs"] = 1
    (run / "plan.json").write_text(json.dumps(plan))
    code, io = _run(
        capsys,
        "train",
        "--data",
        data,
        "--out",
        run,
        "--plan",
        run / "plan.json",
        "--skip-bad",
        "--model",
        "simple-cnn",
    )
    assert code == 0, io.err
    assert json.loads((run / "model" / "model.json").read_text())["model"] == "simple-cnn"
    assert "badVR" not in (run / "manifest.csv").read_text()
    assert file_ref(data / "normal" / "badVR.dcm") in (run / "skipped.csv").read_text()


@needs_shared
def test_multiframe_image_in_2d_data_is_a_named_bad_file(tmp_path, capsys):
    data = _two_class_folder(tmp_path / "data")
    shutil.copy(DICOM_TEST.parent / "pydicom-data" / "emri_small.dcm", data / "lesion" / "emri.dcm")
    code, io = _run(capsys, "plan", "--data", data, "--out", tmp_path / "r", "--time-budget", "5")
    assert code == 2 and "emri.dcm" in io.err and "multi-frame image (10 frames)" in io.err
    code, io = _run(
        capsys, "plan", "--data", data, "--out", tmp_path / "r", "--time-budget", "5", "--skip-bad"
    )
    skipped = (tmp_path / "r" / "skipped.csv").read_text()
    assert code == 0 and file_ref(data / "lesion" / "emri.dcm") in skipped


def test_unwritable_output_is_one_line(phantoms, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, io = _run(capsys, "plan", "--data", phantoms, "--out", blocker / "run")
    assert code == 2 and len(io.err.strip().splitlines()) == 1 and "Traceback" not in io.err


def test_predict_applies_the_stored_calibration(quick_run, phantoms, tmp_path, capsys):
    import torch

    from scandx.tasks.classification.inference import Predictor

    run = quick_run
    predictor = Predictor.from_run(run)
    f = next(phantoms.rglob("*.png"))
    x = predictor.prepare_file(f)[None]
    cal = {"method": "temperature", "temperature": 0.5}  # as fitted on a larger val split
    predictor.info["calibration"] = cal
    expected = torch.softmax(predictor.logits(x) / 0.5, dim=1).numpy()
    row = predictor.predict_files([f])[0]
    assert row["prob_lesion"] == pytest.approx(float(expected[0, 1]), abs=1e-6)


def test_model_card_written_by_train_and_filled_by_evaluate(phantoms, tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        _run(
            capsys,
            "train",
            "--data",
            phantoms,
            "--out",
            run,
            "--time-budget",
            "5",
            "--model",
            "simple-cnn",
        )[0]
        == 0
    )
    card = (run / "model" / "model_card.md").read_text()
    assert "Not evaluated yet" in card and "positive class: lesion" in card
    from scandx.core.privacy import file_ref

    assert file_ref(phantoms) in card and str(phantoms) not in card  # named by keyed reference
    assert _run(capsys, "evaluate", run, "--data", phantoms, "--bootstrap", "100")[0] == 0
    card = (run / "model" / "model_card.md").read_text()
    metrics = json.loads((run / "eval" / "test" / "metrics.json").read_text())
    auc = metrics["auc"]
    assert f"{auc['value']:.3f} ({auc['ci95'][0]:.3f}-{auc['ci95'][1]:.3f})" in card
    assert "chosen on val data, never on test" in card
    for section in ("Intended use", "Training data", "Calibration", "Limitations", "TRIPOD+AI"):
        assert f"## {section}" in card or section in card
