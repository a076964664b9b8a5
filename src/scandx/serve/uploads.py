"""Uploads to the service: what the bytes are, whether they fit the limits, and where
they are put for the Predictor to read.

Nothing the client says about a file is trusted: its type is sniffed from its bytes
(never from the file name or the declared content type), its name is never used on
disk (it may name the patient, or be ``../../etc/passwd``), and its size in pixels is
read from the header and checked against the service's limit BEFORE anything is
decoded, so that a 40-byte PNG declaring 100,000 x 100,000 pixels, a DICOM declaring
65,535 x 65,535 x 10,000 frames or a zip bomb is refused without allocating it.

Each refusal is an ``UploadError`` carrying the HTTP status the server answers with:
413 (too many bytes), 415 (not an image scandx reads), 422 (readable but refused:
too many pixels, a broken header, a zip with something else than DICOM in it).
"""

from __future__ import annotations

import gzip
import logging
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

from scandx.data.dicom import is_dicom_file, read_header

log = logging.getLogger("scandx.serve")

PNG = b"\x89PNG\r\n\x1a\n"
KINDS_RASTER = ("png", "jpeg", "tiff")
SUFFIX = {
    "png": ".png",
    "jpeg": ".jpg",
    "tiff": ".tif",
    "dicom": ".dcm",
    "nifti": ".nii",
    "nifti-gz": ".nii.gz",
    "zip": ".zip",
}


class UploadError(Exception):
    """An upload refused with an HTTP status and a one-line reason (no server paths)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int = 256 * 2**20  # one request body
    max_pixels: int = 150_000_000  # samples (rows x columns x frames x channels) per input
    max_members: int = 2000  # files in a zip
    max_extracted_bytes: int = 1024 * 2**20  # a zip's members, decompressed, in all


@dataclass
class Upload:
    """An accepted upload: ``path`` is the file, or the folder of a DICOM series (a zip's
    members, each checked DICOM); ``images`` the DICOM files of a series."""

    kind: str  # png | jpeg | tiff | dicom | nifti | nifti-gz | dicom-series
    path: Path
    pixels: int
    images: list[Path]


def sniff(head: bytes) -> str | None:
    """The kind of file whose first bytes (at least 348 of them) are ``head``.

    DICOM first: its 128-byte preamble is free for another format's header (a
    "dual-personality" file; pydicom's CT_small.dcm starts with a TIFF one)."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(PNG):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if _nifti_magic(head):
        return "nifti"
    return None


def _nifti_magic(head: bytes) -> bool:
    if len(head) >= 348 and head[344:348] in (b"n+1\x00", b"ni1\x00"):
        return struct.unpack("<i", head[:4])[0] == 348 or struct.unpack(">i", head[:4])[0] == 348
    return len(head) >= 12 and head[4:8] in (b"n+2\x00", b"ni2\x00")


def accept(path: Path, limits: UploadLimits, workdir: Path) -> Upload:
    """Check the uploaded file at ``path`` (already size-limited while it was received)
    and return what it is; a zip is extracted into ``workdir`` as a DICOM series.

    Only ``UploadError`` leaves: these are a stranger's bytes, so a parser failing on
    them in a way nobody foresaw is still a bad upload (422, logged by its type), not a
    server error; an operating-system error (disk full: it has an errno) is the
    server's and passes."""
    try:
        return _accept(path, limits, workdir)
    except UploadError:
        raise
    except Exception as e:
        if isinstance(e, OSError) and e.errno is not None:
            raise
        log.warning("upload refused by an unforeseen parser error (%s)", type(e).__name__)
        raise UploadError(422, f"unreadable upload ({type(e).__name__})") from None


def _accept(path: Path, limits: UploadLimits, workdir: Path) -> Upload:
    with open(path, "rb") as f:
        head = f.read(1024)
    if not head:
        raise UploadError(422, "the uploaded file is empty")
    kind = sniff(head)
    if kind == "gzip":
        kind = "nifti-gz" if _gzip_is_nifti(path) else None
    if kind is None:
        raise UploadError(
            415,
            "not a file type scandx reads (PNG, JPEG, TIFF, DICOM, NIfTI, or a zip of a "
            "DICOM series); the type is read from the file's bytes, not its name",
        )
    if kind == "zip":
        return _accept_zip(path, limits, workdir)
    target = path.with_name(path.name + "-upload" + SUFFIX[kind])
    path.rename(target)
    return Upload(kind, target, check_pixels(target, kind, limits), [])


def _gzip_is_nifti(path: Path) -> bool:
    try:
        with gzip.open(path, "rb") as g:
            return _nifti_magic(g.read(540))
    except Exception:  # noqa: BLE001 - BadGzipFile, zlib.error, EOFError on hostile bytes
        return False


def check_pixels(path: Path, kind: str, limits: UploadLimits) -> int:
    """The number of samples the file declares, read from its header only; refused
    (422) above ``limits.max_pixels`` or when the header cannot be read."""
    if kind in KINDS_RASTER:
        n = _raster_pixels(path, limits)
    elif kind == "dicom":
        n = _dicom_pixels(path)
    else:
        n = _nifti_pixels(path)
    if n > limits.max_pixels:
        raise UploadError(422, too_many_pixels(n, limits.max_pixels))
    return n


