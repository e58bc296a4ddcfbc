"""DeepSkeleton: skeleton maps as the intermediate representation, one (deconvolution,
regression) pair per configuration, the hypothesis chosen by 2D reprojection
(paper: ../shared/papers/deepskeleton_skeleton_maps.txt, Sections 3.1-3.4, 5.1-5.3).

Pipeline (one hypothesis ``i`` per entry of ``model.stick_widths``):

* Segmentation (Sec. 3.2, Figure 2; :class:`lightning_modules.blocks.skeleton_nets.DeconvNet`):
  ``Deconv_i`` maps the image to the foreground and background 3-channel skeleton maps
  (:mod:`pose3d.skeleton_maps`) at a quarter of the input (56 x 56 at 224 px): a fully
  convolutional encoder (ResNet-50 in the paper preset), a decoder of upsampling layers
  initialised as bilinear upsampling, skip connections summed in, residual modules, and
  intermediate supervision at every decoder resolution. Loss: per-pixel sigmoid
  cross-entropy against the maps rendered from the labels; the background channels are
  masked for samples without depth order (``has_3d`` false), everything for samples
  without 2D labels.
* Regression (Sec. 3.3; :class:`~lightning_modules.blocks.skeleton_nets.MapRegressor`):
  ``Regression_i`` sees only the 6-channel maps (foreground, background), rescaled to the
  input size, never the image, and regresses the root-relative 3D joints with a Euclidean
  (squared L2, metres) loss. ``model.regression_input``: ``predicted`` (the maps of its own
  frozen ``Deconv_i``, the paper's pipeline), ``ground_truth`` (maps rendered from the labels
  at training and test time, Table 5), or ``image`` (the same regression network on the RGB
  crop: the Direct RGB baseline of Sec. 5.2 / Table 2).
* Hypotheses (Sec. 3.2 "Deal with stick width", footnote 1): ``c_i = 1.0`` and ``l_i`` in
  5..15. The pairs are independent networks in their parameters but computed batched
  (:class:`~lightning_modules.blocks.stacked.GroupedStack`: stacked parameters run
  through one network of grouped convolutions, batch norm over H x the channels and batched
  linear layers; the same values as ``torch.func.vmap`` over the copies), so one step updates
  all of them; ``channels_last`` (default on) runs it in the channels-last memory format,
  faster on CPU and GPU with the same values. The targets for every width come from one distance computation (the
  ``skeleton_maps`` target kind with a list of widths; repeated widths are rendered once).
* Matching (Sec. 3.4, Eq. 1; :func:`solve_translation`, :func:`match_hypotheses`): every
  root-relative hypothesis gets the root translation that best fits the 2D detections in
  closed form (linear least squares on the algebraic projection equations, with the batch's
  intrinsics), is projected with those intrinsics, and the hypothesis with the smallest
  mean reprojection error to the 2D source (``model.two_d``: ``predicted`` by the shared
  stacked hourglass ``heatmap2d``, a declared prerequisite; ``ground_truth``: the labelled
  2D, the oracle-2D option) is the output.

Method metrics (``val/`` and ``test/``): ``oracle_mpjpe`` (per sample the hypothesis with the
smallest 3D error, the paper's 68.3 mm upper bound), ``reprojection_error`` (px, the chosen
hypothesis against the 2D it was matched to), ``oracle_hit`` (how often the chosen is the
oracle) and ``map_loss`` (the deconvolution loss of the output maps). ``analyse`` writes
``figure4.png`` (input, predicted maps of the chosen hypothesis, every hypothesis projected,
the chosen one marked) and ``hypotheses.json``.

Choices where the paper is silent (each a config value):

* training schedule: Sec. 5.1 trains the deconvolution networks, then the regression networks
  on their predictions. One run does both: ``deconv_epochs`` epochs of the deconvolution
  loss only, then the regression loss only with ``Deconv_i`` frozen (no gradient, batch norm
  in eval mode; ``freeze_deconv=false`` keeps training it alongside, the regression always
  reading detached maps). The regression reads the sigmoid probabilities of the output
  maps (the same [0, 1] range as the rendered maps it would see as ground truth).
* decoder: one upsampling block per encoder stage below pool5 (strides 32 -> 16 -> 8 -> 4),
  each x2 depthwise transposed conv (kernel 4, FCN's bilinear filler, learnable), summed with
  a 1x1 projection of the encoder stage (res4f, res3d, res2c), then one basic residual module;
  intermediate supervision is a 1x1 head after each residual module at strides 16 and 8 with
  the targets area-averaged to that resolution (one rendering), weighted
  ``intermediate_weight``; ``decoder_channels`` = 256 in the paper preset.
* stick width units: the paper gives ``l_i`` in [5, 15] with 224 px inputs and 56 x 56 maps but
  not the unit. ``width_unit=input_224`` (default, paper preset): pixels of a 224 px input,
  scaled to the crop and then to the map (10 -> 2.5 map px at 56); ``map_56``: pixels of a
  56 x 56 map, scaled to the map size. The quick and smoke presets use ``map_56``, since
  ``input_224`` widths are below one map pixel at 16 x 16 maps.
* joints: the paper's skeleton has K = 16 joints; the regression outputs the project's 17
  (the maps draw the 15 parts of :mod:`pose3d.skeleton_maps`, without neck/nose).
* regression head: :class:`~lightning_modules.blocks.heads.PoseRegressionHead` (pool, one
  hidden layer of ``regression_hidden`` units, linear) instead of ResNet's single fc.
* the map loss is the mean over unmasked pixels and channels, summed over the hypotheses
  and levels (so every hypothesis gets the gradient it would get alone); the regression
  loss is the per-joint mean of squared errors in metres, summed over hypotheses.
* Ensemble (Table 6, variant ``ensemble``): ``k`` regression networks reading the maps of ONE
  ``l = 10`` skeleton-map network (``shared_deconv=true``, ``stick_widths`` = 10 repeated
  ``k`` times), the hypothesis chosen by reprojection as for ``multi_hyp``; the regression
  copies differ in their random initialisation (drawn one after another from the run's seed)
  and share the batches, where the paper's k runs also differ in data order. The variant
  ``ensemble_maps`` (not the paper's) gives every regression network its own map network, a
  diversity the paper's ensemble lacks.
* root (Sec. 3.1, 5: "we define thorax as root in all our experiments"): ``model.root=thorax``
  (paper preset) regresses the joints relative to the thorax; the output is handed over
  relative to the pelvis (the project's batch contract: the suite's ``mpjpe`` aligns the
  pelvis) and ``mpjpe_thorax`` scores it after aligning the thoraxes, the paper's MPJPE.
* schedule (Sec. 5.1): each phase starts at its own rate (the deconvolution networks at
  ``deconv_lr`` 1e-5, the regression networks at ``optim.lr`` 1e-2) with the configured
  schedule restarted (parameter groups with ``epochs``, :func:`lightning_modules.base.
  build_optimizer`); the paper divides by 10 "after error plateau on the validation set", the
  paper preset by 10 every 20 epochs of the phase (a plateau needs a per-phase monitor).
* the paper preset: batch 12, the deconvolution networks' (the regression's 32 would need a
  second batch size within one run); no data augmentation (no flip, no colour jitter, no crop
  jitter; Sec. 5.1) and, on Human3.6M, every 64th frame of S9 and S11 tested (Sec. 5,
  ``data.test_every=64`` in the preset's ``for_data.human36m`` block). The paper does not say
  how its ResNet-50s are initialised (ImageNet or from scratch); ours start from scratch, and
  the encoders carry torchvision's names, so ImageNet weights a user has load by name.
* the 2D detector: the paper's stacked hourglass is "pre-trained", "no finetuning" (Sec. 3.4);
  ours is the shared ``heatmap2d`` trained on the run's data at the run's crop size (224 px
  in the paper preset, where the hourglass's depth-4 levels go 56 -> 28 -> 14 -> 7 -> 3).
* Direct RGB is a variant of this experiment (``regression_input=image``, one hypothesis), so
  it has the regression network of the other variants; the shared ``baseline`` experiment is
  the project's other direct-regression network.
* matching uses the mean (not summed squared) Euclidean reprojection error over the joints
  the 2D source gives: all 17 for the predicted detections, the visible labelled ones for the
  ground-truth 2D; the translation solve uses the same joints; a hypothesis' translation is
  the least-squares solution of ``t_x - a_j t_z = a_j Z_j - X_j`` (and y), ``a_j = (u_j - c_x) /
  f_x``, which is exact for noise-free 2D. With one hypothesis no 2D source is built (nothing
  to choose; no ``heatmap2d`` prerequisite). ``two_d_overrides`` / ``two_d_train_size`` size the
  prerequisite 2D run.
* the quick preset matches against the labelled 2D (``two_d.source=ground_truth``): a
  ``heatmap2d`` trained within its budget (3 epochs on 1,500 crops, about 80 s) localises joints
  to 25 px on 64 px crops (PCKh 1.6%), which makes the choice random; the paper's detector is a
  fully trained stacked hourglass. ``model.two_d.source=predicted`` is one override away (and
  ``two_d_overrides`` / ``two_d_train_size`` size that run); smoke and paper use the predicted 2D.
* crop scales ``c_i`` (``crop_scales``: one for all, or one per width): hypothesis ``i`` reads
  the crop zoomed out by ``c_i`` about its centre and its maps are rendered in that frame
  (:mod:`pose3d.zoom`); the matching is unchanged (the hypotheses are root-relative 3D). The
  paper crops a ``c_i`` times larger box from the full image; our loaders hand over the 1.0
  crop only, so the border beyond it is zero: the larger crop gives the maps room for parts
  outside the box (the truncation case) but no extra context. Every preset keeps 1.0, the
  paper's value for Human3.6M (Sec. 3.2; the synthetic data has no truncation); for wild
  data with truncation the paper pairs 1.0 / 1.25 / 1.5 with the widths, which is
  ``crop_scales=[...]``, one per width.

What the quick preset simplifies (paper values in brackets; ``preset=paper`` has them): 64 px
crops and 16 x 16 maps (224, 56); ``max_hypotheses=5``: widths 5, 7, 10, 13, 15 in ``map_56``
units for ``multi_hyp`` / ``gt_maps_multi`` and k = 5 for ``ensemble`` (11: 5..15, k = 11); a
small 4-stage conv encoder of 8-16-32-48 channels (ResNet-50) and 16 decoder channels (256);
maps rescaled to 32 px for the regression (``regression_size``; the input size; the image of
``direct_rgb`` is always read at the input size); 3,000 crops, 3 deconvolution + 3 regression
epochs (each network to convergence); Adam 1e-3 at a constant rate for both networks (SGD,
1e-5 deconvolution, 1e-2 regression, momentum 0.9, weight decay 2e-4, lr / 10 on plateaus);
the labelled 2D for matching (see above).
"""
from __future__ import annotations

