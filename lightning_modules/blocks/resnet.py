"""ResNet-18/50 (He et al. 2016) in plain torch, with torchvision's module names.

The parameter and buffer names are exactly those of ``torchvision.models.resnet18/50``
(``conv1``, ``bn1``, ``layer1.0.conv1`` ... ``layer4.2.bn3``, ``layerN.0.downsample.0/1``,
``fc``), so a torchvision ``.pth`` state dict a user has on disk loads with
:func:`load_torchvision_weights` (or ``load_state_dict(..., strict=False)``). The layout is
torchvision's "v1.5": in a bottleneck the stride sits on the 3x3 ``conv2``; the first block
of a layer has a 1x1 conv + BN ``downsample`` shortcut whenever it changes the stride or the
width. Weights keep PyTorch's default initialisation (torchvision's own init is only used
when training from scratch with its constructors).

The caffe names the papers use map onto these as ``res2..res5`` = ``layer1..layer4`` and
``res4f`` = ``layer3.5`` (the blocks of a stage are lettered a, b, c, ...). A truncated net
is built with ``up_to``: ``resnet50(up_to="res4f")`` stops after ``layer3`` (stride 16, 1024
channels); ``resnet50(up_to="res5a", layer4_stride=1)`` adds only the first block of
``layer4`` without its stride (stride 16, 2048 channels).
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from pose3d.safe_load import UnsafeFileError, load_checkpoint

LAYER_NAMES = ("layer1", "layer2", "layer3", "layer4")
CAFFE_STAGES = {"res2": "layer1", "res3": "layer2", "res4": "layer3", "res5": "layer4"}


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (ResNet-18/34); the stride on ``conv1``."""

    expansion = 1

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = _downsample(cin, cout, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.downsample(x))


class Bottleneck(nn.Module):
    """1x1 (reduce) -> 3x3 (stride, torchvision v1.5) -> 1x1 (expand x4) (ResNet-50+)."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(cin, cout, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.downsample(x))


def _downsample(cin: int, cout: int, stride: int) -> nn.Module:
    """The shortcut: identity, or ``downsample.0`` conv1x1 (stride) + ``downsample.1`` BN."""
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class ResNet(nn.Module):
    """Stem (``conv1`` 7x7/2, ``bn1``, ReLU, 3x3/2 max-pool), then ``layer1``.. of residual blocks.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        layers: blocks per layer, 1 to 4 entries: ``(3, 4, 6, 3)`` is ResNet-50, ``(3, 4, 6)``
            ends at ``layer3`` (res4f), ``(3, 4, 6, 1)`` keeps only res5a of ``layer4``.
        strides: the stride of each layer's first block, default ``(1, 2, 2, 2)``.
        num_classes: builds torchvision's global average pool + ``fc`` for :meth:`logits`
            (needs all four layers); ``None`` (default) has no classifier.

    ``forward`` returns the last layer's features; ``out_channels`` and ``stride`` (the total
    downsampling) describe them, ``stage_channels`` / ``stage_strides`` every layer's.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: Sequence[int],
        strides: Sequence[int] | None = None,
        num_classes: int | None = None,
    ):
        super().__init__()
        strides = tuple(strides) if strides is not None else (1, 2, 2, 2)[: len(layers)]
        if not 1 <= len(layers) <= 4 or len(strides) != len(layers) or min(layers) < 1:
            raise ValueError(f"layers needs 1 to 4 block counts >= 1 and one stride each, got {layers}, {strides}")
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.stage_channels: dict[str, int] = {}
        self.stage_strides: dict[str, int] = {}
        cin, total_stride = 64, 4
        for i, (count, stride) in enumerate(zip(layers, strides)):
            width = 64 * 2**i
            blocks = [block(cin if j == 0 else width * block.expansion, width, stride if j == 0 else 1)
                      for j in range(count)]
            self.add_module(LAYER_NAMES[i], nn.Sequential(*blocks))
            cin, total_stride = width * block.expansion, total_stride * stride
            self.stage_channels[LAYER_NAMES[i]] = cin
            self.stage_strides[LAYER_NAMES[i]] = total_stride
        self.layer_names = LAYER_NAMES[: len(layers)]
        self.out_channels = cin
        self.stride = total_stride
        if num_classes is not None:
            if len(layers) != 4:
                raise ValueError("num_classes needs all four layers (the classifier reads layer4)")
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(cin, num_classes)

    def forward_stages(self, x: Tensor) -> dict[str, Tensor]:
        """``{"layer1": ..., "layer4": ...}`` (res2..res5): every built layer's output features."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        out = {}
        for name in self.layer_names:
            x = out[name] = getattr(self, name)(x)
        return out

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, out_channels, H / stride, W / stride), the last layer's output."""
        return self.forward_stages(x)[self.layer_names[-1]]

    def logits(self, x: Tensor) -> Tensor:
        """Class scores (B, num_classes) of torchvision's head: average pool, then ``fc``."""
        if not hasattr(self, "fc"):
            raise RuntimeError("this ResNet was built without num_classes: it has no fc")
        return self.fc(torch.flatten(self.avgpool(self(x)), 1))


