"""Atomic checkpoints, loaded without unpickling arbitrary objects."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from scandx.core.run_dir import atomic_write


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Serialised in memory, then written to a temporary file and renamed: a kill never
    leaves half a checkpoint, a full disk leaves no ``.tmp`` and one line naming it."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write(path, buffer.getvalue())  # via a hidden .last.ckpt.tmp


def load_checkpoint(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)
