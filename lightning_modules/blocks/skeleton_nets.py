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
* :class:`GroupedStack`: ``H`` copies of one of these networks (one per hypothesis, Sec. 3.2)
  evaluated as *one* network whose every layer is the grouped version of the copy's layer
  (see its docstring): the same maths as ``H`` separate networks, and as
  :class:`~lightning_modules.blocks.stacked.StackedModules`' ``vmap``, without its per-call
  batching overhead, with batch norm as one native call, and the first convolution of a shared
  input (the image) dense over ``H x`` its output channels instead of grouped over ``H`` copies
  of the image.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.blocks.backbones import conv_bn_relu
from lightning_modules.blocks.heads import PoseRegressionHead
from lightning_modules.blocks.resnet import LAYER_NAMES, resnet50
from lightning_modules.blocks.stacked import StackedModules

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


# -- many hypotheses as one grouped network --------------------------------------------------------
class GroupedLinear(nn.Module):
    """``H`` independent ``Linear(in, out)`` layers on a (N, H * in) input -> (N, H * out); the
    weight is stored (H * out, in), i.e. the stacked (H, out, in) weights flattened."""

    def __init__(self, copies: int, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.copies, self.in_features, self.out_features = copies, in_features, out_features
        self.weight = nn.Parameter(torch.empty(copies * out_features, in_features))
        self.bias = nn.Parameter(torch.empty(copies * out_features)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        h, n = self.copies, x.shape[0]
        out = torch.bmm(x.view(n, h, self.in_features).transpose(0, 1),  # (H, N, in) x (H, in, out)
                        self.weight.view(h, self.out_features, self.in_features).transpose(1, 2))
        if self.bias is not None:
            out = out + self.bias.view(h, 1, self.out_features)
        return out.transpose(0, 1).reshape(n, h * self.out_features)


def grouped_network(template: nn.Module, copies: int, shared_input: str | None = None) -> nn.Module:
    """A (meta-device) copy of ``template`` whose every layer computes ``copies`` independent
    copies of it on channel-stacked tensors (N, copies * C, ...): ``Conv2d`` / ``ConvTranspose2d``
    with ``copies x`` the groups and channels, ``BatchNorm2d`` over ``copies * C`` channels (its
    statistics per channel, hence per copy), ``Linear`` as :class:`GroupedLinear`. Parameter-free
    layers (ReLU, pooling, interpolation, sums) act per channel already. The parameter names are
    the template's and each parameter is the stacked (copies, ...) one flattened over its first
    two dimensions. ``shared_input``: the name of the convolution that reads the network's input
    when one input (N, C, ...) is shared by all copies; it stays ungrouped with ``copies x`` its
    output channels (a dense convolution with the copies' filters concatenated)."""
    net = copy.deepcopy(template).to("meta")
    h = copies
    for name, module in list(net.named_modules()):
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            shared = name == shared_input
            kind = nn.ConvTranspose2d if isinstance(module, nn.ConvTranspose2d) else nn.Conv2d
            kwargs = dict(stride=module.stride, padding=module.padding, dilation=module.dilation,
                          groups=module.groups * (1 if shared else h), bias=module.bias is not None,
                          padding_mode=module.padding_mode, device="meta")
            if kind is nn.ConvTranspose2d:
                kwargs["output_padding"] = module.output_padding
            new = kind(module.in_channels * (1 if shared else h), module.out_channels * h, module.kernel_size, **kwargs)
        elif isinstance(module, nn.BatchNorm2d) and type(module) is nn.BatchNorm2d:
            new = nn.BatchNorm2d(module.num_features * h, module.eps, module.momentum, module.affine,
                                 module.track_running_stats, device="meta")
            if module.momentum is None:
                raise ValueError("GroupedStack needs batch norm with a momentum (a cumulative average counts per copy)")
        elif isinstance(module, nn.Linear) and type(module) is nn.Linear:
            new = GroupedLinear(h, module.in_features, module.out_features, module.bias is not None).to("meta")
        elif next(module.parameters(recurse=False), None) is not None or next(module.buffers(recurse=False), None) is not None:
            raise ValueError(f"GroupedStack cannot group layer {name!r} of type {type(module).__name__}")
        else:
            continue
        parent, _, leaf = name.rpartition(".")
        setattr(net.get_submodule(parent) if parent else net, leaf, new)
    if shared_input is not None and not isinstance(net.get_submodule(shared_input), (nn.Conv2d, nn.ConvTranspose2d)):
        raise ValueError(f"shared_input {shared_input!r} is not a convolution of the template")
    return net


class GroupedStack(StackedModules):
    """``H`` hypotheses' networks (:class:`DeconvNet` or :class:`MapRegressor`) with independent
    parameters, batch-norm statistics and gradients, computed as one grouped network
    (:func:`grouped_network`). State, :meth:`unstack` and the call convention are
    :class:`~lightning_modules.blocks.stacked.StackedModules`' (its ``vmap`` forward gives the
    same outputs: ``tests/test_deepskeleton.py``): ``forward(x, shared=True)`` for one input
    (B, ...) seen by every copy, ``shared=False`` for one input per copy (H, B, ...); the outputs
    gain a leading ``H`` dimension (views of the channel-stacked result, no copy).

    ``input_conv``: the name of the template's convolution that reads the input (made dense for
    a shared input). ``channels_last``: compute in the channels-last memory format (faster
    grouped convolutions on CPU oneDNN; the same values)."""

    def __init__(self, modules: Sequence[nn.Module], input_conv: str, channels_last: bool = False):
        super().__init__(modules)
        self.input_conv = input_conv
        self.channels_last = bool(channels_last)
        nets = {True: grouped_network(self._template, self.count, input_conv),
                False: grouped_network(self._template, self.count)}
        object.__setattr__(self, "_grouped", nets)  # not submodules: their weights are ours

    def train(self, mode: bool = True):
        super().train(mode)
        for net in self._grouped.values():
            net.train(mode)
        return self

    def forward(self, x, shared: bool = True):
        h = self.count
        if shared:
            batch, inputs = x.shape[0], x
        else:
            if x.shape[0] != h:
                raise ValueError(f"expected one input per hypothesis ({h}), got a leading dimension of {x.shape[0]}")
            batch = x.shape[1]
            inputs = x.transpose(0, 1).reshape(batch, h * x.shape[2], *x.shape[3:])
        if self.channels_last and inputs.dim() == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        params, buffers = self.stacked_state()
        state = {name: value.flatten(0, 1) if value.dim() > 1 else value for name, value in {**params, **buffers}.items()}
        out = torch.func.functional_call(self._grouped[bool(shared)], state, (inputs,))
        return torch.utils._pytree.tree_map(lambda t: _ungroup(t, batch, h), out)


def _ungroup(t: Tensor, batch: int, copies: int) -> Tensor:
    """(B, H * C, ...) or (B * H, ...) of a grouped network -> (H, B, C, ...) / (H, B, ...)."""
    if t.shape[0] == batch * copies and copies > 1:
        return t.reshape(batch, copies, *t.shape[1:]).transpose(0, 1)
    return t.reshape(batch, copies, t.shape[1] // copies, *t.shape[2:]).transpose(0, 1)
