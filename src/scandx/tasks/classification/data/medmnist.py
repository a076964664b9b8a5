"""MedMNIST ``.npz`` files: the given train/val/test split is kept.

Cases point at the ``.npz`` with ``npz_key``/``npz_index`` metadata; their
pixels are read from one cached copy of the file (see ``images.read_case``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from scandx.errors import ScandxError
from scandx.tasks.classification.data.manifest import Case, Manifest

# Label names of the 2D MedMNIST v2 flags that name them in a way a user reads.
LABEL_NAMES = {
    "pneumoniamnist": ["normal", "pneumonia"],
    "breastmnist": ["malignant", "normal_or_benign"],
    "chestmnist": [
        "atelectasis",
        "cardiomegaly",
        "effusion",
        "infiltration",
        "mass",
        "nodule",
        "pneumonia",
        "pneumothorax",
        "consolidation",
        "edema",
        "emphysema",
        "fibrosis",
        "pleural",
        "hernia",
    ],
}


@lru_cache(maxsize=4)
def load_npz(path: str) -> dict[str, np.ndarray]:
    """All arrays of a MedMNIST file, loaded once (never with pickle)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:
        raise ScandxError(f"not a readable .npz file ({type(e).__name__}: {e})", path) from None


def _check_labels(labels: np.ndarray, key: str, path: Path) -> None:
    """Labels are non-negative whole numbers (0/1 for multi-label columns)."""
    if labels.dtype.kind not in "iub" and labels.dtype.kind != "f":
        raise ScandxError(f"{key} has dtype {labels.dtype}; expected integer labels", path)
    values = labels.astype(np.float64)
    if not np.isfinite(values).all() or (values != np.round(values)).any():
        raise ScandxError(f"{key} holds non-integer or non-finite labels", path)
    if values.size and values.min() < 0:
        raise ScandxError(f"{key} holds a negative label ({int(values.min())})", path)
    width = labels.reshape(len(labels), -1).shape[1]
    if width > 1 and values.size and values.max() > 1:
        raise ScandxError(f"{key} is multi-label ({width} columns) but holds values above 1", path)


def load_medmnist(path: Path, image_root: Path | None = None, skip_bad: bool = False) -> Manifest:
    """Manifest of a MedMNIST 2D file (``{train,val,test}_{images,labels}``)."""
    arrays = load_npz(str(path.resolve()))
    splits = [s for s in ("train", "val", "test") if f"{s}_images" in arrays]
    if not splits:
        raise ScandxError("npz has no train_images/val_images/test_images arrays", path)
    for s in splits:
        if f"{s}_labels" not in arrays:
            raise ScandxError(f"npz has {s}_images but no {s}_labels", path)
        imgs, labels = arrays[f"{s}_images"], arrays[f"{s}_labels"]
        two_d = imgs.ndim == 3 or (imgs.ndim == 4 and imgs.shape[-1] in (1, 3))
        if not two_d or labels.ndim not in (1, 2) or len(imgs) != len(labels):
            raise ScandxError(
                f"{s}_images has shape {imgs.shape} and {s}_labels {labels.shape}; "
                "expected (N, H, W[, 3]) images and N labels (3D MedMNIST is not a 2D source)",
                path,
            )
        _check_labels(labels, f"{s}_labels", path)
    labels_all = np.concatenate(
        [arrays[f"{s}_labels"].reshape(len(arrays[f"{s}_labels"]), -1) for s in splits]
    )
    if labels_all.size == 0:
        raise ScandxError("npz holds no images", path)
    width = labels_all.shape[1]
    flag = path.stem.split("_")[0].lower()
    if width > 1:
        task = "multilabel"
        n_classes = width
    else:
        n_classes = int(labels_all.max()) + 1
        task = "binary" if n_classes == 2 else "multiclass"
    names = LABEL_NAMES.get(flag)
    classes = (
        names if names and len(names) == n_classes else [f"class_{i}" for i in range(n_classes)]
    )
    cases = []
    abspath = str(path.resolve())
    for s in splits:
        labels = arrays[f"{s}_labels"].reshape(len(arrays[f"{s}_labels"]), -1)
        for i, row in enumerate(labels):
            target: int | tuple[int, ...] = (
                tuple(int(v) for v in row) if task == "multilabel" else int(row[0])
            )
            cid = f"{s}_{i}"
            cases.append(
                Case(cid, cid, abspath, target, s, {"npz_key": f"{s}_images", "npz_index": i})
            )
    return Manifest(task=task, classes=classes, cases=cases, source=str(path))
