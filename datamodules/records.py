"""Real datasets as lists of annotated people: one :class:`PoseRecord` per person per image.

A real-data DataModule (Human3.6M, MPI-INF-3DHP, MPII, LSP) subclasses
:class:`RecordDataModule` and implements two methods:

* ``load_records(split)``: the split's records (a list, or any sequence such as
  :class:`LazyRecords` when building millions of objects up front would be wasteful);
* ``check()``: validate the layout under ``data.root`` and return a human-readable report
  (``python -m pose3d.data check DATASET PATH``); raise :class:`DatasetLayoutError` naming the
  missing file. ``check_layout()`` is its cheap part, run by the constructor so that a training
  run with a wrong path stops at once with the same one-line message (exit 2).

:class:`RecordDataset` turns records into batches of the shared contract (DESIGN.md): it reads
the frame, crops and augments it with :func:`datamodules.crop.crop_record` and adds heatmaps
or skeleton maps on request (:class:`~datamodules.targets.TargetMaker`).

The global presets set ``data.train_size/val_size/test_size``; for real data they are *caps*:
an evenly spaced subset of that many records (``None`` or 0 = all), so a smoke run touches a
few frames and a ``paper`` run can still use everything (``data.test_size=0``).

``data.actions`` (action names of the module's ``action_names``; empty = all) keeps only the
records of those actions in every split, before the caps; action ids stay those of the full list.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from datamodules.base import PoseDataModule, action_ids
from datamodules.crop import DEFAULT_MARGIN, CropAugment, crop_record
from datamodules.targets import TargetMaker
from pose3d import readers
from pose3d.config import ConfigError, at_least, bounded, positive
from pose3d.floors import PoseLabels
from pose3d.skeleton import NUM_JOINTS


class DatasetLayoutError(ConfigError):
    """A dataset folder that does not look as expected. ``str(error)`` is one line naming the
    missing file and the expected layout; ``hint`` optionally holds a multi-line picture of the
    expected tree (printed by ``python -m pose3d.data check``)."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(" ".join(str(message).split()))
        self.hint = hint


@dataclass
class PoseRecord:
    """One annotated person in one image."""

    image_path: str  # full frame (absolute, or relative to the dataset root); "" = no image (pose-only data)
    center: np.ndarray  # (2,) person centre, full-image pixels
    scale: float  # person box side / 200 px (MPII/H36M convention)
    joints_2d: np.ndarray  # (17, 2) full-image pixels, H36M joint order
    visible: np.ndarray  # (17,) bool: False for missing / unlabelled joints
    joints_3d: np.ndarray | None = None  # (17, 3) mm, camera frame, absolute; None = 2D only
    intrinsics: np.ndarray | None = None  # (4,) fx, fy, cx, cy in full-image pixels; None if unknown
    subject: int = 0
    action: int = 0
    rotation: np.ndarray | None = None  # (3, 3) world-to-camera, world y down (datamodules.batch); None if unknown


# a dataset's world frame -> the contract's gravity-aligned world (y down): X_contract = A X_world
_TO_Y_DOWN = {
    "z": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]]),  # z up (Human3.6M)
    "y": np.diag([1.0, -1.0, -1.0]),  # y up (MPI-INF-3DHP's capture studio)
}


def contract_rotation(world_to_camera: np.ndarray, up: str) -> np.ndarray:
    """The batch contract's ``camera_rotation`` (world y down, :mod:`datamodules.batch`) of a camera
    whose dataset world has ``up`` ("z" or "y") pointing up: ``R A^T`` for ``X_contract = A X_world``."""
    return np.asarray(world_to_camera, dtype=np.float64) @ _TO_Y_DOWN[up].T


def is_rotation(matrix: np.ndarray, tolerance: float = 1e-3) -> bool:
    """Orthonormal with determinant +1 (within ``tolerance``)."""
    m = np.asarray(matrix, dtype=np.float64)
    return m.shape == (3, 3) and np.allclose(m @ m.T, np.eye(3), atol=tolerance) and abs(np.linalg.det(m) - 1) < tolerance


