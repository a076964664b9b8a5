"""Damaged and odd documents: CSV manifests, dataset.json, plan.json and model.json.

Each is either accepted with a result that makes sense, or refused with ScandxError
(one line, exit 2 in the CLI); never a traceback.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.mutations import damage, edits, json_values, mutated_mapping
from tests.fuzz.outcomes import attempt

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from PIL import Image

    root = tmp_path_factory.mktemp("csvdata")
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray((rng.random((16, 16)) * 255).astype(np.uint8)).save(root / f"im{i}.png")
    return root


COLUMNS = ["path", "label", "Label", "patient_id", "split", "is_male", "smoker", "notes", ""]
CELLS = (
    st.sampled_from([f"im{i}.png" for i in range(6)])
    | st.sampled_from(["0", "1", "0.0", "1.0", "NaN", "", "Lesion", "lesion ", "normal"])
    | st.sampled_from(["train", "val", "test", "bogus", "missing.png", "../../etc/passwd"])
    | st.text(max_size=12)
)


@given(
    header=st.lists(st.sampled_from(COLUMNS), min_size=1, max_size=5),
    rows=st.lists(st.lists(CELLS, min_size=0, max_size=6), min_size=0, max_size=14),
    plan=st.none() | edits,
)
def test_odd_csv_manifests(image_folder: Path, tmp_path: Path, header, rows, plan):
    import csv
    import io

    from scandx.tasks.classification.data.sources import load_source

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    data = buf.getvalue().encode("utf-8", "surrogateescape")
    if plan:
        data = damage(data, plan)
    path = image_folder / f"fuzz-{tmp_path.name}.csv"
    path.write_bytes(data)

    def check(manifest: Any) -> str | None:
        if len(manifest) == 0 or len(manifest.classes) < 2:
            return f"{len(manifest)} cases, classes {manifest.classes}"
        return None

    try:
        attempt("csv manifest", lambda: load_source(path), check)
    finally:
        path.unlink(missing_ok=True)


@given(
    labels=st.lists(
        st.sampled_from(["0", "1", "0.0", "1.0", "normal", "Normal ", "lesion"]),
        min_size=6,
        max_size=6,
    ),
    header=st.sampled_from([["path", "label", "patient_id"], ["Path", "LABEL", "split"]]),
    edits_=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 2), CELLS), max_size=3),
)
def test_near_valid_csv_manifests(image_folder: Path, tmp_path: Path, labels, header, edits_):
    """Valid manifests with a few cells changed: most are accepted, so the checks on an
    accepted manifest (classes, cases) are exercised too."""
    import csv
    import io

    from scandx.tasks.classification.data.sources import load_source

    rows = [
        [f"im{i}.png", labels[i], f"p{i // 2}" if header[2] == "patient_id" else ""]
        for i in range(6)
    ]
    for r, c, value in edits_:
        rows[r][c] = value
    buf = io.StringIO()
    csv.writer(buf).writerows([header, *rows])
    path = image_folder / f"near-{tmp_path.name}.csv"
    path.write_text(buf.getvalue(), encoding="utf-8", errors="surrogateescape")

    def check(manifest: Any) -> str | None:
        if len(manifest.classes) < 2 or len(manifest) == 0:
            return f"{len(manifest)} cases, classes {manifest.classes}"
        if len({c.case_id for c in manifest.cases}) != len(manifest):
            return "two cases share a case id"
        return None

    try:
        attempt("csv near-valid", lambda: load_source(path), check)
    finally:
        path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def decathlon(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    import nibabel as nib

    root = tmp_path_factory.mktemp("decathlon")
    (root / "imagesTr").mkdir()
    (root / "labelsTr").mkdir()
    training = []
    for i in range(3):
        img = np.random.default_rng(i).random((8, 8, 4)).astype(np.float32)
        nib.save(nib.Nifti1Image(img, np.eye(4)), root / "imagesTr" / f"c{i}.nii.gz")
        lbl = (img > 0.5).astype(np.uint8)
        nib.save(nib.Nifti1Image(lbl, np.eye(4)), root / "labelsTr" / f"c{i}.nii.gz")
        training.append({"image": f"./imagesTr/c{i}.nii.gz", "label": f"./labelsTr/c{i}.nii.gz"})
    valid = {
        "name": "fuzz",
        "modality": {"0": "CT"},
        "labels": {"0": "background", "1": "thing"},
        "numTraining": 3,
        "training": training,
        "test": [],
    }
    return root, valid


@given(
    doc=st.one_of(json_values, st.just(None)),
    mutated=st.booleans(),
    plan=st.none() | edits,
    data=st.data(),
)
def test_odd_dataset_json(decathlon, doc, mutated, plan, data):
    from scandx.tasks.segmentation.sources import load_seg_source

    root, valid = decathlon
    if mutated or doc is None:
        doc = data.draw(mutated_mapping(valid))
        if isinstance(doc.get("training"), list) and doc["training"] and data.draw(st.booleans()):
            doc["training"] = [data.draw(mutated_mapping(doc["training"][0]))] + doc["training"]
    text = json.dumps(doc).encode()
    if plan:
        text = damage(text, plan)
    (root / "dataset.json").write_bytes(text)

    def check(manifest: Any) -> str | None:
        return None if manifest.cases else "no cases"

    attempt("dataset.json", lambda: load_seg_source(root), check)


def _finite_numbers(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite_numbers(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(_finite_numbers(v) for v in value)
    return True


@given(data=st.data(), plan=st.none() | edits)
def test_odd_plan_json(quick_run: Path, tmp_path: Path, data, plan):
    from scandx.core.plan import load_plan

    valid = json.loads((quick_run / "plan.json").read_text())
    doc = data.draw(mutated_mapping(valid))
    text = json.dumps(doc).encode()
    if plan:
        text = damage(text, plan)
    path = tmp_path / "plan.json"
    path.write_bytes(text)

    def check(p: Any) -> str | None:
        d = p.to_dict()
        if not _finite_numbers(d):
            return "non-finite number accepted"
        if not (isinstance(d.get("epochs"), int) and d["epochs"] > 0):
            return f"epochs {d.get('epochs')!r}"
        return None

    attempt("plan.json", lambda: load_plan(path), check)


@given(data=st.data())
def test_odd_model_json(quick_run: Path, tmp_path: Path, data):
    from scandx.core.predictor import load_predictor

    run = tmp_path / "run"
    if not run.exists():
        shutil.copytree(quick_run, run, ignore=shutil.ignore_patterns("eval", "checkpoints"))
    valid = json.loads((quick_run / "model" / "model.json").read_text())
    doc = data.draw(mutated_mapping(valid))
    (run / "model" / "model.json").write_text(json.dumps(doc))
    attempt("model.json", lambda: load_predictor(run))
