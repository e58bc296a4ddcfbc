"""The embedded synthetic dataset: the project's default data, rendered on the fly.

A stand-in for Human3.6M / MPI-INF-3DHP that needs no download. Sample ``i`` of a split is a
pure function of ``(data.seed, split, i)``:

1. a subject (train: 1, 5, 6, 7, 8 and further bodies 100, 101, ..., ``data.train_bodies``
   in all; test: 9, 11, unseen bodies as in H36M Protocol #1; val: 20 more unseen bodies,
   50..69, so that choosing the best checkpoint measures generalisation to new people without
   touching the test subjects), with its own bone lengths, part thickness and clothes
   (:mod:`pose3d.body`);
2. a pose and its ``action`` id: an activity family of the kinematic sampler
   (:mod:`pose3d.pose_sampler`) or a mocap frame (``data.pose_source=bvh:PATH``) retargeted
   to the subject's bones; ``data.actions`` (e.g. ``[walking]``) draws among those actions only;
3. a random body yaw, a camera with H36M-like intrinsics (f ~ 1145 px on a 1000 px frame),
   distance and elevation, and a person-centred square crop with centre and scale jitter;
4. a scene (:mod:`pose3d.scene`): ``studio`` (plain backgrounds, 3D labels) or ``wild``
   (clutter, occluders, colour shifts; *training* samples carry only 2D labels, val/test keep
   3D for evaluation);
5. rendering straight into the crop with the crop's intrinsics (:mod:`pose3d.render`). Every
   joint inside the crop is labelled (``visible``), occluded or not, as the real datasets label
   occluded joints; the renderer's depth test marks the hidden ones in the extra key ``occluded``
   (for analyses; no method trains on it).

A batch is rendered at once (``__getitems__``); training adds photometric augmentation and
mirroring (:mod:`datamodules.augment`); heatmaps and skeleton maps are made on demand
(:mod:`datamodules.targets`).

``data.fresh_samples``: every training epoch draws ``train_size`` new samples (epoch ``e``
reads indices ``e * train_size ...``, :class:`FreshBatchSampler`) instead of showing the same
``train_size`` again. Rendering is part of every training step either way (the renderer is
several times faster than a training step), so new samples cost nothing more than repeated
ones; they only stop the network from memorising a small set of images.
"""
from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from datamodules.augment import Photometric, flip_horizontal
from datamodules.base import PoseDataModule, action_ids
from datamodules.loaders import EpochBatchSampler, EpochSampler
from datamodules.targets import TargetMaker
from pose3d import camera as cam
from pose3d.body import PART_COLOUR_SLOT, TEST_SUBJECTS, VAL_SUBJECTS, accessory_capsules, make_subject, train_subjects
from pose3d.config import ConfigError, at_least, bounded, choice, positive, probability, seed_field
from pose3d.floors import PoseLabels
from pose3d.pose_sampler import ACTIVITIES, retarget, sample_pose
from pose3d.render import RenderOutput
from pose3d.scene import SceneParams, render_scene, sample_scene, stack_scenes
from pose3d.skeleton import H36M_JOINTS, JOINT_INDEX

SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
FULL_FRAME = 1000.0  # the virtual camera's frame, pixels (H36M-like)
TYPICAL_FOCAL = 1145.0  # its focal length, pixels, before a +/-3% jitter (H36M's cameras)


@dataclass
class SyntheticConfig:
    ordered: ClassVar = (("distance_min_mm", "distance_max_mm"), ("elevation_min_deg", "elevation_max_deg"))
    name: str = "synthetic"
    seed: int = seed_field()
    image_size: int = at_least(1, 64)
    train_size: int = at_least(1, 6000)  # training samples per epoch
    fresh_samples: bool = True  # every epoch new training samples (module docstring)
    train_bodies: int = at_least(1, 200)  # training subjects: H36M's five, then further bodies (pose3d.body)
    val_size: int = at_least(1, 256)
    test_size: int = at_least(1, 1024)
    batch_size: int = at_least(1, 64)
    num_workers: int = at_least(0, 0)
    train_domain: str = choice("studio", ("studio", "wild", "mixed"))
    wild_fraction: float = probability(0.5)
    eval_domain: str = choice("studio", ("studio", "wild", "both"))  # both: even val/test samples studio, odd wild
    pose_source: str = "sampler"
    actions: list[str] = field(default_factory=list)  # keep only these actions in every split; [] = all
    distance_min_mm: float = positive(3500.0)
    distance_max_mm: float = positive(6000.0)
    elevation_min_deg: float = bounded(-5.0, -89, 89)
    elevation_max_deg: float = bounded(25.0, -89, 89)
    crop_margin: float = positive(1.3)
    crop_centre_jitter: float = at_least(0, 0.05)
    crop_scale_jitter: float = bounded(0.1, 0, 1)
    photometric: bool = True
    hue_jitter: float = bounded(0.5, 0, 0.5)  # chosen on val subjects 2, 3: 153 vs 167 mm MPJPE without
    flip: bool = True
    cache_mb: int = at_least(0, 0)  # keep rendered samples in memory up to this many MB (0: off); same values, later epochs skip the renderer (with fresh_samples=false)
    render_device: str = "cpu"  # cpu | cuda | cuda:N: rasterise on the GPU (in the main process: num_workers 0)


