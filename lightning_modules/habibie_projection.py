"""Habibie, Xu, Mehta, Liu, Seidel, Pons-Moll, Elgharib, Theobalt 2019: "In the Wild Human Pose
Estimation Using Explicit 2D Features and Intermediate 3D Representations" (CVPR), Sections
3.1-3.3, 4.2, 4.4 and supplementary Section 1 (Eq. 1-6).

One network, trained on images with 3D labels (studio) and images with 2D labels only (in the
wild):

* ``f_RGB`` (Sec. 3.3) -> ``F3D = [h2D, d]`` (Sec. 3.1): a feature map of ``f3d_channels`` (64)
  at 1/16 of a 256 px crop (16 x 16). The first J channels ``h2D`` are joint heatmaps trained
  with supp. Eq. 2 (``L2Dheatmap = sum_k b_k ||m_k - m_k^GT||^2`` against Gaussian maps,
  ``b_k`` = the joint is labelled: ``has_2d & visible``; ``model.latent_2d``); the others ``d``
  are free. Paper preset: ResNet-50 to res4f (torchvision names, ``model.pretrained`` loads a
  torchvision ``.pth``), res5a trained from scratch without stride and with 1024 output
  channels, intermediate 2D supervision on the first J channels of res4d and res5a
  (``model.intermediate``), then a 1x1 convolution to F3D.
* ``z = ReLU(FC(F3D))`` (1024), and ``f3D`` (:class:`~lightning_modules.blocks.residual_mlp.
  ResidualLifter`): four fully connected layers of 1024 with ReLU and a residual connection from
  ``z`` to the second layer's output, then a linear layer to the root-relative ``p3D``
  (supp. Eq. 3: ``L3Dpose = ||P3D - PGT||^2``).
* Camera network ``f_c`` (Sec. 3.2): an MLP on ``z`` giving ``(alpha_x, alpha_y, c_x, c_y)``;
  Eq. 2 ``p2D = (alpha_x p3D_x + c_x, alpha_y p3D_y + c_y)`` and supp. Eq. 5
  ``L2Dpose = ||p2D - p2D_GT||^2`` (``model.projection``): the path through which 2D-only
  samples move the 3D pose.
* Bone loss (supp. Eq. 4): with 3D labels, the bone vectors ``Parent(J_k) - J_k`` against the
  ground truth's; with 2D labels only, the bone lengths against those of a training subject
  picked at random per sample.
* Total (supp. Eq. 6): ``0.1 L2Dheatmap + 10 L3Dpose + 10 L2Dpose + lambda_bone Lbone`` with
  ``lambda_bone`` 10 on 3D samples and 100 on 2D-only samples. Every term is a mean over the
  samples that carry its label (``has_3d`` / ``has_2d`` / ``visible``), so a mixed batch trains
  each term only where it can.
* Two stages (Sec. 4.2): stage 1 (:class:`HeatmapPretraining`, ``experiments/
  habibie_2d_pretrain.yaml``) trains ``f_RGB`` and F3D on the heatmap loss alone on 2D-only
  data; stage 2 starts from it (``model.pretrain_2d``: a declared prerequisite resolved into
  ``init_from``; ``optim.pretrained_lr_scale`` = 0.01 is the paper's factor of 100).

Paper facts the presets follow: the first 14 channels of F3D are the heatmaps of the 14-joint
2D set (Sec. 3.1 and 3.3; ``model.heatmap_joints=subset_14`` in the paper presets, without
pelvis, spine and neck/nose; ``all``: every joint, the quick preset's), whose 2D prediction
places the three missing joints between their neighbours (:func:`joints_from_subset`); ResNet-50
"on ImageNet features" (Sec. 4.2): ``model.pretrained`` loads a torchvision-named ResNet-50 state
dict the user has (the ImageNet weights are not shipped); Adadelta with rho 0.9 in both stages
(``optim.name=adadelta``). "Globally scaled" (Sec. 4.1, Tables 1, 2, 4, 5): one scale factor
per pose before scoring, the paper does not say how it is found; the suite's ``*_scaled``
metrics and ``n_mpjpe`` use the least-squares factor (N-MPJPE), and
``pose3d.metrics.functional`` has the bone-length reading as ``bone_scaled`` (see its
docstring); the MPI-INF-3DHP protocol itself does not scale.

Choices where the paper is silent (each a config value):

* units: ``p3D`` in metres (reported in mm), 2D in crop-normalised coordinates
  ``u / image_size - 0.5`` (so ``L2Dpose`` does not depend on the crop size and ``c`` is near
  0 for a centred person); squared errors summed over joints (and bones), averaged over the
  samples that have the label.
* ``alpha = softplus(a + a0)`` with ``a0`` set so that the untrained camera starts at
  ``alpha_init`` (0.5 crop widths per metre: a 1.7 m person fills about 0.8 of a crop with
  margin 1.3): a positive focal length, so the projection loss cannot be met by a mirrored
  skeleton. ``c`` is the raw output.
* ``f_c``: one hidden layer of ``camera_hidden`` (256) with ReLU on ``z`` (the paper: "a
  multi-layer perceptron"). F3D is the linear output of a 1x1 convolution (heatmaps are
  regressed, so no ReLU); ``z`` has a ReLU. No batch norm or dropout in ``f3D`` (paper silent;
  Martinez uses both, but the paper's batch of 10 mixes two domains, and short CPU runs do not
  need dropout): ``mlp_batch_norm`` / ``dropout`` switch them on.
* the 2D-only bone target: the bone lengths of a random 3D-labelled training sample, drawn
  from a bank of the last ``bone_bank`` (1024) 3D-labelled training samples seen (this batch's
  included; on the synthetic data every sample is a training subject with its own bones, our
  stand-in for "one of the training subjects"); before any 3D sample the template body's mean
  bones (:mod:`pose3d.body`) stand in.
* intermediate supervision (res4d, res5a, post-ReLU features) uses the same loss and weight
  as the F3D heatmaps; in the CPU extractor its analogues are the middle and the last block.
* 2D prediction (pixel error, PCKh): the arg-max of ``h2D`` when the latent 2D loss trains it,
  else the projection ``p2D`` when the projection loss trains it, else none.
* stage 1 on the synthetic data trains on the wild domain's 2D-only training samples (the
  stand-in for MPII + LSP); on real data ``model.pretrain_overrides`` names its data
  (e.g. ``[data.name=mixed, ...]``).
* the baseline's "3D data only" (Table 5, first row) is ``model.use_2d_only=false``: the batch's
  2D-only samples are dropped before the network (batch norm never sees them), so every variant
  of the ablation trains on the same data and the same 3D samples, and the other variants add
  the 2D-only ones on top, as the paper adds the outdoor data to the same H80K 3D set. (The
  experiment's data section stays data-agnostic; ``ablations/projection.yaml`` sets the synthetic
  data's mixed training and two-domain testing.)
* per-domain test metrics: with ``data.eval_domain=both`` the synthetic val/test batches carry
  ``domain`` (0 studio, 1 wild; even / odd samples), and the shared suite logs every 3D metric of
  each domain under all three alignments (``test/wild/pck3d_scaled``, ``test/studio/n_mpjpe``,
  ...; MPJPE "globally scaled" is N-MPJPE), beside the overall ``test/*`` of both domains.
* Adadelta (``optim.name=adadelta``, ``optim.rho`` 0.9: the paper's "momentum of 0.9"); its
  exponential decay is ``optim.scheduler=step`` with ``step_size=1``.

What the quick preset simplifies (``preset=paper`` has the paper's values): a CPU extractor
(``backbone=convnet``, :class:`ConvNetExtractor`: the baseline's conv net, three stride-2 stages
of 32-128 channels) at 64 px (256), so F3D keeps 64 channels at 8 x 8 (17 of them heatmaps; the
paper's 16 x 16 at 256 px is the same 1/16 with four stages, which did worse on the validation
bodies: 260 against 246 mm; the shallow ``small`` extractor of two convolutions and two residual
blocks at 1/4 has too small a receptive field and predicted the mean pose, 299 mm); ``z`` and
``f3D`` width 256 (1024); no intermediate supervision (res4d / res5a): on a thin extractor the
supervised block outputs carry the residual identity path, their loss starts about ten times that
of F3D's heatmaps and stalled the 3D loss for the few hundred steps of a CPU run; Adam lr 1e-3
with a cosine schedule (Adadelta 0.05); 6,000 fresh training images per epoch for 3 epochs
(stage 1) and 8 epochs (stage 2) instead of 186k + 240k iterations; batch 64 (21 in stage 1, 10
in stage 2); no learning-rate factor on the pre-trained layers (100 in the paper: our stage 1 is
too short to be worth preserving).
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.base import PoseModule, masked_mean
from lightning_modules.blocks.backbones import SmallConvNet, conv_bn_relu
from lightning_modules.blocks.resnet import BasicBlock, Bottleneck, load_torchvision_weights, resnet50
from lightning_modules.blocks.two_d_source import two_d_pretraining_run
from lightning_modules.blocks.residual_mlp import ResidualLifter
from pose3d.body import MEAN_BONE_LENGTHS
from pose3d.config import ConfigError, at_least, bounded, choice
from pose3d.heatmaps import decode_argmax
from pose3d.prerequisites import TrainedRun
from pose3d.skeleton import BONE_CHILDREN, JOINT_INDEX, SUBSET_14, bone_lengths, bone_vectors
from pose3d.summaries import mean_std, read_finished_run
from pose3d.units import MM_PER_METRE



@dataclass
class ExplicitProjectionConfig:
    name: str = "habibie_projection"
    backbone: str = choice("small", ("small", "convnet", "resnet50"))
    width: int = at_least(4, 32)  # small / convnet extractor: channels after the first conv
    blocks: int = at_least(2, 3)  # small extractor: residual blocks at 1/4 (the last = res5a); convnet: stages
    pretrained: str = ""  # resnet50: a torchvision state-dict file (ImageNet) for conv1..layer3
    f3d_channels: int = at_least(1, 64)  # F3D = [h2D (J channels), d]
    z_dim: int = at_least(1, 256)  # also f3D's width (the residual adds z)
    camera_hidden: int = at_least(1, 256)
    mlp_batch_norm: bool = False
    dropout: float = bounded(0.0, 0, 1)
    heatmap_sigma: float = 1.0  # heatmap pixels
    heatmap_joints: str = choice("all", ("all", "subset_14"))  # h2D's joints: all 17, or the paper's 14 (Sec. 3.1)
    intermediate: bool = True  # 2D supervision on the first J channels of res4d and res5a
    latent_2d: bool = True  # L2Dheatmap on h2D (Sec. 3.1)
    projection: bool = True  # f_c and L2Dpose (Sec. 3.2)
    bone_loss: bool = True
    use_2d_only: bool = True  # train on the batch's 2D-only samples; false drops them (the baseline: 3D data only)
    lambda_2d_heatmap: float = at_least(0, 0.1)
    lambda_3d_pose: float = at_least(0, 10.0)
    lambda_2d_pose: float = at_least(0, 10.0)
    lambda_bone_3d: float = at_least(0, 10.0)
    lambda_bone_2d: float = at_least(0, 100.0)
    alpha_init: float = 0.5  # crop widths per metre
    bone_bank: int = at_least(1, 1024)
    pretrain_2d: bool = False  # stage 1 first (experiments/habibie_2d_pretrain.yaml) -> init_from
    pretrain_overrides: list[str] = field(default_factory=list)  # stage 1's own key=value settings (real data)


# -- the networks ------------------------------------------------------------------------------
class SmallExtractor(nn.Module):
    """The CPU ``f_RGB``: conv 3x3/2 -> conv 3x3/2 (stride 4), then ``blocks`` basic residual
    blocks at that stride (the last one stands for res5a). ``forward`` -> (features,
    [intermediate features]): the middle block's output and the last one's."""

    def __init__(self, width: int, blocks: int):
        super().__init__()
        channels = 2 * width
        self.stem = nn.Sequential(conv_bn_relu(3, width, 2), conv_bn_relu(width, channels, 2))
        self.blocks = nn.ModuleList(BasicBlock(channels, channels) for _ in range(blocks))
        self.tap = (blocks - 1) // 2  # the res4d analogue
        self.out_channels, self.stride = channels, 4

    def forward(self, image: Tensor) -> tuple[Tensor, list[Tensor]]:
        x, taps = self.stem(image), []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i == self.tap:
                taps.append(x)
        return x, taps + [x]


class ConvNetExtractor(nn.Module):
    """The CPU ``f_RGB`` with the receptive field of a deep extractor: the baseline's
    :class:`~lightning_modules.blocks.backbones.SmallConvNet` (``stages`` stride-2 stages of two
    3x3 convolutions, width doubling), F3D at 1 / 2^stages (4 stages: 1/16, the paper's ratio).
    Its intermediate features: the last stage's output (the res5a analogue)."""

    def __init__(self, width: int, stages: int):
        super().__init__()
        self.net = SmallConvNet(width=width, stages=stages)
        self.out_channels, self.stride = self.net.out_channels, self.net.stride

    def forward(self, image: Tensor) -> tuple[Tensor, list[Tensor]]:
        x = self.net(image)
        return x, [x]


class ResNetExtractor(nn.Module):
    """The paper's ``f_RGB`` (Sec. 3.3): ResNet-50 up to res4f (``backbone``, torchvision names),
    then ``res5a``: a bottleneck without stride and with 1024 output channels, from scratch.
    Intermediate features: res4d (``backbone.layer3.3``) and res5a."""

    def __init__(self, pretrained: str = ""):
        super().__init__()
        self.backbone = resnet50(up_to="res4f")
        if pretrained:
            try:
                load_torchvision_weights(self.backbone, pretrained)
            except ValueError as error:
                raise ConfigError(f"bad value for model.pretrained: {error}; expected a torchvision ResNet-50 "
                                  "state dict (.pth)") from None
        self.res5a = Bottleneck(1024, 256, stride=1)  # 1024 -> 1024 channels, stride 16
        self.out_channels, self.stride = 1024, 16

    def forward(self, image: Tensor) -> tuple[Tensor, list[Tensor]]:
        b = self.backbone
        x = b.layer2(b.layer1(b.maxpool(b.relu(b.bn1(b.conv1(image))))))
        taps = []
        for i, block in enumerate(b.layer3):
            x = block(x)
            if i == 3:  # res4d
                taps.append(x)
        x = self.res5a(x)
        return x, taps + [x]


class CameraNet(nn.Module):
    """``f_c``: z -> (alpha_x, alpha_y, c_x, c_y) of a weak-perspective camera (alpha > 0)."""

    def __init__(self, z_dim: int, hidden: int, alpha_init: float):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(z_dim, hidden), nn.ReLU(), nn.Linear(hidden, 4))
        self.alpha_offset = math.log(math.expm1(alpha_init))  # softplus(offset) = alpha_init

    def forward(self, z: Tensor) -> Tensor:
        raw = self.mlp(z)
        return torch.cat((F.softplus(raw[:, :2] + self.alpha_offset), raw[:, 2:]), dim=1)