class LazyRecords(Sequence):
    """A read-only sequence of ``length`` records made on access by ``make(index)``. ``actions``
    optionally holds every record's ``action`` id up front, so that filtering by action
    (:func:`records_of_actions`) need not make every record."""

    def __init__(self, length: int, make: Callable[[int], PoseRecord], actions: np.ndarray | None = None):
        self.length, self.make = int(length), make
        self.actions = None if actions is None else np.asarray(actions, dtype=np.int64)
        if self.actions is not None and len(self.actions) != self.length:
            raise ValueError(f"LazyRecords: {len(self.actions)} action ids for {self.length} records")

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.length))]
        index = int(index)
        if index < 0:
            index += self.length
        if not 0 <= index < self.length:
            raise IndexError(f"record {index} out of range for {self.length} records")
        return self.make(index)


class RecordSubset(Sequence):
    """The records of ``base`` at ``indices`` (a view; nothing is copied)."""

    def __init__(self, base: Sequence, indices: Sequence[int]):
        self.base, self.indices = base, np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self.base[int(self.indices[index])]


def evenly_spaced(n: int, cap: int | None) -> np.ndarray:
    """Indices of an evenly spaced subset of ``cap`` out of ``n`` items (all if ``cap`` is None/0 or >= n)."""
    if not cap or cap >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, int(cap)).round().astype(np.int64))


def cap_records(records: Sequence, cap: int | None) -> Sequence:
    """``records`` limited to an evenly spaced subset of ``cap`` (see :func:`evenly_spaced`)."""
    if not cap or cap >= len(records):
        return records
    return RecordSubset(records, evenly_spaced(len(records), cap))


def records_of_actions(records: Sequence[PoseRecord], ids: Sequence[int] | None) -> Sequence[PoseRecord]:
    """The records whose ``action`` is one of ``ids`` (a view; all of them when ``ids`` is None)."""
    if ids is None:
        return records
    actions = getattr(records, "actions", None)
    if actions is None:
        actions = np.array([int(record.action) for record in records], dtype=np.int64)
    return RecordSubset(records, np.flatnonzero(np.isin(actions, list(ids))))


FRAME = "the frame the annotation names under data.root (a JPEG or PNG image)"


def read_image(path: Path) -> np.ndarray:
    """An RGB uint8 frame (H, W, 3); a missing, empty, truncated or undecodable file is a one-line
    :class:`~pose3d.readers.FileFormatError` naming it (:func:`pose3d.readers.read_image`)."""
    if not path.is_file():
        raise DatasetLayoutError(f"image file not found: {path}; expected {FRAME}")
    return readers.read_image(path, FRAME)


