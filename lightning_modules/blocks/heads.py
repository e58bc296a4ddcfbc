"""Prediction heads shared between methods."""
from __future__ import annotations

import torch
from torch import Tensor, nn


class PoseRegressionHead(nn.Module):
    """Global-average-pooled features -> MLP -> (B, J, 3) root-relative joints.

    The network predicts every joint and the root is subtracted, so the output is exactly
    root-relative (DESIGN.md) and the root row is zero.
    """

    def __init__(self, in_channels: int, num_joints: int, hidden: int = 512, dropout: float = 0.0):
        super().__init__()
        self.num_joints = num_joints
        self.mlp = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_channels, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_joints * 3),
        )

    def forward(self, features: Tensor) -> Tensor:
        pooled = torch.flatten(features.mean(dim=(2, 3)), 1) if features.dim() == 4 else features
        joints = self.mlp(pooled).view(-1, self.num_joints, 3)
        return joints - joints[:, :1]