import json
import shutil
import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MeanMetric, Metric

from lightning_modules.base import PoseModule, masked_mean
from lightning_modules.blocks.skeleton_nets import MAP_CHANNELS, DeconvNet, MapRegressor
from lightning_modules.blocks.stacked import GroupedStack
from lightning_modules.blocks.two_d_source import TwoDSource, TwoDSourceConfig, two_d_prerequisites
from pose3d.camera import project
from pose3d.config import ConfigError, at_least, choice, positive
from pose3d.skeleton import JOINT_INDEX, ROOT
from pose3d.units import MM_PER_METRE
from pose3d.zoom import zoom_images

REGRESSION_INPUTS = ("predicted", "ground_truth", "image")


@dataclass
class DeepSkeletonConfig:
    name: str = "deepskeleton"
    regression_input: str = choice("predicted", REGRESSION_INPUTS)
    regression_train_maps: str = choice("predicted", ("predicted", "ground_truth"))  # regression_input=predicted only
    stick_widths: list[float] = field(default_factory=lambda: [10.0])  # l_i: one hypothesis each
    max_hypotheses: Optional[int] = at_least(1, None, special=(None,))  # keep this many, evenly spaced; None: all
    width_unit: str = choice("input_224", ("input_224", "map_56"))
    crop_scales: list[float] = field(default_factory=lambda: [1.0])  # c_i (one, or one per width)
    encoder: str = choice("small", ("small", "resnet50"))
    encoder_widths: list[int] = field(default_factory=lambda: [16, 32, 48, 64])  # small encoder, strides 4..32
    decoder_channels: int = at_least(1, 32)
    map_stride: int = at_least(1, 4)  # input pixels per map pixel (224 -> 56)
    intermediate_weight: float = at_least(0, 1.0)
    regression_size: Optional[int] = at_least(8, None, special=(None,))  # maps rescaled to this; None: the input size
    regression_hidden: int = at_least(1, 256)
    dropout: float = at_least(0, 0.0)
    deconv_epochs: int = at_least(0, 2)
    freeze_deconv: bool = True
    deconv_lr: Optional[float] = positive(None, special=(None,))  # None: optim.lr
    two_d: TwoDSourceConfig = field(default_factory=TwoDSourceConfig)
    two_d_overrides: list[str] = field(default_factory=list)  # key=value settings of the 2D prerequisite run
    two_d_train_size: Optional[int] = at_least(1, None, special=(None,))  # its data.train_size; None: ours
    channels_last: bool = True  # the hypotheses' networks in the channels-last memory format (same values)
    shared_deconv: bool = False  # one skeleton-map network read by every regression network (Table 6's ensemble)
    root: str = choice("pelvis", ("pelvis", "thorax"))  # the joint the regression target is relative to (Sec. 3.1)


