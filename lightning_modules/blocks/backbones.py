"""Image backbones in plain torch (torchvision does not work with this project's torch).

* ``small``: a compact conv net for CPU presets (conv-BN-ReLU stages, each halving the resolution).
* ``resnet18`` / ``resnet50``: He et al. 2016, written out here, for the paper presets.

Every backbone maps (B, 3, H, W) to a feature map (B, C, H/s, W/s) and exposes
``out_channels`` and ``stride``.
"""
from __future__ import annotations

from torch import Tensor, nn


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


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        cout = width * self.expansion
        self.residual = nn.Sequential(
            conv_bn_relu(cin, width, stride),
            nn.Conv2d(width, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.shortcut = _shortcut(cin, cout, stride)

    def forward(self, x: Tensor) -> Tensor:
        return (self.residual(x) + self.shortcut(x)).relu_()


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        cout = width * self.expansion
        self.residual = nn.Sequential(
            conv_bn_relu(cin, width, 1, kernel=1),
            conv_bn_relu(width, width, stride),
            nn.Conv2d(width, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.shortcut = _shortcut(cin, cout, stride)

    def forward(self, x: Tensor) -> Tensor:
        return (self.residual(x) + self.shortcut(x)).relu_()


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class ResNet(nn.Module):
    """ResNet without its classifier: stem, then four stages of residual blocks."""

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], blocks_per_stage: tuple[int, ...]):
        super().__init__()
        self.stem = nn.Sequential(conv_bn_relu(3, 64, stride=2, kernel=7), nn.MaxPool2d(3, 2, 1))
        stages, cin = [], 64
        for i, count in enumerate(blocks_per_stage):
            width = 64 * 2**i
            for j in range(count):
                stages.append(block(cin, width, stride=2 if (j == 0 and i > 0) else 1))
                cin = width * block.expansion
        self.stages = nn.Sequential(*stages)
        self.out_channels = cin
        self.stride = 32

    def forward(self, x: Tensor) -> Tensor:
        return self.stages(self.stem(x))


BACKBONES = {
    "small": lambda width: SmallConvNet(width=width),
    "resnet18": lambda width: ResNet(BasicBlock, (2, 2, 2, 2)),
    "resnet50": lambda width: ResNet(Bottleneck, (3, 4, 6, 3)),
}


def build_backbone(name: str, width: int = 32) -> nn.Module:
    """A backbone by name (``small``, ``resnet18``, ``resnet50``); ``width`` sizes ``small`` only."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone '{name}'; choose one of: {', '.join(BACKBONES)}")
    return BACKBONES[name](width)
