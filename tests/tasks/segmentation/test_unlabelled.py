"""Unlabelled segmentation cases (tasks/segmentation/unlabelled.py): how each layout
says so, the splits they leave alone, the held-out patients' cases left out, and the
pretraining that learns from them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from scandx.cli import main
from scandx.core.run_dir import RunDir
from scandx.core.task import Options
from scandx.errors import ScandxError
from scandx.tasks.pretrain.segmenter import pretrain_segmenter
from scandx.tasks.segmentation.sources import load_seg_source
from scandx.tasks.segmentation.synthetic import make_ellipse_folders, make_ellipsoid_decathlon
from scandx.tasks.segmentation.workflow import assign_seg_splits, seg_plan_run


@pytest.fixture(scope="module")
def paired(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 labelled ellipse images and 6 unlabelled ones in unlabelled/."""
    data = make_ellipse_folders(tmp_path_factory.mktemp("unl") / "data", n=8, size=32)
    extra = make_ellipse_folders(data.parent / "extra", n=6, size=32, seed=1)
    shutil.copytree(extra / "images", data / "unlabelled")
    return data


def _splits(manifest) -> dict[str, str]:
    return {c.case_id: c.split for c in manifest.cases}


def test_an_unlabelled_folder_adds_cases_without_changing_the_labelled_splits(paired, tmp_path):
    with_extra = load_seg_source(paired)
    extra = with_extra.in_split("unlabelled")
    assert len(extra) == 6 and all(c.label is None for c in extra)
    assert all(c.case_id.startswith("case-") for c in extra)  # pseudonyms, never file names
    bare = tmp_path / "bare"
    shutil.copytree(paired, bare, ignore=shutil.ignore_patterns("unlabelled"))
    without = load_seg_source(bare)
    assign_seg_splits(with_extra, 0.2, 0)
    assign_seg_splits(without, 0.2, 0)
    labelled = {k: v for k, v in _splits(with_extra).items() if v != "unlabelled"}
    assert sorted(labelled.values()) == sorted(_splits(without).values())
    assert len(with_extra.in_split("unlabelled")) == 6  # never dealt to val or test
    plan = seg_plan_run(paired, tmp_path / "plan", time_budget_s=5, seed=0)
    assert any("6 unlabelled case(s): not trained on" in n for n in plan.notes)


def test_a_case_table_marks_unlabelled_rows_by_an_empty_label(paired, tmp_path):
    imgs = sorted((paired / "images").iterdir())
    rows = ["case_id,patient_id,split,image,label"]
    for i, img in enumerate(imgs):
        rows.append(f"c{i},p{i},{'test' if i == 0 else ''},images/{img.name},masks/{img.name}")
    rows.append(f"u0,p0,,images/{imgs[0].name},")  # the test patient's unlabelled scan
    rows.append(f"u1,p9,,images/{imgs[1].name},")
    rows.append(f"u2,p8,unlabelled,images/{imgs[2].name},")
    table = paired / "cases.csv"
    table.write_text("\n".join(rows) + "\n")
    m = load_seg_source(table)
    assert len(m.in_split("unlabelled")) == 3
    assign_seg_splits(m, 0.2, 0)
    assert len(m.in_split("unlabelled")) == 2  # p0's scan left out: p0 is a test patient
    assert any("validation/test patient" in why for _, why in m.skipped)
    assert any("1 unlabelled case(s) of validation/test patients left out" in n for n in m.notes)
    bad = rows[:-1] + [f"u2,p8,unlabelled,images/{imgs[2].name},masks/{imgs[2].name}"]
    table.write_text("\n".join(bad) + "\n")
    with pytest.raises(ScandxError, match="split 'unlabelled' with a label file"):
        load_seg_source(table)
    bad = rows[:-1] + [f"u2,p8,val,images/{imgs[2].name},"]
    table.write_text("\n".join(bad) + "\n")
    with pytest.raises(ScandxError, match="missing label"):
        load_seg_source(table)


def test_a_decathlon_unlabelled_folder_is_read_with_its_channel_names(tmp_path):
    data = make_ellipsoid_decathlon(tmp_path / "dec", n_train=4, n_test=1, shape=(16, 16, 8))
    (data / "unlabelled").mkdir()
    for f in sorted((data / "imagesTr").iterdir())[:2]:
        shutil.copy(f, data / "unlabelled" / f.name.replace("case", "scan"))
    m = load_seg_source(data)
    extra = m.in_split("unlabelled")
    assert len(extra) == 2 and all(len(c.images) == 1 and c.label is None for c in extra)
    (data / "unlabelled" / "lonely_0001.nii.gz").write_bytes(b"")
    with pytest.raises(ScandxError, match="missing channel file"):
        load_seg_source(data)


