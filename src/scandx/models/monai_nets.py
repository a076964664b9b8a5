"""ResNet, DenseNet and EfficientNet from MONAI, for 2D and 3D, any channel count.

For inputs of 64 pixels or less the ResNet stem becomes a 3x3 stride-1 conv
without max-pooling (as for CIFAR-sized images), so a 28x28 image keeps
enough resolution through the network.
"""

from __future__ import annotations

import torch.nn as nn

from scandx.models.registry import register_model

SMALL_INPUT = 64


def _resnet(depth: int):
    def build(
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        input_size: list[int],
        small_stem: bool | None = None,
    ) -> nn.Module:
        from monai.networks.nets import resnet

        small = min(input_size) <= SMALL_INPUT if small_stem is None else small_stem
        stem = {"conv1_t_size": 3, "conv1_t_stride": 1, "no_max_pool": True} if small else {}
        factory = getattr(resnet, f"resnet{depth}")
        return factory(
            spatial_dims=spatial_dims,
            n_input_channels=in_channels,
            num_classes=out_channels,
            **stem,
        )

    return build


for _depth in (18, 34, 50):
    register_model(f"resnet{_depth}")(_resnet(_depth))


@register_model("densenet121", min_size=32)
def densenet121(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    input_size: list[int],
    dropout: float = 0.0,
) -> nn.Module:
    from monai.networks.nets import DenseNet121

    return DenseNet121(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        dropout_prob=dropout,
    )


@register_model("efficientnet-b0", min_size=32)
def efficientnet_b0(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    input_size: list[int],
    dropout: float = 0.2,
) -> nn.Module:
    from monai.networks.nets import EfficientNetBN

    return EfficientNetBN(
        "efficientnet-b0",
        pretrained=False,
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        num_classes=out_channels,
    )
