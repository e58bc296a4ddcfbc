"""Direct 3D regression from the image.

The "Image-Only" baseline of Tekin et al. 2017 (Section 4.4, Table 5) and the "Direct RGB"
baseline of DeepSkeleton: a CNN regresses the 17 root-relative 3D joints from the crop,
trained with the mean squared error on root-relative 3D joints (in metres, so the loss
has a sensible scale).

Simplification for CPU: the default backbone is the small conv net of
:mod:`lightning_modules.blocks.backbones`; the paper preset (``preset=paper``) uses
ResNet-50 at 256 px.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from lightning_modules.base import PoseModule, masked_mean
from lightning_modules.blocks.backbones import BACKBONES, build_backbone
from lightning_modules.blocks.heads import PoseRegressionHead
from pose3d.config import choice
from pose3d.units import MM_PER_METRE  # the head regresses metres


@dataclass
class DirectRegressionConfig:
    name: str = "baseline"
    backbone: str = choice("small", tuple(BACKBONES))
    width: int = 32
    hidden: int = 512
    dropout: float = 0.0
    loss: str = choice("mse", ("mse", "l1"))


class DirectRegression(PoseModule):
    Config = DirectRegressionConfig

    @classmethod
    def image_size_multiple(cls, model_cfg) -> int:
        """The backbone's stride: 16 (small, four halving stages) or 32 (ResNets)."""
        return 16 if model_cfg.backbone == "small" else 32

    def __init__(self, model: dict, optim: dict, data_info: dict):
        super().__init__(model, optim, data_info)
        self.backbone = build_backbone(self.cfg.backbone, self.cfg.width)
        self.head = PoseRegressionHead(
            self.backbone.out_channels, self.data_info.num_joints, self.cfg.hidden, self.cfg.dropout
        )

    def forward(self, image: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, J, 3) root-relative joints in mm."""
        return self.head(self.backbone(image)) * MM_PER_METRE

    def predict(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"joints_3d": self(batch["image"])}

    def training_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        error = (self(batch["image"]) - batch["joints_3d"]) / MM_PER_METRE
        per_sample = error.pow(2).sum(-1).mean(-1) if self.cfg.loss == "mse" else error.abs().sum(-1).mean(-1)
        return masked_mean(per_sample, batch["has_3d"]), {}
