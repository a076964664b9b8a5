"""Hostile and ordinary uploads for the service's tests and benchmarks (serve_fuzz.py):
real images written with PIL/nibabel/pydicom, and files built byte by byte to lie:
headers declaring 100,000 x 100,000 pixels (with valid CRCs), DICOM declaring 65,535 x
65,535 x 10,000, NIfTI declaring 32,767^3, zip bombs, zips with ``../`` names or
thousands of members. Everything is built in memory as bytes, small and fast."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

MARK = "ZZMARKERZZ"  # a patient identifier that must never reach a log or the audit


def png_bytes(size: int = 32, seed: int = 0, mode: str = "L") -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    shape = (size, size, 3) if mode == "RGB" else (size, size)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode=mode).save(buf, "PNG")
    return buf.getvalue()


def raster_bytes(fmt: str, size: int = 32, seed: int = 0) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(buf, fmt)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def huge_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A well-formed PNG (valid CRCs) declaring ``width`` x ``height`` grey pixels, with
    one short IDAT: a decompression bomb if anyone decoded it."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 65536, 9)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def huge_tiff(width: int = 100_000, height: int = 100_000) -> bytes:
    """A little-endian baseline TIFF declaring ``width`` x ``height`` 8-bit grey pixels in
    one uncompressed strip (of which 16 bytes are present)."""
    entries = [
        (256, 4, 1, width),  # ImageWidth LONG
        (257, 4, 1, height),  # ImageLength
        (258, 3, 1, 8),  # BitsPerSample SHORT
        (259, 3, 1, 1),  # Compression none
        (262, 3, 1, 1),  # Photometric BlackIsZero
        (273, 4, 1, 0),  # StripOffsets (patched below)
        (277, 3, 1, 1),  # SamplesPerPixel
        (278, 4, 1, height),  # RowsPerStrip
        (279, 4, 1, width * height & 0xFFFFFFFF),  # StripByteCounts
    ]
    ifd_size = 2 + 12 * len(entries) + 4
    data_offset = 8 + ifd_size
    out = bytearray(b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(entries)))
    for tag, typ, count, value in entries:
        value = data_offset if tag == 273 else value
        packed = struct.pack("<HH", value, 0) if typ == 3 else struct.pack("<I", value)
        out += struct.pack("<HHI", tag, typ, count) + packed
    out += struct.pack("<I", 0) + b"\x00" * 16
    return bytes(out)


def huge_jpeg() -> bytes:
    """A real JPEG whose SOF header is patched to declare 65,535 x 65,535 (JPEG's most)."""
    data = bytearray(raster_bytes("JPEG", 16))
    i = 2
    while i < len(data):
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            data[i + 5 : i + 9] = struct.pack(">HH", 65535, 65535)
            return bytes(data)
        i += 2 + length
    raise AssertionError("no SOF marker")


def dicom_bytes(
    rows: int = 32,
    cols: int = 32,
    frames: int | None = None,
    patient: str = MARK,
    pixels: bytes | None = None,
    seed: int = 0,
) -> bytes:
    """A DICOM Part 10 file (explicit little endian, 16-bit grey); ``patient`` goes into
    PatientName and PatientID. ``pixels`` None: a real random image of the declared size."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = f"{patient}^NAME"
    ds.PatientID = f"{patient}-ID"
    ds.Modality = "OT"
    ds.Rows, ds.Columns = rows, cols
    if frames is not None:
        ds.NumberOfFrames = frames
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    if pixels is None:
        rng = np.random.default_rng(seed)
        pixels = rng.integers(0, 4000, (rows, cols), dtype=np.uint16).tobytes()
    ds.PixelData = pixels
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def huge_dicom() -> bytes:
    return dicom_bytes(65535, 65535, frames=10_000, pixels=b"\x00" * 64)


def nifti_bytes(shape: tuple[int, ...] = (8, 16, 16), seed: int = 0, data: bool = True) -> bytes:
    """A NIfTI-1 single file (.nii); ``data`` False: the header only, declaring ``shape``."""
    import nibabel as nib

    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(np.float32)
    hdr.set_data_shape(shape)
    hdr.set_zooms((1.0,) * len(shape))
    hdr["vox_offset"] = 352
    hdr["sform_code"] = 1
    hdr.set_sform(np.eye(4))
    body = b""
    if data:
        body = np.random.default_rng(seed).random(shape, np.float32).tobytes(order="F")
    return hdr.binaryblock + b"\x00" * 4 + body + (b"" if data else b"\x00" * 64)


def huge_nifti() -> bytes:
    return nifti_bytes((32767, 32767, 32767), data=False)


def zip_of(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def series_zip(folder: Path) -> bytes:
    """A zip of the DICOM files of one series folder (the files' own names)."""
    return zip_of({f.name: f.read_bytes() for f in sorted(folder.glob("*.dcm"))})


def _deflated_zeros(total: int, block: int = 1 << 22) -> tuple[bytes, int]:
    """Raw deflate of ``total`` zero bytes (a multiple of ``block``) and its CRC-32,
    built without compressing them all: a full flush makes a compressed block that can be
    repeated, since nothing after it refers back across it."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = comp.compress(b"\x00" * block) + comp.flush(zlib.Z_FULL_FLUSH)
    tail = zlib.compressobj(9, zlib.DEFLATED, -15)
    tail.compress(b"")
    end = tail.flush()  # an empty final block
    crc, zeros = 0, b"\x00" * block
    for _ in range(total // block):
        crc = zlib.crc32(zeros, crc)
    return piece * (total // block) + end, crc


def zip_bomb(total: int = 1 << 30, declared: int | None = None) -> bytes:
    """A zip whose one member expands to ``total`` bytes (1 GiB: about 1 MB on the
    wire); ``declared`` is the size its headers claim (default: the truth)."""
    data, crc = _deflated_zeros(total)
    size = total if declared is None else declared
    name = b"bomb.dcm"
    local = struct.pack(
        "<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(data), size, len(name), 0
    )
    central = struct.pack(
        "<4sHHHHHHIIIHHHHHII",
        b"PK\x01\x02", 20, 20, 0, 8, 0, 0, crc, len(data), size, len(name), 0, 0, 0, 0, 0, 0,
    )  # fmt: skip
    cd = central + name
    offset = len(local) + len(name) + len(data)
    eocd = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, len(cd), offset, 0)
    return local + name + data + cd + eocd


def many_members_zip(n: int = 5000) -> bytes:
    return zip_of({f"s/{i:05d}.dcm": b"x" for i in range(n)}, zipfile.ZIP_STORED)


def traversal_zip(dicom: bytes) -> bytes:
    return zip_of({"../../evil.dcm": dicom, "/abs/evil2.dcm": dicom, "..\\win.dcm": dicom})


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    return data[: max(1, int(len(data) * keep))]


def mutated(data: bytes, seed: int = 0, flips: int = 16) -> bytes:
    rng = np.random.default_rng(seed)
    out = bytearray(data)
    for i in rng.integers(0, len(out), flips):
        out[i] = int(rng.integers(0, 256))
    return bytes(out)
