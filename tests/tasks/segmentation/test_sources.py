"""Issue 11: a malformed or wrongly typed dataset.json is one line naming the file and key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scandx.cli import main
from scandx.core.privacy import pseudonym
from scandx.errors import ScandxError
from scandx.tasks.segmentation.case_lists import load_case_list
from scandx.tasks.segmentation.sources import load_seg_source

GOOD = {"labels": {"0": "background", "1": "x"}, "modality": {"0": "MR"}}


def _decathlon(root, meta):
    for d in ("imagesTr", "labelsTr"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "imagesTr" / "c_000_0000.nii.gz").write_bytes(b"")
    (root / "labelsTr" / "c_000.nii.gz").write_bytes(b"")
    text = meta if isinstance(meta, str) else json.dumps(meta)
    (root / "dataset.json").write_text(text)
    return root


ENTRY = {"image": "./imagesTr/c_000.nii.gz", "label": "./labelsTr/c_000.nii.gz"}


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object, found list"),
        ({**GOOD, "labels": ["background", "x"]}, "labels: must be an object"),
        ({**GOOD, "labels": {"background": 0, "x": "one"}}, "labels: label values must be whole"),
        ({**GOOD, "modality": "MR"}, "modality: must be an object"),
        ({**GOOD, "modality": {"zero": "MR"}}, r"modality\['zero'\]"),
        ({**GOOD, "file_ending": 7}, "file_ending: must be a string"),
        ({**GOOD, "numTraining": "1"}, "numTraining: must be a whole number"),
        ({**GOOD, "training": {"a": 1}}, "training: must be a list, found dict"),
        ({**GOOD, "training": ["c_000"]}, r"training\[0\]: must be an object, found str"),
        ({**GOOD, "training": [{"image": ENTRY["image"]}]}, r"training\[0\]: lacks 'label'"),
        ({**GOOD, "training": [{**ENTRY, "label": 3}]}, r"training\[0\].label: must be a file"),
        (
            {**GOOD, "training": [ENTRY, {**ENTRY, "label": "./labelsTr/gone.nii.gz"}]},
            r"training\[1\].label: file not found",
        ),
        ({**GOOD, "labels": {"0": "background", "-1": "x"}}, "labels"),
    ],
)
def test_bad_dataset_json_is_one_line_naming_file_and_key(tmp_path, meta, message):
    root = _decathlon(tmp_path / "dec", meta)
    with pytest.raises(ScandxError, match=message) as e:
        load_seg_source(root)
    assert str(e.value).startswith(str(root / "dataset.json"))


def test_valid_training_list_with_channel_files_is_accepted(tmp_path):
    root = _decathlon(tmp_path / "dec", {**GOOD, "training": [ENTRY], "numTraining": 1})
    m = load_seg_source(root)
    assert [c.case_id for c in m.cases] == [pseudonym("c_000", "case")]


def test_cli_bad_dataset_json_exit_2_one_line(tmp_path, capsys):
    root = _decathlon(tmp_path / "dec", {**GOOD, "training": "all"})
    code = main(["-q", "plan", "--data", str(root), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "dataset.json: training: must be a list" in err[0]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("[]", "must be a JSON object"),
        ({"labels": ["a"]}, "'labels' must map"),
        ({"labels": {"0": "bg"}, "channels": "t1.nii.gz", "root": ".", "label": "l"}, "'channels'"),
        ({"labels": {"0": "bg"}, "cases": 3}, "'cases' must be a string"),
    ],
)
def test_bad_case_spec_is_one_line(tmp_path, spec, message):
    f = tmp_path / "spec.json"
    f.write_text(spec if isinstance(spec, str) else json.dumps(spec))
    with pytest.raises(ScandxError, match=message):
        load_case_list(f)


def test_a_fifo_or_dangling_link_among_the_images_is_named_not_dropped(tmp_path: Path):
    import os

    import numpy as np
    from PIL import Image

    for d in ("images", "masks"):
        (tmp_path / d).mkdir()
    for i in range(3):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "images" / f"c{i}.png")
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "masks" / f"c{i}.png")
    os.mkfifo(tmp_path / "images" / "c3.png")
    with pytest.raises(ScandxError, match="FIFO") as e:
        load_seg_source(tmp_path)
    assert "c3.png" in str(e.value)
    (tmp_path / "images" / "c3.png").unlink()
    (tmp_path / "images" / "c3.png").symlink_to(tmp_path / "gone.png")
    with pytest.raises(ScandxError, match="dangling symlink"):
        load_seg_source(tmp_path)