EVAL_DOMAINS = ("studio", "wild")  # eval_domain=both: even val/test samples studio, odd wild; a batch's ``domain`` ids


@dataclass
class SampleSpec:
    """Everything that defines one sample before rendering (geometry is applied per batch)."""

    subject: int
    action: int
    pose: np.ndarray  # (17, 3) mm, canonical body frame, root at the origin
    yaw: float  # body turn about the vertical axis, radians
    pitch: float  # camera elevation, radians
    root: np.ndarray  # (3,) mm, the root in the camera frame
    full_intrinsics: np.ndarray  # (4,) pixels of the virtual 1000 px frame
    crop_jitter: np.ndarray  # (3,) in [-1, 1]: crop scale, then centre u, v
    scene: SceneParams
    has_3d: bool
    domain: str = "studio"  # studio | wild


class PoseSource:
    """Draws a canonical-frame pose (17, 3) and its action id for a subject's bones: an activity
    family of the kinematic sampler, drawn among ``actions`` (``data.actions``; empty = all).

    The filter draws from the allowed actions rather than dropping samples, so sample ``i`` stays
    a pure function of ``(seed, split, i)``, and with every action allowed the draw is the one of
    the unfiltered data.
    """

    action_names: tuple[str, ...] = ACTIVITIES

    def __init__(self, actions: Sequence[str] = ()):
        self.allowed = action_ids(actions, self.action_names) or range(len(self.action_names))

    def draw(self, rng: np.random.Generator, bone_lengths: np.ndarray, split: str) -> tuple[np.ndarray, int]:
        action = int(self.allowed[rng.integers(len(self.allowed))])
        return sample_pose(rng, bone_lengths, action), action


class MocapSource(PoseSource):
    """Frames of BVH files, retargeted to the subject; the actions are the clips' categories.
    Files are split by clip: every fifth clip (sorted by name) is held out for the test split, so
    test motion is unseen. ``actions`` keeps the frames of those categories (drawn among them)."""

    def __init__(self, path: str, actions: Sequence[str] = ()):
        clips = _load_mocap(path)
        self.action_names = tuple(sorted({category for category, _ in clips}))
        test = [c for k, c in enumerate(clips) if k % 5 == 4] or clips
        train = [c for k, c in enumerate(clips) if k % 5 != 4] or clips
        self.frames = {split: self._stack(c) for split, c in (("train", train), ("test", test))}
        allowed = action_ids(actions, self.action_names)
        self.pool = {}  # split -> the frame indices drawn from
        for split, (_, frame_actions) in self.frames.items():
            pool = np.arange(len(frame_actions)) if allowed is None else np.flatnonzero(np.isin(frame_actions, allowed))
            if not len(pool):
                raise ConfigError(f"data.actions={list(actions)}: the {split} clips of data.pose_source=bvh:{path} "
                                  f"have no frame of these actions; expected actions with {split} clips")
            self.pool[split] = pool

    def _stack(self, clips) -> tuple[np.ndarray, np.ndarray]:
        poses = np.concatenate([poses for _, poses in clips])
        actions = np.concatenate([np.full(len(p), self.action_names.index(c)) for c, p in clips])
        return poses, actions

    def draw(self, rng, bone_lengths, split):
        which = "test" if split == "test" else "train"
        (poses, actions), pool = self.frames[which], self.pool[which]
        k = int(pool[rng.integers(len(pool))])
        return retarget(poses[k : k + 1], bone_lengths)[0], int(actions[k])


