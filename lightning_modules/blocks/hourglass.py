"""The stacked hourglass network of Newell et al. 2016 ("Stacked Hourglass Networks for Human
Pose Estimation", Sections 3.1-3.4), in plain torch.

* :class:`Residual`: the pre-activation bottleneck (BN-ReLU-1x1 to c/2, BN-ReLU-3x3, BN-ReLU-1x1
  to c) with an identity or 1x1 skip;
* :class:`Hourglass`: a residual at each scale, max-pool down ``depth`` times, nearest
  upsampling back and an element-wise sum with the skip branch;
* :class:`StackedHourglass`: a stem that brings the input to 1/4 resolution (7x7 stride-2
  conv, residual, max-pool, two residuals), then ``stacks`` hourglasses, each followed by a
  1x1 head predicting one heatmap per joint; the heatmaps and features are mapped back with
  1x1 convolutions and added to the next stack's input (intermediate supervision, Sec. 3.4).

The paper's network has 8 stacks, 256 features, depth 4 at 256 px input and 64 px heatmaps.
``channels_last``: weights and activations in the channels-last memory format (the same values
up to rounding; on the 2-core CPU a training step is 1.5x and a frozen forward 1.3-1.6x faster);
the returned heatmaps are contiguous either way.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _bn_relu_conv(cin: int, cout: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, cout, kernel, padding=kernel // 2))


class Residual(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        mid = max(cout // 2, 1)
        self.body = nn.Sequential(_bn_relu_conv(cin, mid, 1), _bn_relu_conv(mid, mid, 3), _bn_relu_conv(mid, cout, 1))
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) + self.skip(x)


class Hourglass(nn.Module):
    """``depth`` levels of pool -> residual -> (inner hourglass) -> residual -> upsample, plus skips."""

    def __init__(self, depth: int, channels: int):
        super().__init__()
        self.skip = Residual(channels, channels)
        self.down = nn.Sequential(nn.MaxPool2d(2), Residual(channels, channels))
        self.inner = Hourglass(depth - 1, channels) if depth > 1 else Residual(channels, channels)
        self.up = nn.Sequential(Residual(channels, channels), nn.Upsample(scale_factor=2, mode="nearest"))

    def forward(self, x: Tensor) -> Tensor:
        up = self.up(self.inner(self.down(x)))
        if up.shape[-2:] != x.shape[-2:]:  # an odd size on the way down (224 px, depth 4: 7 -> 3): back to the skip's
            up = F.interpolate(up, size=x.shape[-2:], mode="nearest")
        return self.skip(x) + up


class StackedHourglass(nn.Module):
    """(B, 3, H, W) -> list of ``stacks`` heatmap tensors (B, J, H/4, W/4), last one the prediction."""

    stride = 4

    def __init__(self, num_joints: int, stacks: int = 2, channels: int = 64, depth: int = 3, channels_last: bool = False):
        super().__init__()
        self.channels_last = bool(channels_last)
        stem = max(channels // 2, 8)
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem, 7, stride=2, padding=3),
            nn.BatchNorm2d(stem),
            nn.ReLU(inplace=True),
            Residual(stem, channels),
            nn.MaxPool2d(2),
            Residual(channels, channels),
            Residual(channels, channels),
        )
        self.hourglasses = nn.ModuleList(Hourglass(depth, channels) for _ in range(stacks))
        self.features = nn.ModuleList(
            nn.Sequential(Residual(channels, channels), nn.Conv2d(channels, channels, 1), nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
            for _ in range(stacks)
        )
        self.heads = nn.ModuleList(nn.Conv2d(channels, num_joints, 1) for _ in range(stacks))
        self.remap_features = nn.ModuleList(nn.Conv2d(channels, channels, 1) for _ in range(stacks - 1))
        self.remap_heatmaps = nn.ModuleList(nn.Conv2d(num_joints, channels, 1) for _ in range(stacks - 1))
        if self.channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, image: Tensor) -> list[Tensor]:
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        x = self.stem(image)
        heatmaps = []
        for k, (hourglass, features, head) in enumerate(zip(self.hourglasses, self.features, self.heads)):
            feature = features(hourglass(x))
            heatmap = head(feature)
            heatmaps.append(heatmap)
            if k < len(self.remap_features):
                x = x + self.remap_features[k](feature) + self.remap_heatmaps[k](heatmap)
        return [heatmap.contiguous() for heatmap in heatmaps] if self.channels_last else heatmaps
