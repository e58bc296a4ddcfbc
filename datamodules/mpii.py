"""MPII Human Pose (Andriluka et al. 2014): a 2D-only source, and PCKh@0.5 as the official evaluation.

Two annotation formats are read (``data.annotations``; ``auto`` takes the first found):

``json``: the converted files of the common top-down code bases (HRNet, mmpose)::

    <data.root>/images/015601864.jpg ...
    <data.root>/annot/train.json, valid.json   [{"image", "center", "scale", "joints" 16x2, "joints_vis" 16}]
    <data.root>/annot/gt_valid.mat             optional: headboxes_src 2x2xN (the valid.json people, same order)

  ``train.json`` is the train split, ``valid.json`` (Tompson et al.'s 2958 people) val and test:
  the official test labels are withheld, so 2D papers report this split. Head sizes come from
  ``gt_valid.mat``; without it (and for train.json) see "head size" below.

``mat``: the official release ``mpii_human_pose_v1_u12_1.mat`` (``annot/``, the root, or
  ``mpii_human_pose_v1_u12_2/``), read with ``scipy.io.loadmat(struct_as_record=False,
  squeeze_me=True)``. Supported: ``RELEASE.annolist(i).image.name``; ``annorect`` (one struct or
  an array) with ``x1, y1, x2, y2`` (head box), ``scale``, ``objpos.x/y`` and
  ``annopoints.point`` (``id`` 0..15, ``x``, ``y``, ``is_visible`` as number, string or empty);
  ``RELEASE.img_train`` (only images with 1 and people with ``annopoints`` are used: the test
  images carry no joints); ``RELEASE.single_person`` (``data.single_person_only``). Not used:
  ``act``, ``video_list``, ``frame_sec``, ``vididx``. The release has no validation split: every
  ``data.holdout_every``-th usable image (by ``annolist`` index) is held out as val = test
  (this is *not* the standard split; use the json files to compare with papers).

Conventions. MATLAB pixel coordinates are 1-based; they are shifted by -1 to the project's
0-based pixel centres (joints, centre and head box alike). As in the common code bases the
person centre is moved 15 * scale px down (``objpos`` sits high on the torso); the crop adds
its 1.25 margin to ``200 * scale``. Joints map to H36M-17 with
:func:`pose3d.skeleton.map_to_h36m` (upper neck -> our neck/nose, head top -> head, thorax ->
thorax; spine is masked). ``visible`` means *labelled*: an unlabelled joint (``joints_vis`` 0,
or absent from ``annopoints``) is masked, an occluded but labelled one is kept, as the
official evaluation counts it.

Head size (PCKh). The official evaluation uses ``0.6 * ||(x2, y2) - (x1, y1)||``, the diagonal
of the annotated head rectangle (:func:`head_size_from_box`); records from the .mat file and
valid.json with ``gt_valid.mat`` have it (``head_size_source='head_box'``). Otherwise the head
segment ``||head_top - upper_neck||`` stands in (``'head_segment'``, an approximation; about the
same size on average). Batches carry ``head_size`` (B,) in crop pixels; :func:`pckh` evaluates
PCKh@0.5 with the official joint groups (the mean over 14 joints leaves out pelvis and thorax).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from datamodules.records import (
    DatasetLayoutError,
    PoseRecord,
    RecordDataConfig,
    RecordDataModule,
)
from pose3d.config import ConfigError, choice
from pose3d.metrics import functional as PF
from pose3d.readers import FileFormatError, read_json, read_mat, require_finite
from pose3d.skeleton import JOINT_INDEX, PART_PAIRS, map_to_h36m

HEAD_BOX_FACTOR = 0.6  # SC_BIAS of the official evaluation
CENTER_SHIFT = 15.0  # px per unit of scale: the person centre moves down by 15 * scale
RELEASE_NAME = "mpii_human_pose_v1_u12_1.mat"
JSON_FILE = "a list of MPII people {image, center, scale, joints (16 x 2), joints_vis (16)} (annot/train.json, valid.json)"
RELEASE_PLACES = (f"annot/{RELEASE_NAME}", RELEASE_NAME, f"mpii_human_pose_v1_u12_2/{RELEASE_NAME}")

# the official PCKh table: joint groups in the H36M order
PCKH_GROUPS: dict[str, tuple[int, ...]] = {
    "Head": (JOINT_INDEX["head"], JOINT_INDEX["neck"]),  # head top, upper neck
    **PART_PAIRS,
}
PCKH_JOINTS: tuple[int, ...] = tuple(sorted(j for group in PCKH_GROUPS.values() for j in group))

LAYOUT_LINE = (f"images/<name>.jpg with annot/train.json and annot/valid.json (optional annot/gt_valid.mat), "
               f"or the official annot/{RELEASE_NAME}")
LAYOUT_TREE = f"""\
<data.root>/
  images/015601864.jpg ...
  annot/train.json, valid.json     (HRNet/mmpose converted annotations)
  annot/gt_valid.mat               (optional: head boxes of the valid.json people)
  annot/{RELEASE_NAME}   (or the official release instead of the json files)"""


@dataclass
class MPIIRecord(PoseRecord):
    head_size: float = float("nan")  # full-image pixels (see the module docstring)
    head_size_source: str = ""  # 'head_box' or 'head_segment'


# --------------------------------------------------------------------------- reference lengths

def head_size_from_box(box) -> np.ndarray:
    """``0.6 * ||(x2, y2) - (x1, y1)||`` for boxes (..., 4) as (x1, y1, x2, y2)."""
    box = np.asarray(box, dtype=np.float64)
    return HEAD_BOX_FACTOR * np.hypot(box[..., 2] - box[..., 0], box[..., 3] - box[..., 1])


def head_segment(joints_h36m: np.ndarray) -> float:
    """``||head_top - upper_neck||`` of H36M-ordered MPII joints (the stand-in head size)."""
    return float(np.linalg.norm(joints_h36m[JOINT_INDEX["head"]] - joints_h36m[JOINT_INDEX["neck"]]))


def pckh(pred: Tensor, target: Tensor, head_size: Tensor, visible: Tensor | None = None,
         alpha: float = 0.5) -> dict[str, float]:
    """PCKh@alpha in percent, the official MPII table.

    pred, target (B, 17, 2) pixels in the H36M order; head_size (B,) in the same pixels;
    visible (B, 17) bool, the labelled joints. Returns ``pckh`` (mean over the 14 joints
    without pelvis and thorax) and ``pckh/<group>`` for Head, Shoulder, ..., Ankle.
    """
    pred, target = torch.as_tensor(pred, dtype=torch.float64), torch.as_tensor(target, dtype=torch.float64)
    head_size = torch.as_tensor(head_size, dtype=torch.float64)
    valid = torch.ones(pred.shape[:2], dtype=torch.bool) if visible is None else torch.as_tensor(visible).bool()

    def over(joints: Sequence[int]) -> float:
        mask = torch.zeros_like(valid)
        mask[:, list(joints)] = True
        return float(PF.pckh(pred, target, head_size, alpha, valid & mask))

    out = {"pckh": over(PCKH_JOINTS)}
    out.update({f"pckh/{name}": over(joints) for name, joints in PCKH_GROUPS.items()})
    return out


# --------------------------------------------------------------------------- parsing

def _mpii_to_record(image: str, center, scale: float, joints16: np.ndarray, labelled16: np.ndarray,
                    head_box=None) -> MPIIRecord:
    """One person from 1-based MPII values (see the module docstring for the conventions)."""
    joints, mask = map_to_h36m(np.asarray(joints16, dtype=np.float64) - 1.0, "mpii")
    labelled, _ = map_to_h36m(np.asarray(labelled16, dtype=np.float64)[:, None], "mpii")
    visible = mask & (labelled[:, 0] > 0) & np.isfinite(joints).all(1)
    center = np.asarray(center, dtype=np.float64) - 1.0
    center[1] += CENTER_SHIFT * scale
    if head_box is not None:
        head_size, source = float(head_size_from_box(head_box)), "head_box"
    else:
        head_size, source = head_segment(joints), "head_segment"
        if not (visible[JOINT_INDEX["head"]] and visible[JOINT_INDEX["neck"]]):
            head_size = float("nan")
    return MPIIRecord(image_path=f"images/{image}", center=center, scale=float(scale),
                      joints_2d=joints.astype(np.float32), visible=visible, head_size=head_size,
                      head_size_source=source)


def read_json_annotations(path: Path, head_boxes: np.ndarray | None = None) -> list[MPIIRecord]:
    """``annot/train.json`` / ``valid.json`` entries -> records; ``head_boxes`` (N, 4) optional."""
    entries = read_json(path, JSON_FILE)
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise FileFormatError(path, f"a JSON {type(entries).__name__} that is not a list of objects", JSON_FILE)
    if head_boxes is not None and len(head_boxes) != len(entries):
        raise DatasetLayoutError(f"{path} has {len(entries)} people but gt_valid.mat {len(head_boxes)} head boxes; expected the same")
    records = []
    for n, entry in enumerate(entries):
        missing = [k for k in ("image", "center", "scale", "joints", "joints_vis") if k not in entry]
        if missing:
            raise DatasetLayoutError(f"{path}: entry {n} lacks {', '.join(missing)}; expected image, center, scale, joints, joints_vis")
        try:
            joints = np.asarray(entry["joints"], dtype=np.float64)
            labelled = np.asarray(entry["joints_vis"], dtype=np.float64)
            center, scale = np.asarray(entry["center"], dtype=np.float64), np.asarray(entry["scale"], dtype=np.float64)
        except (TypeError, ValueError):
            raise FileFormatError(path, f"entry {n} holds values that are not numbers", JSON_FILE) from None
        if joints.shape != (16, 2) or labelled.size != 16 or center.shape != (2,) or scale.shape != ():
            raise DatasetLayoutError(f"{path}: entry {n} has joints of shape {joints.shape} and {labelled.size} joints_vis, "
                                     f"center {center.shape}, scale {scale.shape}; expected MPII's 16 joints (16x2 and 16), "
                                     "center (2,) and one scale")
        for key, values in (("joints", joints), ("center", center), ("scale", scale)):
            require_finite(path, f"[{n}].{key}", values, f"finite coordinates and scales in {JSON_FILE}")
        if not scale > 0:
            raise FileFormatError(path, f"entry {n} has scale {float(scale):g}", f"a person scale > 0 in {JSON_FILE}")
        records.append(_mpii_to_record(entry["image"], center, float(scale), joints, labelled.reshape(16),
                                       None if head_boxes is None else head_boxes[n]))
    return records


def read_gt_valid(path: Path) -> np.ndarray:
    """Head boxes (N, 4) as (x1, y1, x2, y2) from ``gt_valid.mat`` (``headboxes_src`` 2x2xN)."""
    content = read_mat(path, "the gt_valid.mat of the converted MPII annotations: headboxes_src (2, 2, N)",
                       shapes={"headboxes_src": (2, 2, None)}, finite=("headboxes_src",))
    boxes = np.asarray(content["headboxes_src"], dtype=np.float64)  # [corner, xy, person]
    return np.concatenate([boxes[0], boxes[1]], 0).T


def _field(struct, name: str, default=None):
    value = getattr(struct, name, default) if name in getattr(struct, "_fieldnames", ()) else default
    if isinstance(value, np.ndarray) and value.size == 0:
        return default
    return value


def read_release(path: Path, single_person_only: bool = False) -> list[tuple[int, MPIIRecord]]:
    """``(annolist index, record)`` for every annotated person of the training images of the
    official ``RELEASE`` struct (see the module docstring for what is supported)."""
    try:
        release = read_mat(path, f"the official {RELEASE_NAME}", struct_as_record=False, squeeze_me=True)["RELEASE"]
    except KeyError:
        raise FileFormatError(path, "no RELEASE struct", f"the official {RELEASE_NAME}") from None
    annolist = np.atleast_1d(release.annolist)
    img_train = np.atleast_1d(release.img_train).astype(np.int64)
    single = np.atleast_1d(_field(release, "single_person", np.array([], dtype=object)))
    out = []
    for i, anno in enumerate(annolist):
        if img_train[i] != 1:
            continue
        rects = _field(anno, "annorect")
        if rects is None:
            continue
        chosen = None
        if single_person_only:
            chosen = set(np.atleast_1d(single[i]).astype(np.int64).tolist()) if i < len(single) else set()
        name = str(anno.image.name)
        for r, rect in enumerate(np.atleast_1d(rects)):
            if chosen is not None and (r + 1) not in chosen:
                continue
            annopoints = _field(rect, "annopoints")
            points = None if annopoints is None else _field(annopoints, "point")
            objpos, scale = _field(rect, "objpos"), _field(rect, "scale")
            if points is None or objpos is None or scale is None:
                continue
            joints = np.zeros((16, 2))
            labelled = np.zeros(16)
            for point in np.atleast_1d(points):  # a listed point is labelled, whatever its is_visible
                j = int(point.id)
                if 0 <= j < 16:
                    joints[j] = (float(point.x), float(point.y))
                    labelled[j] = 1.0
            box = None
            if all(_field(rect, k) is not None for k in ("x1", "y1", "x2", "y2")):
                box = [float(_field(rect, k)) - 1.0 for k in ("x1", "y1", "x2", "y2")]
            record = _mpii_to_record(name, (float(objpos.x), float(objpos.y)), float(scale), joints, labelled, box)
            out.append((i, record))
    return out


# --------------------------------------------------------------------------- the DataModule

@dataclass
class MPIIConfig(RecordDataConfig):
    name: str = "mpii"
    annotations: str = choice("auto", ("auto", "json", "mat"))
    single_person_only: bool = False  # .mat only: keep the people listed in RELEASE.single_person
    holdout_every: int = 10  # .mat only: every k-th usable image is the val/test split

    def __post_init__(self) -> None:
        if self.holdout_every < 2:
            raise ConfigError(f"bad value for data.holdout_every: {self.holdout_every}; expected an integer >= 2")


class MPIIDataModule(RecordDataModule):
    """MPII as a 2D-only source: batches carry ``has_3d`` False and ``head_size`` (crop pixels)."""

    Config = MPIIConfig
    dataset_name = "MPII"
    has_3d_labels = False
    layout_line = LAYOUT_LINE
    layout_tree = LAYOUT_TREE
    reference_key = "head_size"
    eval_joints = PCKH_JOINTS  # the official PCKh table's 14 joints (no pelvis, no thorax)

    def __init__(self, cfg: dict):
        self._format: str | None = None
        self._release: list[tuple[int, MPIIRecord]] | None = None
        super().__init__(cfg)

    def release_path(self) -> Path | None:
        for place in RELEASE_PLACES:
            if (self.root / place).is_file():
                return self.root / place
        return None

    def annotation_format(self) -> str:
        if self._format is None:
            wanted = self.cfg.annotations
            if wanted in ("auto", "json") and (self.root / "annot" / "train.json").is_file():
                self._format = "json"
            elif wanted in ("auto", "mat") and self.release_path() is not None:
                self._format = "mat"
            elif wanted == "mat":
                raise self.layout_error(f"missing {self.root / RELEASE_PLACES[0]}")
            else:
                raise self.layout_error(f"missing {self.root / 'annot' / 'train.json'}")
        return self._format

    def check_layout(self) -> None:
        if self.annotation_format() == "json":
            self.require("annot/valid.json")
        if not (self.root / "images").is_dir():
            raise self.layout_error(f"missing {self.root / 'images'}")

    def check(self) -> str:
        self.check_layout()
        lines = [f"MPII at {self.root} ({self.annotation_format()} annotations)"]
        for split in ("train", "val"):
            records = self.all_records(split)
            sources = {r.head_size_source for r in records}
            lines.append(f"  {split}: {len(records)} people; head size from {', '.join(sorted(sources)) or '-'}; "
                         f"{self.images_line(split)}")
        return "\n".join(lines)

    def load_records(self, split: str) -> Sequence[MPIIRecord]:
        if self.annotation_format() == "json":
            if split == "train":
                return read_json_annotations(self.require("annot/train.json"))
            gt_valid = self.root / "annot" / "gt_valid.mat"
            boxes = read_gt_valid(gt_valid) if gt_valid.is_file() else None
            return read_json_annotations(self.require("annot/valid.json"), boxes)
        if self._release is None:
            self._release = read_release(self.release_path(), self.cfg.single_person_only)
        images = sorted({i for i, _ in self._release})
        held_out = set(images[:: self.cfg.holdout_every])
        return [r for i, r in self._release if (i in held_out) == (split != "train")]
