"""Tekin, Marquez-Neila, Salzmann, Fua 2017: "Learning to Fuse 2D and 3D Image Cues for
Monocular Body Pose Estimation" (ICCV).

An image stream and a 2D confidence-map stream are fused by a third, fusion stream whose
layer ``l + 1`` reads ``(1 - w_l) concat(I_l, X_l) + w_l Z_l`` (Sec. 3.1, Eq. 1; the network
is :class:`lightning_modules.blocks.fusion.FusionNetwork`). ``model.fusion`` chooses ``w``:

=============  =================================================  =====================
``fusion``     weights                                            paper
=============  =================================================  =====================
image_only     image stream alone (late fusion of one stream)      Image-Only, Table 5
cm_only        confidence-map stream alone                         CM-Only, Table 5
early          ``w = 1``                                           Fig. 2(a), Table 5
late           ``w_l = [l > L]`` = 0                               Fig. 2(c), Table 5
fixed          ``w_l = [l > model.fixed_beta]``                    Fig. 2(b)
trainable      ``w_l = sigmoid(alpha (l - beta))`` (Eq. 3)          Table 5
=============  =================================================  =====================

Loss (Eq. 2 / Eq. 4): the squared L2 error of the 3J-vector in mm^2 per sample, averaged
over the batch (the paper sums over the training set), plus ``lambda / alpha^2`` for the
trainable variant; lambda = 5e3 as in Sec. 3.1 (with errors in mm^2 the two terms are of
comparable size, as the paper says they should be), alpha starts at 0.1, beta at the middle
layer L / 2, Adam at 1e-3.

The confidence maps ``X_0`` come from the shared 2D source block ``model.two_d``
(:mod:`lightning_modules.blocks.two_d_source`): ``predicted`` by the shared heatmap network
(:mod:`lightning_modules.heatmap2d`, frozen; the paper's setting, Sec. 3.2), declared as a
prerequisite and trained once per preset, data config and heatmap experiment file (every
variant and seed reuses it), or rendered from the ``ground_truth`` 2D joints (an oracle for
analysis). The maps are resized to the streams' input size, since ``I_l`` and ``X_l`` must have
the same resolution. ``model.input_size`` is that size when it differs from the crop's: the
paper preset loads 256 px crops, which the heatmap network reads (64 x 64 confidence maps, as
in the authors' code), and feeds the image stream the crop resized to 128 px with the maps
upsampled to 128 (the paper's streams read 128 px inputs).

After testing, :mod:`lightning_modules.tekin_analysis` writes the Figure 5 plot (alpha, beta
and ``w`` over training), the pruned network's size and speed, and the Figure 7 feature
correlations into the run folder.

Simplifications for CPU, one preset away from the paper: the streams are config values
(``conv_widths``, ``fc_widths``, ``conv_kernels``); the quick preset uses 4 stride-2 3x3 conv
layers of 8..32 channels and one fc layer of 128 at 64 px. ``preset=paper`` is the authors'
network (Figure 3's sizes are not in the paper's text; their released Theano code fixes
them): per data stream conv 9x9/36, 5x5/72, 5x5/72, each with a 2x2 max-pool and ReLU, then
fc 2048, 2048 (dropout 0.5), 512, 512, 51 (L = 8), the fusion stream twice as wide, 128 px
inputs, batch 128, Adam 1e-3 for every parameter, alpha 0.1, beta 4.6 (their L / 2 + 0.6),
200 epochs, the heatmap network pre-trained on 2D-only data and fine-tuned
(``heatmap2d``'s ``pretrain_2d=auto``). ``model.squared_alpha=true`` is their code's
``sigmoid(alpha^2 (l - beta))``; Eq. 3 is the default. ``model.fusion_lr`` gives alpha and beta their own learning rate (null = the
paper's single 1e-3): with Adam a parameter moves by about one learning rate per step, so
alpha needs thousands of steps to sharpen, more than a CPU preset has.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import Tensor
from torchmetrics import MeanMetric, Metric

from lightning_modules.base import PoseModule, masked_mean
from lightning_modules.blocks.fusion import FixedFusionWeights, FusionNetwork, SigmoidFusionWeights
from lightning_modules.blocks.two_d_source import TwoDSource, TwoDSourceConfig, two_d_prerequisites
from pose3d.config import ConfigError, at_least, choice
from pose3d.units import MM_PER_METRE


FUSIONS = ("image_only", "cm_only", "early", "late", "fixed", "trainable")


@dataclass
class TrainableFusionConfig:
    name: str = "tekin_fusion"
    fusion: str = choice("trainable", FUSIONS)
    fixed_beta: int = 2  # fusion=fixed: w_l = [l > fixed_beta]
    conv_widths: list[int] = field(default_factory=lambda: [16, 32, 64, 64])
    fc_widths: list[int] = field(default_factory=lambda: [256])
    conv_kernels: Optional[list[int]] = None  # None: 3x3 stride-2 conv + BN; else conv k x k + 2x2 max-pool + ReLU
    dropout: Any = 0.2  # after every fully connected layer, or a list with one rate per such layer
    alpha_init: float = 0.1
    beta_init: Optional[float] = None  # None: the middle layer L / 2
    squared_alpha: bool = False  # the authors' code: w_l = sigmoid(alpha^2 (l - beta)); Eq. 3 has alpha
    penalty_lambda: float = 5.0e3
    fusion_lr: Optional[float] = None  # learning rate of alpha and beta; None: optim.lr
    two_d: TwoDSourceConfig = field(default_factory=TwoDSourceConfig)  # the confidence maps X_0
    input_size: Optional[int] = at_least(8, None, special=(None,))  # the streams' input px; None: the crop's
    prune_tolerance: float = 1.0e-3
    analysis_images: int = 128  # Figure 7 and the pruning check use this many test images


class TrainableFusion(PoseModule):
    Config = TrainableFusionConfig

    def __init__(self, model: dict, optim: dict, data_info: dict):
        super().__init__(model, optim, data_info)
        cfg, joints = self.cfg, self.data_info.num_joints
        streams = {"image": 3, "cms": joints}
        if cfg.fusion == "image_only":
            streams = {"image": 3}
        elif cfg.fusion == "cm_only":
            streams = {"cms": joints}
        self.input_size = int(cfg.input_size or self.data_info.image_size)
        self.network = FusionNetwork(
            streams, list(cfg.conv_widths), list(cfg.fc_widths), self.input_size, 3 * joints,
            self._fusion_weights(len(cfg.conv_widths) + len(cfg.fc_widths)),
            list(cfg.dropout) if OmegaConf.is_list(cfg.dropout) else float(cfg.dropout),
            None if cfg.conv_kernels is None else list(cfg.conv_kernels),
        )
        self.uses_cms = "cms" in streams
        self.two_d = TwoDSource(cfg.two_d, self.data_info.image_size) if self.uses_cms else None
        self.history: list[dict[str, float]] = []  # alpha, beta, w over training (Figure 5)
        self.analysis_batch: dict[str, Tensor] = {}

    def _fusion_weights(self, num_layers: int):
        cfg = self.cfg
        if cfg.fusion == "trainable":
            return SigmoidFusionWeights(num_layers, cfg.alpha_init, cfg.beta_init, cfg.squared_alpha)
        beta = {"early": 0, "fixed": cfg.fixed_beta}.get(cfg.fusion, num_layers)
        if not 0 <= beta <= num_layers:
            raise ConfigError(f"bad value for model.fixed_beta: {beta}; expected 0..{num_layers} (the number of layers)")
        return FixedFusionWeights.after_layer(beta, num_layers)

    # -- confidence maps ------------------------------------------------------------
    @classmethod
    def prerequisites(cls, cfg) -> list:
        """The heatmap network that predicts the confidence maps (unless given or not used)."""
        return [] if cfg.model.fusion == "image_only" else two_d_prerequisites(cfg.model.two_d)

    def required_targets(self) -> dict[str, dict]:
        return self.two_d.required_targets() if self.two_d is not None else {}

    def confidence_maps(self, batch: dict[str, Tensor]) -> Tensor:
        """X_0: (B, J, h, w) non-negative maps at heatmap resolution."""
        return self.two_d.maps(batch).clamp(min=0.0)

    def stream_inputs(self, batch: dict[str, Tensor], maps: Tensor | None = None) -> dict[str, Tensor]:
        """``I_0`` (the crop, resized to ``input_size``) and ``X_0`` (the maps resized to it);
        ``maps`` if already computed. The heatmap network reads the crop at its own size."""
        size = (self.input_size, self.input_size)
        image = batch["image"]
        if image.shape[-2:] != size:
            image = F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)
        inputs = {"image": image}
        if self.uses_cms:
            maps = self.confidence_maps(batch) if maps is None else maps
            inputs["cms"] = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
        return inputs

    # -- the method -------------------------------------------------------------------
    def forward(self, inputs: dict[str, Tensor]) -> Tensor:
        """Stream inputs -> (B, J, 3) root-relative joints in mm."""
        return self.network(inputs).view(-1, self.data_info.num_joints, 3) * MM_PER_METRE

    @property
    def trainable_fusion(self) -> bool:
        return isinstance(self.network.weights, SigmoidFusionWeights)

    def penalty(self) -> Tensor:
        """Eq. 4's ``lambda / alpha^2``, favouring a sharp (prunable) fusion."""
        return self.cfg.penalty_lambda / self.network.weights.alpha.pow(2)

    def training_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        error = self(self.stream_inputs(batch)) - batch["joints_3d"]
        squared = masked_mean(error.pow(2).sum(dim=(1, 2)), batch["has_3d"])  # ||f(i, x) - y||^2, mm^2
        if not self.trainable_fusion:
            return squared, {}
        penalty = self.penalty()
        return squared + penalty, {"squared_error": squared.detach(), "penalty": penalty.detach()}

    def predict(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        maps = self.confidence_maps(batch) if self.uses_cms else None
        inputs = self.stream_inputs(batch, maps)
        prediction = {"joints_3d": self(inputs), "aux": {"stream_inputs": inputs}}
        if self.two_d is not None and self.two_d.predicted:  # the 2D the network was given: the heatmap net's accuracy
            prediction["joints_2d"] = self.two_d.joints_2d(maps)
        return prediction

    # -- fusion weights over training (Figure 5) ---------------------------------------
    def fusion_state(self) -> dict[str, float]:
        weights = self.network.weights
        state = {f"w{l + 1}": float(w) for l, w in enumerate(weights().detach().cpu())}
        if self.trainable_fusion:
            state = {"alpha": float(weights.alpha.detach()), "beta": float(weights.beta.detach()), **state}
        return state

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        every = max(1, self.trainer.log_every_n_steps)
        if self.trainable_fusion and self.global_step % every == 0:
            self.history.append({"step": float(self.global_step), **self.fusion_state()})

    def on_train_epoch_end(self) -> None:
        self.log_dict({f"fusion/{k}": v for k, v in self.fusion_state().items()})

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["fusion_history"] = self.history

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.history = list(checkpoint.get("fusion_history", []))

    def on_fit_end(self) -> None:
        if self.trainer.is_global_zero and self.history:
            from lightning_modules.tekin_analysis import write_fusion_history

            write_fusion_history(self.history, self.trainer.default_root_dir)

    # -- test-time analyses (pruning, Figure 7) ----------------------------------------
    def method_metrics(self) -> dict[str, Metric]:
        """The learned alpha and beta, reported beside the test metrics."""
        return {"alpha": MeanMetric(), "beta": MeanMetric()} if self.cfg.fusion == "trainable" else {}

    def update_method_metrics(self, metrics: dict[str, Metric], batch: dict[str, Tensor],
                              prediction: dict[str, Any], stage: str) -> None:
        """Report alpha and beta; keep the stream inputs of the first ``analysis_images`` test
        images for the analyses."""
        if self.trainable_fusion:
            metrics["alpha"].update(self.network.weights.alpha.detach())
            metrics["beta"].update(self.network.weights.beta.detach())
        have = len(self.analysis_batch.get("image", ()))
        if stage != "test" or have >= self.cfg.analysis_images:
            return
        inputs = prediction["aux"]["stream_inputs"]
        take = {k: v[: self.cfg.analysis_images - have].detach().cpu() for k, v in inputs.items()}
        self.analysis_batch = {k: torch.cat([self.analysis_batch[k], v]) if k in self.analysis_batch else v for k, v in take.items()}

    def analyse(self, run_dir: Path) -> None:
        if self.analysis_batch:
            from lightning_modules.tekin_analysis import analyse

            analyse(self, self.analysis_batch, run_dir)
        self.analysis_batch = {}

    # -- optimisation -------------------------------------------------------------------
    def parameter_groups(self) -> list[dict]:
        """alpha and beta get ``model.fusion_lr`` and no weight decay."""
        fusion = list(self.network.weights.parameters())
        ids = {id(p) for p in fusion}
        groups = [{"params": [p for p in self.parameters() if p.requires_grad and id(p) not in ids]}]
        if fusion:
            groups.append({"params": fusion, "lr": self.cfg.fusion_lr or self.optim_cfg.lr, "weight_decay": 0.0})
        return groups
