"""MONAI's classifiers with ``forward_features(x)``: the last feature map, before the
pooling and the output layer (as ``cnn.PlainCNN`` has it). The pretraining methods
(``tasks/pretrain``), the autoencoder (``models/autoencoder.py``) and the embedders use
every backbone through it. The subclasses add that method only, so parameter names and
outputs are MONAI's own. Imported by the builders in ``monai_nets.py`` when a network is
built (importing MONAI takes seconds; ``scandx --help`` does not pay it).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from monai.networks.nets import DenseNet121, EfficientNetBN
from monai.networks.nets.resnet import ResNet, ResNetBlock, ResNetBottleneck, get_inplanes

# MONAI's resnet<depth>() layouts: (block, blocks per stage)
RESNET_LAYOUTS: dict[int, tuple[type[nn.Module], list[int]]] = {
    10: (ResNetBlock, [1, 1, 1, 1]),
    18: (ResNetBlock, [2, 2, 2, 2]),
    34: (ResNetBlock, [3, 4, 6, 3]),
    50: (ResNetBottleneck, [3, 4, 6, 3]),
}


class FeatureResNet(ResNet):
    """MONAI's ResNet; ``forward_features``: the output of ``layer4``."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn1(self.conv1(x)))
        if not self.no_max_pool:
            x = self.maxpool(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def feature_resnet(depth: int, **kwargs: object) -> FeatureResNet:
    """What MONAI's ``resnet<depth>(pretrained=False, **kwargs)`` builds, with features."""
    block, layers = RESNET_LAYOUTS[depth]
    return FeatureResNet(block, layers, get_inplanes(), **kwargs)  # type: ignore[arg-type]


class FeatureDenseNet121(DenseNet121):
    """MONAI's DenseNet-121; ``forward_features``: the last dense block, activated."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.class_layers.relu(self.features(x))


class FeatureEfficientNetBN(EfficientNetBN):
    """MONAI's EfficientNet; ``forward_features``: the head convolution, activated."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self._swish(self._bn0(self._conv_stem(self._conv_stem_padding(x))))
        x = self._blocks(x)
        return self._swish(self._bn1(self._conv_head(self._conv_head_padding(x))))
