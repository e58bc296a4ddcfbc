"""The trainable fusion architecture of Tekin et al. 2017 (Section 3.1, Figure 3).

Data streams ``s`` (the image stream ``I`` and the confidence-map stream ``X``) have layers
``l = 1..L`` (convolutional, then fully connected); the fusion stream has layers
``1..L+1``, whose layer ``l + 1`` reads (Eq. 1)::

    (1 - w_l) * concat(I_l, X_l) + w_l * Z_l,    1 <= l <= L,    Z_0 = concat(I_0, X_0)

so fusion layer ``l`` outputs as many channels as ``I_l`` and ``X_l`` together, and
``Z_{L+1}`` is the 3J-vector of 3D joints. The weights ``w`` in [0, 1]^L pick the strategy:

* early fusion: ``w = 1`` (only the fusion stream, fed by the concatenated inputs);
* fusion after layer ``beta``: ``w_l = [l > beta]``; ``beta = L`` is late fusion;
* trainable fusion: ``w_l = sigmoid(alpha * (l - beta))`` (Eq. 3), alpha and beta learned.

A single data stream (Image-Only, CM-Only baselines of Sec. 4.4) is the late-fusion network
with that stream alone. :func:`fusion_plan` works out which layers the output depends on
for given weights, so fixed strategies are built without dead layers, and a trained
network whose weights are all near 0 or 1 can be pruned (:meth:`FusionNetwork.pruned`):
fusion layers with ``w_l ~ 0`` and data-stream layers above the fusion point are dropped.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


class FusionWeights(nn.Module):
    """Produces the fusion weight vector ``w`` (L,) = (w_1, ..., w_L)."""

    def __init__(self, num_layers: int):
        super().__init__()
        self.num_layers = num_layers

    def layer_index(self, like: Tensor) -> Tensor:
        return torch.arange(1, self.num_layers + 1, dtype=like.dtype, device=like.device)


class FixedFusionWeights(FusionWeights):
    """Hand-set weights (early, late, fusion at a given layer); exact 0/1 values let the
    network skip the multiplications and the unused layers."""

    def __init__(self, weights: list[float]):
        super().__init__(len(weights))
        self.register_buffer("weights", torch.tensor(weights, dtype=torch.float32))

    @classmethod
    def after_layer(cls, beta: int, num_layers: int) -> "FixedFusionWeights":
        """``w_l = [l > beta]``: the data streams run to layer ``beta``, the fusion stream after it
        (``beta = 0``: early fusion, ``beta = L``: late fusion)."""
        if not 0 <= beta <= num_layers:
            raise ValueError(f"fusion layer beta={beta} is outside 0..{num_layers}; expected 0 (early) to L (late)")
        return cls([float(l > beta) for l in range(1, num_layers + 1)])

    def forward(self) -> Tensor:
        return self.weights


class SigmoidFusionWeights(FusionWeights):
    """Eq. 3: ``w_l = 1 / (1 + exp(-alpha (l - beta)))`` with trainable ``alpha`` (sharpness)
    and ``beta`` (fusion point); the paper starts from alpha = 0.1 and beta = the middle layer.
    ``squared_alpha``: the authors' released code, ``sigmoid(alpha^2 (l - beta))``."""

    def __init__(self, num_layers: int, alpha: float = 0.1, beta: float | None = None, squared_alpha: bool = False):
        super().__init__(num_layers)
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))
        self.beta = nn.Parameter(torch.tensor(float(num_layers / 2 if beta is None else beta)))
        self.squared_alpha = bool(squared_alpha)

    def sharpness(self) -> Tensor:
        return self.alpha.pow(2) if self.squared_alpha else self.alpha

    def forward(self) -> Tensor:
        return torch.sigmoid(self.sharpness() * (self.layer_index(self.alpha) - self.beta))


@dataclass(frozen=True)
class FusionPlan:
    """Which layers the output depends on: data-stream layers ``1..data_depth`` and the
    listed fusion layers (always including the output layer ``L + 1``)."""

    data_depth: int
    fusion_layers: tuple[int, ...]


