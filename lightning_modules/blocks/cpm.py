"""Convolutional Pose Machine stages (Wei et al. 2016), the 2D backbone of Tome et al. 2017.

* :class:`ImageFeatures`: conv-ReLU layers with two max-pools, image -> features at 1/4 of the
  input resolution (the heatmap resolution used across this project);
* :class:`BeliefStage`: a few wide-kernel conv-ReLU layers and a 1x1 output conv giving one
  belief map per joint. Stage 1 reads the image features; stage t > 1 reads the features
  concatenated with the belief maps passed on by stage t - 1, so its large receptive field can
  use the spatial context of the other joints.

CPM computes the features at stride 8 with a VGG-like trunk and uses 7x7 kernels; the sizes
here are config values of the method that uses them.
"""
from __future__ import annotations

from torch import Tensor, nn


def _conv_relu(cin: int, cout: int, kernel: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, padding=kernel // 2), nn.ReLU(inplace=True)]


class ImageFeatures(nn.Module):
    stride = 4

    def __init__(self, channels: int):
        super().__init__()
        half = max(channels // 2, 8)
        self.body = nn.Sequential(
            *_conv_relu(3, half, 3), *_conv_relu(half, half, 3), nn.MaxPool2d(2),
            *_conv_relu(half, channels, 3), *_conv_relu(channels, channels, 3), nn.MaxPool2d(2),
            *_conv_relu(channels, channels, 3),
        )

    def forward(self, image: Tensor) -> Tensor:
        return self.body(image)


class BeliefStage(nn.Module):
    def __init__(self, cin: int, channels: int, joints: int, layers: int = 3, kernel: int = 5):
        super().__init__()
        body: list[nn.Module] = []
        for k in range(layers):
            body += _conv_relu(cin if k == 0 else channels, channels, kernel)
        self.body = nn.Sequential(*body, nn.Conv2d(channels, joints, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)
