"""Image readers behind one interface: ``read_image(path) -> (array, meta)``.

Every reader returns float32 display values in [0, 1], shaped (C, H, W) for 2D
images or (C, F, H, W) for multi-frame/volume images, plus a metadata dict. A
reader is chosen by file extension from the registry below (DICOM, Siemens .ima,
NIfTI, rasters); files without an extension are sniffed for the DICOM preamble.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from scandx.data.checks import require_finite
from scandx.data.dicom import is_dicom_file, read_dicom, robust_unit
from scandx.errors import BadImageError

log = logging.getLogger(__name__)

Reader = Callable[[Path], tuple[np.ndarray, dict[str, Any]]]
READERS: dict[str, Reader] = {}
EXTENSIONS: dict[str, str] = {}


def register_reader(name: str, extensions: tuple[str, ...]) -> Callable[[Reader], Reader]:
    """Register a reader function for the given lower-case extensions."""

    def wrap(fn: Reader) -> Reader:
        READERS[name] = fn
        for ext in extensions:
            EXTENSIONS[ext] = name
        return fn

    return wrap


def file_extension(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def reader_for(path: Path) -> str | None:
    """Name of the reader for this file, or None when scandx cannot read it."""
    ext = file_extension(path)
    if ext in EXTENSIONS:
        return EXTENSIONS[ext]
    if (ext == "" or not ext[1:].isalpha()) and is_dicom_file(path):
        return "dicom"  # extension-less (or numeric-suffixed) DICOM files
    return None


def supported_extensions() -> str:
    return ", ".join(sorted(EXTENSIONS))


def read_image(path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Read any supported image file; raises BadImageError naming the file and the reason."""
    path = Path(path)
    if not path.exists():
        raise BadImageError("file not found", path)
    if path.is_dir():
        raise BadImageError("is a folder, not an image file", path)
    name = reader_for(path)
    if name is None:
        ext = file_extension(path) or "(no extension, and not DICOM)"
        raise BadImageError(
            f"unsupported file type {ext}; supported: {supported_extensions()} "
            "and extension-less DICOM",
            path,
        )
    arr, meta = READERS[name](path)
    if arr.size == 0:
        raise BadImageError("image is empty", path)
    return require_finite(arr, path), meta


register_reader("dicom", (".dcm", ".dicom", ".dic", ".ima"))(read_dicom)  # .ima: Siemens


@register_reader("nifti", (".nii", ".nii.gz"))
def read_nifti_image(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """A 2D NIfTI image as (1, H, W), a 3D volume as (1, Z, H, W), display values in [0, 1].

    Reoriented to the closest RAS orientation first, then shown as a radiologist views a
    slice: rows run from anterior/superior down, columns from the patient's right (the
    same file always gives the same array, whatever its stored voxel order). uint8 voxels
    are divided by 255, others scaled between their 0.5th and 99.5th percentiles (NIfTI
    carries no window). A 4D file (time, channels) is refused: one image or volume is
    expected."""
    import nibabel as nib

    from scandx.data.nifti import read_nifti

    data, _zooms, affine = read_nifti(path, max_dims=3)
    try:
        canonical = nib.as_closest_canonical(nib.Nifti1Image(np.asarray(data), affine))
        data = np.asarray(canonical.dataobj)
    except Exception as e:  # an affine nibabel cannot reorient
        raise BadImageError(f"cannot reorient NIfTI ({type(e).__name__}: {e})", path) from None
    if data.ndim == 3 and data.shape[2] == 1:
        data = data[:, :, 0]
    # (x, y[, z]) -> ([z,] y, x), rows flipped so that anterior (superior) is up
    view = np.flip(data.T, axis=-2)
    if view.dtype == np.uint8:
        out = view.astype(np.float32) / 255.0
    else:
        out = robust_unit(view.astype(np.float32))
    frames = 1 if out.ndim == 2 else out.shape[0]
    meta = {"format": "nifti", "frames": frames, "modality": ""}
    return np.ascontiguousarray(out[None]), meta


@register_reader("raster", (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif"))
def read_raster(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """PNG/JPEG/TIFF/BMP/GIF through Pillow.

    8-bit images are divided by 255; 16-bit and float images, whose useful range
    varies by device, are scaled between their 0.5th and 99.5th percentiles.
    Multi-page TIFFs become (C, F, H, W).
    """
    from PIL import Image, ImageSequence, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            frames = [_page_to_array(p, path) for p in ImageSequence.Iterator(im)]
    except BadImageError:
        raise
    except UnidentifiedImageError:
        raise BadImageError("not a readable image (unknown or corrupt format)", path) from None
    except Exception as e:  # truncated files, decoder errors
        raise BadImageError(f"cannot decode image ({type(e).__name__}: {e})", path) from None
    arr = frames[0] if len(frames) == 1 else np.stack(frames, axis=1)
    return arr, {"format": "raster", "frames": len(frames), "modality": ""}


def _page_to_array(im: Any, path: Path) -> np.ndarray:
    if im.mode in ("P", "PA", "LA", "RGBA", "CMYK", "YCbCr", "HSV", "LAB"):
        im = im.convert("RGB")
    elif im.mode == "1":
        im = im.convert("L")
    a = require_finite(np.asarray(im), path)
    if a.dtype == np.uint8:
        out = a.astype(np.float32) / 255.0
    else:
        out = robust_unit(a.astype(np.float32))
    return out[None] if out.ndim == 2 else np.moveaxis(out, -1, 0)
