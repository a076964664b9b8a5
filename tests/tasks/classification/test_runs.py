"""Issue 11: evaluating a new CSV finds the run's cases by content, never by row number."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
from PIL import Image

from scandx.cli import main
from scandx.core.privacy import locate
from scandx.tasks.classification.data.sources import load_source
from scandx.tasks.classification.data.splits import assign_splits
from scandx.tasks.classification.runs import apply_run_splits


def _png(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (12, 12), dtype=np.uint8)).save(path)


def _write(csv_path, rows):
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "patient_id"])
        w.writerows(rows)


def test_new_csv_gets_run_splits_by_content_and_new_images_are_external(tmp_path):
    rows = [(f"img/{i}.png", "ab"[i % 2], f"p{i}") for i in range(40)]
    for i in range(40):
        _png(tmp_path / f"img/{i}.png", i)
    _write(tmp_path / "train.csv", rows)
    run = assign_splits(load_source(tmp_path / "train.csv"), seed=0)
    run.to_csv(tmp_path / "manifest.csv")
    split_of = {c.path: c.split for c in run.cases}

    # a new CSV: the run's test images in another order, then 30 new images,
    # three per (new) patient
    test_rows = [r for r in rows if split_of[str((tmp_path / r[0]).resolve())] == "test"][::-1]
    new_rows = []
    for i in range(30):
        _png(tmp_path / f"new/{i}.png", 1000 + i)
        new_rows.append((f"new/{i}.png", "ab"[i % 2], f"q{i // 3}"))
    _write(tmp_path / "new.csv", new_rows + test_rows)
    new = load_source(tmp_path / "new.csv")
    apply_run_splits(new, tmp_path / "manifest.csv", strict=False)
    assert len(new.in_split("external")) == 30
    assert {c.path for c in new.in_split("test")} == {p for p, s in split_of.items() if s == "test"}
    assert not new.in_split("train")


def test_new_image_of_a_training_patient_takes_its_patients_split(tmp_path):
    rows = [(f"img/{i}.png", "ab"[i % 2], f"p{i}") for i in range(40)]
    for i in range(40):
        _png(tmp_path / f"img/{i}.png", i)
    _write(tmp_path / "train.csv", rows)
    run = assign_splits(load_source(tmp_path / "train.csv"), seed=0)
    run.to_csv(tmp_path / "manifest.csv")
    trained = next(c for c in run.cases if c.split == "train")
    _png(tmp_path / "extra.png", 999)
    pid = next(r[2] for r in rows if str((tmp_path / r[0]).resolve()) == trained.path)
    _write(tmp_path / "new.csv", [*rows, ("extra.png", "a", pid)])
    new = load_source(tmp_path / "new.csv")
    apply_run_splits(new, tmp_path / "manifest.csv", strict=False)  # no false leakage error
    extra = next(c for c in new.cases if c.path.endswith("extra.png"))
    assert extra.split == "train"


def test_cli_evaluate_external_csv(quick_run, phantoms, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(quick_run, run)  # quick_run is shared: evaluate a copy
    with open(run / "manifest.csv", newline="") as f:
        recorded = list(csv.DictReader(f))
    found = locate([r["file"] for r in recorded], under=phantoms)  # files by keyed reference
    for r in recorded:
        r["path"] = str(found[r["file"]])
    test_rows = [(r["path"], r["label"], "") for r in recorded if r["split"] == "test"]
    new_rows = []
    for i, r in enumerate(recorded[:12]):  # altered copies: new images, 3 per patient
        arr = np.array(Image.open(r["path"]).convert("L")) if r["path"].endswith(".png") else None
        if arr is None:
            continue
        arr[0, 0] = (int(arr[0, 0]) + 1 + i) % 256
        Image.fromarray(arr).save(tmp_path / f"n{i}.png")
        new_rows.append((str(tmp_path / f"n{i}.png"), r["label"], f"new{i // 3}"))
    _write(tmp_path / "new.csv", new_rows + test_rows[::-1])
    common = ["-q", "evaluate", str(run), "--data", str(tmp_path / "new.csv")]
    common += ["--gallery", "0", "--bootstrap", "20"]
    assert main([*common, "--split", "external"]) == 0
    ext = json.loads((run / "eval" / "external" / "metrics.json").read_text())
    assert ext["cases"] == len(new_rows)
    assert main([*common, "--split", "test"]) == 0
    test = json.loads((run / "eval" / "test" / "metrics.json").read_text())
    assert test["cases"] == len(test_rows)
