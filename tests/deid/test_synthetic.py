"""Markers in every attribute of Table E.1-1: each action, no marker left, the options."""

from __future__ import annotations

import csv
import stat
from pathlib import Path

import pydicom
import pytest

from scandx.deid import DeidOptions, deidentify_tree, keyed
from scandx.deid.table import load_table
from tests.deid.check import check_actions
from tests.deid.synthetic import NESTING_SEQUENCE, listed_tags, make_file, marker, text_markers


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("synthetic")
    make_file(root / "in" / "Markerson_Marka" / "one.dcm", "MKPATIENT01", seed=1)
    make_file(root / "in" / "Markerson_Marka" / "two.dcm", "MKPATIENT01", seed=2)
    return root / "in", root


def _run(src: Path, out: Path, **kw) -> tuple[dict, DeidOptions]:
    options = DeidOptions(**kw)
    summary = deidentify_tree(src, out, options)
    assert not summary.skipped, summary.skipped
    return summary.outputs, options


def test_table_is_the_2024b_edition_with_621_attributes() -> None:
    table = load_table()
    assert table.edition == "2024b" and table.source_commit.startswith("8670abd")
    assert len(table.rules) + len(table.wildcards) + 1 == 621
    assert table.rule(0x50020010).name == "Curve Data"
    assert table.rule(0x601E3000).name == "Overlay Data"
    assert table.rule(0x60013000).key == "private"  # odd group: private, not an overlay
    assert table.rule(0x60023001) is None and table.rule(0x50200010) is None
    for rule in [*table.rules.values(), table.private]:
        for options in ([], ["modified_dates"], ["clean_descriptors"]):
            assert rule.action(frozenset(options)) in {"X", "Z", "D", "U", "K", "C"}


def test_every_attribute_gets_its_action_and_no_marker_survives(synthetic) -> None:
    src, root = synthetic
    outputs, _ = _run(src, root / "out")
    for path, target in outputs.items():
        inp, out = pydicom.dcmread(path), pydicom.dcmread(target)
        checked = check_actions(inp, out)
        # every listed attribute checked, top level and nested
        assert sum(checked.values()) >= 2 * len(listed_tags())
        assert set(checked) == {"X", "Z", "D", "U"}
        assert out.PixelData == inp.PixelData
        assert out.PatientIdentityRemoved == "YES"
        assert out.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
        assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
        assert "SourceApplicationEntityTitle" not in out.file_meta
        assert not [t for t in out.keys() if t.is_private or t.group in (0x5000, 0x6000)]
        raw = target.read_bytes()
        for tag, vr in listed_tags():
            for nested in (False, True):
                for mark in text_markers(marker(tag, vr, nested)):
                    assert mark not in raw, f"{tag:08X} {vr}: marker {mark!r} in the output"
        for mark in (b"MKPATIENT01", b"Markerson", b"MKPRIVATE", b"MKOVERLAY", b"MKSOURCEAE"):
            assert mark not in raw
        assert b"19770412" not in raw  # every date went (no dates option)
        assert Path(target).name == f"{out.SOPInstanceUID}.dcm"
        assert "Markerson" not in str(target)


def test_uids_remap_consistently_across_files_and_runs(synthetic) -> None:
    src, root = synthetic
    first, _ = _run(src, root / "run1")
    second, _ = _run(src, root / "run2")
    a, b = (pydicom.dcmread(p) for p in first.values())
    assert (
        a.StudyInstanceUID
        == b.StudyInstanceUID
        == keyed.remap_uid(pydicom.dcmread(next(iter(first))).StudyInstanceUID)
    )
    assert a.SOPInstanceUID != b.SOPInstanceUID
    for path in first:
        assert first[path].relative_to(root / "run1") == second[path].relative_to(root / "run2")
        assert first[path].read_bytes() == second[path].read_bytes()


def test_mapping_files_hold_the_originals_outside_out(synthetic) -> None:
    src, root = synthetic
    _run(src, root / "mapped")
    folder = root / "mapped-mapping"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in ("uid_mapping.csv", "patid_mapping.csv"):
        path = folder / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        assert rows and list(rows[0]) == ["id_old", "id_new"]
    pids = {r["id_old"]: r["id_new"] for r in csv.DictReader(open(folder / "patid_mapping.csv"))}
    assert pids == {"MKPATIENT01": keyed.patient_pseudonym("MKPATIENT01")}
    uids = {r["id_old"]: r["id_new"] for r in csv.DictReader(open(folder / "uid_mapping.csv"))}
    assert all(new == keyed.remap_uid(old) for old, new in uids.items())
    assert not list((root / "mapped").rglob("*.csv"))


def test_modified_dates_shift_by_the_patients_offset(synthetic) -> None:
    src, root = synthetic
    outputs, options = _run(src, root / "dates", keep_longitudinal_dates=True)
    days = keyed.date_shift_days("MKPATIENT01")
    assert 365 <= days <= 3650
    expected = keyed.shift_da("19770412", days)
    for path, target in outputs.items():
        inp, out = pydicom.dcmread(path), pydicom.dcmread(target)
        check_actions(inp, out, options.profile_options())
        assert out.StudyDate == expected != "19770412"
        assert out.AcquisitionDateTime.startswith(expected) and out.StudyTime == "112233.4455"
        assert getattr(out, NESTING_SEQUENCE)[0].StudyDate == expected
        codes = [i.CodeValue for i in out.DeidentificationMethodCodeSequence]
        assert codes == ["113100", "113107"]
        assert out.LongitudinalTemporalInformationModified == "MODIFIED"


def test_clean_descriptors_keep_text_without_the_patients_name_or_id(synthetic) -> None:
    src, root = synthetic
    outputs, options = _run(src, root / "desc", keep_descriptors=True)
    for path, target in outputs.items():
        inp, out = pydicom.dcmread(path), pydicom.dcmread(target)
        check_actions(inp, out, options.profile_options())
        assert out.StudyDescription == "follow-up of * *"
        assert "113105" in [i.CodeValue for i in out.DeidentificationMethodCodeSequence]
        assert b"MKPATIENT01" not in target.read_bytes()
        assert b"Markerson" not in target.read_bytes()


def test_shift_helpers_keep_ranges_and_offsets() -> None:
    assert keyed.shift_da("20200301", 1) == "20200229"
    assert keyed.shift_da("20200301-20200302", 1) == "20200229-20200301"
    assert keyed.shift_dt("20200301101010.5-0500", 1) == "20200229101010.5-0500"
    assert keyed.shift_dt("2020", 365) == "2019"
    assert keyed.shift_da("garbage", 5) == "19000101"
    uid = keyed.remap_uid("1.2.3")
    assert uid.startswith("2.25.") and len(uid) <= 64 and uid == keyed.remap_uid("1.2.3 ")
