"""ONNX export (``scandx export RUN --format onnx``) and ``load_predictor(runtime="onnx")``:
the same Predictors give the same outputs (within 1e-4) with either runtime, for
classification (single, seed ensemble, fold ensemble) and 2D/3D segmentation; a
missing, stale or altered export is refused with one line."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from scandx.cli import main
from scandx.core.predictor import load_predictor, sha256
from scandx.errors import ScandxError
from scandx.export.cli import add_export_command, run_export
from scandx.export.onnx_export import export_onnx
from scandx.export.onnx_runtime import OnnxNetwork
from tests.conftest import DICOM_TEST, SHARED

TOL = 1e-4


def _copy_run(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns(".lock", "checkpoints"))
    return dest


def _image_files(phantoms: Path, n: int = 4) -> list[Path]:
    files = sorted(phantoms.rglob("*.png"))[:n] + sorted(phantoms.rglob("*.dcm"))[:2]
    real = DICOM_TEST / "CT_small.dcm"  # a real CT: far from the phantoms (OOD path)
    return files + ([real] if SHARED.is_dir() else [])


def _same_rows(run: Path, files: list[Path]) -> list[dict]:
    torch_p = load_predictor(run, runtime="torch")
    onnx_p = load_predictor(run, runtime="onnx")
    assert (torch_p.runtime, onnx_p.runtime) == ("torch", "onnx")
    want = torch_p.score([torch_p.prepare(f) for f in files])
    got = onnx_p.score([onnx_p.prepare(f) for f in files])
    for a, b in zip(want, got, strict=True):
        assert a.keys() == b.keys()
        for k in a:
            if isinstance(a[k], float):
                assert abs(a[k] - b[k]) <= TOL, (k, a[k], b[k])
            else:
                assert a[k] == b[k], k
    return got


@pytest.fixture(scope="module")
def class_run(quick_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = _copy_run(quick_run, tmp_path_factory.mktemp("onnx-class") / "run")
    export_onnx(run)
    return run


def test_classifier_outputs_match_torch_with_ood(class_run: Path, phantoms: Path):
    record = json.loads((class_run / "export" / "onnx" / "export.json").read_text())
    (graph,) = record["graphs"]
    info = json.loads((class_run / "model" / "model.json").read_text())
    assert graph["weights_sha256"] == info["sha256"] and graph["model_dir"] == "model"
    assert graph["sha256"] == sha256(class_run / "export" / "onnx" / "model.onnx")
    assert graph["outputs"] == ["logits", "features"]
    rows = _same_rows(class_run, _image_files(phantoms))
    assert all("ood_score" in r and "uncertainty" in r for r in rows)
    if SHARED.is_dir():
        assert rows[-1]["ood_flag"]  # the CT is flagged by both runtimes


def test_onnx_predictor_still_explains_with_torch_weights(class_run: Path, phantoms: Path):
    from scandx.tasks.classification.explain.explain import explain_file

    p = load_predictor(class_run, runtime="onnx")
    assert isinstance(p.network, OnnxNetwork) and not isinstance(p.model, OnnxNetwork)
    out = explain_file(p, _image_files(phantoms)[0])
    assert np.isfinite(out["heatmap"]).all()


def test_seed_ensemble_exports_as_one_graph(class_run: Path, phantoms: Path, tmp_path: Path):
    run = _copy_run(class_run, tmp_path / "seeds")
    model = run / "model"
    info = json.loads((model / "model.json").read_text())
    if (info.get("model_kwargs") or {}).get("members", 1) == 1:  # else training kept 2 seeds
        _make_two_seeds(model, info)
    export_onnx(run)
    graphs = json.loads((run / "export" / "onnx" / "export.json").read_text())["graphs"]
    assert len(graphs) == 1  # the seeds' mean is one network, one graph
    _same_rows(run, _image_files(phantoms, 2))


def _make_two_seeds(model: Path, info: dict) -> None:
    state = load_file(str(model / "weights.safetensors"))
    two = {
        f"members.{i}.{k}": (v * (1 + 0.05 * i) if v.is_floating_point() else v.clone())
        for i in range(2)
        for k, v in state.items()
    }
    save_file(two, str(model / "weights.safetensors"))
    info["model_kwargs"] = {**(info.get("model_kwargs") or {}), "members": 2}
    info["sha256"] = sha256(model / "weights.safetensors")
    (model / "model.json").write_text(json.dumps(info))


def test_fold_ensemble_one_graph_per_member(phantoms: Path, tmp_path: Path):
    run = tmp_path / "cv"
    args = ["train", "--data", str(phantoms), "--out", str(run), "--folds", "2"]
    assert main(["-q", *args, "--time-budget", "4", "--model", "simple-cnn"]) == 0
    export_onnx(run)
    record = json.loads((run / "export" / "onnx" / "export.json").read_text())
    assert [g["model_dir"] for g in record["graphs"]] == [
        "folds/fold0/model",
        "folds/fold1/model",
    ]
    _same_rows(run, _image_files(phantoms, 3))


def _seg_run(tmp: Path, three_d: bool) -> tuple[Path, Path]:
    from scandx.tasks.segmentation.synthetic import make_ellipse_folders, make_ellipsoid_decathlon

    if three_d:
        data = make_ellipsoid_decathlon(tmp / "data", n_train=6, n_test=1)
        image = sorted((data / "imagesTs").glob("*.nii.gz"))[0]
    else:
        data = make_ellipse_folders(tmp / "data", n=8, size=48)
        image = sorted((data / "images").iterdir())[0]
    assert main(["-q", "plan", "--data", str(data), "--out", str(tmp / "p")]) == 0
    plan_path = tmp / "p" / "plan.json"
    plan = json.loads(plan_path.read_text())
    plan.update(epochs=1, steps_per_epoch=2, val_every=1)  # weights need not be good
    plan_path.write_text(json.dumps(plan))
    run = tmp / "run"
    args = ["-q", "train", "--data", str(data), "--out", str(run), "--plan", str(plan_path)]
    assert main(args) == 0
    return run, image


@pytest.mark.parametrize("three_d", [False, True], ids=["2d", "3d"])
def test_segmenter_outputs_match_torch(tmp_path: Path, three_d: bool):
    run, image = _seg_run(tmp_path, three_d)
    export_onnx(run)
    torch_p = load_predictor(run, runtime="torch")
    onnx_p = load_predictor(run, runtime="onnx")
    (want,) = torch_p.score([torch_p.prepare(image)])
    (got,) = onnx_p.score([onnx_p.prepare(image)])
    assert np.abs(want["probs"] - got["probs"]).max() <= TOL
    np.testing.assert_array_equal(want["mask"], got["mask"])
    if not three_d:  # the graph's spatial axes are dynamic: not only the plan's patch size
        plan = torch_p.plan
        x = torch.randn(1, plan.in_channels, *[2 * s for s in plan.patch_size])
        with torch.no_grad():
            diff = (torch_p.model(x) - onnx_p.model(x)).abs().max()
        assert float(diff) <= TOL


def test_missing_stale_and_altered_exports_are_refused(class_run: Path, tmp_path: Path):
    run = _copy_run(class_run, tmp_path / "stale")
    graph = run / "export" / "onnx" / "model.onnx"
    graph.write_bytes(graph.read_bytes() + b"\0")
    with pytest.raises(ScandxError, match="ONNX graph does not match the sha256"):
        load_predictor(run, runtime="onnx")
    export_onnx(run)
    # the model retrained after export: other weights, model.json updated with them
    weights = run / "model" / "weights.safetensors"
    state = load_file(str(weights))
    save_file({k: v + 1 if v.is_floating_point() else v for k, v in state.items()}, str(weights))
    info = json.loads((run / "model" / "model.json").read_text())
    info["sha256"] = sha256(weights)
    (run / "model" / "model.json").write_text(json.dumps(info))
    with pytest.raises(ScandxError, match="stale.*retrained after export") as e:
        load_predictor(run, runtime="onnx")
    assert "\n" not in str(e.value)
    load_predictor(run, runtime="torch")  # the PyTorch runtime is unaffected
    shutil.rmtree(run / "export")
    with pytest.raises(ScandxError, match="run scandx export RUN --format onnx first"):
        load_predictor(run, runtime="onnx")
    with pytest.raises(ScandxError, match="unknown runtime 'tensorrt'"):
        load_predictor(run, runtime="tensorrt")


def test_failed_export_leaves_the_previous_one(class_run: Path, tmp_path: Path, monkeypatch):
    import scandx.export.onnx_export as onnx_export

    run = _copy_run(class_run, tmp_path / "atomic")
    before = (run / "export" / "onnx" / "export.json").read_bytes()
    monkeypatch.setattr(onnx_export, "_check_graph", lambda *a: float("nan"))
    with pytest.raises(ScandxError, match="differs from PyTorch"):
        export_onnx(run)
    assert (run / "export" / "onnx" / "export.json").read_bytes() == before
    assert sorted(p.name for p in (run / "export").iterdir()) == ["onnx"]
    load_predictor(run, runtime="onnx")


def _export_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scandx")
    add_export_command(p.add_subparsers(dest="command", required=True))
    return p


def test_cli_export(class_run: Path, tmp_path: Path, capsys):
    out = tmp_path / "ship"
    args = _export_parser().parse_args(["export", str(class_run), "--out", str(out)])
    assert run_export(args) == 0
    assert (out / "model.onnx").is_file() and (out / "export.json").is_file()
    assert "runtime onnx reads RUN/export/onnx" in capsys.readouterr().out
    with pytest.raises(ScandxError, match="no such run folder"):
        run_export(_export_parser().parse_args(["export", str(tmp_path / "nowhere")]))
    with pytest.raises(ScandxError, match="no trained model here"):
        run_export(_export_parser().parse_args(["export", str(out)]))
    assert not (out / ".lock").exists()  # refused before anything is written


def test_scandx_export_command(class_run: Path, tmp_path: Path, capsys):
    try:
        wired = main(["export", "--help"]) == 0
    except SystemExit as e:
        wired = e.code == 0
    capsys.readouterr()
    if not wired:
        pytest.skip("scandx export is not wired into scandx/cli.py yet")
    run = _copy_run(class_run, tmp_path / "cli")
    shutil.rmtree(run / "export")
    assert main(["-q", "export", str(run), "--format", "onnx"]) == 0
    assert (run / "export" / "onnx" / "export.json").is_file()
    capsys.readouterr()
    assert main(["-q", "export", str(tmp_path / "nowhere"), "--format", "onnx"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such run folder" in err
