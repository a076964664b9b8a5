"""Issue 11: bad inputs that gave tracebacks, hangs or silence now give one line each."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
from PIL import Image

from scandx.cli import main
from scandx.errors import ScandxError
from scandx.tasks.classification.data.sources import load_source


def _png(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (12, 12), dtype=np.uint8)).save(path)


def _two_classes(root):
    for i in range(4):
        _png(root / "a" / f"a{i}.png", i)
        _png(root / "b" / f"b{i}.png", 10 + i)
    return root


def _one_line_exit_2(capsys, *argv):
    code = main(["-q", *map(str, argv)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("scandx: error:"), err
    return err


def test_undecodable_file_name_is_one_clear_line(tmp_path, capsys):
    data = _two_classes(tmp_path / "d")
    bad = os.fsdecode(b"\xff\xfescan.png")
    _png(data / "a" / bad, 99)
    with pytest.raises(ScandxError, match=r"\\xff\\xfescan.png: file name is not valid UTF-8"):
        load_source(data)
    m = load_source(data, skip_bad=True)
    assert len(m) == 8 and "not valid UTF-8" in m.skipped[0][1]
    m.skipped[0][0].encode("utf-8")  # printable: skipped.csv can hold it
    err = _one_line_exit_2(capsys, "plan", "--data", data, "--out", tmp_path / "run")
    assert "not valid UTF-8" in err and not (tmp_path / "run").exists()


def test_nul_byte_in_csv_is_one_clear_line(tmp_path, capsys):
    _png(tmp_path / "x.png", 1)
    (tmp_path / "m.csv").write_bytes(b"path,label\nx.png,a\nx\x00.png,b\n")
    with pytest.raises(ScandxError, match=r"m\.csv: line 3 holds a NUL byte"):
        load_source(tmp_path / "m.csv")
    err = _one_line_exit_2(capsys, "plan", "--data", tmp_path / "m.csv", "--out", tmp_path / "r")
    assert "NUL byte" in err and "m.csv" in err


@pytest.mark.parametrize("kind", ["fifo", "fifo-no-extension", "dangling", "loop", "dir-loop"])
def test_special_files_are_listed_never_ignored_never_hang(tmp_path, kind):
    data = _two_classes(tmp_path / "d")
    target = data / "a" / "special.png"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "fifo-no-extension":
        target = data / "a" / "special"
        os.mkfifo(target)
    elif kind == "dangling":
        target.symlink_to(tmp_path / "gone.png")
    elif kind == "loop":
        target.symlink_to(target)
    else:
        target = data / "a" / "sub"
        target.mkdir()
        (target / "up").symlink_to(data / "a")
    with pytest.raises(ScandxError, match=str(target)):
        load_source(data)
    m = load_source(data, skip_bad=True)
    assert len(m) == 8
    assert [p for p, _ in m.skipped] and all(str(target) in p for p, _ in m.skipped)


def test_empty_class_folder_is_a_warning_and_a_skipped_line(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    data = _two_classes(tmp_path / "d")
    (data / "c").mkdir()
    m = load_source(data)
    assert m.classes == ["a", "b"]
    assert "class folder 'c' holds no files" in caplog.text
    assert m.warnings[0]["code"] == "empty_class_folder"
    assert m.skipped == [(str(data / "c"), "empty class folder: no images, so not a class")]


def _npz(path, images, labels):
    np.savez(path, train_images=images, train_labels=labels)
    return path


def test_negative_label_in_npz_is_one_line(tmp_path, capsys):
    labels = np.array([[0], [1], [-1], [1]])
    f = _npz(tmp_path / "pneumoniamnist.npz", np.zeros((4, 8, 8), np.uint8), labels)
    with pytest.raises(ScandxError, match="train_labels holds a negative label"):
        load_source(f)
    assert "negative label" in _one_line_exit_2(
        capsys, "plan", "--data", f, "--out", tmp_path / "r"
    )


def test_3d_npz_for_a_2d_flag_is_one_line(tmp_path):
    f = _npz(tmp_path / "pneumoniamnist.npz", np.zeros((4, 8, 8, 8), np.uint8), np.zeros((4, 1)))
    with pytest.raises(ScandxError, match=r"shape \(4, 8, 8, 8\).*not a 2D source"):
        load_source(f)
