"""The shared 2D joint heatmap network: a stacked hourglass trained by heatmap regression.

Tekin et al. 2017 (Section 3.2) feed the confidence maps of a stacked hourglass network
(Newell et al. 2016) into their fusion network; Tome et al. 2017 and DeepSkeleton read 2D
detections from the same kind of network. This module trains it on any DataModule with 2D
labels: the loss is the mean squared error between every stack's heatmaps and Gaussians
rendered at the ground-truth joints (intermediate supervision), summed over stacks; joints
without a 2D label (``visible`` False: unlabelled, or outside the crop) get all-zero target
maps, while occluded joints, which every dataset labels, get their Gaussian. The prediction decodes the last stack's maps
with the quarter-pixel arg-max (:func:`pose3d.heatmaps.decode_argmax`) and is evaluated
with the 2D pixel error and PCKh@0.5 (see :mod:`lightning_modules.base`); the best
checkpoint is chosen on ``val/pixel_error``.

Simplifications for CPU, one preset away from the paper: the quick preset uses 2 stacks of
64 features, depth 3, on 64 px crops with 16 px heatmaps, 3 epochs pre-trained on the wild
domain's 2D (``pretrain_epochs``) and 6 fine-tuned (``pretrain_2d=auto``, below);
``preset=paper`` uses the hourglass paper's 8 stacks, 256 features, depth 4, 256 px input and 64 px heatmaps with
sigma 1 heatmap pixel (Newell et al. Sec. 5.1; they train with RMSProp at 2.5e-4, ours with
Adam).

Pre-training (Tekin et al. 2017, Sec. 3.2: an MPII-trained hourglass fine-tuned on the target
data): ``model.pretrain_2d=always`` declares a first run of this experiment on 2D-only data as a
prerequisite and starts from its weights (``init_from``). On the synthetic data that is the
wild domain's 2D labels, on ``data.name=mixed`` its 2D-only sources (MPII, LSP) alone; any other
data names its 2D data with ``model.pretrain_overrides`` (e.g. ``[data.name=mpii,
data.root=/data/mpii]`` for Human3.6M), else ``always`` is a config error. ``auto`` (the paper
preset) pre-trains where there is such data and trains from scratch where there is none
(Human3.6M without ``pretrain_overrides``). No weights are downloaded.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import Tensor, nn

from lightning_modules.base import PoseModule, masked_mean
from lightning_modules.blocks.hourglass import StackedHourglass
from lightning_modules.blocks.two_d_source import two_d_pretraining_run
from pose3d.config import ConfigError, choice
from pose3d.heatmaps import decode_argmax


@dataclass
class Heatmap2DConfig:
    name: str = "heatmap2d"
    stacks: int = 2
    channels: int = 64
    depth: int = 3
    sigma: float = 1.0  # Gaussian target width in heatmap pixels
    pretrain_2d: str = choice("never", ("never", "auto", "always"))  # first train on 2D-only data (Sec. 3.2's MPII stage)
    pretrain_overrides: list[str] = field(default_factory=list)  # that run's own key=value data settings
    pretrain_epochs: Optional[int] = None  # that run's epochs; None: the same as this run's
    channels_last: bool = True  # the hourglass in the channels-last memory format (blocks/hourglass.py: same values, faster on CPU)


class HeatmapNetwork(PoseModule):
    Config = Heatmap2DConfig
    monitor = ("val/pixel_error", "min")
    needs_3d = False  # 2D heatmaps only
    map_stride = StackedHourglass.stride  # input pixels per heatmap pixel

    @classmethod
    def image_size_multiple(cls, model_cfg) -> int:
        return cls.map_stride

    def __init__(self, model: dict, optim: dict, data_info: dict):
        super().__init__(model, optim, data_info)
        self.network = StackedHourglass(self.data_info.num_joints, self.cfg.stacks, self.cfg.channels, self.cfg.depth,
                                        self.cfg.channels_last)
        self.heatmap_size = self.data_info.image_size // self.map_stride

    @classmethod
    def prerequisites(cls, cfg) -> list:
        """The pre-training run on 2D-only data, when ``pretrain_2d`` (module docstring)."""
        m = cfg.model
        if m.pretrain_2d == "never" or cfg.get("init_from"):
            return []
        overrides = ("model.pretrain_2d=never", *[f"model.{k}={m[k]}" for k in ("stacks", "channels", "depth", "sigma")])
        if m.pretrain_epochs is not None:
            overrides += (f"trainer.max_epochs={m.pretrain_epochs}",)
        run = two_d_pretraining_run("heatmap2d", cfg.data.name, overrides, m.pretrain_overrides)
        if run is not None:
            return [run]
        if m.pretrain_2d == "auto":
            return []
        raise ConfigError(f"model.pretrain_2d=always needs 2D data to pre-train on for data.name={cfg.data.name}: "
                          "set model.pretrain_overrides, e.g. [data.name=mpii,data.root=/path/to/mpii]")

    def required_targets(self) -> dict[str, dict]:
        return {"heatmaps": {"size": self.heatmap_size, "sigma": self.cfg.sigma}}

    def forward(self, image: Tensor) -> list[Tensor]:
        """(B, 3, H, W) -> every stack's heatmaps (B, J, H/4, W/4)."""
        return self.network(image)

    def confidence_maps(self, image: Tensor) -> Tensor:
        """The last stack's heatmaps: the confidence maps other methods consume."""
        return self.network(image)[-1]

    def map_network(self) -> nn.Module:
        """image -> the last stack's maps, as a module other methods hold frozen
        (:mod:`lightning_modules.blocks.two_d_source`)."""
        return LastStack(self.network)

    def training_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        target = batch["heatmaps"]
        per_stack = [(heatmaps - target).pow(2).mean(dim=(1, 2, 3)) for heatmaps in self(batch["image"])]
        per_sample = torch.stack(per_stack).sum(0)
        logs = {f"stack{k}": masked_mean(loss, batch["has_2d"]).detach() for k, loss in enumerate(per_stack)}
        return masked_mean(per_sample, batch["has_2d"]), logs

    def predict(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        size = batch["image"].shape[-1], batch["image"].shape[-2]
        joints_2d, _ = decode_argmax(self.confidence_maps(batch["image"]), size)
        return {"joints_2d": joints_2d}


class LastStack(nn.Module):
    """A stacked hourglass that returns only its last stack's heatmaps."""

    def __init__(self, network: StackedHourglass):
        super().__init__()
        self.network = network

    def forward(self, image: Tensor) -> Tensor:
        return self.network(image)[-1]