@functools.lru_cache(maxsize=4)
def _load_mocap(path: str) -> list[tuple[str, np.ndarray]]:
    """``(category, poses (T,17,3))`` per BVH file under ``path`` (category = name before '_')."""
    from pose3d.bvh import bvh_to_h36m

    root = Path(path)
    files = sorted(root.rglob("*.bvh")) if root.is_dir() else [root]
    if not root.exists() or not files:
        raise ConfigError(f"data.pose_source=bvh:{path}: no .bvh file found there; expected a BVH file or a folder of them")
    clips = []
    for file in files:
        poses, mask = bvh_to_h36m(file)
        clips.append((file.stem.split("_")[0], _complete_for_rendering(poses, mask, file)))
    return clips


HEAD_TOP_OVER_NECK = 0.95  # head-top bone / thorax-to-neck bone, from the mean body (pose3d.body)


def _complete_for_rendering(poses: np.ndarray, mask: np.ndarray, file: Path) -> np.ndarray:
    """The renderer needs all 17 joints. Rigs without a crown joint (the iClone and Daz rigs end
    the head at the eyes: the skeleton mapping masks H36M's head top) get the head top continued
    along the thorax -> neck direction; any other missing joint is an error."""
    missing = [H36M_JOINTS[j] for j in np.flatnonzero(~mask)]
    if not missing:
        return poses.astype(np.float32)
    if missing != ["head"]:
        raise ConfigError(f"{file}: the rig lacks joints {missing}; the synthetic renderer needs all 17 (head top may be missing)")
    neck, thorax = poses[:, JOINT_INDEX["neck"]], poses[:, JOINT_INDEX["thorax"]]
    completed = poses.copy()
    completed[:, JOINT_INDEX["head"]] = neck + HEAD_TOP_OVER_NECK * (neck - thorax)
    return completed.astype(np.float32)


def make_pose_source(spec: str, actions: Sequence[str] = ()) -> PoseSource:
    """The pose source ``data.pose_source`` names, drawing only ``actions`` (empty = all)."""
    if spec == "sampler":
        return PoseSource(actions)
    if spec.startswith("bvh:"):
        return MocapSource(spec[len("bvh:"):], actions)
    raise ConfigError(f"bad value for data.pose_source: '{spec}'; expected 'sampler' or 'bvh:PATH'")


