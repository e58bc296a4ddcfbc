"""Convolutional Pose Machine stages (Wei et al. 2016), the 2D backbone of Tome et al. 2017.

Two trunks, picked by the method's ``model.trunk``:

``small`` (quick experiments on a CPU)

* :class:`ImageFeatures`: conv-ReLU layers with two max-pools, image -> features at 1/4 of the
  input resolution;
* :class:`BeliefStage`: a few wide-kernel conv-ReLU layers and a 1x1 output conv giving one
  belief map per joint. Stage 1 reads the image features; stage t > 1 reads the features
  concatenated with the belief maps passed on by stage t - 1, so its large receptive field can
  use the spatial context of the other joints.

``vgg`` (the paper's: Tome et al. 2017, Sec. 5.2, "uses the same architecture" as CPM [44];
the layers of CPM's released VGG model, ``pose_deploy*.prototxt``, which the authors' release
re-implements layer for layer)

* :class:`CPMFeatures`: VGG-19's ``conv1_1`` ... ``conv4_2`` (3x3 convs, three 2x2 max-pools:
  stride 8) followed by CPM's ``conv4_3_CPM`` ... ``conv4_6_CPM`` (256) and ``conv4_7_CPM``
  (128) -- 128 feature channels at 1/8 of the input (368 px -> 46 in CPM);
* :class:`CPMStage`: stage 1 is ``conv5_1_CPM`` (1x1, 512) and ``conv5_2_CPM`` (1x1, one map
  per joint); stage t > 1 is ``Mconv1_stage<t>`` ... ``Mconv5_stage<t>`` (7x7, 128),
  ``Mconv6_stage<t>`` (1x1, 128) and ``Mconv7_stage<t>`` (1x1, one map per joint) on the
  features, the previous stage's maps and CPM's centre map (a Gaussian at the person's centre,
  sigma 21 input pixels, average-pooled to the feature grid).

The vgg modules are :class:`torch.nn.Sequential` with the prototxt's layer names, so their
``state_dict`` keys are ``conv1_1.weight``, ``conv4_7_CPM.bias``, ``Mconv3_stage2.weight``...:
CPM or VGG-19 weights a user has on disk (e.g. converted from ``pose_iter_320000.caffemodel``,
or torchvision-style VGG-19 ``features.0`` ... ``features.23`` renamed to ``conv1_1`` ... ``conv4_2``)
load by name (:func:`vgg19_names`). Where this trunk differs from CPM's: the number of output
maps is the method's joint count with no background map (CPM's MPII model: 14 joints + 1
background; Tome et al. replace these input/output layers anyway, Sec. 5.2, so they never load);
the order of the stage input's channels is (features, previous maps, centre) instead of CPM's
(maps, features, centre); the person's crop is centred by the data pipeline, so the centre map
is a fixed Gaussian at the crop centre rather than one placed by CPM's person detector.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn


def _conv_relu(cin: int, cout: int, kernel: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, padding=kernel // 2), nn.ReLU(inplace=True)]


class ImageFeatures(nn.Module):
    """The small trunk: image -> ``channels`` features at stride 4."""

    stride = 4

    def __init__(self, channels: int):
        super().__init__()
        half = max(channels // 2, 8)
        self.out_channels = channels
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


# --------------------------------------------------------------------------- the vgg trunk

# (name, output channels) of CPM's image trunk, in order; "pool" is a 2x2 max-pool of stride 2.
CPM_TRUNK = (
    ("conv1_1", 64), ("conv1_2", 64), ("pool1_stage1", 0),
    ("conv2_1", 128), ("conv2_2", 128), ("pool2_stage1", 0),
    ("conv3_1", 256), ("conv3_2", 256), ("conv3_3", 256), ("conv3_4", 256), ("pool3_stage1", 0),
    ("conv4_1", 512), ("conv4_2", 512),  # the last VGG-19 layers CPM keeps
    ("conv4_3_CPM", 256), ("conv4_4_CPM", 256), ("conv4_5_CPM", 256), ("conv4_6_CPM", 256), ("conv4_7_CPM", 128),
)
CENTER_SIGMA_PX = 21.0  # CPM's centre-map Gaussian, input pixels


class CPMFeatures(nn.Sequential):
    """CPM's VGG trunk (module docstring): image (B, 3, H, W) -> (B, 128, H/8, W/8)."""

    stride = 8
    out_channels = CPM_TRUNK[-1][1]

    def __init__(self):
        layers, cin = [], 3
        for name, cout in CPM_TRUNK:
            if name.startswith("pool"):
                layers.append((name, nn.MaxPool2d(2, 2)))
                continue
            layers += [(name, nn.Conv2d(cin, cout, 3, padding=1)), (f"relu{name[4:]}", nn.ReLU(inplace=True))]
            cin = cout
        super().__init__(OrderedDict(layers))


