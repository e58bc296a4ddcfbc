"""A Martinez-style residual MLP (Martinez et al. 2017, "A simple yet effective baseline for 3d
human pose estimation"), as Habibie et al. 2019 (Sec. 3.1) use it for ``f3D``.

:class:`ResidualLifter` maps a latent vector ``z`` (B, width) to an output vector (B, out):
four fully connected layers of ``width`` with ReLU (optional batch norm and dropout after
each), a residual connection adding ``z`` to the output of the second layer, then a linear
output layer::

    h1 = act(fc1(z));  h2 = act(fc2(h1)) + z;  h3 = act(fc3(h2));  h4 = act(fc4(h3));  y = out(h4)
"""
from __future__ import annotations

from torch import Tensor, nn


def fc_act(cin: int, cout: int, batch_norm: bool = False, dropout: float = 0.0) -> nn.Sequential:
    """Linear, (batch norm), ReLU, (dropout)."""
    layers: list[nn.Module] = [nn.Linear(cin, cout, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm1d(cout))
    layers.append(nn.ReLU(inplace=False))
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class ResidualLifter(nn.Module):
    """Four hidden layers of ``width`` with the input added to the second one's output, then a
    linear output layer to ``out_features``. The input must have ``width`` features."""

    def __init__(self, width: int, out_features: int, batch_norm: bool = False, dropout: float = 0.0):
        super().__init__()
        self.fc1 = fc_act(width, width, batch_norm, dropout)
        self.fc2 = fc_act(width, width, batch_norm, dropout)
        self.fc3 = fc_act(width, width, batch_norm, dropout)
        self.fc4 = fc_act(width, width, batch_norm, dropout)
        self.out = nn.Linear(width, out_features)

    def forward(self, z: Tensor) -> Tensor:
        h = self.fc2(self.fc1(z)) + z  # the residual connection from z to the second layer's output
        return self.out(self.fc4(self.fc3(h)))