class DeepSkeleton(PoseModule):
    Config = DeepSkeletonConfig

    @classmethod
    def image_size_multiple(cls, model_cfg) -> int:
        return int(model_cfg.map_stride)

    def __init__(self, model: dict, optim: dict, data_info: dict):
        super().__init__(model, optim, data_info)
        cfg, size = self.cfg, self.data_info.image_size
        widths = select_widths(cfg.stick_widths, cfg.max_hypotheses)
        if not widths or min(widths) <= 0:
            raise ConfigError(f"bad value for model.stick_widths: {widths}; expected one or more widths > 0")
        scales = [float(c) for c in cfg.crop_scales]
        if len(scales) not in (1, len(widths)) or min(scales) <= 0:
            raise ConfigError(f"bad value for model.crop_scales: {scales}; expected one scale > 0 or one per "
                              f"stick width ({len(widths)})")
        if size % cfg.map_stride:
            raise ConfigError(f"data.image_size={size} is not a multiple of model.map_stride={cfg.map_stride}")
        self.hypotheses = len(widths)
        self.widths = widths
        self.map_size = size // cfg.map_stride
        self.map_widths = [self.map_width(w) for w in widths]
        self.crop_scales = scales * len(widths) if len(scales) == 1 else scales  # c_i per hypothesis
        # the distinct (map width, crop scale) configurations: each target is rendered once
        unique = sorted(set(zip(self.map_widths, self.crop_scales)))
        self.unique_configs = unique
        self.register_buffer("config_index", torch.tensor([unique.index(c) for c in zip(self.map_widths, self.crop_scales)]),
                             persistent=False)
        encoder_widths = list(cfg.encoder_widths)
        joints = self.data_info.num_joints
        self.deconv = None
        if cfg.shared_deconv and (cfg.regression_input != "predicted" or len(unique) > 1):
            raise ConfigError("model.shared_deconv=true needs model.regression_input=predicted and one stick width and "
                              f"crop scale for every hypothesis (got {len(unique)} configurations); expected e.g. "
                              "stick_widths=[10, 10, 10]")
        if cfg.regression_input == "predicted":
            count = 1 if cfg.shared_deconv else self.hypotheses
            nets = [DeconvNet(cfg.encoder, encoder_widths, cfg.decoder_channels) for _ in range(count)]
            self.deconv = GroupedStack(nets, nets[0].input_conv, cfg.channels_last)
        in_channels = 3 if cfg.regression_input == "image" else MAP_CHANNELS
        regression_size = size if cfg.regression_input == "image" else (cfg.regression_size or size)
        nets = [MapRegressor(cfg.encoder, joints, regression_size, in_channels, encoder_widths, cfg.regression_hidden,
                             cfg.dropout) for _ in range(self.hypotheses)]
        self.regression = GroupedStack(nets, nets[0].input_conv, cfg.channels_last)
        self.two_d = TwoDSource(cfg.two_d, size) if self.hypotheses > 1 else None
        self.analysis_batch: dict[str, Any] = {}

    # -- configuration helpers ------------------------------------------------------------
    def map_width(self, width: float) -> float:
        """A configured stick width in map pixels (see ``width_unit`` in the module docstring)."""
        if self.cfg.width_unit == "map_56":
            return width * self.map_size / 56.0
        return width * self.data_info.image_size / 224.0 / self.cfg.map_stride

    @classmethod
    def prerequisites(cls, cfg) -> list:
        """The 2D detector, when there is more than one hypothesis to choose from."""
        model = cfg.model
        if len(select_widths(model.stick_widths, model.get("max_hypotheses"))) <= 1:
            return []
        needs = two_d_prerequisites(model.two_d)
        overrides = tuple(str(o) for o in (model.get("two_d_overrides") or ()))
        size = model.get("two_d_train_size")
        return [replace(n, overrides=n.overrides + overrides, data_overrides={"train_size": int(size)} if size else {})
                for n in needs]

    def required_targets(self) -> dict[str, dict]:
        if self.cfg.regression_input == "image":
            return {}
        return {"skeleton_maps": {"kind": "skeleton_maps", "size": self.map_size,
                                  "stick_width": [float(w) for w, _ in self.unique_configs],
                                  "crop_scale": [float(c) for _, c in self.unique_configs]}}

    def target_maps(self, batch: dict[str, Tensor]) -> Tensor:
        """(H, B, 6, s, s) rendered maps of every hypothesis' (width, crop scale)."""
        maps = batch["skeleton_maps"]
        if maps.dim() == 4:  # a single width was requested elsewhere
            maps = maps[:, None]
        return maps.index_select(1, self.config_index).transpose(0, 1)

    def hypothesis_inputs(self, image: Tensor) -> tuple[Tensor, bool]:
        """The image each hypothesis reads and whether it is one shared input: (B, 3, S, S) when
        every crop scale is 1, else (H, B, 3, S, S), each zoomed out by its ``c_i``
        (:func:`pose3d.zoom.zoom_images`, one resampling per distinct scale)."""
        if all(c == 1.0 for c in self.crop_scales):
            return image, True
        zoomed = {c: zoom_images(image, c) for c in dict.fromkeys(self.crop_scales)}
        return torch.stack([zoomed[c] for c in self.crop_scales]), False

    def deconv_targets(self, batch: dict[str, Tensor]) -> Tensor:
        """(D, B, 6, s, s) the maps each skeleton-map network learns (D = 1 when shared)."""
        maps = self.target_maps(batch)
        return maps[:1] if self.cfg.shared_deconv else maps

    def regression_maps(self, logits: list[Tensor]) -> Tensor:
        """(H, B, 6, s, s) probabilities each regression network reads: its own network's output
        maps, or the one shared network's for all of them."""
        maps = torch.sigmoid(logits[-1])
        return maps.expand(self.hypotheses, *maps.shape[1:]) if self.cfg.shared_deconv else maps

    def deconv_phase(self) -> bool:
        """Whether this epoch trains the deconvolution networks (else the regression networks only)."""
        return self.deconv is not None and (self.current_epoch < self.cfg.deconv_epochs or not self.cfg.freeze_deconv)

    def regression_phase(self) -> bool:
        return self.deconv is None or self.current_epoch >= self.cfg.deconv_epochs

    # -- the networks -------------------------------------------------------------------------
    def deconv_logits(self, image: Tensor) -> list[Tensor]:
        """Per decoder level (strides 16, 8, 4): (H, B, 6, h, w) logits."""
        inputs, shared = self.hypothesis_inputs(image)
        return self.deconv(inputs, shared=shared)

    def regress(self, inputs: Tensor, shared: bool) -> Tensor:
        """(H, B, J, 3) root-relative mm from maps (H, B, 6, s, s) or the image (B, 3, S, S)."""
        return self.regression(inputs, shared=shared) * MM_PER_METRE

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """``hypotheses`` (H, B, J, 3) pelvis-relative mm (the contract's root; ``regressed``: as the
        networks regress them, relative to ``model.root``) and, with predicted maps, ``maps``
        (H, B, 6, s, s) probabilities and ``logits`` (the per-level logits)."""
        out: dict[str, Tensor] = {}
        if self.cfg.regression_input == "image":
            regressed = self.regress(*self.hypothesis_inputs(batch["image"]))
        elif self.cfg.regression_input == "ground_truth":
            regressed = self.regress(self.target_maps(batch), shared=False)
        else:
            logits = self.deconv_logits(batch["image"])
            maps = self.regression_maps(logits)
            regressed = self.regress(maps.detach(), shared=False)
            out.update(maps=maps, logits=logits)
        pelvis_relative = regressed if self.cfg.root == "pelvis" else regressed - regressed[..., ROOT:ROOT + 1, :]
        return {"hypotheses": pelvis_relative, "regressed": regressed, **out}

    # -- losses ------------------------------------------------------------------------------
    def map_loss(self, logits: list[Tensor], batch: dict[str, Tensor]) -> Tensor:
        """(H,) sigmoid cross-entropy of every level against the rendered maps, background masked."""
        target = self.deconv_targets(batch)  # (D, B, 6, s, s)
        h, b = target.shape[:2]
        total = target.new_zeros(h)
        for level, level_logits in enumerate(logits):
            size = level_logits.shape[-2:]
            t = target if size == target.shape[-2:] else F.adaptive_avg_pool2d(target.flatten(0, 1), size).view(
                h, b, MAP_CHANNELS, *size)
            weight = 1.0 if level == len(logits) - 1 else self.cfg.intermediate_weight
            total = total + weight * masked_map_bce(level_logits, t, batch["has_2d"], batch["has_3d"])
        return total

    def regression_target(self, batch: dict[str, Tensor]) -> Tensor:
        """(B, J, 3) mm: the labelled joints relative to ``model.root`` (the thorax in the paper)."""
        joints = batch["joints_3d"]
        return joints if self.cfg.root == "pelvis" else joints - joints[:, JOINT_INDEX[self.cfg.root]][:, None]

    def regression_loss(self, hypotheses: Tensor, batch: dict[str, Tensor]) -> Tensor:
        """(H,) Euclidean loss: per-joint mean squared error in metres, over samples with 3D."""
        error = (hypotheses - self.regression_target(batch)[None]) / MM_PER_METRE
        per_sample = error.pow(2).sum(-1).mean(-1)  # (H, B)
        return torch.stack([masked_mean(row, batch["has_3d"]) for row in per_sample])

    def training_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        logs: dict[str, Tensor] = {}
        loss = batch["image"].new_zeros(())
        train_deconv, train_regression = self.deconv_phase(), self.regression_phase()
        if self.cfg.regression_input == "predicted":
            if train_deconv:
                logits = self.deconv_logits(batch["image"])
                map_loss = self.map_loss(logits, batch)
                loss = loss + map_loss.sum()
                logs["map_loss"] = map_loss.mean().detach()
                maps = self.regression_maps(logits).detach()
            elif train_regression and self.cfg.regression_train_maps == "predicted":
                with torch.no_grad():
                    maps = self.regression_maps(self.deconv_logits(batch["image"]))
            if train_regression:
                inputs = self.target_maps(batch) if self.cfg.regression_train_maps == "ground_truth" else maps
                reg = self.regression_loss(self.regress(inputs, shared=False), batch)
                loss = loss + reg.sum()
                logs["loss_3d"] = reg.mean().detach()
        else:
            reg = self.regression_loss(self(batch)["regressed"], batch)
            loss = loss + reg.sum()
            logs["loss_3d"] = reg.mean().detach()
        return loss, logs

    def on_train_epoch_start(self) -> None:
        if self.deconv is not None and not self.deconv_phase():
            self.deconv.eval()  # frozen: its batch-norm statistics stay those of its training

    # -- matching and prediction ---------------------------------------------------------------
    def detections(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor] | None:
        """The 2D to match against, (B, J, 2) crop px, and per-joint weights (B, J)."""
        if self.two_d is None:
            return None
        if self.two_d.predicted:
            joints_2d = self.two_d.joints_2d(self.two_d.maps(batch))
            return joints_2d, torch.ones(joints_2d.shape[:2], device=joints_2d.device, dtype=joints_2d.dtype)
        weights = (batch["visible"] & batch["has_2d"][:, None]).to(batch["joints_2d"].dtype)
        return batch["joints_2d"], weights

    def predict(self, batch: dict[str, Tensor]) -> dict[str, Any]:
        out = self(batch)
        hypotheses = out["hypotheses"]
        aux: dict[str, Any] = {"hypotheses": hypotheses}
        detected = self.detections(batch)
        if detected is None:
            chosen = torch.zeros(hypotheses.shape[1], dtype=torch.long, device=hypotheses.device)
        else:
            joints_2d, weights = detected
            chosen, errors, translation = match_hypotheses(hypotheses, joints_2d, batch["camera"], weights)
            aux.update(reprojection=errors, translation=translation, detections=joints_2d)
        aux["chosen"] = chosen
        if "maps" in out:
            aux["maps"] = out["maps"]
            aux["logits"] = out["logits"]
        final = hypotheses[chosen, torch.arange(hypotheses.shape[1], device=hypotheses.device)]
        return {"joints_3d": final, "aux": aux}

    # -- metrics -----------------------------------------------------------------------------
    def method_metrics(self) -> dict[str, Metric]:
        return {"oracle_mpjpe": MeanMetric(), "reprojection_error": MeanMetric(), "oracle_hit": MeanMetric(),
                "map_loss": MeanMetric(), "mpjpe_thorax": MeanMetric()}

    def update_method_metrics(self, metrics: dict[str, Metric], batch: dict[str, Tensor],
                              prediction: dict[str, Any], stage: str) -> None:
        aux = prediction["aux"]
        hypotheses, chosen = aux["hypotheses"], aux["chosen"]
        has_3d = batch["has_3d"].float()
        if has_3d.any():
            per_hypothesis = hypothesis_errors(hypotheses, batch["joints_3d"], self.scored_joints)  # (H, B)
            best, oracle = per_hypothesis.min(dim=0)
            thorax = JOINT_INDEX["thorax"]  # Sec. 5: MPJPE "after aligning 3D poses to root joint", the thorax
            aligned = lambda joints: joints - joints[..., thorax:thorax + 1, :]  # noqa: E731
            output = prediction["joints_3d"]
            metrics["mpjpe_thorax"].update(
                hypothesis_errors(aligned(output)[None], aligned(batch["joints_3d"]), self.scored_joints)[0], has_3d)
            metrics["oracle_mpjpe"].update(best, has_3d)
            metrics["oracle_hit"].update((oracle == chosen).float(), has_3d)
        if "reprojection" in aux:
            rows = torch.arange(chosen.numel(), device=chosen.device)
            metrics["reprojection_error"].update(aux["reprojection"][chosen, rows])
        if "logits" in aux:
            loss = masked_map_bce(aux["logits"][-1], self.deconv_targets(batch), batch["has_2d"], batch["has_3d"])
            metrics["map_loss"].update(loss.mean())
        if stage == "test" and not self.analysis_batch:
            keep = slice(0, 4)
            self.analysis_batch = {
                "image": batch["image"][keep].detach().cpu(),
                "joints_3d": batch["joints_3d"][keep].detach().cpu(),
                "camera": batch["camera"][keep].detach().cpu(),
                "hypotheses": hypotheses[:, keep].detach().cpu(),
                "chosen": chosen[keep].detach().cpu(),
                **{k: aux[k][:, keep].detach().cpu() for k in ("translation", "reprojection") if k in aux},
                **({"detections": aux["detections"][keep].detach().cpu()} if "detections" in aux else {}),
                **({"maps": aux["maps"][:, keep].detach().cpu()} if "maps" in aux else {}),
            }

    def analyse(self, run_dir: Path) -> None:
        if self.analysis_batch:
            write_figure4(self.analysis_batch, Path(run_dir), self.widths)
        self.analysis_batch = {}

    # -- optimisation ---------------------------------------------------------------------------
    def parameter_groups(self) -> list[dict]:
        """``model.deconv_lr`` for the deconvolution networks (Sec. 5.1: 1e-5 vs 1e-2), and each
        network its own training phase (``epochs``): with ``freeze_deconv`` the deconvolution
        networks train for ``deconv_epochs`` and the regression networks after them, each phase
        with the learning-rate schedule started afresh (Sec. 5.1 trains them one after another,
        the regression from 1e-2), not one schedule across both."""
        if self.deconv is None:
            return super().parameter_groups()
        first = self.cfg.deconv_epochs
        deconv = [p for p in self.deconv.parameters() if p.requires_grad]
        ids = {id(p) for p in deconv}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in ids]
        deconv_group: dict[str, Any] = {"params": deconv}
        if self.cfg.deconv_lr is not None:
            deconv_group["lr"] = self.cfg.deconv_lr
        if first == 0:
            return [{"params": rest}, deconv_group]
        deconv_group["epochs"] = (0, first if self.cfg.freeze_deconv else None)
        return [{"params": rest, "epochs": (first, None)}, deconv_group]

    @classmethod
    def summarise_ablation(cls, run_dirs: list[Path], out_dir: Path, reference: dict | None = None) -> str:
        """``hypotheses.md``: MPJPE, oracle and reprojection error per variant beside Tables 2, 5, 6,
        whether the paper's orderings hold, and ``figure4.png`` copied from a ``multi_hyp`` run."""
        return summarise_runs([Path(p) for p in run_dirs], Path(out_dir), reference or {})