def vgg19_names() -> dict[str, str]:
    """torchvision-style VGG-19 ``features.<i>`` prefixes -> this trunk's layer names (conv1_1 ... conv4_2)."""
    names, index = {}, 0
    for name, _ in CPM_TRUNK[:13]:
        if not name.startswith("pool"):
            names[f"features.{index}"] = name
            index += 2  # conv, ReLU
        else:
            index += 1
    return names


def center_map(height: int, width: int, stride: int, like: Tensor) -> Tensor:
    """(1, 1, h, w) CPM centre map on a feature grid of ``stride``: a Gaussian of sigma 21 input
    pixels at the crop centre (CPM places it at the detected person's centre)."""
    sigma = CENTER_SIGMA_PX / stride
    ys = torch.arange(height, device=like.device, dtype=like.dtype) - (height - 1) / 2
    xs = torch.arange(width, device=like.device, dtype=like.dtype) - (width - 1) / 2
    d2 = ys[:, None] ** 2 + xs[None, :] ** 2
    return torch.exp(-d2 / (2 * sigma ** 2))[None, None]


class CPMStage(nn.Sequential):
    """One CPM stage with the prototxt's layer names (module docstring).

    ``t == 1``: ``conv5_1_CPM`` (1x1, ``first_width``) + ``conv5_2_CPM`` (1x1, ``joints``) on the
    features. ``t > 1``: ``layers`` convs ``Mconv1..`` (``kernel``, ``channels``), a 1x1
    ``channels`` conv and a 1x1 output conv on ``cin`` channels (features + previous maps) plus
    the centre map, which the stage appends itself. CPM: ``layers`` 5, ``kernel`` 7, ``channels``
    128, ``first_width`` 512.
    """

    stride = CPMFeatures.stride

    def __init__(self, t: int, cin: int, joints: int, channels: int = 128, layers: int = 5, kernel: int = 7,
                 first_width: int = 512):
        self.t = t
        if t == 1:
            body = [("conv5_1_CPM", nn.Conv2d(cin, first_width, 1)), ("relu5_1_CPM", nn.ReLU(inplace=True)),
                    ("conv5_2_CPM", nn.Conv2d(first_width, joints, 1))]
        else:
            body, width = [], cin + 1  # + the centre map
            for k in range(1, layers + 1):
                body += [(f"Mconv{k}_stage{t}", nn.Conv2d(width, channels, kernel, padding=kernel // 2)),
                         (f"Mrelu{k}_stage{t}", nn.ReLU(inplace=True))]
                width = channels
            body += [(f"Mconv{layers + 1}_stage{t}", nn.Conv2d(width, channels, 1)),
                     (f"Mrelu{layers + 1}_stage{t}", nn.ReLU(inplace=True)),
                     (f"Mconv{layers + 2}_stage{t}", nn.Conv2d(channels, joints, 1))]
        super().__init__(OrderedDict(body))

    def forward(self, x: Tensor) -> Tensor:
        if self.t > 1:
            centre = center_map(x.shape[-2], x.shape[-1], self.stride, x).expand(x.shape[0], 1, -1, -1)
            x = torch.cat([x, centre], dim=1)
        return super().forward(x)
