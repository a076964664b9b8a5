"""Embedders: one vector per image from a run's network, for similar-case retrieval
(``scandx embed`` / ``scandx similar``, ``scandx/retrieval``).

A task gives one through ``Task.load_embedder(run)``: a trained classifier embeds with
its penultimate features, a pretraining run with its encoder's pooled features. The
retrieval index stores the embedder's ``space`` and refuses queries from another one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch


class Embedder(Protocol):
    """``space``: what the vectors mean and what input they come from, stored in the
    index: {"run": str, "run_sha256": str (of the weights), "kind": str (e.g.
    "classifier-penultimate", "encoder-simclr", "pixels"), "dim": int, "input":
    {"spatial_dims", "channels", "size"}}."""

    space: dict[str, Any]

    def prepare(self, path: str | Path) -> torch.Tensor:
        """One network input (C, *size), exactly as the run's Predictor prepares it;
        ``scandx.errors.BadImageError`` (or ScandxError) for an unreadable file."""
        ...

    def prepare_display(self, arr: np.ndarray, where: str = "") -> torch.Tensor:
        """The same from an image already read (display space, as ``read_image`` gives
        it): MedMNIST cases have no file of their own, and an index embeds what it has
        already read for its thumbnails."""
        ...

    def embed(self, batch: torch.Tensor) -> np.ndarray:
        """(N, C, *size) prepared inputs -> (N, dim) float32 vectors (fp32, eval mode)."""
        ...
