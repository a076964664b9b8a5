"""The overlay as a Secondary Capture, for viewers that show neither SEG nor SR.

Classification: the explanation heatmap blended over the image as the reader views it
(``explain/overlay.py``: jet colours, stronger where the map is high); segmentation: the
mask blended over the image (one colour per label) -- one slice for a 2D image, a montage
of the slices that hold a segmented voxel (at most ``MAX_SLICES``, evenly spaced; evenly
spaced slices of the whole volume when nothing was segmented) for a volume.

The SC is RGB, 8 bits, in a new series of the source study; highdicom copies the patient
and study attributes from the source dataset so that it files with the study. It
references the images it shows (Source Image Sequence) and says it is derived.
"""

from __future__ import annotations

import highdicom as hd
import numpy as np
from pydicom import Dataset

from scandx.dicom_out.model_info import MANUFACTURER

MAX_SLICES = 48
SC_SERIES_NUMBER = 9903
LABEL_COLOURS = np.array(
    [[0, 0, 0], [255, 64, 64], [64, 200, 64], [64, 128, 255], [255, 200, 0], [200, 64, 255]],
    np.float32,
)  # also the service's mask previews (serve/served_model.py)
MASK_ALPHA = 0.45


def heatmap_overlay(display: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """uint8 RGB: ``heat`` ((H, W) or (D, H, W) in [0, 1]) over ``display`` (C, *S in
    [0, 1]); a volume gives a montage of its slices."""
    from scandx.tasks.classification.explain.overlay import montage, overlay, slice_overlays

    return montage(slice_overlays(display, heat)) if heat.ndim == 3 else overlay(display, heat)


def grey_255(image: np.ndarray) -> np.ndarray:
    """The first channel scaled to 0..255 between its 0.5th and 99.5th percentiles."""
    grey = image[0].astype(np.float32)
    lo, hi = np.percentile(grey, [0.5, 99.5])
    return np.clip((grey - lo) / max(float(hi - lo), 1e-6), 0, 1) * 255


def blend_mask(grey: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3): a 0..255 grey slice with the label map blended in."""
    base = np.repeat(grey[..., None], 3, axis=-1)
    colour = LABEL_COLOURS[np.minimum(mask, len(LABEL_COLOURS) - 1)]
    alpha = np.where(mask > 0, MASK_ALPHA, 0.0)[..., None]
    return np.round((1 - alpha) * base + alpha * colour).astype(np.uint8)


def shown_slices(mask: np.ndarray) -> list[int]:
    """Slices of a (Z, Y, X) mask the montage shows."""
    hit = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(1))
    pool = hit if hit.size else np.arange(mask.shape[0])
    picks = np.linspace(0, pool.size - 1, min(MAX_SLICES, pool.size)).round().astype(int)
    return [int(pool[i]) for i in np.unique(picks)]


def mask_overlay(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """(uint8 RGB, the slice indices shown): ``mask`` over ``image`` (C, *S)."""
    from scandx.tasks.classification.explain.overlay import montage

    grey = grey_255(image)
    if mask.ndim == 2:
        return blend_mask(grey, mask), [0]
    picks = shown_slices(mask)
    return montage([blend_mask(grey[z], mask[z]) for z in picks]), picks


def secondary_capture(
    rgb: np.ndarray, reference: Dataset, shown: list[Dataset], description: str
) -> hd.sc.SCImage:
    """An RGB Secondary Capture of ``rgb`` in a new series of ``reference``'s study,
    referencing the source images it shows."""
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=reference,
        pixel_array=np.ascontiguousarray(rgb, dtype=np.uint8),
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        series_instance_uid=hd.UID(),
        series_number=SC_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        patient_orientation=("L", "P"),  # replaced below: highdicom wants a value
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        series_description=description[:64],
    )
    sc.PatientOrientation = ""  # a blend (or montage) of slices: no orientation to state
    sc.Laterality = reference.get("Laterality", "")  # Type 2C: the source's, else unknown
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.DerivationDescription = description[:1024]
    sc.BurnedInAnnotation = "NO"
    refs = []
    for src in shown:
        item = Dataset()
        item.ReferencedSOPClassUID = src.SOPClassUID
        item.ReferencedSOPInstanceUID = src.SOPInstanceUID
        refs.append(item)
    sc.SourceImageSequence = refs
    return sc