def weak_perspective(p3d: Tensor, camera: Tensor) -> Tensor:
    """Eq. 2: (B, J, 3) and (B, 4) = (alpha_x, alpha_y, c_x, c_y) -> (B, J, 2)."""
    return camera[:, None, :2] * p3d[..., :2] + camera[:, None, 2:]


# -- the losses ---------------------------------------------------------------------------------
def bone_loss_3d(pred: Tensor, target: Tensor) -> Tensor:
    """Supp. Eq. 4, 3D labels: (B,) sum over bones of the squared bone-vector difference."""
    return (bone_vectors(pred) - bone_vectors(target)).pow(2).sum(dim=(-1, -2))


def bone_loss_2d(pred: Tensor, lengths: Tensor) -> Tensor:
    """Supp. Eq. 4, 2D labels only: (B,) sum over bones of the squared length difference to
    ``lengths`` (B, 16), a random training subject's bones."""
    return (bone_lengths(pred) - lengths).pow(2).sum(-1)


def joints_from_subset(points: Tensor, index: list[int], num_joints: int) -> Tensor:
    """(B, J, 2) from the (B, K, 2) points of joints ``index``: with the 14-joint subset, the three
    joints it lacks are placed between their neighbours (pelvis: the hips' midpoint; spine: pelvis
    and thorax; neck/nose: thorax and head), so the 2D metrics score every joint."""
    if len(index) == num_joints:
        return points
    out = points.new_zeros(points.shape[0], num_joints, points.shape[-1])
    out[:, index] = points
    j = JOINT_INDEX
    out[:, j["pelvis"]] = (out[:, j["r_hip"]] + out[:, j["l_hip"]]) / 2
    out[:, j["spine"]] = (out[:, j["pelvis"]] + out[:, j["thorax"]]) / 2
    out[:, j["neck"]] = (out[:, j["thorax"]] + out[:, j["head"]]) / 2
    return out


