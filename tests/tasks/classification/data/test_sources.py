"""Every source becomes the same Manifest; bad sources fail with one clear line."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pydicom
import pytest
from PIL import Image

from scandx.core.privacy import pseudonym
from scandx.errors import BadImageError, ScandxError
from scandx.tasks.classification.data.sources import load_source
from scandx.tasks.classification.data.splits import assign_splits
from tests.conftest import DICOM_TEST, PNEUMONIA, needs_shared


def _png(path, value=128):
    """A small PNG whose content is unique to its path (the same bytes are one image)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((16, 16), value, np.uint8)
    arr[0, :] = np.frombuffer(str(path).encode()[-16:].ljust(16, b"_"), np.uint8)
    Image.fromarray(arr).save(path)


def test_folder_per_class_with_nested_patients(phantoms):
    m = load_source(phantoms)
    assert m.task == "binary" and m.classes == ["normal", "lesion"]  # negative class first
    assert {c.path.rsplit(".", 1)[1] for c in m.cases} == {"dcm", "png"}
    folders = {c.path.rsplit("/", 2)[1] for c in m.cases}
    # a patient folder may hold a DICOM (with PatientID) and a PNG: still one patient
    assert len({c.patient_id for c in m.cases}) == len(folders)
    for c in m.cases:  # the patient folder, as a keyed pseudonym (never its name)
        assert c.patient_id == pseudonym(c.path.rsplit("/", 2)[1])
        assert c.case_id.startswith("case-") and "/" not in c.case_id


@needs_shared
def test_one_dicom_patient_in_two_study_folders_is_one_patient(tmp_path):
    series = sorted((DICOM_TEST / "dicomdirtests" / "98892001").rglob("*"))
    files = [f for f in series if f.is_file()]
    for i, f in enumerate(files):  # the same PatientID, spread over two "study" folders
        dest = tmp_path / ("ct" if i % 2 else "mr") / f"study{i % 2}" / f"im{i}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, dest)
    m = load_source(tmp_path)
    assert len({c.patient_id for c in m.cases}) == 1


def test_folder_with_given_splits_keeps_them(tmp_path):
    for split in ("train", "val", "test"):
        for cls in ("a", "b"):
            for i in range(3):
                _png(tmp_path / split / cls / f"{split}{cls}{i}.png")
    m = assign_splits(load_source(tmp_path))
    assert {c.split for c in m.cases} == {"train", "val", "test"}
    assert all(c.path.split("/")[-3] == c.split for c in m.cases)


def test_extensionless_dicom_in_class_folder(tmp_path):
    for cls, src in (("ct", "CT2/17106"), ("mr", "MR1/15820")):
        base = DICOM_TEST / "dicomdirtests"
        found = next(base.rglob(src.split("/")[1]))
        (tmp_path / cls).mkdir()
        shutil.copy(found, tmp_path / cls / "IMAGE0001")
    m = load_source(tmp_path)
    assert len(m) == 2 and m.classes == ["ct", "mr"]


