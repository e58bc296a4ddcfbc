"""Image backbones in plain torch (torchvision does not work with this project's torch).

* ``small``: a compact conv net for CPU presets (conv-BN-ReLU stages, each halving the resolution).
* ``resnet18`` / ``resnet50``: He et al. 2016 (:mod:`lightning_modules.blocks.resnet`, with
  torchvision's parameter names, so torchvision weight files load), for the paper presets.

Every backbone maps (B, 3, H, W) to a feature map (B, C, H/s, W/s) and exposes
``out_channels`` and ``stride``.
"""
from __future__ import annotations

from torch import Tensor, nn

from lightning_modules.blocks.resnet import (  # noqa: F401  (re-exported)
    BasicBlock,
    Bottleneck,
    ResNet,
    load_torchvision_weights,
    resnet18,
    resnet50,
)


def conv_bn_relu(cin: int, cout: int, stride: int = 1, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class SmallConvNet(nn.Module):
    """``stages`` stages of two 3x3 convolutions; each stage halves the resolution and
    doubles the width (capped at ``max_width``)."""

    def __init__(self, width: int = 32, stages: int = 4, max_width: int = 256):
        super().__init__()
        layers, cin = [], 3
        for stage in range(stages):
            cout = min(width * 2**stage, max_width)
            layers += [conv_bn_relu(cin, cout, stride=2), conv_bn_relu(cout, cout)]
            cin = cout
        self.body = nn.Sequential(*layers)
        self.out_channels = cin
        self.stride = 2**stages

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


BACKBONES = {
    "small": lambda width: SmallConvNet(width=width),
    "resnet18": lambda width: resnet18(),
    "resnet50": lambda width: resnet50(),
}


def build_backbone(name: str, width: int = 32) -> nn.Module:
    """A backbone by name (``small``, ``resnet18``, ``resnet50``); ``width`` sizes ``small`` only."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone '{name}'; choose one of: {', '.join(BACKBONES)}")
    return BACKBONES[name](width)
