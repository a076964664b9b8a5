"""Structural checks of JPEG 2000 codestreams (ISO/IEC 15444-1 Annex A) before decoding.

OpenJPEG decodes many damaged codestreams without a word: a missing tail is filled
with zeros, a tile-part whose length is wrong is resynchronised, garbage is read as
packet data. These checks catch what the structure itself reveals: no end-of-codestream
marker (truncation), tile-parts whose lengths (Psot) do not lead from one to the next
and end at the EOC marker, tiles missing, marker codes that cannot occur inside packet
data (0xFF followed by 0x90 or more: bit stuffing rules them out), an image size or
component count that differs from the DICOM header. Damage confined to one code-block's
entropy-coded bytes leaves the structure intact and cannot be seen: JPEG 2000 carries no
checksum (DICOM neither, short of a digital signature).
"""

from __future__ import annotations

import math
import struct
from typing import Any

J2K_SYNTAXES = {
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.201",
    "1.2.840.10008.1.2.4.202",
    "1.2.840.10008.1.2.4.203",
}
SOC, SIZ, COD, SOT, SOD, EOC, SOP, EPH = (
    0xFF4F,
    0xFF51,
    0xFF52,
    0xFF90,
    0xFF93,
    0xFFD9,
    0xFF91,
    0xFF92,
)


class CodestreamError(ValueError):
    """The codestream's structure is damaged (the reason says where)."""


def is_j2k(ds: Any) -> bool:
    meta = getattr(ds, "file_meta", None)
    return meta is not None and str(meta.get("TransferSyntaxUID", "")) in J2K_SYNTAXES


def check_dicom_j2k(ds: Any) -> None:
    """Check every frame of an encapsulated JPEG 2000 DICOM object; CodestreamError."""
    from pydicom.encaps import generate_frames

    frames = int(ds.get("NumberOfFrames", 1) or 1)
    expected = (int(ds.Columns), int(ds.Rows), int(ds.get("SamplesPerPixel", 1)))
    for i, frame in enumerate(generate_frames(ds.PixelData, number_of_frames=frames)):
        try:
            check_codestream(bytes(frame), expected)
        except CodestreamError as e:
            raise CodestreamError(f"frame {i + 1}: {e}" if frames > 1 else str(e)) from None
        except (IndexError, struct.error):
            raise CodestreamError(f"frame {i + 1}: codestream ends inside a marker") from None


def _u16(b: bytes, i: int) -> int:
    return struct.unpack_from(">H", b, i)[0]


def check_codestream(b: bytes, expected: tuple[int, int, int] | None = None) -> None:
    """Raise CodestreamError when the codestream's structure is damaged.

    ``expected``: (columns, rows, components) the codestream must describe. A JP2 file
    wrapper (some files use one) is looked through to its codestream box."""
    if b[:4] == b"\x00\x00\x00\x0c":  # JP2 signature box: find the contiguous codestream
        start = b.find(b"\xff\x4f\xff\x51")
        if start < 0:
            raise CodestreamError("JP2 file without a JPEG 2000 codestream")
        b = b[start:]
    end = len(b)
    while end > 0 and b[end - 1] in (0x00, 0xFF):  # padding to an even length
        end -= 1
    if _u16(b, 0) != SOC or _u16(b, 2) != SIZ:
        raise CodestreamError("not a JPEG 2000 codestream (no SOC/SIZ marker at its start)")
    if end < 4 or _u16(b, end - 2) != EOC:
        raise CodestreamError("truncated JPEG 2000 codestream (no end-of-codestream marker)")
    xsiz, ysiz, xo, yo, xt, yt, xto, yto = struct.unpack_from(">8I", b, 8)
    csiz = _u16(b, 40)
    size = (xsiz - xo, ysiz - yo, csiz)
    if expected is not None and size != expected:
        raise CodestreamError(
            f"codestream describes {size[0]}x{size[1]} with {size[2]} component(s), the "
            f"DICOM header {expected[0]}x{expected[1]} with {expected[2]}"
        )
    if xt == 0 or yt == 0:
        raise CodestreamError("SIZ marker with a zero tile size")
    n_tiles = math.ceil((xsiz - xto) / xt) * math.ceil((ysiz - yto) / yt)
    pos, scod = _header(b, 2, SOT, end, 0, "the main header")
    parts: dict[int, list[tuple[int, int]]] = {}
    while pos < end - 2:
        if _u16(b, pos) != SOT:
            raise CodestreamError(f"tile-part lengths do not add up (no SOT marker at {pos})")
        isot, psot, tpsot, tnsot = struct.unpack_from(">HIBB", b, pos + 4)
        stop = end - 2 if psot == 0 else pos + psot
        if stop > end - 2 or psot and psot < 14:
            raise CodestreamError(f"tile-part length {psot} at {pos} runs past the codestream")
        if isot >= n_tiles:
            raise CodestreamError(f"tile index {isot} at {pos}, the image has {n_tiles} tiles")
        parts.setdefault(isot, []).append((tpsot, tnsot))
        _check_tile_part(b, pos, stop, scod)
        pos = stop
    if pos != end - 2:
        raise CodestreamError("tile-part lengths do not add up to the codestream length")
    if len(parts) != n_tiles:
        raise CodestreamError(f"{n_tiles - len(parts)} of {n_tiles} tiles missing")
    for tile, got in parts.items():  # TNsot is not trusted: some encoders miscount
        if sorted(i for i, _ in got) != list(range(len(got))):
            raise CodestreamError(f"tile {tile}: tile-parts missing or repeated")


def _header(b: bytes, pos: int, until: int, stop: int, scod: int, what: str) -> tuple[int, int]:
    """Walk a header's marker segments up to the ``until`` marker: (its position, the
    coding style byte of the last COD seen, else ``scod``)."""
    while _u16(b, pos) != until:
        marker, length = _u16(b, pos), _u16(b, pos + 2)
        if marker >> 8 != 0xFF or not 0x50 <= marker & 0xFF <= 0x7F or length < 2:
            raise CodestreamError(f"invalid marker 0x{marker:04X} in {what} at {pos}")
        if marker == COD:
            scod = b[pos + 4]
        pos += 2 + length
        if pos >= stop:
            raise CodestreamError(f"{what} at {pos} runs past its end")
    return pos, scod


def _check_tile_part(b: bytes, pos: int, stop: int, scod: int) -> None:
    """The tile-part header's marker segments, then packet data free of marker codes."""
    pos, scod = _header(b, pos + 2 + _u16(b, pos + 2), SOD, stop, scod, "a tile-part header")
    body = memoryview(b)[pos + 2 : stop]
    i = bytes(body).find(b"\xff")
    data = bytes(body)
    while 0 <= i < len(data) - 1:
        nxt = data[i + 1]
        if nxt >= 0x90:
            code = 0xFF00 | nxt
            ok = (code == SOP and scod & 2) or (code == EPH and scod & 4)
            if not ok:
                raise CodestreamError(
                    f"marker code 0x{code:04X} inside packet data at {pos + 2 + i} "
                    "(corrupted bytes)"
                )
        i = data.find(b"\xff", i + 1)
