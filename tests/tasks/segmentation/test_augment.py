"""Patch augmentation keeps image and label aligned, and is reproducible."""

from __future__ import annotations

import numpy as np
import torch

from scandx.tasks.segmentation import augment


def _disc_batch(shape: tuple[int, ...], at: float = 0.35) -> tuple[torch.Tensor, torch.Tensor]:
    grids = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    centre = [n * at - 0.5 for n in shape]  # off-centre by default, so a rotation moves it
    r2 = sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True))
    lab = (r2 < (min(shape) / 5) ** 2).astype(np.int64)
    x = torch.from_numpy(lab.astype(np.float32))[None, None].repeat(4, 2, *[1] * len(shape))
    return x, torch.from_numpy(lab)[None, None].repeat(4, 1, *[1] * len(shape))


def test_rotation_and_scaling_move_image_and_label_together(monkeypatch):
    monkeypatch.setattr(augment, "P_ROTATE", 1.0)
    monkeypatch.setattr(augment, "P_SCALE", 1.0)
    for shape in ((48, 64), (16, 40, 48)):
        x, y = _disc_batch(shape)
        xa, ya = augment.spatial(x, y, np.random.default_rng(1))
        assert not torch.equal(ya, y)  # it did move
        agree = ((xa[:, 0] > 0.5).long() == ya[:, 0]).float().mean()
        assert agree > 0.99, agree
        assert set(torch.unique(ya).tolist()) <= {0, 1}
        again = augment.spatial(x, y, np.random.default_rng(1))
        assert torch.equal(again[0], xa) and torch.equal(again[1], ya)


def test_rotation_alone_keeps_the_area_on_a_non_square_patch(monkeypatch):
    monkeypatch.setattr(augment, "P_ROTATE", 1.0)
    monkeypatch.setattr(augment, "P_SCALE", 0.0)
    x, y = _disc_batch((48, 96), at=0.5)  # a disc keeps its area only if the rotation
    # is in voxel units (in normalised coordinates it would turn into an ellipse)
    _, ya = augment.spatial(x, y, np.random.default_rng(3))
    assert torch.allclose(ya.sum((1, 2, 3)).float(), y.sum((1, 2, 3)).float(), rtol=0.08)


def test_intensity_changes_values_not_shapes_and_is_seeded():
    x = torch.randn(6, 2, 32, 32)
    a = augment.intensity(x, np.random.default_rng(5))
    b = augment.intensity(x, np.random.default_rng(5))
    assert a.shape == x.shape and torch.equal(a, b) and torch.isfinite(a).all()
    assert torch.equal(x, x.clone())  # the input is not modified in place
