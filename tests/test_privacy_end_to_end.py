"""Privacy by construction (issue 11): no identifier of the input reaches any output.

DICOM files carry a distinctive marker in every PS3.15 Annex E identifying attribute
that pydicom lets us set (names, ids, dates, UIDs, institution, device, operators...),
and in their folder and file names; a CSV carries one in its ``patient_id`` column.
Every command a user runs (plan, train, evaluate, explain, predict, train --folds) is
run through the CLI, and every byte of every output file, every output file name,
stdout, stderr and every log record is searched for every marker.
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

import numpy as np
import pytest

from scandx.cli import main
from scandx.tasks.classification.data.synthetic import phantom, write_dicom, write_png

UID_ROOT = "1.2.826.0.1.99999"  # every UID marker starts with it
BIRTH = "18880808"

# PS3.15 Annex E attributes (basic profile) with a marker each; {p}: the patient number
TEXT_ATTRIBUTES = {
    "PatientName": "ZQXNAME{p}^ZQXGIVEN{p}",
    "PatientID": "ZQXPID{p}",
    "OtherPatientIDs": "ZQXOTHERID{p}",
    "OtherPatientNames": "ZQXOTHERNAME{p}",
    "PatientBirthName": "ZQXBIRTHNAME{p}",
    "PatientMotherBirthName": "ZQXMOTHER{p}",
    "IssuerOfPatientID": "ZQXISSUER",
    "PatientAddress": "ZQXADDRESS{p} Street",
    "PatientTelephoneNumbers": "ZQXTEL{p}",
    "MedicalRecordLocator": "ZQXMRL{p}",
    "AccessionNumber": "ZQXACC{p}",
    "StudyID": "ZQXSTUDY{p}",
    "InstitutionName": "ZQXINSTITUTION",
    "InstitutionAddress": "ZQXINSTADDRESS",
    "InstitutionalDepartmentName": "ZQXDEPARTMENT",
    "ReferringPhysicianName": "ZQXREFERRER^Doc",
    "PerformingPhysicianName": "ZQXPERFORMER^Doc",
    "NameOfPhysiciansReadingStudy": "ZQXREADER^Doc",
    "PhysiciansOfRecord": "ZQXRECORD^Doc",
    "RequestingPhysician": "ZQXREQUESTER^Doc",
    "OperatorsName": "ZQXOPERATOR^Op",
    "StationName": "ZQXSTATION",
    "DeviceSerialNumber": "ZQXSERIAL{p}",
    "StudyDescription": "ZQXSTUDYDESC",
    "SeriesDescription": "ZQXSERIESDESC",
    "RequestedProcedureDescription": "ZQXPROCEDURE",
    "AdditionalPatientHistory": "ZQXHISTORY",
    "PatientComments": "ZQXCOMMENT",
    "ImageComments": "ZQXIMAGECOMMENT",
    "Occupation": "ZQXOCCUPATION",
    "PatientBirthDate": BIRTH,
    "StudyDate": BIRTH,
    "SeriesDate": BIRTH,
    "AcquisitionDate": BIRTH,
    "ContentDate": BIRTH,
}
UID_ATTRIBUTES = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID")
# whole markers (prefixes before the patient number): short ones would match binary
# weights by chance
MARKERS = tuple(
    sorted(
        {v.split("{")[0].split("^")[0] for v in TEXT_ATTRIBUTES.values()}
        | {"ZQXDIR", "ZQXFILE", "ZQXCSVPID", "ZQXBROKEN", "ZQXBADDIR", UID_ROOT}
        | {"ZQXSEGCASE", "ZQXSEGID", "ZQXSEGPID"}
    )
)


def _mark_dicom(path: Path, p: int, k: int) -> None:
    import pydicom

    ds = pydicom.dcmread(path)
    for name, value in TEXT_ATTRIBUTES.items():
        setattr(ds, name, value.format(p=p))
    for i, name in enumerate(UID_ATTRIBUTES):
        setattr(ds, name, f"{UID_ROOT}.{p}.{k}.{i + 1}")
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)


def _write_data(root: Path, n_patients: int = 16, size: int = 32) -> tuple[Path, Path, list[Path]]:
    """DATA/<class>/ZQXDIR<p>/ZQXFILE<p>_<k>.{dcm,png}, labels.csv (marked patient ids)
    and one unreadable marked file; returns (folder, csv, readable files)."""
    rng = np.random.default_rng(0)
    data = root / "data"
    files, rows = [], []
    for p in range(n_patients):
        cls = "lesion" if p % 2 else "normal"
        folder = data / cls / f"ZQXDIR{p:03d}"
        folder.mkdir(parents=True)
        for k in range(2):
            img, _ = phantom(rng, size, cls == "lesion")
            if k == 0:
                path = folder / f"ZQXFILE{p:03d}_{k}.dcm"
                write_dicom(path, img, f"ZQXPID{p}", variant=p % 3, sex="FM"[p % 2], age=40 + p)
                _mark_dicom(path, p, k)
            else:
                path = folder / f"ZQXFILE{p:03d}_{k}.png"
                write_png(path, img)
            files.append(path)
            rows.append([path.relative_to(data).as_posix(), cls, f"ZQXCSVPID{p}"])
    bad = data / "normal" / "ZQXBADDIR" / "ZQXBROKEN.dcm"  # its own patient: skipped everywhere
    bad.parent.mkdir()
    bad.write_bytes(b"\0" * 128 + b"DICM" + b"ZQXBROKEN" * 4)
    table = data.parent / "labels.csv"
    with open(table, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "patient_id"])
        w.writerows([[f"data/{r[0]}", *r[1:]] for r in rows])
    return data, table, files


def _leaks(blob: bytes) -> list[str]:
    text = blob.lower()
    return [m for m in MARKERS if m.lower().encode() in text]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def all_logs():
    handler, root = _Records(), logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


def _run_all(commands: list[list], capsys) -> list[str]:
    console = []
    for args in commands:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        console += [captured.out, captured.err]
        assert code == 0, (args[0], captured.err)
    return console


def _assert_no_leak(out: Path, console: list[str], logs: list[str]) -> None:
    """No marker in any file name or byte under ``out``, on the console or in the log."""
    found = {}
    for f in sorted(out.rglob("*")):
        rel = f.relative_to(out).as_posix()
        leaks = _leaks(rel.encode()) + (_leaks(f.read_bytes()) if f.is_file() else [])
        if leaks:
            found[rel] = leaks
    for name, text in (("console", "\n".join(console)), ("log", "\n".join(logs))):
        for line in io.StringIO(text):
            if _leaks(line.encode()):
                found.setdefault(name, []).append(line.strip()[:200])
    assert not found, "identifiers leaked:\n" + "\n".join(f"{k}: {v}" for k, v in found.items())


def test_no_identifier_reaches_any_output(tmp_path, capsys, all_logs):
    data, table, files = _write_data(tmp_path / "in")
    out = tmp_path / "out"
    run, csv_run = out / "run", out / "csv-run"
    budget = ["--time-budget", "3", "--model", "simple-cnn", "--skip-bad"]
    commands = [
        ["plan", "--data", data, "--out", out / "planned", "--skip-bad"],
        ["train", "--data", data, "--out", run, *budget],
        ["evaluate", run, "--data", data, "--split", "test", "--bootstrap", "20", "--skip-bad"],
        ["evaluate", run, "--data", data, "--split", "all", "--bootstrap", "20", "--skip-bad"],
        ["explain", run, *files[:2], "--out", out / "explained"],
        ["predict", run, *files[:4], "--out", out / "predicted"],
        ["predict", run, *files[:2]],  # rows on stdout
        ["train", "--data", table, "--out", csv_run, *budget],
        ["evaluate", csv_run, "--data", table, "--split", "all", "--bootstrap", "20"],
        ["train", "--data", data, "--out", out / "cv", "--folds", "2", *budget],
    ]
    _assert_no_leak(out, _run_all(commands, capsys), all_logs.lines)


def test_no_segmentation_identifier_reaches_any_output(tmp_path, capsys, all_logs):
    """A case table whose case ids, patient ids and file names are markers (one case
    unreadable): train, evaluate and predict leave none of them anywhere."""
    from scandx.tasks.segmentation.synthetic import make_ellipse_folders

    data = make_ellipse_folders(tmp_path / "in", n=10, size=32)
    rows = ["case_id,patient_id,split,image,label"]
    for i, img in enumerate(sorted((data / "images").iterdir())):
        name = f"ZQXSEGCASE{i:03d}.png"
        img.rename(data / "images" / name)
        (data / "masks" / img.name).rename(data / "masks" / name)
        split = "test" if i < 3 else ""
        rows.append(f"ZQXSEGID{i},ZQXSEGPID{i // 2},{split},images/{name},masks/{name}")
    broken = data / "images" / "ZQXSEGCASE009.png"
    broken.write_bytes(broken.read_bytes()[:60])
    table = data / "cases.csv"
    table.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    run, files = out / "run", sorted((data / "images").iterdir())[:2]
    commands = [
        ["train", "--data", table, "--out", run, "--time-budget", "4", "--skip-bad"],
        ["evaluate", run, "--data", table, "--bootstrap", "20", "--skip-bad"],
        ["predict", run, *files, broken, "--out", out / "predicted", "--skip-bad"],
    ]
    _assert_no_leak(out, _run_all(commands, capsys), all_logs.lines)
