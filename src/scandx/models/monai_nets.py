"""ResNet, DenseNet and EfficientNet from MONAI, for 2D and 3D, any channel count.

ResNet-10/18/34/50 take a ``width`` factor on their channels (the planner's ladder
scales width, depth and input size). Each classifier here has ``forward_features(x)``,
its last feature map (``monai_features.py``). For inputs of 64 pixels or less the ResNet stem
becomes a 3x3 stride-1 conv
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
        width: float = 1.0,
    ) -> nn.Module:
        """``width`` scales every block's channels (64-128-256-512 at 1.0)."""
        from scandx.models.monai_features import feature_resnet

        small = min(input_size) <= SMALL_INPUT if small_stem is None else small_stem
        stem = {"conv1_t_size": 3, "conv1_t_stride": 1, "no_max_pool": True} if small else {}
        return feature_resnet(
            depth,
            spatial_dims=spatial_dims,
            n_input_channels=in_channels,
            num_classes=out_channels,
            widen_factor=width,
            **stem,
        )

    return build


for _depth in (10, 18, 34, 50):
    register_model(f"resnet{_depth}")(_resnet(_depth))


@register_model("densenet121", min_size=32)
def densenet121(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    input_size: list[int],
    dropout: float = 0.0,
) -> nn.Module:
    from scandx.models.monai_features import FeatureDenseNet121

    return FeatureDenseNet121(
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
    from scandx.models.monai_features import FeatureEfficientNetBN

    return FeatureEfficientNetBN(
        "efficientnet-b0",
        pretrained=False,
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        num_classes=out_channels,
    )


@register_model("dynunet", min_size=16, kind="segmenter")
def dynunet(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    input_size: list[int],
    filters: list[int] | None = None,
    strides: list[list[int]] | None = None,
    kernels: list[list[int]] | None = None,
) -> nn.Module:
    """nnU-Net's U-Net (MONAI DynUNet) for segmentation: instance norm, leaky ReLU, one
    stride-2 level per halving of the patch down to 4-8 voxels per edge (3 to 5
    levels); ``strides`` and ``kernels`` per level and axis come from the segmentation
    plan (spacing-aware, for anisotropic data)."""
    from monai.networks.nets import DynUNet

    if strides is None:
        levels = 1
        side = min(input_size)
        while side // 2 >= 4 and levels < 5:
            side //= 2
            levels += 1
        strides = [[1] * spatial_dims] + [[2] * spatial_dims] * (levels - 1)
    filters = filters or [16 * 2**i for i in range(len(strides))]
    filters = [min(f, 320) for f in filters]
    kernels = kernels or [[3] * spatial_dims] * len(strides)
    return DynUNet(
        spatial_dims,
        in_channels,
        out_channels,
        kernels,
        strides,
        strides[1:],
        filters=filters,
        norm_name="instance",
        res_block=False,
    )
