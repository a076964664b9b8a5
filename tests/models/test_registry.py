"""The registry is the test matrix: every model, 2D and 3D, one and three channels."""

from __future__ import annotations

import pytest
import torch

from scandx.errors import ScandxError
from scandx.models import create_model, list_models, min_input_size, model_kind

REQUIRED = {
    "simple-cnn",
    "keras-cnn",
    "resnet18",
    "resnet34",
    "resnet50",
    "densenet121",
    "efficientnet-b0",
    "dynunet",
}


def test_required_models_registered():
    assert REQUIRED <= set(list_models())


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize(("dims", "channels"), [(2, 1), (2, 3), (3, 1), (3, 2)])
def test_forward_shape(name, dims, channels):
    """Classifiers give logits per image, segmenters logits per voxel, autoencoders the
    input's reconstruction."""
    edge = max(min_input_size(name), 32 if dims == 2 else 24)
    if name == "keras-cnn" and dims == 3:
        edge = 48
    size = [edge] * dims
    model = create_model(name, dims, channels, 3, input_size=size).eval()
    with torch.no_grad():
        out = model(torch.randn(2, channels, *size))
    kind = model_kind(name)
    expected = {"classifier": (2, 3), "segmenter": (2, 3, *size)}.get(kind, (2, channels, *size))
    assert out.shape == expected


def test_simple_cnn_matches_the_article_at_28px():
    m = create_model("simple-cnn", 2, 1, 2, input_size=[28, 28])
    linear = [p for n, p in m.named_parameters() if n == "head.1.weight"][0]
    assert linear.shape == (64, 64 * 5 * 5)  # 28 -> 26 -> 13 -> 11 -> 5


def test_unknown_model_and_too_small_input():
    with pytest.raises(ScandxError, match="unknown model"):
        create_model("vgg99")
    with pytest.raises(ScandxError, match="at least 32"):
        create_model("densenet121", 2, 1, 2, input_size=[28, 28])
