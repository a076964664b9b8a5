"""A DICOM series as a volume, and a DICOM SEG object as its label map (via highdicom).

The series' slices are ordered along the slice normal (ImageOrientationPatient x
ImagePositionPatient), pixel values go through the Modality LUT only (CT in HU, no
windowing: segmentation normalises intensities itself), and the voxel-to-patient
affine is kept (converted from DICOM's LPS to NIfTI's RAS) for writing predictions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scandx.errors import BadImageError, ScandxError


def is_dicom_seg(path: str | Path) -> bool:
    import pydicom

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    except Exception:
        return False
    return str(ds.get("Modality", "")) == "SEG"


def series_files(folder: Path, limit: int | None = None) -> tuple[list[Path], list[Path]]:
    """(image slices, SEG objects) among a folder's DICOM files (only Modality is read;
    ``limit`` caps how many files are looked at, for a quick layout check)."""
    import pydicom

    images, segs = [], []
    files = [f for f in sorted(folder.iterdir()) if f.is_file() and not f.name.startswith(".")]
    for f in files[:limit]:
        try:
            ds = pydicom.dcmread(str(f), stop_before_pixels=True, specific_tags=["Modality"])
        except Exception:
            continue  # not DICOM: ignored (README, licence files)
        (segs if str(ds.get("Modality", "")) == "SEG" else images).append(f)
    return images, segs


def read_series(
    folder: Path,
) -> tuple[np.ndarray, tuple[float, float, float], np.ndarray, list[str]]:
    """(volume (Z, Y, X) in modality units, spacing (z, y, x), RAS affine, SOP UIDs by slice)."""
    import pydicom
    from pydicom.pixels import apply_modality_lut

    files, _ = series_files(folder)
    if not files:
        raise ScandxError("no DICOM image slices in the case folder", folder)
    slices = []
    for f in files:
        try:
            ds = pydicom.dcmread(str(f))
            arr = apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
        except Exception as e:
            raise BadImageError(f"unreadable DICOM slice ({e})", f) from e
        if arr.ndim != 2:
            raise BadImageError("expected single-frame slices in a series", f)
        slices.append((ds, arr))
    iop = np.array(slices[0][0].ImageOrientationPatient, dtype=float)
    row_dir, col_dir = iop[:3], iop[3:]
    normal = np.cross(row_dir, col_dir)
    slices.sort(key=lambda s: float(np.dot(normal, np.array(s[0].ImagePositionPatient, float))))
    positions = np.array(
        [np.dot(normal, np.array(s[0].ImagePositionPatient, float)) for s in slices]
    )
    dz = (
        float(np.median(np.diff(positions)))
        if len(slices) > 1
        else float(slices[0][0].get("SliceThickness", 1.0))
    )
    dy, dx = (float(v) for v in slices[0][0].PixelSpacing)
    shapes = {a.shape for _, a in slices}
    if len(shapes) > 1:
        raise ScandxError(f"slices of different sizes {sorted(shapes)}", folder)
    volume = np.stack([a for _, a in slices])
    affine = np.eye(4)
    affine[:3, 0] = normal * dz  # array axis 0: slices
    affine[:3, 1] = col_dir * dy  # axis 1: rows
    affine[:3, 2] = row_dir * dx  # axis 2: columns
    affine[:3, 3] = np.array(slices[0][0].ImagePositionPatient, float)
    affine[:2] *= -1  # LPS -> RAS
    uids = [str(ds.SOPInstanceUID) for ds, _ in slices]
    return volume, (abs(dz), dy, dx), affine, uids


def read_dicom_seg(path: Path, sop_uids: list[str]) -> tuple[np.ndarray, dict[int, str]]:
    """Label map (Z, Y, X) aligned with the series slices, and {segment number: label}."""
    import highdicom as hd

    try:
        seg = hd.seg.segread(str(path))
    except Exception as e:
        raise BadImageError(f"unreadable DICOM SEG ({e})", path) from e
    names = {int(d.SegmentNumber): str(d.SegmentLabel) for d in seg.SegmentSequence}
    referenced = {
        str(i.ReferencedSOPInstanceUID)
        for s in seg.get("ReferencedSeriesSequence", [])
        for i in s.ReferencedInstanceSequence
    }
    if referenced and not referenced <= set(sop_uids):
        raise ScandxError("the SEG references images that are not in this series", path)
    labels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=sop_uids,
        combine_segments=True,
        assert_missing_frames_are_empty=True,
        skip_overlap_checks=True,
    )
    return np.asarray(labels, dtype=np.int64), names


def sorted_slices(folder: Path) -> list:
    """The series' slice headers, ordered as ``read_series`` orders the volume."""
    import pydicom

    files, _ = series_files(folder)
    headers = [pydicom.dcmread(str(f), stop_before_pixels=True) for f in files]
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
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from scandx import __version__

    present = [k for k in sorted(names) if k != 0]
    if not present or not labels_zyx.any():
        return None
    algorithm = hd.AlgorithmIdentificationSequence(
        name="scandx", family=codes.DCM.ArtificialIntelligence, version=__version__
    )
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=i,
            segment_label=names[k][:64],
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
        )
        for i, k in enumerate(present, start=1)
    ]
    relabelled = np.zeros(labels_zyx.shape, np.uint8)
    for i, k in enumerate(present, start=1):
        relabelled[labels_zyx == k] = i
    seg = hd.seg.Segmentation(
        source_images=sorted_slices(source_folder),
        pixel_array=relabelled,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=9901,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="scandx",
        manufacturer_model_name="scandx segmentation",
        software_versions=__version__,
        device_serial_number="0",
        content_description="scandx automatic segmentation (research use)",
    )
    seg.save_as(str(path))
    return path