class RecordDataset(Dataset):
    """Records -> samples of the batch contract; ``__getitems__`` makes a whole batch at once.

    Training randomness (augmentation) follows torch's generator, which Lightning seeds per
    run and per worker, so runs are reproducible and workers differ. ``reference_key`` (e.g.
    MPII's ``head_size``, LSP's ``torso_size``) names a record attribute holding a per-person
    reference length in full-image pixels; batches then carry it in crop pixels (the crop is a
    similarity, so lengths scale by sqrt |det| of its affine).
    """

    def __init__(self, records: Sequence[PoseRecord], root: Path, image_size: int, augment: CropAugment | None,
                 targets: TargetMaker, crop_margin: float = DEFAULT_MARGIN, reference_key: str = ""):
        self.records = records
        self.reference_key = reference_key
        self.root = Path(root)
        self.image_size = int(image_size)
        self.augment = augment
        self.targets = targets
        self.crop_margin = float(crop_margin)

    def __len__(self) -> int:
        return len(self.records)

    def image_of(self, record: PoseRecord) -> np.ndarray | None:
        if not record.image_path:
            return None
        path = Path(record.image_path)
        return read_image(path if path.is_absolute() else self.root / path)

    def sample(self, index: int, rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
        """The cropped sample as numpy arrays (see :func:`crop_record`) plus ``has_3d``, ``subject``, ``action``."""
        record = self.records[index]
        out = crop_record(self.image_of(record), record, self.image_size, self.augment, rng, margin=self.crop_margin)
        out["has_3d"] = record.joints_3d is not None
        out["subject"], out["action"] = int(record.subject), int(record.action)
        if self.reference_key:
            zoom = float(np.sqrt(abs(np.linalg.det(out["affine"][:, :2]))))
            out[self.reference_key] = float(getattr(record, self.reference_key, float("nan"))) * zoom
        return out

    def __getitems__(self, indices: list[int]) -> list[dict[str, Tensor]]:
        rng = None
        if self.augment is not None:
            rng = np.random.default_rng(int(torch.randint(2**62, ())))
        samples = [self.sample(int(i), rng) for i in indices]
        batch = collate_samples(samples)
        if self.reference_key:
            batch[self.reference_key] = torch.tensor([s[self.reference_key] for s in samples], dtype=torch.float32)
        batch = self.targets(batch)
        return [{k: v[i] for k, v in batch.items()} for i in range(len(indices))]

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return self.__getitems__([index])[0]


def collate_samples(samples: list[dict]) -> dict[str, Tensor]:
    """numpy samples from :meth:`RecordDataset.sample` -> one batch dict of the contract."""
    images = np.stack([s["image"] for s in samples])
    image = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    image = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
    joints_3d = torch.from_numpy(np.stack([s["joints_3d"] for s in samples])).float()

    def stack(key: str, dtype: torch.dtype) -> Tensor:
        return torch.as_tensor(np.stack([np.asarray(s[key]) for s in samples])).to(dtype)

    return {
        "image": image,
        "joints_2d": stack("joints_2d", torch.float32),
        "joints_3d": joints_3d - joints_3d[:, :1],
        "has_3d": stack("has_3d", torch.bool),
        "has_2d": torch.ones(len(samples), dtype=torch.bool),
        "visible": stack("visible", torch.bool),
        "camera": stack("camera", torch.float32),
        "camera_rotation": stack("camera_rotation", torch.float32),
        "has_camera_rotation": stack("has_camera_rotation", torch.bool),
        "root_depth": stack("root_depth", torch.float32),
        "subject": stack("subject", torch.int64),
        "action": stack("action", torch.int64),
    }


@dataclass
class RecordDataConfig:
    """Fields every real-data Config shares; a subclass adds ``name`` and dataset specifics."""

    root: str = ""
    image_size: int = at_least(1, 256)
    batch_size: int = at_least(1, 64)
    num_workers: int = at_least(0, 0)
    train_size: Optional[int] = at_least(0, None, special=(None,))  # caps: evenly spaced subsets; None/0 = all
    val_size: Optional[int] = at_least(0, None, special=(None,))
    test_size: Optional[int] = at_least(0, None, special=(None,))
    scale_jitter: float = bounded(0.25, 0, 1)
    rotation_deg: float = bounded(30.0, 0, 180)
    flip: bool = True
    photometric: bool = True
    crop_margin: float = positive(DEFAULT_MARGIN)  # crop side = 200 * scale * crop_margin full-image pixels
    actions: list[str] = field(default_factory=list)  # keep only records of these action names, every split; [] = all


class RecordDataModule(PoseDataModule):
    """Shared machinery of real-data modules: configuration, the action filter, size caps,
    datasets and loaders."""

    Config = RecordDataConfig
    dataset_name = "dataset"
    # the expected layout, one line (used in error messages) and as a picture (check output)
    layout_line = ""
    layout_tree = ""
    reference_key = ""  # a per-person reference length batches carry (see RecordDataset)

    def __init__(self, cfg: dict):
        super().__init__(self.Config(**cfg))
        self.action_filter = action_ids(self.cfg.actions, self.action_names)  # None = every action
        self.root = Path(self.cfg.root).expanduser() if self.cfg.root else None
        if self.root is None:
            raise self.layout_error(f"data.root is not set; expected the path of your {self.dataset_name} copy")
        if not self.root.is_dir():
            raise self.layout_error(f"data.root={self.root} is not a folder; expected the {self.dataset_name} root")
        self.datasets: dict[str, RecordDataset] = {}
        self._records: dict[str, Sequence[PoseRecord]] = {}
        self.check_layout()

    # -- to implement -------------------------------------------------------------------
    def load_records(self, split: str) -> Sequence[PoseRecord]:
        raise NotImplementedError

    def check(self) -> str:
        raise NotImplementedError

    def check_layout(self) -> None:
        """Cheap existence checks run by the constructor; raise :meth:`layout_error`."""

    # -- shared -------------------------------------------------------------------------
    def layout_error(self, message: str) -> DatasetLayoutError:
        """A :class:`DatasetLayoutError` with the expected layout appended to the one-line message."""
        line = f"{message}; expected layout: {self.layout_line}" if self.layout_line else message
        return DatasetLayoutError(line, self.layout_tree)

    def require(self, relative: str | Path) -> Path:
        """``root / relative``, or a layout error naming it when it does not exist."""
        path = self.root / relative
        if not path.exists():
            raise self.layout_error(f"missing {path}")
        return path

    @property
    def test_subjects_label(self) -> str:
        subjects = sorted({int(r.subject) for r in self.records("test")[:: max(1, len(self.records("test")) // 200)]})
        return f"{', '.join(map(str, subjects))} ({self.dataset_name})"

    def split_size(self, split: str) -> int:
        return len(self.records(split))

    def empty_split_error(self, split: str) -> DatasetLayoutError:
        what = f"has no record of data.actions={list(self.cfg.actions)}" if self.cfg.actions else "is empty (0 frames)"
        return DatasetLayoutError(f"the {split} split of {self.root} {what}; expected frames in every split a run reads: "
                                  f"see the split settings (data.*) and `python -m pose3d.data check {self.cfg.name} "
                                  f"{self.root}`, which lists each split")

    def split_cap(self, split: str) -> int | None:
        return {"train": self.cfg.train_size, "val": self.cfg.val_size, "test": self.cfg.test_size}[split]

    def all_records(self, split: str) -> Sequence[PoseRecord]:
        """The split's records before the action filter and the size cap (cached)."""
        key = f"all-{split}"
        if key not in self._records:
            self._records[key] = self.load_records(split)
        return self._records[key]

    def records(self, split: str) -> Sequence[PoseRecord]:
        """The split's records of the ``data.actions`` actions, after the size cap (``data.<split>_size``)."""
        if split not in self._records:
            kept = records_of_actions(self.all_records(split), self.action_filter)
            self._records[split] = cap_records(kept, self.split_cap(split))
        return self._records[split]

    def setup(self, stage: str | None = None) -> None:
        """Before fitting, make every split's records and look for a few of their frames, so that a
        wrong path or a missing image folder stops the run before training rather than at test time."""
        splits = {"fit": ("train", "val", "test"), "validate": ("val",), "test": ("test",)}.get(stage or "fit", ())
        for split in splits:
            self.probe_images(split)

    def probe_images(self, split: str, count: int = 8, records: Sequence[PoseRecord] | None = None) -> int:
        """Read ``count`` evenly spaced frames of ``split`` (its records after the caps, or ``records``)
        as training will: a missing frame is a layout error naming it, an empty, truncated or
        undecodable one a :class:`~pose3d.readers.FileFormatError`. Returns how many were read."""
        records = self.records(split) if records is None else records
        read = 0
        for i in evenly_spaced(len(records), count):
            relative = records[int(i)].image_path
            if relative:
                path = Path(relative) if Path(relative).is_absolute() else self.root / relative
                if not path.is_file():
                    raise self.layout_error(f"missing image {path} (one of {count} sampled {split} frames)")
                read_image(path)
                read += 1
        return read

    def images_line(self, split: str, count: int = 20) -> str:
        """``images: N sampled frames decode`` for a ``check`` report, after reading them (:meth:`probe_images`)."""
        read = self.probe_images(split, count, self.all_records(split))
        return f"images: {read} sampled {split} frames decode" if read else "images: none in this split"

    def pose_labels(self, split: str) -> PoseLabels:
        """The split's root-relative 3D labels from its records (no frame is read); 2D-only records
        give zeros and ``has_3d`` False; gravity from the cameras' rotations when every record has one."""
        records = self.records(split)
        joints = np.zeros((len(records), NUM_JOINTS, 3), dtype=np.float32)
        has_3d = np.zeros(len(records), dtype=bool)
        down = np.zeros((len(records), 3), dtype=np.float32)
        for k, record in enumerate(records):
            if record.joints_3d is not None:
                joints[k], has_3d[k] = record.joints_3d - record.joints_3d[:1], True
            if record.rotation is not None:
                down[k] = record.rotation[:, 1]
        known = bool(len(records)) and all(record.rotation is not None for record in records)
        return PoseLabels(torch.from_numpy(joints), torch.from_numpy(has_3d),
                          down=torch.from_numpy(down) if known else None)

    def make_augment(self) -> CropAugment | None:
        cfg = self.cfg
        if not (cfg.scale_jitter or cfg.rotation_deg or cfg.flip or cfg.photometric):
            return None
        return CropAugment(cfg.scale_jitter, cfg.rotation_deg, cfg.flip, cfg.photometric)

    def dataset(self, split: str) -> RecordDataset:
        if split not in self.datasets:
            records = self.records(split)
            if len(records) == 0:
                raise self.empty_split_error(split)
            augment = self.make_augment() if split == "train" else None
            self.datasets[split] = RecordDataset(records, self.root, self.cfg.image_size, augment, self.targets,
                                                 self.cfg.crop_margin, self.reference_key)
        return self.datasets[split]
