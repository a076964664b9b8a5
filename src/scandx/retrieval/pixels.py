"""The raw-pixel Embedder: the image letterboxed to a small fixed size, grey, z-scored
per image, flattened and L2-normalised (the inner product of two vectors is the
correlation of their pixels). The baseline of ``benchmarks/retrieval.py`` and
``scandx embed --pixels``: it needs no run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from scandx.data.readers import read_image
from scandx.errors import BadImageError
from scandx.tasks.classification.data.images import letterbox_resize

KIND = "pixels"
DEFAULT_SIZE = 32


class PixelEmbedder:
    def __init__(self, size: int = DEFAULT_SIZE, spatial_dims: int = 2):
        if size < 2 or spatial_dims not in (2, 3):
            raise ValueError(f"size {size}, spatial_dims {spatial_dims}")
        self.size = [size] * spatial_dims
        self.space: dict[str, Any] = {
            "run": "",
            "run_sha256": "",
            "kind": KIND,
            "dim": int(size**spatial_dims),
            "normalised": True,
            "input": {"spatial_dims": spatial_dims, "channels": 1, "size": self.size},
        }

    @classmethod
    def from_space(cls, space: dict[str, Any]) -> PixelEmbedder:
        size = space["input"]["size"]
        return cls(int(size[0]), len(size))

    def prepare(self, path: str | Path) -> torch.Tensor:
        return self.prepare_display(read_image(path)[0], str(path))

    def prepare_display(self, arr: np.ndarray, where: str = "") -> torch.Tensor:
        dims = len(self.size)
        if arr.ndim - 1 != dims:
            raise BadImageError(
                f"{arr.ndim - 1}D image given to a {dims}D pixel embedding (shape {arr.shape})",
                where,
            )
        grey = arr.mean(0, keepdims=True, dtype=np.float32)
        x = letterbox_resize(torch.from_numpy(np.ascontiguousarray(grey)), self.size)
        return (x - x.mean()) / x.std().clamp_min(1e-6)

    def embed(self, batch: torch.Tensor) -> np.ndarray:
        flat = batch.reshape(len(batch), -1).double().numpy()
        norms = np.linalg.norm(flat, axis=1, keepdims=True)
        return (flat / np.maximum(norms, 1e-12)).astype(np.float32)
