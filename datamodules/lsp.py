"""Leeds Sports Pose (Johnson & Everingham 2010) and LSP extended: 2D-only, PCK@0.2 of the torso.

Layout::

    <data.root>/joints.mat             'joints' 3x14xN (LSP, N = 2000)
    <data.root>/images/im0001.jpg ...  image n (1-based) is im%04d.jpg
    <data.extended_root>/joints.mat    optional LSP extended: 'joints' 14x3xN (N = 10000)
    <data.extended_root>/images/im00001.jpg ...   im%05d.jpg

Which file is which is read from the array's shape (3x14xN: LSP; 14x3xN: LSP extended), so
``data.root`` may also point at an LSP-extended copy. The third value of each joint is a flag
whose meaning differs between the two releases (the known quirk, handled as the common code
bases do, e.g. the Convolutional Pose Machines preprocessing that uses ``1 - flag`` for LSP):

* LSP (3x14xN): 0 = visible, 1 = occluded. Every joint is labelled (occluded ones carry the
  annotator's estimate), so all 14 are ``visible`` (= labelled) and evaluated; the flag is
  kept as :attr:`LSPRecord.occluded`.
* LSP extended (14x3xN): 1 = visible, 0 = not visible; those joints are masked (``visible``
  False) because their positions are unreliable in that crowd-sourced release.

Splits: the standard LSP split is the first 1000 images for training and the last 1000 for
testing; a copy with fewer images (tests) is cut in half the same way (first ``min(1000, N//2)``
train, the rest (at most 1000) test). Validation uses the test images (LSP has no validation
split). LSP-extended images (``data.extended_root``, or ``data.root`` itself when it holds the
extended file) are all training images. MATLAB's 1-based pixels become 0-based (-1). The person
box is the labelled joints' square enlarged by 1.1; the crop adds its 1.25 margin.

Joints map to H36M-17 with :func:`pose3d.skeleton.map_to_h36m` (LSP's neck is our thorax,
head top our head; pelvis, spine and neck/nose are masked). PCK@0.2 (:func:`pck`) counts a
joint as correct within 0.2 x the torso size, ``||left shoulder - right hip||`` of the ground
truth (the reference pair of the usual LSP PCK code), over all 14 joints; batches carry
``torso_size`` (B,) in crop pixels. :data:`LSP_BONES` gives 9 of the 10 LSP PCP parts (all but
the torso, whose hip centre LSP lacks) for :class:`pose3d.metrics.PCP`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from datamodules.mpi_inf_3dhp import JOINT_BOX_TO_PERSON, person_box
from datamodules.records import DatasetLayoutError, PoseRecord, RecordDataConfig, RecordDataModule
from pose3d.metrics import functional as PF
from pose3d.readers import read_mat
from pose3d.skeleton import JOINT_INDEX, PART_PAIRS, SUBSET_14, map_to_h36m

STANDARD_SPLIT = 1000
TORSO_PAIR = (JOINT_INDEX["l_shoulder"], JOINT_INDEX["r_hip"])
PCK_GROUPS: dict[str, tuple[int, ...]] = {
    "Head": (JOINT_INDEX["head"], JOINT_INDEX["thorax"]),  # head top, neck
    **PART_PAIRS,
}
# LSP PCP parts in H36M indices: lower and upper legs and arms, and the head (head top -> neck).
# The torso part (neck -> hip centre) is left out: LSP has no pelvis joint, ours stays masked.
LSP_BONES: tuple[tuple[int, int], ...] = (
    (JOINT_INDEX["r_ankle"], JOINT_INDEX["r_knee"]), (JOINT_INDEX["r_knee"], JOINT_INDEX["r_hip"]),
    (JOINT_INDEX["l_ankle"], JOINT_INDEX["l_knee"]), (JOINT_INDEX["l_knee"], JOINT_INDEX["l_hip"]),
    (JOINT_INDEX["r_wrist"], JOINT_INDEX["r_elbow"]), (JOINT_INDEX["r_elbow"], JOINT_INDEX["r_shoulder"]),
    (JOINT_INDEX["l_wrist"], JOINT_INDEX["l_elbow"]), (JOINT_INDEX["l_elbow"], JOINT_INDEX["l_shoulder"]),
    (JOINT_INDEX["head"], JOINT_INDEX["thorax"]),
)

LAYOUT_LINE = "joints.mat (3x14xN) and images/im0001.jpg ... (LSP extended: joints.mat 14x3xN, images/im00001.jpg)"
LAYOUT_TREE = """\
<data.root>/joints.mat          'joints' 3x14x2000
<data.root>/images/im0001.jpg ... im2000.jpg
<data.extended_root>/joints.mat 'joints' 14x3x10000 (optional)
<data.extended_root>/images/im00001.jpg ..."""


@dataclass
class LSPRecord(PoseRecord):
    torso_size: float = float("nan")  # ||l_shoulder - r_hip||, full-image pixels
    occluded: np.ndarray | None = None  # (17,) bool, LSP's occlusion flag (H36M order)


def torso_size(joints_h36m) -> np.ndarray | Tensor:
    """``||left shoulder - right hip||`` of H36M-ordered joints (..., 17, 2)."""
    a, b = joints_h36m[..., TORSO_PAIR[0], :], joints_h36m[..., TORSO_PAIR[1], :]
    if isinstance(a, Tensor):
        return torch.linalg.vector_norm(a - b, dim=-1)
    return np.linalg.norm(np.asarray(a) - np.asarray(b), axis=-1)


def pck(pred: Tensor, target: Tensor, visible: Tensor | None = None, alpha: float = 0.2,
        reference: Tensor | None = None) -> dict[str, float]:
    """PCK@alpha in percent over the 14 LSP joints, threshold ``alpha * reference`` with the torso
    size of ``target`` as default reference. pred, target (B, 17, 2) H36M order; visible (B, 17).
    Returns ``pck`` and ``pck/<group>`` (Head, Shoulder, ..., Ankle)."""
    pred, target = torch.as_tensor(pred, dtype=torch.float64), torch.as_tensor(target, dtype=torch.float64)
    reference = torso_size(target) if reference is None else torch.as_tensor(reference, dtype=torch.float64)
    valid = torch.ones(pred.shape[:2], dtype=torch.bool) if visible is None else torch.as_tensor(visible).bool()

    def over(joints: Sequence[int]) -> float:
        mask = torch.zeros_like(valid)
        mask[:, list(joints)] = True
        return float(PF.pckh(pred, target, reference, alpha, valid & mask))  # same formula, other reference

    out = {"pck": over(SUBSET_14)}
    out.update({f"pck/{name}": over(joints) for name, joints in PCK_GROUPS.items()})
    return out


def read_lsp_joints(path: Path) -> tuple[np.ndarray, str]:
    """``joints.mat`` -> (joints (N, 14, 3) as x, y, flag; 'lsp' or 'lspet') by the array's shape."""
    path = Path(path)
    if not path.is_file():
        raise DatasetLayoutError(f"missing {path}; expected layout: {LAYOUT_LINE}", LAYOUT_TREE)
    content = read_mat(path, "LSP's joints.mat (3x14xN or 14x3xN 'joints')", ("joints",), finite=("joints",))
    joints = np.asarray(content["joints"], dtype=np.float64)
    if joints.ndim == 2:
        joints = joints[..., None]
    if joints.shape[:2] == (3, 14):
        return joints.transpose(2, 1, 0), "lsp"
    if joints.shape[:2] == (14, 3):
        return joints.transpose(2, 0, 1), "lspet"
    raise DatasetLayoutError(f"{path}: 'joints' is {joints.shape}; expected 3x14xN (LSP) or 14x3xN (LSP extended)")


