"""The registry's convolutional autoencoder (2D and 3D) and every classifier's
``forward_features``."""

from __future__ import annotations

import pytest
import torch

from scandx.models import create_model, list_models, model_kind
from scandx.models.autoencoder import (
    encoder_state,
    output_layer,
    pooled_features,
    reconstruction_error,
)


@pytest.mark.parametrize(
    "name,kwargs,size",
    [
        ("simple-cnn", {}, [28, 28]),
        ("resnet18", {"width": 0.25}, [28, 28]),
        ("resnet10", {"width": 0.25}, [96, 96]),
        ("densenet121", {}, [32, 32]),
        ("efficientnet-b0", {}, [32, 32]),
    ],
)
def test_forward_features_is_the_classifiers_own_path(name, kwargs, size):
    torch.manual_seed(0)
    model = create_model(name, 2, 1, 3, size, **kwargs).eval()
    x = torch.randn(2, 1, *size)
    head = dict(model.named_modules())[output_layer(model)]
    assert isinstance(head, torch.nn.Linear) and head.out_features == 3
    state = encoder_state(model)
    assert len(state) == len(model.state_dict()) - 2  # the output layer's weight and bias
    if name == "simple-cnn":  # a dense head on the flattened map
        expected = model.forward_head(model.forward_features(x))
    else:  # global average pooling, then the output layer (dropout off in eval)
        expected = head(pooled_features(model, x))
    torch.testing.assert_close(model(x), expected)


@pytest.mark.parametrize("dims,size", [(2, [28, 28]), (3, [12, 24, 24])])
def test_autoencoder_shapes_2d_and_3d(dims, size):
    assert model_kind("conv-autoencoder") == "autoencoder"
    assert "conv-autoencoder" not in list_models("classifier")
    ae = create_model("conv-autoencoder", dims, 1, 1, size, code_dim=32)
    x = torch.randn(3, 1, *size)
    assert ae(x).shape == x.shape
    assert ae.encode(x).shape == (3, 32)
    err = reconstruction_error(ae, x)
    assert err.shape == (3,) and (err > 0).all()
    # the encoder is the classifier under its own names (what train --init loads)
    classifier = create_model("simple-cnn", dims, 1, 2, size)
    own = classifier.state_dict()
    for k, v in ae.backbone_state().items():
        assert own[k].shape == v.shape
    assert not any(k.startswith(output_layer(classifier)) for k in ae.backbone_state())


def test_autoencoder_over_another_backbone():
    ae = create_model(
        "conv-autoencoder", 2, 3, 1, [64, 64], backbone="resnet10", backbone_kwargs={"width": 0.25}
    )
    x = torch.randn(2, 3, 64, 64)
    assert ae(x).shape == x.shape
    assert "conv1.weight" in ae.backbone_state() and "fc.weight" not in ae.backbone_state()
