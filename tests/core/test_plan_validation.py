"""A hand-edited plan.json is checked before any work (core/plan.py, core/plan_check.py):
missing and unknown keys, wrong types, non-finite numbers, out-of-range values, unknown
choices -> one line naming the file and the key, exit 2 (issue 11)."""

from __future__ import annotations

import json
import math

import pytest

from scandx.cli import main
from scandx.core.plan import load_plan
from scandx.errors import ScandxError
from scandx.tasks.classification.plan import Plan
from scandx.tasks.segmentation.plan import SegPlan


def _plan() -> dict:
    return Plan(task="binary", classes=["normal", "lesion"], model="simple-cnn").to_dict()


def _seg_plan() -> dict:
    return SegPlan(labels={"0": "background", "1": "vessel"}).to_dict()


def _edit(d: dict, key: str, value) -> dict:
    d = dict(d)
    if value is _DROP:
        d.pop(key)
    elif "." in key:
        outer, inner = key.split(".")
        d[outer] = {**d[outer], inner: value}
    else:
        d[key] = value
    return d


_DROP = object()

# (key, edited value, what the message must say)
CLASSIFICATION_SHAPES = [
    ("classes", _DROP, "missing key 'classes'"),
    ("epoch", 7, "unknown key 'epoch'"),
    ("epochs", "7", "key 'epochs': expected an integer"),
    ("epochs", [7], "key 'epochs': expected an integer"),
    ("epochs", 0, "key 'epochs': must be >= 1"),
    ("epochs", -3, "key 'epochs': must be >= 1"),
    ("epochs", 2.5, "key 'epochs': expected an integer"),
    ("batch_size", 0, "key 'batch_size': must be >= 1"),
    ("batch_size", None, "key 'batch_size': expected an integer, got None"),
    ("lr", 1e30, "key 'lr': must be <= 10"),
    ("lr", -0.1, "key 'lr': must be > 0"),
    ("lr", math.nan, "key 'lr': must be a finite number"),
    ("lr", "fast", "key 'lr': expected a number"),
    ("intensity_mean", [math.nan], "key 'intensity_mean[0]': must be a finite number"),
    ("intensity_std", [math.inf], "key 'intensity_std[0]': must be a finite number"),
    ("intensity_std", [0.0], "key 'intensity_std[0]': must be > 0"),
    ("intensity_std", 0.25, "key 'intensity_std': expected a list"),
    ("input_size", ["64", 64], "key 'input_size[0]': expected an integer"),
    ("model", "resnet-18", "key 'model': unknown network 'resnet-18'"),
    ("task", "regression", "unknown task 'regression'"),
    ("loss", "dice", "key 'loss': 'dice' is not one of"),
    ("channels_last", "yes", "key 'channels_last': expected true or false"),
    ("augmentation", [1, 2], "key 'augmentation': expected an object"),
    ("augmentation.rotate", 5, "unknown key 'augmentation.rotate'"),
    ("augmentation.scale", [0.9], "key 'augmentation.scale': expected 2 values"),
    ("val_fraction", 1.5, "key 'val_fraction': must be <= 0.9"),
    ("seed", True, "key 'seed': expected an integer"),
    ("notes", "a note", "key 'notes': expected a list"),
    ("fingerprint", [], "key 'fingerprint': expected an object"),
]


@pytest.mark.parametrize(("key", "value", "message"), CLASSIFICATION_SHAPES)
def test_an_edited_classification_plan_is_refused_naming_file_and_key(
    tmp_path, key, value, message
):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(_edit(_plan(), key, value)))
    with pytest.raises(ScandxError) as e:
        load_plan(path)
    assert e.value.where == str(path)
    assert message in e.value.reason
    assert "\n" not in str(e.value)


SEGMENTATION_SHAPES = [
    ("labels", _DROP, "missing key 'labels'"),
    ("steps_per_epoch", 0, "key 'steps_per_epoch': must be > 0"),
    ("patch_size", [128, "x"], "key 'patch_size[1]': expected an integer"),
    ("ct_mean", math.nan, "key 'ct_mean': must be a finite number"),
    ("ct_std", 0, "key 'ct_std': must be > 0"),
    ("lr", 1e30, "key 'lr': must be <= 10"),
    ("model", "unet-9000", "key 'model': unknown network"),
    ("model", "resnet18", "key 'model': unknown network"),  # a classifier, not a segmenter
    ("labels", {"0": 1}, "key 'labels.0': expected a string"),
]


@pytest.mark.parametrize(("key", "value", "message"), SEGMENTATION_SHAPES)
def test_an_edited_segmentation_plan_is_refused_naming_file_and_key(tmp_path, key, value, message):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(_edit(_seg_plan(), key, value)))
    with pytest.raises(ScandxError) as e:
        load_plan(path)
    assert e.value.where == str(path)
    assert message in e.value.reason


def test_a_task_of_another_plan_type_is_refused_naming_file_and_key(tmp_path):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({**_plan(), "task": "segmentation"}))
    with pytest.raises(ScandxError, match="key 'task': 'segmentation' is not one of") as e:
        Plan.load(path)
    assert e.value.where == str(path)


def test_valid_plans_round_trip(tmp_path):
    for d, cls in ((_plan(), Plan), (_seg_plan(), SegPlan)):
        path = tmp_path / "plan.json"
        path.write_text(json.dumps(d))
        plan = load_plan(path)
        assert type(plan) is cls and plan.to_dict() == d


def test_an_old_plan_without_newer_optional_keys_still_loads(tmp_path):
    d = _plan()
    d.pop("positive_class")
    d.pop("threshold_rule")
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(d))
    assert load_plan(path).threshold_rule == "youden"


@pytest.mark.parametrize(
    ("key", "value"), [("lr", 1e30), ("intensity_std", [math.nan]), ("epochs", "7")]
)
def test_train_with_a_broken_plan_exits_2_before_any_work(tmp_path, capsys, key, value):
    plan = tmp_path / "edited.json"
    plan.write_text(json.dumps(_edit(_plan(), key, value)))
    data = tmp_path / "data"
    (data / "normal").mkdir(parents=True)
    out = tmp_path / "run"
    code = main(["-q", "train", "--data", str(data), "--out", str(out), "--plan", str(plan)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and str(plan) in err and f"key '{key}" in err
    assert not out.exists()