def lsp_records(joints: np.ndarray, variant: str, image_dir: str) -> list[LSPRecord]:
    """Records of ``joints`` (N, 14, 3) from :func:`read_lsp_joints`; images ``<image_dir>/im%04d.jpg``
    (LSP) or ``im%05d.jpg`` (extended), paths relative to the dataset root."""
    digits = 4 if variant == "lsp" else 5
    records = []
    for n, joint in enumerate(joints):
        points, mask = map_to_h36m(joint[:, :2] - 1.0, "lsp")
        flag, _ = map_to_h36m(joint[:, 2:], "lsp")
        flag = flag[:, 0] > 0.5
        labelled = mask & np.isfinite(points).all(1)
        if variant == "lsp":  # flag 1 = occluded, every joint labelled
            visible, occluded = labelled, labelled & flag
        else:  # LSP extended: flag 1 = visible
            visible, occluded = labelled & flag, labelled & ~flag
        center, scale = person_box(points, visible)
        records.append(LSPRecord(
            image_path=f"{image_dir}/im{n + 1:0{digits}d}.jpg", center=center, scale=scale,
            joints_2d=points.astype(np.float32), visible=visible, torso_size=float(torso_size(points)),
            occluded=occluded,
        ))
    return records


def standard_split(n: int) -> tuple[range, range]:
    """LSP's train/test indices: first 1000 / last 1000 of 2000; a smaller copy is halved."""
    half = min(STANDARD_SPLIT, n // 2)
    return range(0, half), range(half, min(n, half + STANDARD_SPLIT))


@dataclass
class LSPConfig(RecordDataConfig):
    name: str = "lsp"
    extended_root: Optional[str] = None  # LSP extended, added to the training images


class LSPDataModule(RecordDataModule):
    """LSP as a 2D-only source: first 1000 images train, last 1000 test (= val)."""

    Config = LSPConfig
    dataset_name = "LSP"
    has_3d_labels = False
    person_box_padding = JOINT_BOX_TO_PERSON  # person_box pads the joints' box
    layout_line = LAYOUT_LINE
    layout_tree = LAYOUT_TREE
    reference_key = "torso_size"
    eval_joints = SUBSET_14  # LSP's 14 joints, scored with PCK@0.2 of the torso

    def extended_path(self) -> Path | None:
        return Path(self.cfg.extended_root).expanduser() if self.cfg.extended_root else None

    def check_layout(self) -> None:
        self.require("joints.mat")
        self.require("images")
        extended = self.extended_path()
        if extended is not None:
            for name in ("joints.mat", "images"):
                if not (extended / name).exists():
                    raise self.layout_error(f"missing {extended / name} (data.extended_root)")

    def check(self) -> str:
        self.check_layout()
        joints, variant = read_lsp_joints(self.root / "joints.mat")
        lines = [f"LSP at {self.root}: {len(joints)} images ({variant})"]
        for split in ("train", "test"):
            lines.append(f"  {split}: {len(self.all_records(split))} images; {self.images_line(split)}")
        return "\n".join(lines)

    def load_records(self, split: str) -> Sequence[LSPRecord]:
        joints, variant = read_lsp_joints(self.root / "joints.mat")
        records = lsp_records(joints, variant, "images")
        if variant == "lspet":
            chosen = records if split == "train" else []
        else:
            train, test = standard_split(len(records))
            chosen = [records[i] for i in (train if split == "train" else test)]
        extended = self.extended_path()
        if split == "train" and extended is not None:
            ext_joints, ext_variant = read_lsp_joints(extended / "joints.mat")
            chosen = chosen + lsp_records(ext_joints, ext_variant, str((extended / "images").resolve()))
        return chosen
