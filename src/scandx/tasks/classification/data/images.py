"""Case pixels and the preprocessing contract shared by training and inference.

``InputContract`` is saved in ``model/model.json``; training, evaluation and
prediction all call ``preprocess`` with it, so one image always becomes the
same tensor.

Decoded and preprocessed pixels are kept in the preprocessed cache (``data/cache.py``):
``decoded`` stores a case's display-space array under its content key and the reader
version (the fingerprint pass fills it, so ``train`` decodes each image once), and
``load_cases`` stores each model input under the content key and ``preprocess_hash`` of
the contract, so a later ``train`` or ``evaluate`` with the same plan decodes nothing.
Cached inputs are bit-identical to ``preprocess(read_case(case), contract)``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from scandx.data.cache import (
    PreprocessedCache,
    decoder_versions,
    default_cache,
    file_digest,
    stable_hash,
)
from scandx.data.readers import read_image
from scandx.errors import BadImageError, ScandxError
from scandx.tasks.classification.data.manifest import Case
from scandx.tasks.classification.data.medmnist import load_npz

log = logging.getLogger(__name__)

GREY_TOLERANCE = 2.0 / 255.0  # an "RGB" image whose channels differ by less is grey
# bump when read_case's output changes (cached display arrays are then rebuilt); the
# decoding libraries' versions are part of the key as well
DECODE_VERSION = 1
PREPROCESS_VERSION = 1  # bump when preprocess changes for the same contract


@dataclass
class InputContract:
    """How a file becomes a model input. Saved with the weights."""

    spatial_dims: int = 2
    channels: int = 1
    size: list[int] = field(default_factory=lambda: [64, 64])
    mean: list[float] = field(default_factory=lambda: [0.5])
    std: list[float] = field(default_factory=lambda: [0.25])
    resize: str = "letterbox-bilinear-antialias"
    intensity: str = "display [0,1]: DICOM modality LUT + VOI + MONOCHROME1 inversion; 8-bit/255"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputContract:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def read_case(case: Case) -> np.ndarray:
    """Display-space pixels of one case, (C, H, W) or (C, F, H, W) float32 in [0, 1]."""
    if "npz_key" in case.meta:
        arr = load_npz(case.path)[case.meta["npz_key"]][int(case.meta["npz_index"])]
        a = arr.astype(np.float32) / (
            255.0 if arr.dtype == np.uint8 else max(float(arr.max()), 1.0)
        )
        return a[None] if a.ndim == 2 else np.moveaxis(a, -1, 0)
    return read_image(case.path)[0]


def is_grey(arr: np.ndarray) -> bool:
    """True for one channel, or three channels that carry the same values."""
    if arr.shape[0] == 1:
        return True
    return (
        arr.shape[0] == 3
        and float(np.abs(arr[0] - arr[1]).max()) <= GREY_TOLERANCE
        and float(np.abs(arr[0] - arr[2]).max()) <= GREY_TOLERANCE
    )


def _fit_channels(arr: np.ndarray, channels: int, where: str) -> np.ndarray:
    c = arr.shape[0]
    if c == channels:
        return arr
    if channels == 1 and c == 3:
        if not is_grey(arr):
            raise BadImageError("colour image given to a model trained on greyscale images", where)
        return arr[:1]
    if channels == 3 and c == 1:
        return np.repeat(arr, 3, axis=0)  # a grey image is a colour image without colour
    raise BadImageError(f"image has {c} channels; the model expects {channels}", where)


def preprocess(arr: np.ndarray, contract: InputContract, where: str = "") -> torch.Tensor:
    """Display-space array -> normalised model input (C, *size), float32."""
    spatial = arr.ndim - 1
    if spatial != contract.spatial_dims:
        kind = f"{arr.shape[1]}-frame image" if spatial == 3 else f"{spatial}D image"
        raise BadImageError(
            f"{kind} given to a {contract.spatial_dims}D model (shape {tuple(arr.shape)})", where
        )
    arr = _fit_channels(arr, contract.channels, where)
    x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    x = letterbox_resize(x, list(contract.size))
    mean = torch.tensor(contract.mean, dtype=torch.float32).view(-1, *([1] * contract.spatial_dims))
    std = torch.tensor(contract.std, dtype=torch.float32).view(-1, *([1] * contract.spatial_dims))
    return (x - mean) / std


def letterbox_resize(x: torch.Tensor, size: list[int]) -> torch.Tensor:
    """Pad (C, *S) to the target aspect ratio with zeros, centred, then resize."""
    shape = list(x.shape[1:])
    if shape == size:
        return x
    scale = min(s / t for s, t in zip(shape, size, strict=True))
    padded = [max(s, int(round(t * scale))) for s, t in zip(shape, size, strict=True)]
    pads: list[int] = []
    for s, p in reversed(list(zip(shape, padded, strict=True))):
        pads += [(p - s) // 2, p - s - (p - s) // 2]
    if any(pads):
        x = F.pad(x, pads)
    mode = "bilinear" if len(size) == 2 else "trilinear"
    return F.interpolate(
        x[None], size=size, mode=mode, align_corners=False, antialias=len(size) == 2
    )[0]


@lru_cache(maxsize=1)
def reader_version() -> str:
    """What decides the decoded pixels besides the file: scandx's decoding rules and the
    versions of the libraries that decode."""
    return f"scandx-decode {DECODE_VERSION}; {decoder_versions()}"


def case_key(case: Case) -> str:
    """The case's pixel source by content: the file's digest (and, in a MedMNIST .npz,
    the array's key and index)."""
    digest = file_digest(case.path)
    if "npz_key" in case.meta:
        return stable_hash(digest, case.meta["npz_key"], int(case.meta["npz_index"]))
    return digest


def cache_for(case: Case, cache: PreprocessedCache | None) -> PreprocessedCache | None:
    """The cache for this case; None for pixels already held as an array (a MedMNIST
    .npz, read once per process: a case is a slice), where an entry per image costs more
    than it saves (PneumoniaMNIST: +3 s per ``train`` with 12,000 entries, measured)."""
    return None if "npz_key" in case.meta else cache


def decoded(case: Case, cache: PreprocessedCache | None) -> np.ndarray:
    """``read_case(case)``, from the cache when an earlier pass decoded the same content
    (memory-mapped, read-only) and stored there otherwise."""
    cache = cache_for(case, cache)
    if cache is None:
        return read_case(case)
    key = stable_hash("display", case_key(case), reader_version())
    arrays, _ = cache.fetch("cls-display", key, ("pixels",), lambda: {"pixels": read_case(case)})
    return arrays["pixels"]


def preprocess_hash(contract: InputContract) -> str:
    """A stable hash of everything that changes a preprocessed input: every field of the
    contract (size, channels, normalisation, resize and intensity rules), the decoding."""
    return stable_hash(contract.to_dict(), PREPROCESS_VERSION, reader_version())


def model_input(
    case: Case, contract: InputContract, cache: PreprocessedCache | None, prep: str = ""
) -> np.ndarray:
    """``preprocess(read_case(case), contract)`` as an array, through the cache."""
    cache = cache_for(case, cache)
    if cache is None:
        return preprocess(read_case(case), contract, case.path).numpy()
    key = stable_hash("input", case_key(case), prep or preprocess_hash(contract))
    shape = (contract.channels, *contract.size)

    def build() -> dict[str, np.ndarray]:
        display = np.array(decoded(case, cache))  # a private copy of a mapped entry
        return {"x": preprocess(display, contract, case.path).numpy()}

    arrays, hit = cache.fetch("cls-input", key, ("x",), build)
    x = arrays["x"]
    if hit and (x.shape != shape or x.dtype != np.float32):  # not what this key must hold
        log.warning("cache entry of the wrong shape %s: rebuilding it", x.shape)
        arrays = build()
        cache.put("cls-input", key, arrays)
        x = arrays["x"]
    return x


def load_cases(
    cases: list[Case], contract: InputContract, *, skip_bad: bool = False, desc: str = "loading"
) -> tuple[torch.Tensor, list[Case], list[tuple[str, str]]]:
    """Read and preprocess every case into one tensor (N, C, *size), through the
    preprocessed cache (``SCANDX_CACHE=off``: decoded afresh).

    Returns the tensor, the cases kept, and (path, reason) for each case skipped.
    Without ``skip_bad`` the first bad image raises BadImageError.
    """
    out = torch.empty((len(cases), contract.channels, *contract.size), dtype=torch.float32)
    block = out.numpy()
    kept: list[Case] = []
    skipped: list[tuple[str, str]] = []
    cache = default_cache()
    prep = preprocess_hash(contract)
    for case in tqdm(cases, desc=desc, unit="img", leave=False, disable=None):
        try:
            block[len(kept)] = model_input(case, contract, cache, prep)
        except BadImageError as e:
            if not skip_bad:
                raise
            skipped.append((e.where or case.path, e.reason))
            continue
        kept.append(case)
    if not kept:
        raise ScandxError("no readable images left", cases[0].path if cases else None)
    return out[: len(kept)], kept, skipped