def test_pretraining_learns_from_the_unlabelled_cases_and_refuses_a_misfit(paired, tmp_path):
    run = RunDir(tmp_path / "mae")
    with run.hold():
        pretrain_segmenter(paired, run, Options(seed=0, time_budget_s=3), "mae")
    plan = json.loads((run.path / "plan.json").read_text())
    assert any("and 6 unlabelled cases" in n for n in plan["notes"])
    assert (run.path / "manifest.csv").read_text().count(",unlabelled,") == 6
    tuned = tmp_path / "tuned"  # the segmenter starts from it; the unlabelled stay aside
    code = main(["-q", "train", "--data", str(paired), "--out", str(tuned), "--init",
                 str(run.path), "--time-budget", "5"])  # fmt: skip
    assert code == 0
    notes = json.loads((tuned / "plan.json").read_text())["notes"]
    assert any("initialised from" in n for n in notes)
    assert any("6 unlabelled case(s): not trained on" in n for n in notes)
    # an RGB scan among grey ones: one clear line, nothing trained
    data = tmp_path / "rgb"
    shutil.copytree(paired, data)
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).save(data / "unlabelled" / "colour.png")
    out = tmp_path / "refused"
    code = main(["-q", "pretrain", "--data", str(data), "--out", str(out), "--time-budget", "3"])
    assert code == 2
    assert not (out / "model").exists()
    kept = tmp_path / "kept"
    assert main(["-q", "pretrain", "--data", str(data), "--out", str(kept), "--time-budget", "3",
                 "--skip-bad"]) == 0  # fmt: skip
    assert "colour" not in (kept / "skipped.csv").read_text()  # pseudonyms only
    assert "1 channel(s)" in (kept / "skipped.csv").read_text()


def test_a_3d_unlabelled_volume_of_another_dimensionality_is_named(tmp_path):
    data = make_ellipsoid_decathlon(tmp_path / "dec", n_train=4, n_test=1, shape=(16, 16, 8))
    (data / "unlabelled").mkdir()
    nib.save(nib.Nifti1Image(np.zeros((16, 16), np.float32), np.eye(4)),
             data / "unlabelled" / "flat_0000.nii.gz")  # fmt: skip
    out = tmp_path / "run"
    code = main(["-q", "pretrain", "--data", str(data), "--out", str(out), "--time-budget", "3"])
    assert code == 2 and not (out / "model").exists()


def test_cross_validation_leaves_the_unlabelled_cases_out_of_every_fold(paired, tmp_path):
    out = tmp_path / "cv"
    code = main(["-q", "train", "--data", str(paired), "--out", str(out), "--folds", "2",
                 "--time-budget", "6"])  # fmt: skip
    assert code == 0
    for fold in ("fold0", "fold1"):
        splits = (out / "folds" / fold / "manifest.csv").read_text()
        assert splits.count(",unlabelled,") == 6 and ",test," not in splits


def test_a_labelled_fraction_keeps_some_training_label_maps_and_leaves_validation(tmp_path):
    data = make_ellipse_folders(tmp_path / "d", n=12, size=32)
    full = load_seg_source(data)
    assign_seg_splits(full, 0.2, 3)
    part = load_seg_source(data)
    assign_seg_splits(part, 0.2, 3, labelled=0.4)
    assert {c.case_id for c in part.in_split("val")} == {c.case_id for c in full.in_split("val")}
    train = part.in_split("train")
    assert len(train) == 4 and len(part.in_split("unlabelled")) == 6  # 40% of 10, the rest
    assert all(c.label is None for c in part.in_split("unlabelled"))
    again = load_seg_source(data)
    assign_seg_splits(again, 0.2, 3, labelled=0.4)
    assert [c.case_id for c in again.in_split("train")] == [c.case_id for c in train]
    assert any("labelled fraction 0.4: label maps kept for 4 of 10" in n for n in part.notes)
    out = tmp_path / "run"  # the CLI flag, recorded in the plan and kept by --resume
    code = main(["-q", "train", "--data", str(data), "--out", str(out), "--time-budget", "4",
                 "--labelled-fraction", "0.4", "--seed", "3"])  # fmt: skip
    assert code == 0
    assert json.loads((out / "plan.json").read_text())["labelled_fraction"] == 0.4
    assert (out / "manifest.csv").read_text().count(",unlabelled,") == 6
    with pytest.raises(ScandxError, match="labelled-fraction must be in"):
        assign_seg_splits(load_seg_source(data), 0.2, 3, labelled=1.5)
