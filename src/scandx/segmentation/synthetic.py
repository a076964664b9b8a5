"""Synthetic segmentation data with known masks, written in the layouts users have.

- ``make_ellipse_folders``: 2D paired folders (``images/*.png``, ``masks/*.png`` 0/255).
- ``make_ellipsoid_decathlon``: 3D NIfTI in the Decathlon layout (``dataset.json``,
  ``imagesTr/<case>_0000.nii.gz``, ``labelsTr/<case>.nii.gz``, ``imagesTs/``), with
  an anisotropic voxel spacing so that spacing handling is exercised.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _ellipsoid(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    grids = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")
    centre = [rng.uniform(0.35, 0.65) * s for s in shape]
    radii = [rng.uniform(0.15, 0.28) * s for s in shape]
    r2 = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii, strict=True))
    return r2 <= 1.0


def _image(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    img = 0.3 + 0.4 * mask + rng.normal(0, 0.1, mask.shape)
    return np.clip(img, 0, 1).astype(np.float32)


def make_ellipse_folders(out: str | Path, n: int = 24, size: int = 64, seed: int = 0) -> Path:
    from PIL import Image

    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        mask = _ellipsoid(rng, (size, size))
        img = _image(rng, mask)
        Image.fromarray(np.round(img * 255).astype(np.uint8)).save(out / "images" / f"c{i:03d}.png")
        Image.fromarray((mask * 255).astype(np.uint8)).save(out / "masks" / f"c{i:03d}.png")
    return out


def make_ellipsoid_decathlon(
    out: str | Path,
    n_train: int = 12,
    n_test: int = 4,
    shape: tuple[int, int, int] = (32, 32, 24),
    spacing: tuple[float, float, float] = (1.0, 1.0, 2.0),
    seed: int = 0,
) -> Path:
    import nibabel as nib

    out = Path(out)
    for d in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (out / d).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    affine = np.diag([*spacing, 1.0])
    for i in range(n_train + n_test):
        mask = _ellipsoid(rng, shape)
        img = _image(rng, mask) * 1000.0  # MR-like arbitrary units
        folder = "imagesTr" if i < n_train else "imagesTs"
        labels = "labelsTr" if i < n_train else "labelsTs"
        nib.save(nib.Nifti1Image(img, affine), str(out / folder / f"ell_{i:03d}_0000.nii.gz"))
        nib.save(
            nib.Nifti1Image(mask.astype(np.uint8), affine),
            str(out / labels / f"ell_{i:03d}.nii.gz"),
        )
    (out / "dataset.json").write_text(
        json.dumps(
            {
                "name": "ellipsoids",
                "modality": {"0": "MR"},
                "labels": {"0": "background", "1": "ellipsoid"},
                "numTraining": n_train,
                "file_ending": ".nii.gz",
            },
            indent=2,
        )
    )
    return out