def too_many_pixels(declared: int | None, most: int) -> str:
    said = (
        f"{declared:,} samples, above this service's limit of {most:,}"
        if declared is not None
        else f"more than {most:,} samples, this service's limit"
    )
    return (
        f"the image declares {said} (rows x columns x frames x channels); send a smaller "
        "image or ask the administrator to raise --max-pixels"
    )


def _raster_pixels(path: Path, limits: UploadLimits) -> int:
    from PIL import Image

    try:
        with Image.open(path) as im:  # reads the header only
            frames = int(getattr(im, "n_frames", 1) or 1)
            return im.width * im.height * len(im.getbands()) * frames
    except Image.DecompressionBombError:
        # Pillow's own bomb guard refused the header (above 2 x Image.MAX_IMAGE_PIXELS):
        # the same refusal as ours, in the same words
        most = min(limits.max_pixels, 2 * (Image.MAX_IMAGE_PIXELS or 0) or limits.max_pixels)
        raise UploadError(422, too_many_pixels(None, most)) from None
    except Exception as e:  # noqa: BLE001 - any header a decoder rejects is a bad upload
        raise UploadError(422, f"unreadable image header ({type(e).__name__})") from None


def _dicom_pixels(path: Path) -> int:
    try:
        ds = read_header(path)
        rows, cols = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
        frames = int(ds.get("NumberOfFrames") or 1)
        samples = int(ds.get("SamplesPerPixel") or 1)
    except Exception as e:  # noqa: BLE001 - any header pydicom rejects is a bad upload
        raise UploadError(422, f"unreadable DICOM header ({type(e).__name__})") from None
    if rows <= 0 or cols <= 0:
        raise UploadError(422, "the DICOM file holds no image (no Rows/Columns)")
    return rows * cols * max(frames, 1) * max(samples, 1)


def _nifti_pixels(path: Path) -> int:
    import nibabel as nib

    try:
        img = nib.load(str(path))  # header only; the data stay on disk until asked for
        shape = tuple(int(s) for s in img.shape)
    except Exception as e:  # noqa: BLE001 - any header nibabel rejects is a bad upload
        raise UploadError(422, f"unreadable NIfTI header ({type(e).__name__})") from None
    n = 1
    for s in shape:
        n *= max(s, 0)
    if n == 0:
        raise UploadError(422, f"the NIfTI volume is empty (shape {shape})")
    return n


def _accept_zip(path: Path, limits: UploadLimits, workdir: Path) -> Upload:
    """A zip of one DICOM series: members extracted under numbered names (never the
    names inside the zip), each checked DICOM and counted against the limits; the
    declared sizes are not trusted (reading stops at the extracted-bytes limit)."""
    entries = _central_entries(path)
    if entries > limits.max_members:
        raise UploadError(
            413, f"the zip holds {entries} files, above the limit of {limits.max_members}"
        )
    folder = workdir / (path.name + "-series")
    folder.mkdir()
    try:
        zf = zipfile.ZipFile(path)
    except Exception as e:  # noqa: BLE001 - BadZipFile, NotImplementedError (spanned)...
        raise UploadError(422, f"not a readable zip file ({type(e).__name__})") from None
    images: list[Path] = []
    total_bytes = total_pixels = 0
    with zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        if len(members) > limits.max_members:
            raise UploadError(
                413, f"the zip holds {len(members)} files, above the limit of {limits.max_members}"
            )
        for i, member in enumerate(members, start=1):
            name = member.filename.replace("\\", "/").rsplit("/", 1)[-1]
            if name.upper() == "DICOMDIR" or name.startswith("._") or "__MACOSX" in member.filename:
                continue  # an index or a Mac resource fork, not an image
            target = folder / f"{i:05d}.dcm"
            total_bytes = _extract(zf, member, target, limits, total_bytes)
            if not is_dicom_file(target):
                raise UploadError(
                    422,
                    f"zip member {i} is not a DICOM file (a zip must hold one DICOM series; "
                    "send other images one at a time)",
                )
            total_pixels += _dicom_pixels(target)
            if total_pixels > limits.max_pixels:
                raise UploadError(
                    422,
                    f"the series declares more than {limits.max_pixels:,} samples in all, "
                    "above this service's limit",
                )
            images.append(target)
    if not images:
        raise UploadError(422, "the zip holds no DICOM file")
    path.unlink(missing_ok=True)
    return Upload("dicom-series", folder, total_pixels, images)


def _central_entries(path: Path) -> int:
    """How many central-directory entries the zip holds, counted on its bytes before
    ``zipfile`` parses them: a 256 MB zip of empty members would otherwise become
    millions of ZipInfo objects (gigabytes) before the member limit is checked."""
    sig, count, tail = b"PK\x01\x02", 0, b""
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            block = tail + chunk
            count += block.count(sig)
            tail = block[-3:]
    return count


def _extract(
    zf: zipfile.ZipFile, member: zipfile.ZipInfo, target: Path, limits: UploadLimits, used: int
) -> int:
    try:
        with zf.open(member) as src, open(target, "wb") as dst:
            while chunk := src.read(1 << 20):
                used += len(chunk)
                if used > limits.max_extracted_bytes:
                    raise UploadError(
                        413,
                        f"the zip expands to more than {limits.max_extracted_bytes:,} bytes, "
                        "above this service's limit",
                    )
                dst.write(chunk)
    except UploadError:
        raise
    except Exception as e:  # noqa: BLE001 - BadZipFile, zlib.error, EOFError... on hostile data
        raise UploadError(422, f"cannot extract zip member ({type(e).__name__})") from None
    return used
