"""DICOM SEG objects: read one as the label map of its series, write predictions as one.

Reading does not go through highdicom's parser, which refuses big-endian files and the
Deflated Image Frame Compression transfer syntax: frames are decoded here (pydicom for
native, big-endian and JPEG 2000; PackBits for RLE, which pydicom 3.0 refuses at 1 bit;
raw deflate per frame for 1.2.840.10008.1.2.8.1) and placed on the series' slices by the
referenced SOP Instance UID, or by plane position when a frame names no source image.
Writing uses highdicom.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from scandx.data.dicom import read_header
from scandx.errors import BadImageError, ScandxError

RLE_LOSSLESS = "1.2.840.10008.1.2.5"
DEFLATED_IMAGE_FRAME = "1.2.840.10008.1.2.8.1"


def _packbits(segment: bytes, size: int) -> bytes:
    """Decode one DICOM RLE segment (PackBits, PS3.5 G.3.1)."""
    out = bytearray()
    i, n = 0, len(segment)
    while i < n and len(out) < size:
        h = segment[i]
        i += 1
        if h < 128:  # literal run of h + 1 bytes
            out += segment[i : i + h + 1]
            i += h + 1
        elif h > 128:  # the next byte repeated 257 - h times
            out += segment[i : i + 1] * (257 - h)
            i += 1
    return bytes(out[:size])


def _rle_frame(frame: bytes, packed_bytes: int) -> bytes:
    """A 1-bit RLE frame: a 64-byte header (segment count + offsets), one segment."""
    count = int.from_bytes(frame[:4], "little")
    if count != 1:
        raise ValueError(f"expected 1 RLE segment for 1-bit data, found {count}")
    start = int.from_bytes(frame[4:8], "little")
    return _packbits(frame[start:], packed_bytes)


def _bits(packed: bytes, pixels: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(packed, np.uint8), bitorder="little")[:pixels]


def decode_frames(ds) -> np.ndarray:
    """All frames of a SEG dataset as (frames, rows, columns) uint8 (bits -> 0/1)."""
    from pydicom.encaps import generate_frames

    ts = str(ds.file_meta.TransferSyntaxUID)
    n = int(ds.get("NumberOfFrames", 1))
    rows, cols = int(ds.Rows), int(ds.Columns)
    one_bit = int(ds.BitsAllocated) == 1
    if ts in (RLE_LOSSLESS, DEFLATED_IMAGE_FRAME) and (one_bit or ts == DEFLATED_IMAGE_FRAME):
        packed = (rows * cols + 7) // 8 if one_bit else rows * cols
        frames = []
        for raw in generate_frames(ds.PixelData, number_of_frames=n):
            data = (
                zlib.decompress(raw, -15)[:packed]
                if ts == DEFLATED_IMAGE_FRAME
                else _rle_frame(raw, packed)
            )
            arr = _bits(data, rows * cols) if one_bit else np.frombuffer(data, np.uint8)
            if arr.size != rows * cols:
                raise ValueError(f"frame holds {arr.size} pixels, expected {rows * cols}")
            frames.append(arr.reshape(rows, cols))
        return np.stack(frames).astype(np.uint8)
    arr = np.asarray(ds.pixel_array)
    return arr.reshape(n, rows, cols).astype(np.uint8)


def _frame_sources(ds) -> list[tuple[str | None, np.ndarray | None, int]]:
    """Per frame: (source SOP Instance UID, plane position, segment number)."""
    shared = ds.get("SharedFunctionalGroupsSequence", [None])[0]
    out = []
    for group in ds.PerFrameFunctionalGroupsSequence:
        uid = None
        for der in group.get("DerivationImageSequence", []):
            for src in der.get("SourceImageSequence", []):
                uid = str(src.ReferencedSOPInstanceUID)
        plane = group.get("PlanePositionSequence") or (
            shared.get("PlanePositionSequence") if shared is not None else None
        )
        pos = np.array(plane[0].ImagePositionPatient, float) if plane else None
        ident = group.get("SegmentIdentificationSequence") or shared.SegmentIdentificationSequence
        out.append((uid, pos, int(ident[0].ReferencedSegmentNumber)))
    return out


def read_dicom_seg(
    path: Path, sop_uids: list[str], positions: np.ndarray | None = None
) -> tuple[np.ndarray, dict[int, str]]:
    """Label map (Z, Y, X) on the series' slices (ordered as ``sop_uids``; ``positions``:
    their ImagePositionPatient, used for frames without a source reference) and
    {segment number: segment label}. Overlapping segments: the higher number wins."""
    import pydicom

    try:
        ds = pydicom.dcmread(str(path))
        if str(ds.get("Modality", "")) != "SEG":
            raise ValueError("Modality is not SEG")
        frames = decode_frames(ds)
        sources = _frame_sources(ds)
    except ScandxError:
        raise
    except Exception as e:
        raise BadImageError(f"unreadable DICOM SEG ({e})", path) from e
    names = {int(d.SegmentNumber): str(d.SegmentLabel) for d in ds.SegmentSequence}
    if str(ds.get("SegmentationType", "BINARY")) == "FRACTIONAL":
        limit = float(ds.get("MaximumFractionalValue", 255))
        frames = (frames >= limit / 2).astype(np.uint8)
    index = {u: i for i, u in enumerate(sop_uids)}
    labels = np.zeros((len(sop_uids), *frames.shape[1:]), np.int64)
    for frame, (uid, pos, segment) in sorted(
        zip(frames, sources, strict=True), key=lambda t: t[1][2]
    ):
        if uid is not None:
            if uid not in index:
                raise ScandxError("the SEG references images that are not in this series", path)
            z = index[uid]
        elif pos is not None and positions is not None:
            dist = np.linalg.norm(positions - pos, axis=1)
            z = int(np.argmin(dist))
            if dist[z] > 1e-2:
                raise ScandxError("a SEG frame lies on no slice of this series", path)
        else:
            raise ScandxError("a SEG frame names neither a source image nor a position", path)
        if frame.shape != labels.shape[1:]:
            raise ScandxError(
                f"SEG frames are {frame.shape}, the series' slices {labels.shape[1:]}", path
            )
        labels[z][frame > 0] = segment
    return labels, names


def sorted_slices(folder: Path) -> list:
    """The series' slice headers, ordered as ``read_series`` orders the volume."""

    from scandx.tasks.segmentation.dicom_series import series_files

    files, _ = series_files(folder)
    return sort_by_position([read_header(Path(f)) for f in files])


