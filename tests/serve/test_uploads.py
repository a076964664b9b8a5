"""serve.uploads on real files and hostile ones: the right status with one clear line,
nothing allocated for what a header merely declares, nothing written outside the work
folder, no name from the upload ever used on disk."""

from __future__ import annotations

import resource
import tracemalloc
from pathlib import Path

import pytest

from scandx.serve.uploads import Upload, UploadError, UploadLimits, accept, sniff
from tests.conftest import DICOM_TEST, needs_shared
from tests.serve import hostile as H

LIMITS = UploadLimits(
    max_bytes=8 << 20, max_pixels=4_000_000, max_members=200, max_extracted_bytes=16 << 20
)
MAX_PEAK = 24 << 20  # bytes Python may allocate while checking any upload


def check(tmp_path: Path, data: bytes, limits: UploadLimits = LIMITS) -> Upload:
    """``accept`` on ``data`` as the service calls it, watching memory and the disk."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "received").write_bytes(data)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    try:
        return accept(work / "received", limits, work)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        assert peak < MAX_PEAK, f"{peak:,} bytes allocated"
        assert grown_kib < 64 << 10, f"RSS high-water mark grew by {grown_kib:,} KiB"
        outside = [p for p in tmp_path.rglob("*") if work not in (p, *p.parents)]
        assert not outside, outside


def refused(tmp_path: Path, data: bytes, status: int, match: str, **kw) -> str:
    with pytest.raises(UploadError) as e:
        check(tmp_path, data, **kw)
    reason = e.value.reason
    assert e.value.status == status, reason
    assert match in reason and "\n" not in reason and str(tmp_path) not in reason
    return reason


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (H.png_bytes, "png"),
        (lambda: H.png_bytes(mode="RGB"), "png"),
        (lambda: H.raster_bytes("JPEG"), "jpeg"),
        (lambda: H.raster_bytes("TIFF"), "tiff"),
        (H.dicom_bytes, "dicom"),
        (H.nifti_bytes, "nifti"),
    ],
)
def test_ordinary_files_are_accepted_by_their_bytes(tmp_path, make, kind):
    up = check(tmp_path, make())
    assert up.kind == kind and up.path.parent == tmp_path / "work" and up.pixels > 0


def test_gzipped_nifti_and_a_dicom_series_zip(tmp_path):
    import gzip

    (tmp_path / "a").mkdir()
    up = check(tmp_path / "a", gzip.compress(H.nifti_bytes((4, 8, 8))))
    assert up.kind == "nifti-gz" and up.pixels == 256 and up.path.name.endswith(".nii.gz")

    from scandx.tasks.segmentation.synthetic import make_dicom_seg_cases

    data = make_dicom_seg_cases(tmp_path / "dicom", n=1, shape=(4, 16, 16))
    (tmp_path / "b").mkdir()
    up = check(tmp_path / "b", H.series_zip(data / "case00"))
    assert up.kind == "dicom-series" and len(up.images) == 5  # 4 slices + the SEG
    assert [p.name for p in up.images] == [f"{i:05d}.dcm" for i in range(1, 6)]


@needs_shared
def test_real_dicom_files_are_accepted_or_refused_in_one_line(tmp_path):
    for i, f in enumerate(sorted(DICOM_TEST.glob("*.dcm"))[:40]):
        (tmp_path / str(i)).mkdir()
        try:
            up = check(tmp_path / str(i), f.read_bytes())
            assert up.kind == "dicom"
        except UploadError as e:
            assert e.status in (413, 415, 422) and "\n" not in e.reason


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (H.huge_png, "more than 4,000,000 samples"),
        (H.huge_tiff, "more than 4,000,000 samples"),
        (H.huge_jpeg, "more than 4,000,000 samples"),
        (H.huge_dicom, "declares 42,948,362,250,000 samples, above this service's limit"),
        (H.huge_nifti, "declares 35,181,150,961,663 samples"),
        (lambda: H.huge_png(3000, 3000), "declares 9,000,000 samples"),  # under Pillow's guard
    ],
)
def test_huge_declared_dimensions_are_refused_from_the_header(tmp_path, make, match):
    reason = refused(tmp_path, make(), 422, match)
    assert "--max-pixels" in reason


def test_zip_bombs_and_lying_members_stop_at_the_extracted_bytes_limit(tmp_path):
    for i, data in enumerate([H.zip_bomb(), H.zip_bomb(declared=1000)]):
        (tmp_path / str(i)).mkdir()
        with pytest.raises(UploadError) as e:
            check(tmp_path / str(i), data)
        assert e.value.status in (413, 422) and "\n" not in e.value.reason
    (tmp_path / "x").mkdir()
    refused(tmp_path / "x", H.zip_bomb(), 413, "the zip expands to more than 16,777,216 bytes")


@pytest.mark.parametrize(
    ("make", "status", "match"),
    [
        (H.many_members_zip, 413, "the zip holds 5000 files, above the limit of 200"),
        (lambda: H.zip_of({"a.png": H.png_bytes()}), 422, "zip member 1 is not a DICOM file"),
        (lambda: H.zip_of({"in.zip": H.zip_of({"a.dcm": H.dicom_bytes()})}), 422, "not a DICOM"),
        (lambda: H.zip_of({"DICOMDIR": b"x"}), 422, "the zip holds no DICOM file"),
        (lambda: b"PK\x03\x04" + b"\x00" * 200, 422, "not a readable zip file"),
        (lambda: b"", 422, "the uploaded file is empty"),
        (lambda: bytes(range(256)) * 8, 415, "not a file type scandx reads"),
        (lambda: b"%PDF-1.4\n" + b"x" * 600, 415, "read from the file's bytes, not its name"),
        (lambda: H.truncated(H.png_bytes(), 0.02), 422, "unreadable image header"),
        (lambda: H.dicom_bytes(0, 0, pixels=b""), 422, "holds no image"),
    ],
)
def test_hostile_uploads_are_refused_in_one_line(tmp_path, make, status, match):
    refused(tmp_path, make(), status, match)


def test_zip_names_are_never_used_on_disk(tmp_path):
    up = check(tmp_path, H.traversal_zip(H.dicom_bytes()))
    assert [p.name for p in up.images] == ["00001.dcm", "00002.dcm", "00003.dcm"]
    assert not (tmp_path / "evil.dcm").exists() and not Path("/abs/evil2.dcm").exists()


@pytest.mark.parametrize("kind", ["dicom", "png", "nifti", "zip"])
def test_truncated_and_mutated_files_never_raise_anything_else(tmp_path, kind):
    real = {
        "dicom": H.dicom_bytes(),
        "png": H.png_bytes(),
        "nifti": H.nifti_bytes(),
        "zip": H.zip_of({"a.dcm": H.dicom_bytes(), "b.dcm": H.dicom_bytes(seed=1)}),
    }[kind]
    variants = [H.truncated(real, k) for k in (0.01, 0.1, 0.3, 0.6, 0.99)]
    variants += [H.mutated(real, seed=s, flips=f) for s in range(12) for f in (1, 8, 64)]
    for i, data in enumerate(variants):
        (tmp_path / str(i)).mkdir()
        try:
            check(tmp_path / str(i), data)
        except UploadError as e:
            assert e.status in (413, 415, 422) and "\n" not in e.reason


def test_sniffing_ignores_names_and_knows_each_magic():
    assert sniff(H.png_bytes()[:1024]) == "png"
    assert sniff(H.dicom_bytes()[:1024]) == "dicom"
    assert sniff(H.nifti_bytes()[:1024]) == "nifti"
    assert sniff(H.zip_of({"a": b"b"})[:1024]) == "zip"
    assert sniff(b"GIF89a" + b"\x00" * 400) is None


@needs_shared
@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "MR_small_padded.dcm"])
def test_dicom_with_a_tiff_header_in_its_preamble_is_dicom(tmp_path, name):
    data = (DICOM_TEST / name).read_bytes()
    assert data[:4] == b"II*\x00" and data[128:132] == b"DICM"  # dual-personality file
    assert check(tmp_path, data).kind == "dicom"
