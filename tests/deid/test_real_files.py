"""Real DICOM (../shared/data/dicom and the deid-data package): every Table E.1-1
attribute present gets its action, pixels stay bit-identical, dciodvfy finds no new
errors, and the files of one study share the remapped Study Instance UID."""

from __future__ import annotations

import os
import re
import subprocess
from collections import Counter
from pathlib import Path

import pydicom
import pytest

from scandx.deid import DeidOptions, deidentify_tree
from tests.conftest import DICOM_DATA, DICOM_TEST, needs_shared
from tests.deid.check import check_actions
from tests.system_tools import require_tool

deid_data = pytest.importorskip("deid_data")
DEID_DATA = Path(deid_data.__file__).parent / "data"
UID_IN_MESSAGE = re.compile(r"<?\b\d+(?:\.\d+)*\b>?")  # UIDs (and any number)


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory):
    if not DICOM_TEST.is_dir():
        pytest.skip(f"real data folder {DICOM_TEST} is absent")
    root = tmp_path_factory.mktemp("real")
    src = root / "in"
    src.mkdir()
    for name, folder in (("test", DICOM_TEST), ("data", DICOM_DATA), ("deid", DEID_DATA)):
        if folder.is_dir():
            os.symlink(folder, src / name, target_is_directory=True)
    summary = deidentify_tree(src, root / "out", DeidOptions())
    return summary, root


@needs_shared
def test_every_listed_attribute_present_gets_its_action(real_run) -> None:
    summary, _ = real_run
    assert summary.written >= 100
    totals: Counter = Counter()
    for path, target in summary.outputs.items():
        inp, out = pydicom.dcmread(path, force=True), pydicom.dcmread(target)
        totals += check_actions(inp, out)
        if "PixelData" in inp:
            assert out.PixelData == inp.PixelData, path.name
        assert out.PatientIdentityRemoved == "YES"
        assert not [t for t in out.keys() if t.is_private], path.name
    assert {"X", "Z", "D", "U"} <= set(totals), totals
    assert totals["U"] > 300 and totals["X"] > 100


@needs_shared
def test_bad_files_are_listed_never_written(real_run) -> None:
    summary, root = real_run
    reasons = Counter(reason.split(" (")[0] for _, reason in summary.skipped)
    assert sum(n for r, n in reasons.items() if "truncated" in r) >= 1  # MR_truncated.dcm
    assert any(r.startswith("not a DICOM") for r in reasons), reasons
    assert not list((root / "out").rglob(".*.tmp"))
    skipped_csv = (root / "out-mapping" / "skipped.csv").read_text()
    assert skipped_csv.startswith("file,reason\n") and "MR_truncated" not in skipped_csv


@needs_shared
def test_files_of_one_study_share_the_new_study_uid(real_run) -> None:
    summary, _ = real_run
    cookies = [t for p, t in summary.outputs.items() if "dicom-cookies" in str(p)]
    assert len(cookies) >= 2
    studies = {pydicom.dcmread(t, stop_before_pixels=True).StudyInstanceUID for t in cookies}
    originals = {
        pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID
        for p in summary.outputs
        if "dicom-cookies" in str(p)
    }
    assert len(studies) == len(originals)


@needs_shared
def test_burned_in_text_is_flagged(real_run) -> None:
    summary, _ = real_run
    ultrasound = [t for p, t in summary.outputs.items() if "ultrasounds" in str(p)]
    assert ultrasound
    flagged = set(summary.burned_in)
    assert all(str(t.relative_to(t.parents[3])) in flagged for t in ultrasound)


def _dciodvfy_errors(path: Path) -> set[str]:
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, timeout=60)
    text = (run.stdout + run.stderr).decode("utf-8", "replace")
    # a message naming a UID names the input's in one and the remap in the other
    return {
        UID_IN_MESSAGE.sub("<uid>", line.split(" - ", 1)[1].strip())
        for line in text.splitlines()
        if line.startswith("Error - ")
    }


@needs_shared
def test_dciodvfy_finds_no_new_errors(real_run) -> None:
    require_tool("dciodvfy", kind="dicom-tools", what="dciodvfy (Debian dicom3tools)")
    summary, _ = real_run
    problems, seen = [], set()
    for path, target in sorted(summary.outputs.items()):
        header = pydicom.dcmread(target, stop_before_pixels=True)
        kind = (header.SOPClassUID, header.get("Modality"))
        if kind in seen:  # one instance of each SOP class and modality: seconds, not minutes
            continue
        seen.add(kind)
        new = _dciodvfy_errors(target) - _dciodvfy_errors(path)
        if new:
            problems.append(f"{path.name}: {sorted(new)}")
    assert not problems, "\n".join(problems)