class SyntheticPoseDataset(Dataset):
    """One split of the synthetic dataset; ``dataset[i]`` and batched ``__getitems__``."""

    def __init__(self, cfg: SyntheticConfig, split: str, pose_source: PoseSource, targets: TargetMaker):
        self.cfg, self.split, self.poses, self.targets = cfg, split, pose_source, targets
        self.subjects = {"train": train_subjects(cfg.train_bodies), "val": VAL_SUBJECTS, "test": TEST_SUBJECTS}[split]
        self.bodies = {s: make_subject(s) for s in self.subjects}
        self.size = {"train": cfg.train_size, "val": cfg.val_size, "test": cfg.test_size}[split]
        self.training = split == "train"
        self.fresh = self.training and cfg.fresh_samples  # any index >= 0 is a sample (FreshBatchSampler)
        self._renders: dict[int, dict[str, Tensor]] = {}  # data.cache_mb: index -> rendered sample
        self._cached_bytes = 0
        # training randomness follows the run seed (seed_everything), not the data seed
        augment_seed = int(torch.randint(2**31 - 1, ()))
        self.photometric = Photometric(seed=augment_seed, hue=cfg.hue_jitter) if (self.training and cfg.photometric) else None

    def __len__(self) -> int:
        return self.size

    def random_state(self) -> dict | None:
        """The augmentation's own generators (see the exact-resume part of :class:`datamodules.base.PoseDataModule`)."""
        return self.photometric.state() if self.photometric is not None else None

    def set_random_state(self, state: dict) -> None:
        if self.photometric is not None:
            self.photometric.set_state(state)

    def reseed(self, seed: int) -> None:
        """A loader worker's own augmentation stream (:func:`datamodules.loaders.start_worker`)."""
        if self.photometric is not None:
            self.photometric.reseed(seed)

    def _domain(self, rng: np.random.Generator, index: int) -> str:
        if not self.training:
            if self.cfg.eval_domain == "both":  # batches then carry ``domain``: its id in EVAL_DOMAINS
                return EVAL_DOMAINS[index % 2]
            return self.cfg.eval_domain
        if self.cfg.train_domain == "mixed":
            return "wild" if rng.random() < self.cfg.wild_fraction else "studio"
        return self.cfg.train_domain

    def describe(self, index: int) -> SampleSpec:
        """The pure function (seed, split, index) -> sample specification."""
        if not 0 <= index < (self.size if not self.fresh else 2**62):
            raise IndexError(f"sample {index} out of range for the {self.split} split of {self.size}")
        cfg = self.cfg
        rng = np.random.default_rng((cfg.seed, SPLIT_IDS[self.split], index))
        subject = int(self.subjects[rng.integers(len(self.subjects))])
        body = self.bodies[subject]
        pose, action = self.poses.draw(rng, body.bone_lengths, self.split)
        yaw = rng.uniform(-np.pi, np.pi)
        pitch = np.deg2rad(rng.uniform(cfg.elevation_min_deg, cfg.elevation_max_deg))
        depth = rng.uniform(cfg.distance_min_mm, cfg.distance_max_mm)
        root = np.array([rng.uniform(-0.1, 0.1) * depth, rng.uniform(-0.05, 0.1) * depth, depth])
        focal = TYPICAL_FOCAL * rng.uniform(0.97, 1.03)
        full = np.array([focal, focal, *(FULL_FRAME / 2 + rng.uniform(-8, 8, size=2))])
        crop_jitter = rng.uniform(-1, 1, size=3)
        domain = self._domain(rng, index)
        scene = sample_scene(rng, domain, (cfg.image_size, cfg.image_size), root_cam=root)
        has_3d = not (self.training and domain == "wild")
        return SampleSpec(subject, action, pose, yaw, pitch, root, full, crop_jitter, scene, has_3d, domain)

    def _place(self, specs: list[SampleSpec]) -> tuple[Tensor, Tensor, Tensor]:
        """Joints in the camera frame (B, 17, 3), the intrinsics (B, 4) of a jittered square crop
        around their projection, resized to image_size, and the world-to-camera rotations (B, 3, 3)
        ``R_x(pitch) R_y(yaw)`` (the canonical body frame is the world: y down)."""
        cfg = self.cfg

        def stack(field: str) -> Tensor:
            return torch.from_numpy(np.stack([getattr(s, field) for s in specs])).double()

        yaw, pitch = stack("yaw"), stack("pitch")
        rotation = cam.rotation_about_axis(pitch, "x") @ cam.rotation_about_axis(yaw, "y")
        joints_cam = stack("pose") @ rotation.transpose(-1, -2) + stack("root")[:, None]
        full, jitter = stack("full_intrinsics"), stack("crop_jitter")
        points = cam.project(joints_cam, full)
        low, high = points.amin(1), points.amax(1)
        side = (high - low).amax(-1) * cfg.crop_margin * (1 + jitter[:, 0] * cfg.crop_scale_jitter)
        centre = (low + high) / 2 + jitter[:, 1:] * cfg.crop_centre_jitter * side[:, None]
        box = torch.cat((centre - side[:, None] / 2, side[:, None], side[:, None]), -1)
        intrinsics = cam.crop_intrinsics(full, box, (cfg.image_size, cfg.image_size))
        return joints_cam.float(), intrinsics.float(), rotation.float()

    def _draw(self, specs: list[SampleSpec], joints_cam: Tensor, intrinsics: Tensor, size: int) -> RenderOutput:
        """The samples' people and scenes seen through ``intrinsics`` (B, 4) into ``size`` px images."""
        bodies = [self.bodies[s.subject] for s in specs]
        radii = torch.from_numpy(np.stack([b.part_radii for b in bodies]))
        slot_colours = torch.from_numpy(np.stack([b.colours for b in bodies]))
        colours = slot_colours[:, PART_COLOUR_SLOT]
        accessories = accessory_capsules(joints_cam, radii, slot_colours)
        device = self.cfg.render_device
        return render_scene(joints_cam.to(device), intrinsics.to(device), radii.to(device), colours.to(device),
                            stack_scenes([s.scene for s in specs], device), (size, size), accessories.to(device))

    def render(self, specs: list[SampleSpec]) -> dict[str, Tensor]:
        """Render a list of samples as one batch (the batch contract of DESIGN.md)."""
        joints_cam, intrinsics, rotation = self._place(specs)
        out = self._draw(specs, joints_cam, intrinsics, self.cfg.image_size)
        joints_2d = cam.project(joints_cam, intrinsics)
        labelled = in_crop(joints_2d, joints_cam[..., 2], self.cfg.image_size)
        return {  # back on the CPU for the augmentation and targets; Lightning moves the batch
            "image": out.image.cpu(),
            "joints_2d": joints_2d,
            "joints_3d": joints_cam - joints_cam[:, :1],
            "has_3d": torch.tensor([s.has_3d for s in specs]),
            "has_2d": torch.ones(len(specs), dtype=torch.bool),
            "visible": labelled,
            "occluded": labelled & ~out.visible.cpu(),
            "camera": intrinsics,
            "camera_rotation": rotation,
            "has_camera_rotation": torch.ones(len(specs), dtype=torch.bool),
            "root_depth": joints_cam[:, 0, 2].clone(),
            "subject": torch.tensor([s.subject for s in specs]),
            "action": torch.tensor([s.action for s in specs]),
            **({"domain": torch.tensor([EVAL_DOMAINS.index(s.domain) for s in specs])}
               if self.cfg.eval_domain == "both" and not self.training else {}),
        }

    def render_full_frames(self, specs: list[SampleSpec], frame_size: int) -> dict[str, Tensor]:
        """The samples' whole camera frames rather than their crops: the virtual ``FULL_FRAME`` px
        frame rendered at ``frame_size`` px (pictures to try a trained model on, pose3d.predict).

        ``image`` (B, 3, S, S) in [0, 1]; ``joints_2d`` (B, 17, 2) frame pixels; ``joints_3d``
        (B, 17, 3) camera frame, absolute mm; ``camera`` (B, 4) the frame's intrinsics; ``box``
        (B, 4) ``x, y, w, h``: the joints' 2D box, which a training crop enlarges by ``crop_margin``.
        """
        joints_cam, _, _ = self._place(specs)
        full = torch.from_numpy(np.stack([s.full_intrinsics for s in specs]))
        frame = torch.tensor([0.0, 0.0, FULL_FRAME, FULL_FRAME], dtype=full.dtype)
        intrinsics = cam.crop_intrinsics(full, frame, (frame_size, frame_size)).float()
        out = self._draw(specs, joints_cam, intrinsics, frame_size)
        joints_2d = cam.project(joints_cam, intrinsics)
        low, high = joints_2d.amin(1), joints_2d.amax(1)
        return {"image": out.image.cpu(), "joints_2d": joints_2d, "joints_3d": joints_cam, "camera": intrinsics,
                "box": torch.cat((low, high - low), -1)}

    def __getitems__(self, indices: list[int]) -> list[dict[str, Tensor]]:
        batch = self._cached_render(indices) if self.cfg.cache_mb else self.render([self.describe(int(i)) for i in indices])
        if self.training:
            batch = self._augment(batch)
        batch = self.targets(batch)
        return [{k: v[i] for k, v in batch.items()} for i in range(len(indices))]

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return self.__getitems__([index])[0]

    def _cached_render(self, indices: list[int]) -> dict[str, Tensor]:
        """``render`` of ``indices``, each sample rendered once (a scene renders the same alone
        or in any batch, so the values are those of ``render``); augmentation stays per epoch."""
        cache, indices = self._renders, [int(i) for i in indices]
        missing = [i for i in dict.fromkeys(indices) if i not in cache]
        fresh = self.render([self.describe(i) for i in missing]) if missing else {}
        samples = {i: {key: value[k] for key, value in fresh.items()} for k, i in enumerate(missing)}
        budget = self.cfg.cache_mb * 2**20
        for i, sample in samples.items():
            size = sum(v.element_size() * v.numel() for v in sample.values())
            if self._cached_bytes + size <= budget:
                cache[i] = {key: value.clone() for key, value in sample.items()}
                self._cached_bytes += size
        rows = [cache[i] if i in cache else samples[i] for i in indices]
        return {key: torch.stack([row[key] for row in rows]) for key in rows[0]}

    def _augment(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        if self.photometric is not None:
            batch["image"] = self.photometric(batch["image"])
        if self.cfg.flip:
            which = torch.rand(len(batch["image"])) < 0.5
            batch = flip_horizontal(batch, which)
        return batch


class FreshBatchSampler(EpochBatchSampler):
    """Training batches of new samples every epoch: epoch ``e`` walks the indices
    ``[e * size, (e + 1) * size)`` in a random order fixed by ``seed`` and ``e`` (so a resumed
    run sees what it would have), split across DDP ranks as :class:`DistributedSampler` splits."""

    def __init__(self, sampler, batch_size: int, drop_last: bool, *, size: int, seed: int):
        super().__init__(sampler, batch_size, drop_last)
        self.size, self.seed = int(size), int(seed)

    def __len__(self) -> int:
        per_rank = self.size // self.replica()[1]
        return per_rank // self.batch_size if self.drop_last else -(-per_rank // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        rank, replicas = self.replica()
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch))
        mine = (order[rank::replicas][: self.size // replicas] + self.epoch * self.size).tolist()
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield mine[start : start + self.batch_size]


def in_crop(joints_2d: Tensor, depth: Tensor, image_size: int) -> Tensor:
    """(B, J) bool: the joint lies in front of the camera and inside the crop. These joints are
    labelled (the batch's ``visible``), whether or not the body or an occluder hides them, as
    MPII and Human3.6M label occluded joints; the depth test's verdict is ``occluded``."""
    inside = (joints_2d >= 0).all(-1) & (joints_2d <= image_size - 1).all(-1)
    return inside & (depth > 0)


def check_render_device(cfg: SyntheticConfig) -> None:
    """``data.render_device``: cpu, or a CUDA device that exists, with loader workers off (a
    forked DataLoader worker cannot use CUDA)."""
    device = str(cfg.render_device)
    if device == "cpu":
        return
    if not (device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())):
        raise ConfigError(f"bad value for data.render_device: '{device}'; expected cpu, cuda or cuda:N")
    if not torch.cuda.is_available() or (device != "cuda" and int(device[5:]) >= torch.cuda.device_count()):
        raise ConfigError(f"data.render_device={device}: no such CUDA device on this machine; expected cpu "
                          f"({torch.cuda.device_count()} CUDA devices)")
    if cfg.num_workers > 0:
        raise ConfigError(f"data.render_device={device} renders in the main process; expected data.num_workers=0 "
                          f"(got {cfg.num_workers}: a forked loader worker cannot use CUDA)")


class SyntheticDataModule(PoseDataModule):
    """Train on subjects 1, 5, 6, 7, 8 and further bodies, validate on 20 unseen bodies, test on 9
    and 11; all 17 joints scored."""

    Config = SyntheticConfig
    test_subjects_label = "9, 11 (synthetic)"
    focal_per_frame_side = TYPICAL_FOCAL / FULL_FRAME  # crops: crop_margin x the joints' box

    def __init__(self, cfg: dict):
        super().__init__(SyntheticConfig(**cfg))
        check_render_device(self.cfg)
        self.pose_source = make_pose_source(self.cfg.pose_source, self.cfg.actions)
        self.datasets: dict[str, SyntheticPoseDataset] = {}
        # the fresh samples' order follows the run seed (seed_everything), as the augmentation
        self.order_seed = int(torch.randint(2**31 - 1, ())) if self.cfg.fresh_samples else 0

    @property
    def action_names(self) -> tuple[str, ...]:
        """All of the pose source's actions (``data.actions`` filters samples, not the ids)."""
        return tuple(self.pose_source.action_names)

    @property
    def train_has_3d(self) -> bool:
        """The studio domain's samples carry 3D labels; ``train_domain=wild`` trains on 2D only."""
        return self.cfg.train_domain != "wild"

    def split_size(self, split: str) -> int:
        return {"train": self.cfg.train_size, "val": self.cfg.val_size, "test": self.cfg.test_size}[split]

    @property
    def domains(self) -> tuple[str, ...]:
        """With ``eval_domain=both`` val/test batches carry ``domain`` (ids of :data:`EVAL_DOMAINS`)."""
        return EVAL_DOMAINS if self.cfg.eval_domain == "both" else ()

    def pose_labels(self, split: str) -> PoseLabels:
        """The split's 3D labels from the sample specifications (nothing is rendered)."""
        dataset = self.dataset(split)
        specs = [dataset.describe(i) for i in range(len(dataset))]
        joints_cam, _, rotation = dataset._place(specs)
        domain = torch.tensor([EVAL_DOMAINS.index(s.domain) for s in specs]) if self.domains else None
        return PoseLabels(joints_cam - joints_cam[:, :1], torch.tensor([s.has_3d for s in specs]), domain,
                          down=rotation[..., 1])

    def build_train_loader(self, first_epoch: int = 0) -> DataLoader:
        if not self.cfg.fresh_samples:
            return super().build_train_loader(first_epoch)
        dataset = self.dataset("train")
        batches = FreshBatchSampler(EpochSampler(dataset), self.cfg.batch_size,
                                    len(dataset) >= 2 * self.cfg.batch_size, size=len(dataset), seed=self.order_seed)
        return self.batched_train_loader(batches, first_epoch)

    def dataset(self, split: str) -> SyntheticPoseDataset:
        if split not in self.datasets:
            self.datasets[split] = SyntheticPoseDataset(self.cfg, split, self.pose_source, self.targets)
        return self.datasets[split]
