"""Tome, Russell, Agapito 2017: "Lifting from the Deep: Convolutional 3D Pose Estimation from a
Single Image" (CVPR), Section 5.

A multi-stage Convolutional Pose Machine in which every stage t

1. predicts CNN belief maps ``b_t`` from the image features and the previous stage's maps
   (Sec. 5.2; :mod:`lightning_modules.blocks.cpm`);
2. lifts them into 3D with the probabilistic pose prior (Sec. 5.3): the arg-max of each map
   (Eq. 3) gives 2D joints, which :class:`pose3d.lifting.Lifter` explains by a rotation,
   scale and PPCA coefficients (Eq. 4, quantised ground-plane rotations, closed-form solve,
   best mixture component);
3. projects the 3D pose back, ``Y_hat = s Pi E R (mu + a . e)`` (Eq. 5), and renders it as
   Gaussian belief maps ``b_hat_t`` (Eq. 6; a Gaussian at the sub-pixel position rather than
   a blurred one-hot pixel);
4. fuses ``f_t = w_t b_t + (1 - w_t) b_hat_t`` (Eq. 7) with a learned ``w_t = sigmoid(omega_t)``
   and passes ``f_t`` to the next stage.

The loss is ``sum_t ||f_t - b*||^2`` against Gaussian ground-truth belief maps (Eq. 8): the
network trains with 2D labels only; 3D comes from the prior, fitted on 3D poses of the
training distribution (``model.prior``: a :class:`pose3d.ppca.PosePrior` file; when empty,
the method declares it as a prerequisite, which the harness fits from ``model.prior_source``
once per recipe and caches under ``results/priors/``). The lifting has no gradient here: the projected maps are
constants of the loss, as the paper advises (the supplementary's sub-gradient exists as
``Lifter(..., differentiable=True)``). The final 3D pose is the lift of the last stage's fused
maps. ``model.fusion=false`` removes steps 2-4 inside the stages (a plain CPM, then one lift
at the end): the ablation of the projected-belief fusion.

Evaluation adds per-stage 2D pixel errors of the CNN maps and of the fused maps
(``<stage>/pixel_error_s<t>_cnn``, ``_fused``; Table 2's comparison).

Differences from the paper, each a config value: the quick preset's CPM is small
(``model.trunk=small``: a stride-4 trunk, ``stages`` 3, 32 channels at 64 px); the paper preset
has CPM's own network (``trunk=vgg``, :class:`lightning_modules.blocks.cpm.CPMFeatures`: VGG-19
``conv1_1``..``conv4_2`` + ``conv4_3_CPM``..``conv4_7_CPM`` at stride 8, then 6 stages of 7x7
convs with 128 channels, Sec. 5.1-5.2) at CPM's 368 px input (the paper gives no input size; the
authors' release uses 368). The camera's external calibration ``E`` (Eq. 5) is the batch's
``camera_rotation`` where the dataset knows it (synthetic: the sampled elevation; Human3.6M:
its cameras; MPI-INF-3DHP training: its calibration, with the crop's in-plane rotation and flip
folded in), and the level camera where not (MPII, LSP, the MPI-INF-3DHP test set):
:class:`pose3d.lifting.Lifter` then searches the rotation about the world's vertical only, as
the paper does; ``model.extrinsics=false`` takes ``E = I`` everywhere (the search then has to
absorb the camera's pitch, which it cannot). The paper initialises from CPM's MPII weights; we train from scratch (the vgg
layers carry CPM's names, so weights a user has load by name). The prior is fitted on 20,000
synthetic poses in the quick preset (``prior_source=synthetic``); the paper preset's
``prior_source=auto`` fits it on Human3.6M's training mocap whenever the data is Human3.6M (the
paper gives no frame rate; we keep every 5th frame, ``prior_stride`` 5, the protocol's 10 fps).
Training (Sec. 5.6): stochastic gradient descent with momentum; the paper gives neither the
learning rate nor the momentum, the paper preset's 1e-4 and 0.9 are ours. The projected belief
maps of Eq. 6 use sigma = 1 (supplementary Sec. 1.2, ``model.projected_sigma``), the
ground-truth maps CPM's width (``model.sigma``, 0.875 map pixels at stride 8).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor, nn
from torchmetrics import Metric

from lightning_modules.base import PoseModule, masked_mean
from lightning_modules.blocks.cpm import BeliefStage, CPMFeatures, CPMStage, ImageFeatures
from pose3d.heatmaps import decode_argmax, render_heatmaps
from pose3d.camera import known_camera_rotation
from pose3d.config import ConfigError, at_least, choice
from pose3d.h36m_mocap import PROTOCOL_TRAIN_SUBJECTS, mocap_3d_path
from pose3d.metrics import PixelError
from pose3d.prerequisites import FittedArtifact


@dataclass
class TomeLiftingConfig:
    name: str = "tome_lifting"
    trunk: str = choice("small", ("small", "vgg"))  # small: stride-4 CPU trunk; vgg: CPM's VGG-19 trunk, stride 8 (paper)
    stages: int = 3
    channels: int = 32
    stage_layers: int = 3
    kernel: int = 5
    sigma: float = 1.0  # ground-truth belief-map Gaussian, heatmap pixels (Sec. 5.6: CPM's)
    projected_sigma: Optional[float] = None  # the projected maps' Gaussian (Eq. 6; supp. 1.2: 1); None: sigma
    fusion: bool = True  # Eq. 7 projected-belief fusion inside the stages
    fusion_weight_init: float = 0.5  # w_t at the start
    prior: str = ""  # a PosePrior .npz or the release's .mat; "" = fit one from prior_source
    prior_source: str = "synthetic"  # synthetic | auto | a BVH folder | a VideoPose3D data_3d_h36m.npz;
    # auto: <data root>/data_3d_h36m.npz when the data (or mixed's three_d source) is human36m, else synthetic
    prior_components: int = 1
    prior_basis: int = 10
    prior_poses: int = 20000  # poses drawn from a synthetic prior_source
    prior_stride: int = at_least(1, 1)  # every k-th frame of a mocap prior_source (the paper gives no rate)
    prior_subjects: list[str] = field(default_factory=list)  # Human3.6M subjects a data_3d_h36m.npz prior sees;
    # empty: the training subjects of data.protocol (Protocol #1 without one). Never the test subjects.
    rotations: int = 80  # quantised ground-plane rotations (Sec. 5.3)
    extrinsics: bool = True  # lift with the batch's camera_rotation E where known (Sec. 5.3); False: E = I
    tilt_step_deg: float = at_least(1e-3, 0.5)  # quantisation of the camera pitch's lifting tables
    refine_rotation: bool = True  # refine the best quantised angle (parabola + exact solve); False: the paper's plain grid


class LiftingFromTheDeep(PoseModule):
    Config = TomeLiftingConfig
    needs_3d = False  # the CNN learns 2D belief maps (Eq. 8); its 3D comes from the pose prior (Sec. 4, 5.3)

    @classmethod
    def image_size_multiple(cls, model_cfg) -> int:
        """The trunk's stride: CPM's VGG-19 layers 8, the small trunk 4."""
        return CPMFeatures.stride if model_cfg.trunk == "vgg" else ImageFeatures.stride

    def __init__(self, model: dict, optim: dict, data_info: dict):
        super().__init__(model, optim, data_info)
        cfg, joints = self.cfg, self.data_info.num_joints
        if cfg.trunk == "vgg":  # CPM's own layers (Sec. 5.2): VGG-19 trunk, 1x1 stage 1, 7x7 later stages
            self.features = CPMFeatures()
            width = self.features.out_channels
            self.stages = nn.ModuleList(
                CPMStage(t + 1, width + (joints if t else 0), joints, cfg.channels, cfg.stage_layers, cfg.kernel)
                for t in range(cfg.stages))
        else:
            self.features = ImageFeatures(cfg.channels)
            self.stages = nn.ModuleList(
                BeliefStage(cfg.channels + (joints if t else 0), cfg.channels, joints, cfg.stage_layers, cfg.kernel)
                for t in range(cfg.stages)
            )
        logit = torch.logit(torch.tensor(cfg.fusion_weight_init).clamp(1e-4, 1 - 1e-4))
        self.fusion_logits = nn.Parameter(torch.full((cfg.stages,), float(logit))) if cfg.fusion else None
        self.image_size = self.data_info.image_size
        if self.image_size % self.features.stride:
            raise ConfigError(f"bad value for data.image_size: {self.image_size}; model.trunk={cfg.trunk} has stride "
                              f"{self.features.stride}, so expected a multiple of {self.features.stride}")
        self.heatmap_size = self.image_size // self.features.stride
        self.prior = _load_prior(cfg.prior)
        self._scale_checked = False
        try:
            self.prior.check_unseen(self.data_info.test_subjects, f"model.prior={cfg.prior}")
        except ValueError as error:
            raise ConfigError(str(error)) from None

    # -- prior --------------------------------------------------------------------------
    @classmethod
    def prerequisites(cls, cfg) -> list:
        """The pose prior, fitted once per (source, poses, components, basis) when ``model.prior`` is empty.

        ``model.prior_source=auto`` (the paper preset) fits it, as Sec. 4 and 6 do, on the Human3.6M
        training mocap when the run's data is Human3.6M (``data.name=human36m``, or ``mixed`` with a
        ``human36m`` three_d source): ``<root>/data_3d_h36m.npz``, the training subjects of
        ``data.protocol`` only; on other data it is ``synthetic``. A missing file is a one-line error.
        """
        m = cfg.model
        if m.prior:
            return []
        data, root_key = cfg.data, "data.root"
        if data.name == "mixed":  # its 3D source, or the first Human3.6M one of a list
            three_d = (data.get("sources") or {}).get("three_d") or {}
            listed = [three_d] if hasattr(three_d, "get") else list(three_d)  # a config or a list of configs
            n = next((n for n, d in enumerate(listed) if d.get("name") == "human36m"), 0)
            data = listed[n] if listed else {}
            root_key = "data.sources.three_d.root" if hasattr(three_d, "get") else f"data.sources.three_d[{n}].root"
        h36m = data if data.get("name") == "human36m" else None
        source, count = str(m.prior_source), int(m.prior_poses)
        if source == "auto":
            source = "synthetic" if h36m is None else str(mocap_3d_path(
                h36m.get("root", ""), "model.prior_source=auto on Human3.6M data",
                "set model.prior_source=synthetic, a BVH folder or a data_3d_h36m.npz path", root_key))
        elif source != "synthetic" and not Path(source).exists():
            raise ConfigError(f"bad value for model.prior_source: {source} does not exist; expected synthetic, auto, "
                              "a BVH folder or a VideoPose3D data_3d_h36m.npz")
        recipe = {"source": source, "components": int(m.prior_components), "basis": int(m.prior_basis)}
        if source == "synthetic":
            recipe["poses"] = count
        else:
            recipe["stride"] = int(m.prior_stride)
        if Path(source).suffix == ".npz":  # Human3.6M mocap: training subjects only
            protocol = int(h36m.get("protocol", 1) or 1) if h36m is not None else 1
            recipe["subjects"] = list(m.prior_subjects) or list(PROTOCOL_TRAIN_SUBJECTS[protocol])
        tag = "synthetic" if source == "synthetic" else Path(source).stem

        def fit_prior(path: Path) -> None:
            from pose3d import ppca

            poses = ppca.load_source(source, stride=recipe.get("stride", 1), count=count, subjects=recipe.get("subjects"))
            prior = ppca.fit(poses, components=recipe["components"], basis=recipe["basis"])
            prior.subjects = tuple(recipe.get("subjects", ()))
            prior.save(path)

        return [FittedArtifact(name=f"{tag}-k{recipe['components']}-j{recipe['basis']}", into="model.prior",
                               recipe=recipe, build=fit_prior, folder="priors")]

    def lifter(self):
        return self.prior.lifter(self.cfg.rotations, refine=self.cfg.refine_rotation, device=self.device,
                                 tilt_step_deg=self.cfg.tilt_step_deg)

    def camera_rotation(self, batch: dict[str, Tensor]) -> Tensor | None:
        """``E`` of Eq. 5 (B, 3, 3): the batch's world-to-camera rotation where the dataset knows it,
        the level camera (identity) where not; None with ``model.extrinsics=false``."""
        if not self.cfg.extrinsics or "camera_rotation" not in batch:
            return None
        return known_camera_rotation(batch)

    # -- the network --------------------------------------------------------------------
    def required_targets(self) -> dict[str, dict]:
        return {"heatmaps": {"size": self.heatmap_size, "sigma": self.cfg.sigma}}

    def fusion_weights(self) -> Tensor | None:
        return None if self.fusion_logits is None else torch.sigmoid(self.fusion_logits)

    def decode(self, maps: Tensor) -> Tensor:
        """Eq. 3: the arg-max of each belief map, in crop pixels."""
        return decode_argmax(maps, (self.image_size, self.image_size))[0]

    def project_lift(self, maps: Tensor, camera_rotation: Tensor | None = None):
        """Lift the maps' 2D joints (Sec. 5.3) and render the projected pose as belief maps (Eq. 5-6)."""
        with torch.no_grad():
            lifted = self.lifter()(self.decode(maps.detach()).float(), camera_rotation=camera_rotation)
            projected = lifted.scale[:, None, None] * lifted.joints_3d[..., :2] + lifted.translation[:, None, :]
            size = (self.image_size, self.image_size)
            sigma = self.cfg.sigma if self.cfg.projected_sigma is None else self.cfg.projected_sigma
            maps_hat = render_heatmaps(projected.to(maps.dtype), size, (self.heatmap_size,) * 2, sigma=sigma)
        return lifted, maps_hat

    def forward(self, image: Tensor, camera_rotation: Tensor | None = None) -> list[dict[str, Tensor]]:
        """Every stage's CNN maps ``b`` and fused maps ``f`` (B, J, h, w); ``camera_rotation``: ``E``
        (B, 3, 3) of the lifting inside the stages (None: level cameras)."""
        features = self.features(image)
        weights = self.fusion_weights()
        outputs, previous = [], None
        for t, stage in enumerate(self.stages):
            cnn = stage(features if previous is None else torch.cat([features, previous], dim=1))
            fused = cnn
            if weights is not None:
                _, projected = self.project_lift(cnn, camera_rotation)
                fused = weights[t] * cnn + (1 - weights[t]) * projected  # Eq. 7
            outputs.append({"cnn": cnn, "fused": fused})
            previous = fused
        return outputs

    def training_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        target = batch["heatmaps"]
        per_stage = [(out["fused"] - target).pow(2).sum(dim=(1, 2, 3)) for out in self(batch["image"], self.camera_rotation(batch))]  # Eq. 8
        loss = masked_mean(torch.stack(per_stage).sum(0), batch["has_2d"])
        logs = {f"stage{t}": masked_mean(c, batch["has_2d"]).detach() for t, c in enumerate(per_stage)}
        weights = self.fusion_weights()
        if weights is not None:
            logs.update({f"w{t}": w.detach() for t, w in enumerate(weights)})
        return loss, logs

    def check_prior_scale(self, batch: dict[str, Tensor]) -> None:
        """Once, on the first batch with 3D labels: stop with one line when the prior's mean bone
        length and the data's are more than a factor 2 apart (a prior in other units or of other data)."""
        if self._scale_checked or "has_3d" not in batch or not bool(batch["has_3d"].any()):
            return  # images of one's own carry no 3D labels: nothing to check the prior against
        self._scale_checked = True
        try:
            self.prior.check_scale(batch["joints_3d"][batch["has_3d"]].detach().cpu().double().numpy(),
                                   f"model.prior={self.cfg.prior}")
        except ValueError as error:
            raise ConfigError(str(error)) from None

    def predict(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        self.check_prior_scale(batch)
        rotation = self.camera_rotation(batch)
        outputs = self(batch["image"], rotation)
        final = outputs[-1]["fused"]
        lifted, _ = self.project_lift(final, rotation)  # the final lifting of the last stage (Sec. 5)
        stage_joints = {f"{t}_{kind}": self.decode(out[kind]) for t, out in enumerate(outputs) for kind in ("cnn", "fused")}
        return {"joints_3d": lifted.joints_3d.to(final.dtype), "joints_2d": self.decode(final),
                "aux": {"stage_joints_2d": stage_joints}}

    # -- per-stage 2D errors (Table 2) ----------------------------------------------------
    def method_metrics(self) -> dict[str, Metric]:
        """2D pixel error of every stage's CNN maps and fused maps."""
        return {f"pixel_error_s{t + 1}_{kind}": PixelError() for t in range(self.cfg.stages) for kind in ("cnn", "fused")}

    def update_method_metrics(self, metrics: dict[str, Metric], batch: dict[str, Tensor],
                              prediction: dict[str, Any], stage: str) -> None:
        mask_2d = batch["has_2d"][:, None] & batch["visible"]
        for key, joints_2d in prediction["aux"]["stage_joints_2d"].items():
            t, kind = key.split("_")
            metrics[f"pixel_error_s{int(t) + 1}_{kind}"].update(joints_2d, batch["joints_2d"], mask_2d)


def _load_prior(path: str):
    """A fitted ``.npz`` (:meth:`pose3d.ppca.PosePrior.save`) or the paper's released ``.mat``."""
    from pose3d.config import ConfigError
    from pose3d.ppca import PosePrior, load_tome_release

    if not path:
        raise ConfigError("model.prior is empty; expected a PosePrior .npz (python -m pose3d.ppca fit ...) "
                          "or a run through pose3d.train, which fits one")
    if not Path(path).is_file():
        raise ConfigError(f"model.prior={path} does not exist; expected a PosePrior .npz from `python -m pose3d.ppca fit`")
    return load_tome_release(path) if path.endswith(".mat") else PosePrior.load(path)