def select_widths(widths, limit: int | None = None) -> list[float]:
    """The configured widths, or ``limit`` of them evenly spaced (first and last kept) when
    there are more (the quick preset's fewer hypotheses: 5..15 -> 5, 7, 10, 13, 15)."""
    widths = [float(w) for w in widths]
    if limit is None or len(widths) <= limit:
        return widths
    if limit == 1:
        return [widths[len(widths) // 2]]
    return [widths[round(i * (len(widths) - 1) / (limit - 1))] for i in range(limit)]


# -- the maths ---------------------------------------------------------------------------------
def masked_map_bce(logits: Tensor, target: Tensor, has_2d: Tensor, has_3d: Tensor) -> Tensor:
    """(H,) per-pixel sigmoid cross-entropy of (H, B, 6, h, w) logits against maps in [0, 1]:
    the mean over the unmasked elements; the foreground channels (0-2) count for samples with
    2D labels, the background channels (3-5) only for those that also have depth (``has_3d``)."""
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    fg = has_2d.to(bce.dtype)
    bg = (has_2d & has_3d).to(bce.dtype)
    mask = torch.stack((fg, fg, fg, bg, bg, bg), dim=1)[None, :, :, None, None]  # (1, B, 6, 1, 1)
    pixels = logits.shape[-1] * logits.shape[-2]
    return (bce * mask).sum(dim=(1, 2, 3, 4)) / (mask.sum() * pixels).clamp(min=1.0)


def solve_translation(points: Tensor, joints_2d: Tensor, camera: Tensor, weights: Tensor | None = None) -> Tensor:
    """Root translation (..., 3) mm that best fits root-relative ``points`` (..., J, 3) to
    ``joints_2d`` (..., J, 2) under ``camera`` (..., 4) = (fx, fy, cx, cy), in closed form:
    weighted linear least squares of ``t_x - a_j t_z = a_j Z_j - X_j`` and
    ``t_y - b_j t_z = b_j Z_j - Y_j`` with ``a_j = (u_j - c_x) / f_x``, ``b_j = (v_j - c_y) / f_y``."""
    dtype = points.dtype
    points, joints_2d, camera = points.double(), joints_2d.double(), camera.double()
    weights = None if weights is None else weights.double()
    fx, fy, cx, cy = (c[..., None] for c in camera.unbind(-1))
    a = (joints_2d[..., 0] - cx) / fx
    b = (joints_2d[..., 1] - cy) / fy
    w = torch.ones_like(a) if weights is None else weights.to(a.dtype).expand_as(a)
    X, Y, Z = points.unbind(-1)
    r1, r2 = a * Z - X, b * Z - Y
    s = lambda v: (w * v).sum(-1)  # noqa: E731
    sw, sa, sb, saabb = s(torch.ones_like(a)), s(a), s(b), s(a * a + b * b)
    zero = torch.zeros_like(sw)
    normal = torch.stack((sw, zero, -sa, zero, sw, -sb, -sa, -sb, saabb), dim=-1).view(*sw.shape, 3, 3)
    rhs = torch.stack((s(r1), s(r2), -s(a * r1) - s(b * r2)), dim=-1)
    # a tiny ridge towards the weak-perspective depth keeps degenerate 2D (all joints on one
    # point, an untrained detector) solvable; it moves a well-posed solution by far under 1 mm
    spread_3d = (w * (X.square() + Y.square())).sum(-1) / sw.clamp(min=1e-8)
    spread_2d = (w * (a.square() + b.square())).sum(-1) / sw.clamp(min=1e-8) - (sa.square() + sb.square()) / sw.clamp(min=1e-8).square()
    z0 = (spread_3d.clamp(min=1.0) / spread_2d.clamp(min=1e-8)).sqrt().clamp(100.0, 1e5)
    ridge = 1e-9 * sw.clamp(min=1e-8)
    eye = torch.eye(3, dtype=normal.dtype, device=normal.device)
    prior = torch.stack((torch.zeros_like(z0), torch.zeros_like(z0), z0), dim=-1)
    t = torch.linalg.solve(normal + ridge[..., None, None] * eye, (rhs + ridge[..., None] * prior)[..., None])[..., 0]
    # the algebraic error also shrinks by moving a poor (collapsed) hypothesis onto the camera
    # centre; keep the root at least half the weak-perspective depth away and refit x, y for
    # that depth (the same closed form, which leaves a solution already that deep unchanged)
    tz = torch.maximum(t[..., 2], 0.5 * z0)
    tx = (s(r1) + sa * tz) / sw.clamp(min=1e-8)
    ty = (s(r2) + sb * tz) / sw.clamp(min=1e-8)
    return torch.stack((tx, ty, tz), dim=-1).to(dtype)


def reprojection_errors(points: Tensor, translation: Tensor, joints_2d: Tensor, camera: Tensor,
                        weights: Tensor) -> Tensor:
    """(...,) weighted mean pixel distance of the projection of ``points + translation``."""
    projected = project(points + translation[..., None, :], camera)
    distance = (projected - joints_2d).norm(dim=-1)
    w = weights.to(distance.dtype).expand_as(distance)
    return (distance * w).sum(-1) / w.sum(-1).clamp(min=1e-8)


def match_hypotheses(hypotheses: Tensor, joints_2d: Tensor, camera: Tensor,
                     weights: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Eq. 1 for (H, B, J, 3) root-relative hypotheses and 2D (B, J, 2): the chosen index (B,),
    every hypothesis' reprojection error (H, B) px and translation (H, B, 3) mm."""
    if weights is None:
        weights = torch.ones(joints_2d.shape[:2], dtype=joints_2d.dtype, device=joints_2d.device)
    h = hypotheses.shape[0]
    expand = lambda t: t[None].expand(h, *t.shape)  # noqa: E731
    points = hypotheses.to(joints_2d.dtype)
    translation = solve_translation(points, expand(joints_2d), expand(camera), expand(weights))
    errors = reprojection_errors(points, translation, expand(joints_2d), expand(camera), expand(weights))
    return errors.argmin(dim=0), errors, translation


def hypothesis_errors(hypotheses: Tensor, joints_3d: Tensor, joint_mask: Tensor) -> Tensor:
    """(H, B) MPJPE of every hypothesis over the scored joints (``joint_mask`` (J,) or (B, J)), mm."""
    distance = (hypotheses - joints_3d[None]).norm(dim=-1)  # (H, B, J)
    mask = joint_mask.to(distance.dtype)
    return (distance * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)


# -- Figure 4 ------------------------------------------------------------------------------------
def write_figure4(sample: dict[str, Tensor], run_dir: Path, widths: list[float]) -> None:
    """``figure4.png``: per test image the input, the chosen hypothesis' predicted foreground and
    background maps, and every hypothesis projected (chosen thick); ``hypotheses.json``."""
    from pose3d.plots import pyplot, draw_bones, draw_pose

    plt = pyplot()

    images = sample["image"]
    count, hyps = images.shape[0], sample["hypotheses"].shape[0]
    has_maps = "maps" in sample
    columns = 3 + (2 if has_maps else 0)
    fig, axes = plt.subplots(count, columns, figsize=(2.6 * columns, 2.6 * count), squeeze=False)
    size = images.shape[-1]
    for row in range(count):
        chosen = int(sample["chosen"][row])
        image = images[row].permute(1, 2, 0).clamp(0, 1).numpy()
        axes[row, 0].imshow(image)
        axes[row, 0].set_title("input", fontsize=8)
        col = 1
        if has_maps:
            maps = sample["maps"][chosen, row]
            for name, part in (("foreground", maps[:3]), ("background", maps[3:])):
                axes[row, col].imshow(part.permute(1, 2, 0).clamp(0, 1).numpy())
                axes[row, col].set_title(f"{name} (l={widths[chosen]:g})", fontsize=8)
                col += 1
        ax = axes[row, col]
        ax.imshow(image, alpha=0.4)
        colours = plt.cm.viridis(torch.linspace(0, 1, hyps).numpy())
        for i in range(hyps):
            t = sample["translation"][i, row] if "translation" in sample else torch.tensor([0.0, 0.0, 5000.0])
            uv = project(sample["hypotheses"][i, row] + t, sample["camera"][row])
            draw_bones(ax, uv, color=colours[i], lw=2.5 if i == chosen else 0.6, alpha=1.0 if i == chosen else 0.6)
        if "detections" in sample:
            ax.scatter(sample["detections"][row, :, 0], sample["detections"][row, :, 1], s=4, c="red")
        ax.set_xlim(0, size)
        ax.set_ylim(size, 0)
        ax.set_title(f"{hyps} hypotheses, chosen #{chosen + 1}", fontsize=8)
        col += 1
        # the 3D view: x-y of the hypotheses beside the ground truth (white in the paper)
        ax = axes[row, col]
        for i in range(hyps):
            draw_pose(ax, sample["hypotheses"][i, row], "front", colours[i], 2.5 if i == chosen else 0.6)
        draw_pose(ax, sample["joints_3d"][row], "front", "black", 1.0, ls="--")
        ax.set_aspect("equal")
        ax.set_title("3D (x, -y), truth dashed", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Figure 4: hypotheses and the one chosen by reprojection", fontsize=9)
    fig.tight_layout()
    run_dir.mkdir(parents=True, exist_ok=True)
    fig.savefig(run_dir / "figure4.png", dpi=80)
    plt.close(fig)
    errors = hypothesis_errors(sample["hypotheses"], sample["joints_3d"], torch.ones(sample["joints_3d"].shape[1]))
    info = {"chosen": sample["chosen"].tolist(), "mpjpe_per_hypothesis": errors.T.tolist()}
    if "reprojection" in sample:
        info["reprojection_per_hypothesis"] = sample["reprojection"].T.tolist()
    (run_dir / "hypotheses.json").write_text(json.dumps(info, indent=2) + "\n")


# -- the ablation's table (read from finished run folders) -------------------------------------------
ORDER = ("direct_rgb", "one_map", "ensemble", "multi_hyp")  # Table 2 / 6: worst to best in the paper
ANALYSIS = ("gt_maps_one", "gt_maps_multi")  # Table 5


def summarise_runs(run_dirs: list[Path], out_dir: Path, reference: dict) -> str:
    """See :meth:`DeepSkeleton.summarise_ablation`."""
    from pose3d.summaries import mean_std as _cell, ordering_line, read_finished_run

    runs = [r for r in (read_finished_run(d) for d in run_dirs) if r is not None]
    known = ORDER + ANALYSIS
    variants = sorted({r["variant"] for r in runs}, key=lambda v: (known.index(v) if v in known else len(known), v))
    paper = reference.get("values", {}) or {}
    paper_oracle = reference.get("oracle", {}) or {}
    lines = ["# ablation-hypotheses: test MPJPE, oracle hypothesis and reprojection error", "",
             "Mean +/- std over seeds; the paper's value in brackets "
             f"({reference.get('source', 'DeepSkeleton')}).", "",
             "| variant | seeds | MPJPE (mm) | oracle MPJPE (mm) | reprojection (px) | chosen = oracle |",
             "|---|---|---|---|---|---|"]
    means: dict[str, float] = {}
    oracle_means: dict[str, float] = {}
    for variant in variants:
        group = [r["metrics"] for r in runs if r["variant"] == variant]
        get = lambda key: [m[key] for m in group if key in m and m[key] == m[key]]  # noqa: E731
        mpjpe, oracle = get("test/mpjpe"), get("test/oracle_mpjpe")
        if mpjpe:
            means[variant] = statistics.fmean(mpjpe)
        if oracle:
            oracle_means[variant] = statistics.fmean(oracle)
        text = _cell(mpjpe) + (f" ({paper[variant]:.1f})" if variant in paper else "")
        oracle_text = _cell(oracle) + (f" ({paper_oracle[variant]:.1f})" if variant in paper_oracle else "")
        hit = get("test/oracle_hit")
        lines.append(f"| {variant} | {len(group)} | {text} | {oracle_text} | {_cell(get('test/reprojection_error'))} | "
                     f"{_cell([100 * h for h in hit]) + '%' if hit else '-'} |")
    ordered = [v for v in ORDER if v in means]
    lines += ordering_line(means, ORDER, "the paper's, Tables 2 and 6")
    if "multi_hyp" in oracle_means and ordered:
        below = all(oracle_means["multi_hyp"] < means[v] for v in ordered)
        lines.append(f"Oracle of multi_hyp {oracle_means['multi_hyp']:.1f} mm below every variant's MPJPE: "
                     f"{'yes' if below else 'no'} (paper: 68.3 mm).")
    if all(v in means for v in ANALYSIS):
        holds = means["gt_maps_one"] > means["gt_maps_multi"]
        lines.append(f"Table 5, ground-truth maps: one {means['gt_maps_one']:.1f} > multi {means['gt_maps_multi']:.1f}: "
                     f"{'holds' if holds else 'does not hold'} (paper 76.2 > 69.7).")
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = sorted(d / "figure4.png" for d in run_dirs
                     if (d / "figure4.png").is_file() and (read_finished_run(d) or {}).get("variant") == "multi_hyp")
    if figures:  # Figure 4 of the headline variant's first seed
        shutil.copyfile(figures[0], out_dir / "figure4.png")
        lines += ["", f"Figure 4 (input, predicted maps, hypotheses with the chosen one marked): figure4.png, "
                      f"from {figures[0].parent.name}."]
    text = "\n".join(lines) + "\n"
    (out_dir / "hypotheses.md").write_text(text)
    return text