def drop_2d_only(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """The batch without its samples that lack 3D labels (not even their images reach the network,
    so batch norm never sees them)."""
    keep, size = batch["has_3d"], len(batch["has_3d"])
    return {k: v[keep] if isinstance(v, Tensor) and v.dim() and len(v) == size else v for k, v in batch.items()}


def heatmap_loss(heatmaps: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Supp. Eq. 2: (B,) ``sum_k b_k ||m_k - m_k^GT||^2`` with ``mask`` (B, J) = ``b_k``."""
    per_joint = (heatmaps - target).pow(2).flatten(2).sum(-1)
    return (per_joint * mask.to(per_joint.dtype)).sum(-1)


def projection_loss(p2d: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Supp. Eq. 5: (B,) squared 2D error summed over the labelled joints (``mask`` (B, J))."""
    return ((p2d - target).pow(2).sum(-1) * mask.to(p2d.dtype)).sum(-1)


class ExplicitProjection(PoseModule):
    Config = ExplicitProjectionConfig

    @classmethod
    def image_size_multiple(cls, model_cfg) -> int:
        """The feature extractor's stride: ResNet-50 to res4f 16, the small one 4."""
        return 16 if model_cfg.backbone == "resnet50" else 4
    full_network = True  # False: stage 1, f_RGB and F3D only

    def __init__(self, model: dict, optim: dict, data_info: dict):
        super().__init__(model, optim, data_info)
        cfg, joints, size = self.cfg, self.data_info.num_joints, self.data_info.image_size
        heatmap_joints = list(SUBSET_14) if cfg.heatmap_joints == "subset_14" else list(range(joints))
        self.heatmap_joints = heatmap_joints  # the joint of each h2D channel
        if cfg.backbone == "resnet50":
            self.extractor = ResNetExtractor(cfg.pretrained)
        elif cfg.backbone == "convnet":
            self.extractor = ConvNetExtractor(cfg.width, cfg.blocks)
        else:
            self.extractor = SmallExtractor(cfg.width, cfg.blocks)
        channels = len(heatmap_joints)
        if cfg.f3d_channels < channels or (cfg.intermediate and self.extractor.out_channels < channels):
            raise ConfigError(f"bad value for model.f3d_channels / model.width: F3D ({cfg.f3d_channels}) and the "
                              f"intermediate features ({self.extractor.out_channels}) need at least {channels} channels")
        if size % self.extractor.stride:
            raise ConfigError(f"bad value for data.image_size: {size}; expected a multiple of {self.extractor.stride}")
        self.map_size = size // self.extractor.stride
        self.to_f3d = nn.Conv2d(self.extractor.out_channels, cfg.f3d_channels, 1)
        if self.full_network:
            self.to_z = nn.Sequential(nn.Flatten(), nn.Linear(cfg.f3d_channels * self.map_size**2, cfg.z_dim), nn.ReLU())
            self.f3d = ResidualLifter(cfg.z_dim, 3 * joints, cfg.mlp_batch_norm, cfg.dropout)
            self.camera_net = CameraNet(cfg.z_dim, cfg.camera_hidden, cfg.alpha_init) if cfg.projection else None
        template = torch.from_numpy(MEAN_BONE_LENGTHS[list(BONE_CHILDREN)]).float() / MM_PER_METRE
        self.register_buffer("template_bones", template, persistent=False)
        self.register_buffer("bone_bank_lengths", torch.zeros(cfg.bone_bank, len(BONE_CHILDREN)))
        self.register_buffer("bone_bank_seen", torch.zeros((), dtype=torch.long))

    # -- extension points ------------------------------------------------------------------
    @classmethod
    def prerequisites(cls, cfg) -> list:
        m = cfg.model
        if not cls.full_network or not m.pretrain_2d or cfg.get("init_from"):
            return []
        overrides = [f"model.backbone={m.backbone}", f"model.width={m.width}", f"model.blocks={m.blocks}",
                     f"model.f3d_channels={m.f3d_channels}", f"model.heatmap_sigma={m.heatmap_sigma}",
                     f"model.heatmap_joints={m.heatmap_joints}",
                     f"model.intermediate={m.intermediate}", f"model.lambda_2d_heatmap={m.lambda_2d_heatmap}",
                     f"data.image_size={cfg.data.image_size}"]
        if m.pretrained:
            overrides.append(f"model.pretrained={m.pretrained}")
        # stage 1 sees the 2D-only images: real data's own (pretrain_overrides), the wild domain, or
        # mixed's 2D sources (MPII + LSP) alone; other data: the run's own images
        run = two_d_pretraining_run("habibie_2d_pretrain", cfg.data.name, tuple(overrides), m.pretrain_overrides)
        return [run or TrainedRun("habibie_2d_pretrain", into="init_from", overrides=tuple(overrides))]

    def required_targets(self) -> dict[str, dict]:
        return {"heatmaps": {"kind": "heatmaps", "size": self.map_size, "sigma": self.cfg.heatmap_sigma}}

    # -- the network ----------------------------------------------------------------------
    def forward(self, image: Tensor) -> dict[str, Tensor]:
        """``f3d_map`` (B, C, s, s) with ``heatmaps`` = its first J channels, ``intermediate``
        heatmaps (list), and in the full network ``p3d`` (B, J, 3) metres, ``camera`` (B, 4) and
        ``p2d`` (B, J, 2) crop-normalised (Eq. 2)."""
        joints, channels = self.data_info.num_joints, len(self.heatmap_joints)
        features, taps = self.extractor(image)
        f3d_map = self.to_f3d(features)
        out = {"f3d_map": f3d_map, "heatmaps": f3d_map[:, :channels], "intermediate": [t[:, :channels] for t in taps]}
        if self.full_network:
            z = self.to_z(f3d_map)
            p3d = self.f3d(z).view(len(image), joints, 3)
            out.update(z=z, p3d=p3d)
            if self.camera_net is not None:
                out["camera"] = self.camera_net(z)
                out["p2d"] = weak_perspective(p3d, out["camera"])
        return out

    def normalised_2d(self, joints_2d: Tensor) -> Tensor:
        return joints_2d / self.data_info.image_size - 0.5

    # -- the 2D-only bone target -----------------------------------------------------------
    def random_bone_lengths(self, batch: dict[str, Tensor]) -> Tensor:
        """(B, 16) metres: per sample the bones of a random 3D-labelled training sample (the bank
        of the last ``bone_bank`` ones, this batch's included), else the template body's."""
        if self.training:
            with torch.no_grad():
                lengths = bone_lengths(batch["joints_3d"][batch["has_3d"]].float() / MM_PER_METRE)
                lengths = lengths[-len(self.bone_bank_lengths):]
                slots = (self.bone_bank_seen + torch.arange(len(lengths), device=lengths.device)) % len(self.bone_bank_lengths)
                self.bone_bank_lengths[slots] = lengths
                self.bone_bank_seen += len(lengths)
        filled = int(min(int(self.bone_bank_seen), len(self.bone_bank_lengths)))
        size = len(batch["image"])
        if filled == 0:
            return self.template_bones.expand(size, -1)
        pick = torch.randint(filled, (size,), device=self.bone_bank_lengths.device)
        return self.bone_bank_lengths[pick]

    # -- the objective ------------------------------------------------------------------------
    def heatmap_terms(self, out: dict[str, Tensor], batch: dict[str, Tensor]) -> Tensor:
        """Supp. Eq. 2 on F3D's h2D (+ the intermediate maps), mean over the 2D-labelled samples."""
        index = self.heatmap_joints
        mask = (batch["has_2d"][:, None] & batch["visible"])[:, index]
        maps = [out["heatmaps"]] + (out["intermediate"] if self.cfg.intermediate else [])
        per_sample = sum(heatmap_loss(m, batch["heatmaps"][:, index], mask) for m in maps)
        return masked_mean(per_sample, batch["has_2d"])

    def training_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        cfg = self.cfg
        if self.full_network and not cfg.use_2d_only and not batch["has_3d"].all():
            batch = drop_2d_only(batch)
            if not len(batch["image"]):  # nothing with 3D labels: a zero loss that still has a graph
                return sum(p.sum() for p in self.parameters()) * 0.0, {}
        out = self(batch["image"])
        logs: dict[str, Tensor] = {}
        zero = out["f3d_map"].sum() * 0.0
        loss_heatmap = self.heatmap_terms(out, batch) if (cfg.latent_2d or not self.full_network) else zero
        logs["loss_heatmap"] = loss_heatmap.detach()
        if not self.full_network:
            return cfg.lambda_2d_heatmap * loss_heatmap, logs
        has_3d, has_2d = batch["has_3d"], batch["has_2d"]
        only_2d = has_2d & ~has_3d
        p3d, target = out["p3d"], batch["joints_3d"] / MM_PER_METRE
        loss_3d = masked_mean((p3d - target).pow(2).sum(dim=(-1, -2)), has_3d)
        loss = cfg.lambda_2d_heatmap * loss_heatmap + cfg.lambda_3d_pose * loss_3d
        logs["loss_3d"] = loss_3d.detach()
        if cfg.projection:
            mask = has_2d[:, None] & batch["visible"]
            loss_2d = masked_mean(projection_loss(out["p2d"], self.normalised_2d(batch["joints_2d"]), mask), has_2d)
            loss = loss + cfg.lambda_2d_pose * loss_2d
            logs["loss_2d_pose"] = loss_2d.detach()
        if cfg.bone_loss:
            bone_3d = masked_mean(bone_loss_3d(p3d, target), has_3d)
            bone_2d = masked_mean(bone_loss_2d(p3d, self.random_bone_lengths(batch)), only_2d)
            loss = loss + cfg.lambda_bone_3d * bone_3d + cfg.lambda_bone_2d * bone_2d
            logs.update(loss_bone_3d=bone_3d.detach(), loss_bone_2d=bone_2d.detach())
        return loss, logs

    # -- prediction -----------------------------------------------------------------------------
    def predict(self, batch: dict[str, Tensor]) -> dict[str, Any]:
        out = self(batch["image"])
        size = self.data_info.image_size
        prediction: dict[str, Any] = {"aux": out}
        if self.full_network:
            prediction["joints_3d"] = out["p3d"] * MM_PER_METRE
        if self.cfg.latent_2d or not self.full_network:
            prediction["joints_2d"] = joints_from_subset(decode_argmax(out["heatmaps"], (size, size))[0],
                                                         self.heatmap_joints, self.data_info.num_joints)
        elif "p2d" in out:
            prediction["joints_2d"] = (out["p2d"] + 0.5) * size
        return prediction

    # -- the ablation's table ---------------------------------------------------------------------
    @classmethod
    def summarise_ablation(cls, run_dirs: list[Path], out_dir: Path, reference: dict | None = None) -> str:
        """``projection.md`` and ``projection.png`` (PCK per variant) in ``out_dir``: globally
        scaled PCK / AUC / MPJPE on the wild test domain, the studio numbers beside them, and
        Table 5's numbers; returns the markdown."""
        return summarise_runs([Path(p) for p in run_dirs], Path(out_dir), reference or {})


@dataclass
class HeatmapPretrainingConfig(ExplicitProjectionConfig):
    name: str = "habibie_2d_pretrain"


class HeatmapPretraining(ExplicitProjection):
    """Stage 1 (Sec. 4.2): ``f_RGB`` and F3D trained on the heatmap loss alone (2D data);
    stage 2 (:class:`ExplicitProjection`) loads it by ``init_from``."""

    Config = HeatmapPretrainingConfig
    full_network = False
    monitor = ("val/pixel_error", "min")
    needs_3d = False  # stage 1 learns from 2D heatmaps only (Sec. 4.2)


# -- the ablation's table (read from finished run folders) ---------------------------------------
ORDER = ("baseline", "latent2d", "projection", "full")  # Table 5's rows


COLUMNS = (("wild", "pck3d_scaled", "wild PCK (GS)"), ("wild", "auc3d_scaled", "wild AUC (GS)"),
           ("wild", "n_mpjpe", "wild MPJPE (GS)"), ("studio", "pck3d_scaled", "studio PCK (GS)"),
           ("studio", "auc3d_scaled", "studio AUC (GS)"), ("studio", "n_mpjpe", "studio MPJPE (GS)"))


def summarise_runs(run_dirs: list[Path], out_dir: Path, reference: dict) -> str:
    """See :meth:`ExplicitProjection.summarise_ablation`."""
    runs = [r for r in (read_finished_run(d) for d in run_dirs) if r is not None]
    if not runs:
        return ""
    variants = sorted({r["variant"] for r in runs}, key=lambda v: (ORDER.index(v) if v in ORDER else len(ORDER), v))
    paper, paper_auc = reference.get("values", {}) or {}, reference.get("auc", {}) or {}
    lines = ["# ablation-projection: globally scaled test metrics per domain", "",
             "Ours: mean +/- std over seeds; wild = the synthetic wild test domain (3D labels; the stand-in for "
             "MPI-INF-3DHP's in-the-wild scenes), studio = the studio test domain. GS = globally scaled.", "",
             "| variant | seeds | " + " | ".join(c[2] for c in COLUMNS) + " | paper PCK | paper AUC |",
             "|" + "---|" * (len(COLUMNS) + 4)]
    pck: dict[str, float] = {}
    pck_std: dict[str, float] = {}
    for variant in variants:
        group = [r["metrics"] for r in runs if r["variant"] == variant]
        cells = [variant, str(len(group))]
        for domain, metric, _ in COLUMNS:
            values = [m[f"test/{domain}/{metric}"] for m in group if f"test/{domain}/{metric}" in m]
            if domain == "wild" and metric == "pck3d_scaled" and values:
                pck[variant] = statistics.fmean(values)
                pck_std[variant] = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(mean_std(values))
        cells += [f"{paper[variant]:.1f}" if variant in paper else "-", f"{paper_auc[variant]:.1f}" if variant in paper_auc else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    ordered = [v for v in ORDER if v in pck]
    if {"baseline", "latent2d", "projection", "full"} <= set(pck):
        claim = (pck["latent2d"] > pck["baseline"] and pck["projection"] > pck["baseline"]
                 and pck["full"] > max(pck["latent2d"], pck["projection"]))
        lines += ["", "The paper's claim (the 2D latent loss and the projection loss each help on wild data, most "
                      f"together), in wild PCK (GS): {'holds' if claim else 'does not hold'} ("
                      + ", ".join(f"{v} {pck[v]:.1f}" for v in ordered) + ")."]
    text = "\n".join(lines) + "\n"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "projection.md").write_text(text)
    if pck:
        try:
            from pose3d import plots

            plots.bars(out_dir / "projection.png", list(pck), list(pck.values()), [pck_std[v] for v in pck],
                       "wild 3D PCK, globally scaled (%)", "ablation-projection",
                       [paper.get(v) for v in pck] if paper else None)
        except Exception as error:  # a figure never fails the summary
            text += f"\n(no projection.png: {type(error).__name__}: {error})\n"
    return text
