"""Model files: every file model.json names lies inside RUN/model and matches the sha256
recorded at training time; a hand-edited model.json gives one line naming the file and
the key, exit 2 (issue 11)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from scandx.cli import main
from scandx.errors import ScandxError
from scandx.tasks.classification.inference import Predictor


def _copy(run: Path, dst: Path) -> Path:
    shutil.copytree(run, dst)
    return dst


def _one_image(phantoms: Path) -> Path:
    return next(p for p in sorted(phantoms.rglob("*")) if p.suffix in (".png", ".dcm"))


def _edit(run: Path, change) -> None:
    path = run / "model" / "model.json"
    info = json.loads(path.read_text())
    change(info)
    path.write_text(json.dumps(info))


def _predict_fails(run: Path, phantoms: Path, capsys, *words: str) -> str:
    code = main(["-q", "predict", str(run), str(_one_image(phantoms))])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for w in words:
        assert w in err, err
    return err


def test_ood_statistics_are_checksummed(quick_run, phantoms, tmp_path, capsys):
    run = _copy(quick_run, tmp_path / "run")
    info = json.loads((run / "model" / "model.json").read_text())
    assert len(info["ood"]["sha256"]) == 64
    ood = run / "model" / "ood.safetensors"
    data = bytearray(ood.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in a tensor
    ood.write_bytes(bytes(data))
    _predict_fails(run, phantoms, capsys, "ood.safetensors", "sha256")


def test_weights_of_another_model_by_absolute_path_are_refused(
    quick_run, phantoms, tmp_path, capsys
):
    # the other model's weights and their true checksum: only the path gives it away
    other = _copy(quick_run, tmp_path / "other")
    run = _copy(quick_run, tmp_path / "run")
    weights = (other / "model" / "weights.safetensors").resolve()
    _edit(run, lambda i: i.update(weights=str(weights)))
    _predict_fails(run, phantoms, capsys, "model.json", "'weights'")


@pytest.mark.parametrize("rel", ["../other/weights.safetensors", "sub/../../x.safetensors"])
def test_weights_leaving_the_model_folder_are_refused(quick_run, phantoms, tmp_path, capsys, rel):
    run = _copy(quick_run, tmp_path / "run")
    _edit(run, lambda i: i.update(weights=rel))
    _predict_fails(run, phantoms, capsys, "model.json", "'weights'")


def test_a_symlink_out_of_the_model_folder_is_refused(quick_run, phantoms, tmp_path, capsys):
    other = _copy(quick_run, tmp_path / "other")
    run = _copy(quick_run, tmp_path / "run")
    (run / "model" / "w.safetensors").symlink_to(other / "model" / "weights.safetensors")
    _edit(run, lambda i: i.update(weights="w.safetensors"))
    _predict_fails(run, phantoms, capsys, "model.json", "'weights'", "outside")


def _delete(*keys):
    def change(info):
        node = info
        for k in keys[:-1]:
            node = node[k]
        del node[keys[-1]]

    return change


def _set(value, *keys):
    def change(info):
        node = info
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value

    return change


EDITS = {
    "no task": (_delete("task"), "'task'"),
    "no weights": (_delete("weights"), "'weights'"),
    "no sha256": (_delete("sha256"), "'sha256'"),
    "no classes": (_delete("classes"), "'classes'"),
    "classes a string": (_set("ab", "classes"), "'classes'"),
    "no input": (_delete("input"), "'input'"),
    "size a string": (_set("64", "input", "size"), "'input.size'"),
    "size wrong length": (_set([32], "input", "size"), "'input.size'"),
    "std zero": (_set([0.0], "input", "std"), "'input.std'"),
    "spatial_dims text": (_set("2", "spatial_dims"), "'spatial_dims'"),
    "in_channels float": (_set(1.5, "in_channels"), "'in_channels'"),
    "no thresholds": (_delete("thresholds"), "'thresholds'"),
    "threshold text": (_set("0.5", "thresholds", "positive"), "'thresholds.positive'"),
    "calibration list": (_set([1.0], "calibration"), "'calibration'"),
    "temperature text": (
        _set({"method": "temperature", "temperature": "x"}, "calibration"),
        "'calibration.temperature'",
    ),
    "calibration method": (_set({"method": "platt"}, "calibration"), "'calibration.method'"),
    "no ood sha256": (_delete("ood", "sha256"), "'ood.sha256'"),
    "ood threshold null-ish": (_set("high", "ood", "threshold"), "'ood.threshold'"),
    "model_kwargs unknown": (_set({"nope": 1}, "model_kwargs"), "'model_kwargs'"),
    "weights a number": (_set(3, "weights"), "'weights'"),
    "model.json a list": (lambda i: (i.clear(), i.update(_list=True)), "'task'"),
}


@pytest.mark.parametrize("name", list(EDITS))
def test_hand_edited_model_json_one_line_naming_file_and_key(
    quick_run, phantoms, tmp_path, capsys, name
):
    run = _copy(quick_run, tmp_path / "run")
    change, key = EDITS[name]
    _edit(run, change)
    _predict_fails(run, phantoms, capsys, "model.json", key)


@pytest.mark.parametrize("text", ["{", "[1, 2]", '"x"', "\xff"])
def test_model_json_that_is_not_an_object(quick_run, tmp_path, text):
    run = _copy(quick_run, tmp_path / "run")
    (run / "model" / "model.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(ScandxError, match="model.json"):
        Predictor.from_run(run)