def fusion_plan(weights: list[float] | None, num_layers: int) -> FusionPlan:
    """Walk back from the output: fusion layer ``l + 1`` reads ``concat(I_l, X_l)`` unless
    ``w_l = 1`` and ``Z_l`` unless ``w_l = 0``; ``None`` (trainable weights) needs everything."""
    if weights is None:
        return FusionPlan(num_layers, tuple(range(1, num_layers + 2)))
    depth, fusion = 0, [num_layers + 1]
    for layer in range(num_layers, 0, -1):
        w = weights[layer - 1]
        if w != 1.0:
            depth = max(depth, layer)
        if w == 0.0:
            break
        fusion.append(layer)
    return FusionPlan(depth, tuple(sorted(fusion)))


def _conv_layer(cin: int, cout: int, kernel: int | None = None) -> nn.Module:
    """A convolutional layer that halves the resolution: without ``kernel``, a 3x3 stride-2 conv,
    batch norm and ReLU; with it, the authors' ``kernel x kernel`` conv, 2x2 max-pool, ReLU."""
    if kernel is None:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, 1, kernel // 2), nn.MaxPool2d(2), nn.ReLU(inplace=True))


def _fc_layer(cin: int, cout: int, dropout: float) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(cin, cout), nn.ReLU(inplace=True), nn.Dropout(dropout))