def test_csv_single_label_with_metadata(tmp_path):
    rows = []
    for i in range(8):
        _png(tmp_path / "img" / f"{i}.png", 10 * i)
        rows.append(
            {
                "path": f"img/{i}.png",
                "label": "pneumonia" if i % 2 else "normal",
                "patient_id": f"p{i // 2}",
                "site": "A" if i < 4 else "B",
            }
        )
    with open(tmp_path / "m.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    m = load_source(tmp_path / "m.csv")
    assert m.task == "binary" and m.classes == ["normal", "pneumonia"]
    assert m.cases[0].meta["site"] == "A" and m.cases[0].patient_id == pseudonym("p0")


def test_csv_multilabel_columns(tmp_path):
    with open(tmp_path / "m.csv", "w") as f:
        f.write("path,effusion,nodule,split\n")
        for i in range(6):
            _png(tmp_path / f"{i}.png")
            f.write(f"{i}.png,{i % 2},{int(i > 2)},{'train' if i < 4 else 'test'}\n")
    m = load_source(tmp_path / "m.csv")
    assert m.task == "multilabel" and m.classes == ["effusion", "nodule"]
    assert m.cases[3].target == (1, 1) and m.cases[4].split == "test"


def test_csv_missing_file_names_row_and_file(tmp_path):
    (tmp_path / "m.csv").write_text("path,label\nnothere.png,a\n")
    with pytest.raises(BadImageError, match=r"m\.csv:2: image file not found"):
        load_source(tmp_path / "m.csv")


def test_csv_without_any_label_is_one_clear_error(tmp_path):
    _png(tmp_path / "a.png")
    (tmp_path / "m.csv").write_text("path,label\na.png,\n")
    with pytest.raises(ScandxError, match=r"m\.csv: no labelled case among 1 image"):
        load_source(tmp_path / "m.csv")


@needs_shared
def test_dicom_folder_labelled_by_sop_instance_uid(tmp_path):
    base = DICOM_TEST / "dicomdirtests"
    rows, patients = [], set()
    for f in sorted(base.rglob("*")):
        if f.is_file() and f.parent.name[:2] in ("CT", "MR") and f.parent.parent.name.isdigit():
            ds = pydicom.dcmread(f, stop_before_pixels=True)
            rows.append(f"{ds.SOPInstanceUID},{ds.Modality}")
            patients.add(str(ds.PatientID))
    (tmp_path / "labels.csv").write_text("sop_instance_uid,label\n" + "\n".join(rows) + "\n")
    m = load_source(tmp_path / "labels.csv", image_root=base)
    assert m.classes == ["CT", "MR"] and len(m) == len(rows)
    assert len({c.patient_id for c in m.cases}) == len(patients) >= 2  # from PatientID
    assert not {c.patient_id for c in m.cases} & patients  # pseudonymised, never the real id
    # two patients, one per class: too few to hold any out, and scandx says so
    with pytest.raises(ScandxError, match="no cases in the val split"):
        assign_splits(m, seed=0)


@needs_shared
def test_medmnist_keeps_official_split():
    m = load_source(PNEUMONIA)
    assert m.classes == ["normal", "pneumonia"]
    assert m.class_counts("train") == {"normal": 1214, "pneumonia": 3494}
    assert m.class_counts("test") == {"normal": 234, "pneumonia": 390}
    assert len(m.in_split("val")) == 524


def test_medmnist_multilabel_chest_like(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {}
    for s, n in (("train", 20), ("val", 6), ("test", 6)):
        arrays[f"{s}_images"] = rng.integers(0, 255, (n, 28, 28), dtype=np.uint8)
        arrays[f"{s}_labels"] = rng.integers(0, 2, (n, 14), dtype=np.uint8)
    np.savez(tmp_path / "chestmnist.npz", **arrays)
    m = load_source(tmp_path / "chestmnist.npz")
    assert m.task == "multilabel" and len(m.classes) == 14 and m.classes[0] == "atelectasis"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.mkdir(), "empty folder"),
        (lambda p: _png(p / "only" / "a.png"), "only one class"),
        (
            lambda p: (
                _png(p / "a" / "x.png"),
                _png(p / "b" / "y.png"),
                (p / "b" / "notes.xyz").write_text("hi"),
            ),
            "unsupported file type .xyz",
        ),
        (
            lambda p: (
                _png(p / "a" / "x.png"),
                (p / "b").mkdir(),
                (p / "b" / "scan").write_text("not dicom"),
            ),
            "not DICOM",
        ),
    ],
    ids=["empty", "single-class", "unknown-extension", "non-image-without-extension"],
)
def test_bad_folders(tmp_path, make, message):
    make(tmp_path / "data")
    with pytest.raises(ScandxError, match=message):
        load_source(tmp_path / "data")
