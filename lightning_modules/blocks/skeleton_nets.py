"""DeepSkeleton's two networks (one hypothesis each; :mod:`.stacked` batches many).

* :class:`StageEncoder`: a fully convolutional encoder returning four stages at strides
  4, 8, 16, 32 (``layer1..layer4``): the plain-torch ResNet-50 of :mod:`.resnet` (the paper,
  Sec. 3.2: res2c, res3d, res4f, res5c) or a small CPU-sized stack of 3x3 conv-BN-ReLU layers.
* :class:`BilinearUpsample`: a learnable x2 transposed convolution (depthwise, kernel 4,
  stride 2, padding 1) whose initial weights are bilinear upsampling (Sec. 3.2: "upsampling
  layer (with initial weights set to bilinear upsampling)").
* :class:`DeconvNet` (``Deconv_i``, Figure 2): encoder, then from the deepest stage repeated
  blocks of upsampling + pixel-wise summation with a 1x1 projection of the encoder stage of
  the same resolution (skip connection) + residual module, down to stride 4 (56 x 56 at
  224 px). After every residual module a 1x1 head predicts the 6 logits (foreground and
  background RGB skeleton maps): intermediate supervision at strides 16 and 8, the output
  at stride 4.
* :class:`MapRegressor` (``Regression_i``, Sec. 3.3): the 6-channel skeleton maps rescaled
  to the input size (bilinear), an encoder of the same kind, global average pooling and a
  fully connected head to the J x 3 root-relative joints. ``in_channels=3`` makes it the
  Direct RGB baseline (Sec. 5.2) with the same network.

Each network names the convolution that reads its input (``input_conv``), so that
:class:`lightning_modules.blocks.stacked.GroupedStack` can run ``H`` copies of it (one per
hypothesis, Sec. 3.2) with that convolution dense over a shared image.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.blocks.backbones import conv_bn_relu
from lightning_modules.blocks.heads import PoseRegressionHead
from lightning_modules.blocks.resnet import LAYER_NAMES, resnet50

MAP_CHANNELS = 6  # foreground RGB + background RGB


def bilinear_kernel(size: int) -> Tensor:
    """(size, size) bilinear interpolation weights of FCN's upsampling filler."""
    factor = (size + 1) // 2
    centre = factor - 1 if size % 2 == 1 else factor - 0.5
    grid = torch.arange(size, dtype=torch.float32)
    line = 1 - (grid - centre).abs() / factor
    return line[:, None] * line[None, :]


class BilinearUpsample(nn.ConvTranspose2d):
    """x2 depthwise transposed convolution initialised as bilinear upsampling (learnable)."""

    def __init__(self, channels: int):
        super().__init__(channels, channels, 4, stride=2, padding=1, groups=channels, bias=False)
        with torch.no_grad():
            self.weight.copy_(bilinear_kernel(4).expand_as(self.weight))


class ResidualModule(nn.Module):
    """Two 3x3 conv-BN layers with an identity shortcut (a basic residual block)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = conv_bn_relu(channels, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x + self.bn2(self.conv2(self.conv1(x))))


class StageEncoder(nn.Module):
    """Four stages at strides 4, 8, 16, 32; ``kind`` ``resnet50`` or ``small`` (module docstring)."""

    def __init__(self, kind: str, in_channels: int = 3, widths: Sequence[int] = (16, 32, 64, 96)):
        super().__init__()
        self.kind = kind
        if kind == "resnet50":
            self.net = resnet50()
            if in_channels != 3:
                self.net.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
            self.channels = [self.net.stage_channels[name] for name in LAYER_NAMES]
            self.input_conv = "net.conv1"  # the convolution that reads the input
        elif kind == "small":
            if len(widths) != 4:
                raise ValueError(f"the small encoder needs 4 stage widths, got {list(widths)}")
            w = list(widths)
            self.stem = nn.Sequential(conv_bn_relu(in_channels, w[0], 2), conv_bn_relu(w[0], w[0], 2))
            self.stages = nn.ModuleList(
                [conv_bn_relu(w[0], w[0])] + [conv_bn_relu(w[i - 1], w[i], 2) for i in range(1, 4)]
            )
            self.channels = w
            self.input_conv = "stem.0.0"
        else:
            raise ValueError(f"unknown encoder {kind!r}; expected resnet50 or small")

    def forward(self, x: Tensor) -> list[Tensor]:
        if self.kind == "resnet50":
            stages = self.net.forward_stages(x)
            return [stages[name] for name in LAYER_NAMES]
        out, x = [], self.stem(x)
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out


class DeconvNet(nn.Module):
    """``Deconv_i``: image (B, 3, H, W) -> list of 6-channel logits at strides 16, 8, 4 (the last
    is the output skeleton map pair, H/4 x W/4)."""

    def __init__(self, encoder: str, widths: Sequence[int] = (16, 32, 64, 96), decoder_channels: int = 32):
        super().__init__()
        self.encoder = StageEncoder(encoder, 3, widths)
        d = decoder_channels
        self.laterals = nn.ModuleList(nn.Conv2d(c, d, 1) for c in self.encoder.channels)
        self.upsample = nn.ModuleList(BilinearUpsample(d) for _ in range(3))
        self.residual = nn.ModuleList(ResidualModule(d) for _ in range(3))
        self.heads = nn.ModuleList(nn.Conv2d(d, MAP_CHANNELS, 1) for _ in range(3))
        self.input_conv = "encoder." + self.encoder.input_conv

    def forward(self, image: Tensor) -> list[Tensor]:
        stages = self.encoder(image)
        x = self.laterals[3](stages[3])
        outputs = []
        for i, level in enumerate((2, 1, 0)):  # strides 16, 8, 4
            skip = self.laterals[level](stages[level])
            x = self.upsample[i](x)
            if x.shape[-2:] != skip.shape[-2:]:  # odd sizes: align to the skip's resolution
                x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = self.residual[i](x + skip)
            outputs.append(self.heads[i](x))
        return outputs


class MapRegressor(nn.Module):
    """``Regression_i``: (B, C, h, w) skeleton maps (or the image) -> (B, J, 3) root-relative metres."""

    def __init__(self, encoder: str, num_joints: int, input_size: int, in_channels: int = MAP_CHANNELS,
                 widths: Sequence[int] = (16, 32, 64, 96), hidden: int = 256, dropout: float = 0.0):
        super().__init__()
        self.input_size = int(input_size)
        self.encoder = StageEncoder(encoder, in_channels, widths)
        self.head = PoseRegressionHead(self.encoder.channels[-1], num_joints, hidden, dropout)
        self.input_conv = "encoder." + self.encoder.input_conv

    def forward(self, maps: Tensor) -> Tensor:
        if maps.shape[-1] != self.input_size or maps.shape[-2] != self.input_size:
            maps = F.interpolate(maps, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        return self.head(self.encoder(maps)[-1])