class FusionNetwork(nn.Module):
    """Data streams + fusion stream (Figure 3). ``forward(inputs)`` takes a dict of stream
    inputs, e.g. ``{"image": (B, 3, S, S), "cms": (B, J, S, S)}``, and returns (B, outputs)."""

    def __init__(
        self,
        stream_channels: dict[str, int],
        conv_widths: list[int],
        fc_widths: list[int],
        input_size: int,
        num_outputs: int,
        weights: FusionWeights,
        dropout: float | list[float] = 0.0,
        conv_kernels: list[int] | None = None,
    ):
        """``dropout``: after every fully connected layer, or one value per such layer;
        ``conv_kernels``: one kernel size per conv layer for conv + max-pool + ReLU layers (the
        authors' code), or None for 3x3 stride-2 conv + batch norm + ReLU."""
        super().__init__()
        self.spec = dict(
            stream_channels=dict(stream_channels), conv_widths=list(conv_widths), fc_widths=list(fc_widths),
            input_size=input_size, num_outputs=num_outputs,
            dropout=list(dropout) if isinstance(dropout, (list, tuple)) else dropout,
            conv_kernels=None if conv_kernels is None else list(conv_kernels),
        )
        if conv_kernels is not None and len(conv_kernels) != len(conv_widths):
            raise ValueError(f"{len(conv_kernels)} conv kernels for {len(conv_widths)} conv layers; expected one per layer")
        if isinstance(dropout, (list, tuple)) and len(dropout) != len(fc_widths):
            raise ValueError(f"{len(dropout)} dropout rates for {len(fc_widths)} fully connected layers; expected one per layer")
        self.num_conv, self.num_layers = len(conv_widths), len(conv_widths) + len(fc_widths)
        if input_size % 2**self.num_conv:
            raise ValueError(f"input size {input_size} is not divisible by 2^{self.num_conv} (one halving per conv layer)")
        if weights.num_layers != self.num_layers:
            raise ValueError(f"{weights.num_layers} fusion weights for {self.num_layers} layers; expected one per layer")
        self.weights = weights
        exact = weights.weights.tolist() if isinstance(weights, FixedFusionWeights) else None
        if exact is not None and any(w not in (0.0, 1.0) for w in exact):
            exact = None  # fixed but soft weights: keep every layer
        self.exact_weights = exact
        self.plan = fusion_plan(exact, self.num_layers)

        self.streams = nn.ModuleDict()
        for name, channels in stream_channels.items():
            widths = [channels, *conv_widths, *fc_widths]
            self.streams[name] = nn.ModuleList(self._layer(l, widths) for l in range(1, self.plan.data_depth + 1))
        fused = [sum(c for c in stream_channels.values()), *(len(stream_channels) * w for w in (*conv_widths, *fc_widths))]
        fused.append(num_outputs)
        self.fusion = nn.ModuleDict({str(l): self._layer(l, fused, output=l == self.num_layers + 1) for l in self.plan.fusion_layers})

    def _layer(self, l: int, widths: list[int], output: bool = False) -> nn.Module:
        """Layer ``l`` mapping ``widths[l-1]`` to ``widths[l]`` features."""
        cin, cout = widths[l - 1], widths[l]
        kernels = self.spec["conv_kernels"]
        if l <= self.num_conv:
            return _conv_layer(cin, cout, None if kernels is None else kernels[l - 1])
        if l == self.num_conv + 1:  # first layer after the convolutions: flatten the last map
            cin *= (self.spec["input_size"] // 2**self.num_conv) ** 2
        if output:
            return nn.Sequential(nn.Flatten(), nn.Linear(cin, cout))
        dropout = self.spec["dropout"]
        return _fc_layer(cin, cout, dropout[l - self.num_conv - 1] if isinstance(dropout, list) else dropout)

    def stream_features(self, inputs: dict[str, Tensor], depth: int) -> dict[str, list[Tensor]]:
        """Each data stream's feature maps ``[s_0, ..., s_depth]``."""
        features = {}
        for name, layers in self.streams.items():
            maps = [inputs[name]]
            for layer in layers[:depth]:
                maps.append(layer(maps[-1]))
            features[name] = maps
        return features

    def forward(self, inputs: dict[str, Tensor]) -> Tensor:
        w = self.exact_weights if self.exact_weights is not None else self.weights()
        data = self.stream_features(inputs, self.plan.data_depth)
        mix = torch.cat([data[name][0] for name in self.streams], dim=1)  # Z_0
        for l in range(1, self.num_layers + 1):
            z = self.fusion[str(l)](mix) if str(l) in self.fusion else None
            if str(l + 1) not in self.fusion:
                continue  # nothing downstream reads mix_l
            concat = torch.cat([data[name][l] for name in self.streams], dim=1) if l <= self.plan.data_depth else None
            mix = _mix(concat, z, w[l - 1])
        return self.fusion[str(self.num_layers + 1)](mix)

    def pruned(self, tolerance: float) -> "FusionNetwork":
        """A copy without the inactive layers, its weights rounded to 0/1; raises ``ValueError``
        when a weight is further than ``tolerance`` from both."""
        w = self.weights().detach().float().cpu()
        rounded = w.round()
        far = (w - rounded).abs() > tolerance
        if bool(far.any()):
            bad = ", ".join(f"w_{l + 1}={w[l]:.3f}" for l in far.nonzero().flatten().tolist())
            raise ValueError(f"cannot prune: fusion weights {bad} are not within {tolerance} of 0 or 1")
        network = FusionNetwork(weights=FixedFusionWeights(rounded.tolist()), **self.spec)
        own = self.state_dict()
        network.load_state_dict({k: v for k, v in own.items() if k in network.state_dict()}, strict=False)
        missing = set(network.state_dict()) - set(own) - {"weights.weights"}
        if missing:
            raise RuntimeError(f"pruned network has parameters the trained one lacks: {sorted(missing)}")
        return network.to(next(self.parameters()).device).train(self.training)


def _mix(concat: Tensor | None, z: Tensor | None, w: float | Tensor) -> Tensor:
    """Eq. 1, skipping the terms whose weight is exactly 0 (hand-set or pruned networks)."""
    if isinstance(w, float):
        if w == 0.0:
            return concat
        if w == 1.0:
            return z
    return (1 - w) * concat + w * z


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def squared_correlation(features: Tensor) -> Tensor:
    """Squared Pearson correlation (R^2) between every pair of columns of ``features`` (N, F);
    constant columns get 0 (Figure 7)."""
    centred = features - features.mean(0, keepdim=True)
    norm = centred.norm(dim=0)
    unit = torch.where(norm > 1e-8, centred / norm.clamp(min=1e-12), torch.zeros_like(centred))
    return (unit.T @ unit).pow(2)