def parse_up_to(up_to: str, blocks: Sequence[int]) -> tuple[int, ...]:
    """Block counts of a net that stops after ``up_to`` (``layer3``, ``res4``, ``res4f``, ``res5a``)."""
    caffe = re.fullmatch(r"(res[2-5])([a-z]?)", up_to)
    name = CAFFE_STAGES[caffe.group(1)] if caffe else up_to
    if name not in LAYER_NAMES:
        raise ValueError(f"unknown up_to '{up_to}'; choose layer1..layer4 or res2..res5 with an optional block letter")
    stage = LAYER_NAMES.index(name)
    counts = list(blocks[: stage + 1])
    if caffe and caffe.group(2):
        last = ord(caffe.group(2)) - ord("a") + 1
        if last > counts[-1]:
            raise ValueError(f"'{up_to}': {caffe.group(1)} has {counts[-1]} blocks (a..{chr(ord('a') + counts[-1] - 1)})")
        counts[-1] = last
    return tuple(counts)


def _resnet(block, blocks: tuple[int, ...], up_to: str, layer4_stride: int, num_classes: int | None) -> ResNet:
    layers = parse_up_to(up_to, blocks)
    return ResNet(block, layers, strides=(1, 2, 2, layer4_stride)[: len(layers)], num_classes=num_classes)


def resnet18(up_to: str = "layer4", layer4_stride: int = 2, num_classes: int | None = None) -> ResNet:
    """ResNet-18 (layers 2, 2, 2, 2 of :class:`BasicBlock`); see :func:`resnet50` for the options."""
    return _resnet(BasicBlock, (2, 2, 2, 2), up_to, layer4_stride, num_classes)


def resnet50(up_to: str = "layer4", layer4_stride: int = 2, num_classes: int | None = None) -> ResNet:
    """ResNet-50 (layers 3, 4, 6, 3 of :class:`Bottleneck`), torchvision names.

    ``up_to`` ends the net after a layer or block (``layer3`` = ``res4f``, ``res5a``, ...);
    ``layer4_stride=1`` removes res5a's stride (the output stays at stride 16);
    ``num_classes=1000`` adds torchvision's ``fc`` so its whole file loads strictly.
    """
    return _resnet(Bottleneck, (3, 4, 6, 3), up_to, layer4_stride, num_classes)


def load_torchvision_weights(module: nn.Module, path: str | Path) -> tuple[list[str], list[str]]:
    """Load a torchvision state dict file into ``module`` by name; returns (loaded, missing).

    ``loaded``: the module's tensors found in the file (copied in); ``missing``: the module's
    tensors the file lacks (left as they are). Tensors of the file the module does not have
    (``fc.*`` for a net without classifier, ``layer4.*`` for a truncated one) are ignored.
    A file that is not a name -> tensor mapping, or a tensor of the wrong shape, raises
    ``ValueError`` with a one-line message; the file is read as data
    (:func:`pose3d.safe_load.load_checkpoint`: one that would run code is refused).
    """
    try:
        state = load_checkpoint(path)
    except UnsafeFileError:
        raise
    except Exception as error:  # unpickling, zip or I/O errors: say which file, in one line
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"{path}: not a readable torch state dict ({first_line})") from None
    if not isinstance(state, Mapping) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()):
        raise ValueError(f"{path}: not a state dict (expected a mapping of names to tensors, got {type(state).__name__})")
    own = module.state_dict()
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
             if k in state and state[k].shape != v.shape]
    if wrong:
        raise ValueError(f"{path}: {len(wrong)} tensors of the wrong shape (file vs model), first: {wrong[0]}")
    loaded = [k for k in own if k in state]
    module.load_state_dict({k: state[k] for k in loaded}, strict=False)
    return loaded, [k for k in own if k not in state]
