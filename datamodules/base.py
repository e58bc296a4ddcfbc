"""The one base class of every DataModule: the side of the contract a method sees.

:class:`PoseDataModule` holds the config, answers :attr:`~PoseDataModule.info` (a complete
:class:`pose3d.contract.DataInfo`) and takes the method's target requests
(:meth:`~PoseDataModule.request_targets`, rendered by :class:`datamodules.targets.TargetMaker`).
A subclass passes its Config instance (with ``image_size``, ``batch_size``, ``num_workers``) to
``super().__init__``, implements ``dataset(split)`` (the loaders come from
:class:`datamodules.loaders.SplitLoaders`) and sets ``action_names``, and ``eval_joints`` when
its protocol scores fewer than all joints.

:func:`action_ids` turns a config's ``data.actions`` (the per-action filter) into action ids.
"""
from __future__ import annotations

from collections.abc import Sequence

import lightning.pytorch as pl

from datamodules.crop import DEFAULT_MARGIN
from datamodules.loaders import SplitLoaders, global_rng_state, set_global_rng_state
from datamodules.targets import TargetMaker
from pose3d.config import ConfigError
from pose3d.contract import DataInfo
from pose3d.floors import PoseLabels
from pose3d.skeleton import NUM_JOINTS


class PoseDataModule(SplitLoaders, pl.LightningDataModule):
    """A DataModule of the shared batch contract (module docstring)."""

    action_names: tuple[str, ...] = ()  # the name of each ``action`` id
    eval_joints: tuple[int, ...] = tuple(range(NUM_JOINTS))  # the joints the protocol scores
    test_subjects_label = ""  # who the test split is, for tables and plots
    test_subject_names: tuple[str, ...] = ()  # the dataset's names of its test subjects (a pose prior must not have seen them)
    domains: tuple[str, ...] = ()  # names of the ``domain`` ids its val/test batches carry; () = no such key
    # how the data frames a person, for running a trained model on other images (python -m pose3d.predict)
    person_box_padding: float = 1.0  # the side of the box a crop's margin multiplies / the person box's longer side
    focal_per_frame_side: float = 1.0  # the cameras' typical focal length / the larger frame side (1.0: crop.nominal_intrinsics)

    has_3d_labels: bool = True  # whether the dataset's training samples carry 3D labels (MPII, LSP: 2D only)

    def __init__(self, cfg: object):
        super().__init__()
        self.cfg = cfg
        self.targets = TargetMaker(cfg.image_size)

    @property
    def train_has_3d(self) -> bool:
        """Whether training batches carry 3D labels (``has_3d`` True for some samples), which a
        method that learns 3D from them needs (:attr:`lightning_modules.base.PoseModule.needs_3d`)."""
        return self.has_3d_labels

    def split_size(self, split: str) -> int:
        """Samples in ``split`` ("train", "val", "test"); a subclass counts them without building the
        split's dataset where it can (building one may draw random numbers or read every frame)."""
        return len(self.dataset(split))

    def empty_split_error(self, split: str) -> ConfigError:
        return ConfigError(f"the {split} split of data.name={self.cfg.name} is empty (0 samples); expected samples in "
                           f"every split a run reads")

    def check_splits(self, splits: Sequence[str] = ("train", "val", "test")) -> None:
        """Raise a one-line :class:`ConfigError` naming the first of ``splits`` that has no sample,
        so that a run stops before training rather than after ``fit``."""
        for split in splits:
            if self.split_size(split) == 0:
                raise self.empty_split_error(split)

    @property
    def info(self) -> DataInfo:
        return DataInfo(num_joints=NUM_JOINTS, image_size=self.cfg.image_size,
                        action_names=tuple(self.action_names), eval_joints=tuple(self.eval_joints),
                        test_subjects=tuple(self.test_subject_names), domains=tuple(self.domains))

    @classmethod
    def framing(cls, cfg: dict) -> tuple[float, float]:
        """(crop side / person box side, typical focal length / larger frame side) of the data that
        ``cfg`` (a ``data`` config) configures: how its crops frame a person and its cameras see."""
        margin = float(cfg.get("crop_margin", getattr(cls.Config, "crop_margin", DEFAULT_MARGIN)))
        return cls.person_box_padding * margin, cls.focal_per_frame_side

    def pose_labels(self, split: str) -> PoseLabels:
        """The split's 3D labels (what :mod:`pose3d.floors` needs), read through the dataset's
        batches. Subclasses answer without reading images where they can."""
        import torch

        dataset = self.dataset(split)
        samples = [sample for start in range(0, len(dataset), self.cfg.batch_size)
                   for sample in dataset.__getitems__(list(range(start, min(start + self.cfg.batch_size, len(dataset)))))]
        known = all(bool(s.get("has_camera_rotation", False)) for s in samples)
        return PoseLabels(torch.stack([s["joints_3d"] for s in samples]), torch.stack([s["has_3d"] for s in samples]),
                          torch.stack([s["domain"] for s in samples]) if self.domains else None,
                          torch.stack([s["camera_rotation"][:, 1] for s in samples]) if known else None)

    def request_targets(self, spec: dict) -> None:
        """Ask for optional batch keys (``heatmaps``, ``skeleton_maps``, ...), merged with the
        earlier requests: see :class:`TargetMaker`."""
        self.targets.request(spec)

    # -- exact resume ------------------------------------------------------------------
    # Lightning saves state_dict() in every checkpoint (they are written at the end of an
    # epoch) and, on a resume, hands it to load_state_dict() before the training loader is
    # built. train_dataloader() then builds the loader and its dataset (which may draw random
    # numbers, e.g. a seed for albumentations) and only then puts back the randomness the
    # next epoch of the interrupted run started from: the global generators (shuffle order,
    # loader worker seeds, flips, dropout), the dataset's own generators (``random_state()`` /
    # ``set_random_state()``), and the epoch the sampler shuffles for. Nothing here draws a
    # random number, so a run that is never interrupted is the same as without it, and a run
    # killed anywhere in an epoch and resumed from ``last.ckpt`` ends where it would have.
    _train_dataset = None
    _resume_state: dict | None = None

    def state_dict(self) -> dict:
        dataset = self._train_dataset
        next_epoch = self.trainer.fit_loop.epoch_progress.current.processed if self.trainer is not None else 0
        return {"rng": global_rng_state(), "next_epoch": int(next_epoch),
                "dataset": dataset.random_state() if hasattr(dataset, "random_state") else None}

    def load_state_dict(self, state: dict) -> None:
        self._resume_state = state or None

    def train_dataloader(self):
        state, self._resume_state = self._resume_state, None
        loader = self.build_train_loader(first_epoch=state["next_epoch"] if state else 0)
        self._train_dataset = loader.dataset
        if state:
            set_global_rng_state(state["rng"])
            if state.get("dataset") is not None and hasattr(loader.dataset, "set_random_state"):
                loader.dataset.set_random_state(state["dataset"])
        return loader


def action_ids(actions: Sequence[str], action_names: Sequence[str]) -> tuple[int, ...] | None:
    """The sorted ids in ``action_names`` of the ``data.actions`` names; ``None`` (= every action)
    when ``actions`` is empty. An unknown name is a one-line :class:`ConfigError` naming the valid ones."""
    if not actions:
        return None
    names = list(action_names)
    for name in actions:
        if name not in names:
            valid = ", ".join(names) if names else "none (this dataset has no action labels)"
            raise ConfigError(f"bad value for data.actions: '{name}'; valid action names: {valid}")
    return tuple(sorted({names.index(name) for name in actions}))
