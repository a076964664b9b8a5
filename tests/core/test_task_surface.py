"""The same surface for every task: the registry dispatches, an option a task does not
use is refused with one line saying why, and ``python -m scandx`` works."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from scandx.cli import main
from scandx.core.plan import load_plan
from scandx.tasks import get_task, task_for_data, task_for_run, task_names
from scandx.tasks.classification.plan import Plan
from scandx.tasks.segmentation.plan import SegPlan
from scandx.tasks.segmentation.synthetic import make_ellipse_folders


@pytest.fixture(scope="module")
def ellipses(tmp_path_factory):
    return make_ellipse_folders(tmp_path_factory.mktemp("ell"), n=6, size=32, seed=0)


def _seg_run(tmp_path):
    run = tmp_path / "segrun"
    run.mkdir()
    SegPlan(labels={"0": "background", "1": "ellipse"}).save(run / "plan.json")
    return run


def _err(capsys) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


def test_registry_recognises_data_and_runs(ellipses, phantoms, tmp_path):
    assert task_names() == [
        "segmentation",
        "classification",
        "pretrain",
    ]  # pretrain: never for data
    assert task_for_data(ellipses).name == "segmentation"
    assert task_for_data(phantoms).name == "classification"
    assert task_for_run(_seg_run(tmp_path)).name == "segmentation"
    for name in task_names():  # the registry is the test matrix
        task = get_task(name)
        assert task.plan_tasks and task.plan_type.__name__


def test_load_plan_dispatches_on_the_task(tmp_path):
    seg = _seg_run(tmp_path) / "plan.json"
    assert type(load_plan(seg)) is SegPlan
    cls = tmp_path / "cls.json"
    Plan(task="binary", classes=["a", "b"]).save(cls)
    assert type(load_plan(cls)) is Plan
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"task": "detection"}))
    with pytest.raises(Exception, match="unknown task"):
        load_plan(bad)


@pytest.mark.parametrize(
    ("flags", "why"),
    [
        (["--image-root", "x"], "--image-root does not apply to segmentation"),
        (["--model", "resnet18"], "not a segmentation network"),
    ],
)
def test_segmentation_refuses_what_it_does_not_use(ellipses, tmp_path, capsys, flags, why):
    out = tmp_path / "run"
    code = main(["-q", "train", "--data", str(ellipses), "--out", str(out), *flags])
    err = _err(capsys)
    assert code == 2 and len(err) == 1 and why in err[0] and not out.exists()


def test_evaluate_and_explain_refusals_on_a_segmentation_run(tmp_path, capsys, ellipses):
    run = _seg_run(tmp_path)
    args = ["-q", "evaluate", str(run), "--data", str(ellipses), "--subgroups", "sex"]
    assert main(args) == 2
    assert "--subgroups does not apply to segmentation" in _err(capsys)[0]
    assert main(["-q", "explain", str(run), str(ellipses / "images" / "c000.png")]) == 2
    err = _err(capsys)
    assert len(err) == 1 and "explain is for classifiers" in err[0]


def test_classification_refuses_segmentation_options(phantoms, tmp_path, capsys):
    for flags in (["--dims", "3d"], ["--memory-budget", "2"]):
        out = tmp_path / "run"
        assert main(["-q", "plan", "--data", str(phantoms), "--out", str(out), *flags]) == 2
        err = _err(capsys)
        assert len(err) == 1 and "does not apply to classification" in err[0]
        assert not out.exists()


def test_predict_out_names_a_folder(quick_run, phantoms, tmp_path, capsys):
    from scandx.core.privacy import file_ref

    f = str(next(phantoms.rglob("*.png")))
    assert main(["-q", "predict", str(quick_run), f, "--out", str(tmp_path / "p.csv")]) == 2
    assert "--out names a folder" in _err(capsys)[0]
    assert main(["-q", "predict", str(quick_run), f]) == 0  # CSV rows on stdout
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("input,file,prob_") and lines[1].startswith(f"1,{file_ref(f)},")


@pytest.mark.parametrize("module", ["scandx", "scandx.cli"])
def test_python_dash_m_works(module):
    r = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("scandx")