def sort_by_position(headers: list) -> list:
    """Slice datasets ordered along the slice normal, as ``read_series`` orders them."""
    iop = np.array(headers[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    return sorted(
        headers, key=lambda d: float(np.dot(normal, np.array(d.ImagePositionPatient, float)))
    )


def write_dicom_seg(
    source_folder: Path, labels_zyx: np.ndarray, names: dict[int, str], path: Path
) -> Path | None:
    """Write a predicted label map as a DICOM SEG referencing the source series
    (highdicom; one segment per foreground label). None when nothing was segmented."""
    seg = seg_dataset(sorted_slices(source_folder), labels_zyx, names)
    if seg is None:
        return None
    seg.save_as(str(path))
    return path


def seg_dataset(
    source_images: list,
    labels_zyx: np.ndarray,
    names: dict[int, str],
    algorithm: tuple[str, str, dict[str, str]] | None = None,
    series_number: int = 9901,
):
    """A predicted label map (ordered as ``source_images``) as a highdicom Segmentation,
    one segment per foreground label present in ``names``; None when nothing was
    segmented. ``algorithm``: (name, version, parameters) for the Algorithm
    Identification Sequence (default: scandx and its version)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from scandx import __version__

    present = [k for k in sorted(names) if k != 0]
    if not present or not labels_zyx.any():
        return None
    name, version, parameters = algorithm or ("scandx", __version__, None)
    identification = hd.AlgorithmIdentificationSequence(
        name=name[:64],
        family=codes.DCM.ArtificialIntelligence,
        version=version[:64],
        parameters=parameters,
    )
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=i,
            segment_label=names[k][:64],
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=identification,
        )
        for i, k in enumerate(present, start=1)
    ]
    relabelled = np.zeros(labels_zyx.shape, np.uint8)
    for i, k in enumerate(present, start=1):
        relabelled[labels_zyx == k] = i
    return hd.seg.Segmentation(
        source_images=source_images,
        pixel_array=relabelled,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="scandx",
        manufacturer_model_name="scandx segmentation",
        software_versions=__version__,
        device_serial_number="0",
        content_description="scandx automatic segmentation (research use)",
    )
