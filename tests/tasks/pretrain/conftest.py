"""Tiny data for the pretraining tests: a MedMNIST-style .npz of phantom chest images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scandx.tasks.classification.data.synthetic import phantom


def write_phantom_npz(path: Path, n: dict[str, int], size: int = 28, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, count in n.items():
        labels = np.arange(count) % 2
        imgs = [phantom(rng, size, bool(y))[0] for y in labels]
        arrays[f"{split}_images"] = (np.stack(imgs) * 255).round().astype(np.uint8)
        arrays[f"{split}_labels"] = labels.reshape(-1, 1).astype(np.uint8)
    np.savez(path, **arrays)
    return path


@pytest.fixture(scope="session")
def phantom_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 train, 16 val, 16 test 28x28 phantoms (labels alternate)."""
    folder = tmp_path_factory.mktemp("pretrain-data")
    return write_phantom_npz(folder / "phantommnist.npz", {"train": 48, "val": 16, "test": 16})
