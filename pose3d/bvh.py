"""BVH motion capture files: parsing, forward kinematics, and H36M-17 poses.

A BVH file has a HIERARCHY (joints with an OFFSET from their parent and a list
of CHANNELS) and a MOTION block (one row of channel values per frame).  Here:

* :func:`load_bvh` parses a file and runs forward kinematics for all frames at
  once, giving the world position of every joint and end site in file units.
* :func:`bvh_to_h36m` turns that into H36M-17 poses (mm, project camera frame,
  root-relative) using the rig tables of :mod:`pose3d.skeleton`.
* :func:`load_bvh_poses` does this for a file or a whole folder.

Conventions (those of the common exporters, checked on the CMU, iClone and Daz
files of ``../shared/data/cmu_bvh``): a joint's local transform is a
translation by OFFSET plus any position channels, followed by the rotation
``R = R_a1 @ R_a2 @ R_a3`` of its rotation channels in the order they are
listed (angles in degrees, right-handed); world = parent_world @ local.
"""
from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pose3d.config import ConfigError
from pose3d.readers import read_text, require_finite
from pose3d.skeleton import BVH_RIGS, JOINT_INDEX, NUM_JOINTS, ROOT, BvhRig, detect_bvh_rig

END_SUFFIX = "_end"
_MAX_CHANNELS = 6  # three positions and three rotations per joint
_CHANNEL = re.compile(r"[XYZ](position|rotation)", re.IGNORECASE)

# file frame (Y up, character facing +Z, its left at +X) -> project camera
# frame (x right, y down, z forward): a 180 degree turn about x.  It is a
# proper rotation (det +1), so left stays left; the person faces the camera.
FILE_TO_PROJECT = np.diag([1.0, -1.0, -1.0])

# Typical thigh (hip to knee) length in mm, for guessing a file's unit.
_THIGH_MM = 420.0
_CANDIDATE_UNITS_MM = {"mm": 1.0, "cm": 10.0, "inch": 25.4, "cmu_asf": 25.4 / 0.45, "m": 1000.0}


@dataclass
class BvhMotion:
    """A parsed BVH file.  Joints are in file order (parents before children);
    end sites are joints too, named '<parent>_end' ('<parent>_end1', ... for
    further ones under the same joint) and with no channels."""

    joint_names: list[str]
    parents: np.ndarray  # (N,) int, -1 for a root
    offsets: np.ndarray  # (N, 3) rest offsets from the parent, file units
    frame_time: float  # seconds per frame
    positions: np.ndarray  # (T, N, 3) world positions, file units
    channels: list[tuple[str, ...]] = field(default_factory=list)  # per joint, as in the file
    path: str | None = None

    @property
    def num_frames(self) -> int:
        return self.positions.shape[0]

    @property
    def fps(self) -> float:
        return 1.0 / self.frame_time

    def index(self, name: str) -> int:
        """Index of a joint (or end site) by name."""
        return self.joint_names.index(name)

    def joint(self, name: str) -> np.ndarray:
        """(T, 3) world positions of one joint."""
        return self.positions[:, self.index(name)]


# ----------------------------------------------------------------- parsing

@dataclass
class _Hierarchy:
    names: list[str]
    parents: list[int]
    offsets: list[list[float]]
    channels: list[tuple[str, ...]]


def _parse_hierarchy(tokens: list[str], where: str) -> _Hierarchy:
    """Read the whitespace tokens of the HIERARCHY section (any indentation)."""
    h = _Hierarchy([], [], [], [])
    stack: list[int] = []  # open joints
    pending: str | None = None  # name declared, '{' not yet seen
    i = 0
    try:
        while i < len(tokens):
            tok = tokens[i]
            if tok in ("ROOT", "JOINT"):
                pending, i = tokens[i + 1], i + 2
            elif tok == "End":  # 'End Site'
                base, k = h.names[stack[-1]] + END_SUFFIX, 1
                pending = base
                while pending in h.names:  # rare: several end sites under one joint
                    pending, k = f"{base}{k}", k + 1
                i += 2
            elif tok == "{":
                if pending is None:
                    raise ValueError("'{' without a joint")
                h.names.append(pending)
                h.parents.append(stack[-1] if stack else -1)
                h.offsets.append([0.0, 0.0, 0.0])
                h.channels.append(())
                stack.append(len(h.names) - 1)
                pending, i = None, i + 1
            elif tok == "}":
                stack.pop()
                i += 1
            elif tok == "OFFSET":
                h.offsets[stack[-1]] = [float(v) for v in tokens[i + 1:i + 4]]
                i += 4
            elif tok == "CHANNELS":
                n = int(tokens[i + 1])
                names = tuple(tokens[i + 2:i + 2 + n]) if 0 <= n <= _MAX_CHANNELS else ()
                if len(names) != n or not all(_CHANNEL.fullmatch(name) for name in names):
                    raise ValueError(f"CHANNELS {n} {' '.join(names)}: expected 0 to {_MAX_CHANNELS} names such as "
                                     "Xposition, Zrotation")
                h.channels[stack[-1]] = names
                i += 2 + n
            else:
                raise ValueError(f"unexpected token {tok!r}")
    except (IndexError, ValueError) as err:
        raise ValueError(f"{where}: malformed BVH HIERARCHY ({err})") from None
    if stack or not h.names:
        raise ValueError(f"{where}: malformed BVH HIERARCHY (unbalanced braces or no joints)")
    return h


def _split_file(text: str, where: str) -> tuple[list[str], int, float, str]:
    """Split BVH text into hierarchy tokens, frame count, frame time and the motion numbers."""
    head, sep, motion = text.partition("MOTION")
    tokens = head.split()
    if not sep or not tokens or tokens[0] != "HIERARCHY":
        raise ValueError(f"{where}: not a BVH file (needs HIERARCHY ... MOTION)")
    lines = motion.lstrip().split("\n", 2)
    try:
        frames_line, time_line = lines[0], lines[1]
        num_frames = int(frames_line.split(":")[1])
        frame_time = float(time_line.split(":")[1])
        if not frames_line.strip().startswith("Frames") or not time_line.strip().startswith("Frame Time"):
            raise ValueError
    except (IndexError, ValueError):
        raise ValueError(f"{where}: MOTION must start with 'Frames: N' and 'Frame Time: t'") from None
    return tokens[1:], num_frames, frame_time, lines[2] if len(lines) > 2 else ""


# ------------------------------------------------------ forward kinematics

def _axis_rotations(axis: str, degrees: np.ndarray) -> np.ndarray:
    """(T, 3, 3) right-handed rotations by ``degrees`` about the axis 'X', 'Y' or 'Z'."""
    a = np.deg2rad(degrees)
    c, s = np.cos(a), np.sin(a)
    r = np.zeros(a.shape + (3, 3))
    i = "XYZ".index(axis)
    j, k = (i + 1) % 3, (i + 2) % 3
    r[:, i, i] = 1.0
    r[:, j, j] = c
    r[:, k, k] = c
    r[:, k, j] = s
    r[:, j, k] = -s
    return r


def euler_to_matrix(angles_deg: np.ndarray, order: str) -> np.ndarray:
    """Rotation matrices from Euler angles given in BVH channel order.

    angles_deg: (T, len(order)) degrees; order e.g. 'ZYX' means the file lists
    Zrotation Yrotation Xrotation, and R = Rz(a0) @ Ry(a1) @ Rx(a2).
    Returns (T, 3, 3).
    """
    angles_deg = np.asarray(angles_deg, dtype=np.float64)
    r = np.broadcast_to(np.eye(3), (angles_deg.shape[0], 3, 3)).copy()
    for col, axis in enumerate(order):
        r = r @ _axis_rotations(axis, angles_deg[:, col])
    return r


def _forward_kinematics(h: _Hierarchy, values: np.ndarray) -> np.ndarray:
    """(T, N, 3) world positions from the (T, C) channel values."""
    num_frames = values.shape[0]
    n = len(h.names)
    positions = np.zeros((num_frames, n, 3))
    rotations = np.zeros((num_frames, n, 3, 3))
    col = 0
    for j in range(n):
        chans = h.channels[j]
        local_t = np.broadcast_to(np.asarray(h.offsets[j]), (num_frames, 3)).copy()
        order, rot_cols = "", []
        for c, name in enumerate(chans):
            axis, kind = name[0].upper(), name[1:].lower()
            if kind == "position":
                local_t[:, "XYZ".index(axis)] += values[:, col + c]
            elif kind == "rotation":
                order += axis
                rot_cols.append(col + c)
            else:
                raise ValueError(f"unknown BVH channel {name!r} of joint {h.names[j]!r}")
        col += len(chans)
        local_r = euler_to_matrix(values[:, rot_cols], order)
        p = h.parents[j]
        if p < 0:
            positions[:, j] = local_t
            rotations[:, j] = local_r
        else:
            positions[:, j] = positions[:, p] + np.einsum("tab,tb->ta", rotations[:, p], local_t)
            rotations[:, j] = rotations[:, p] @ local_r
    return positions


class BvhError(ConfigError):
    """A BVH file that cannot be read; the message is one line naming the file."""


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def load_bvh(path: str | Path) -> BvhMotion:
    """Parse a BVH file and compute world positions of all joints and end sites.

    Any rotation order, position channels on any joint, several roots.
    Positions are in file units and the file's axes.
    """
    path = Path(path)
    text = read_text(path, "a BVH text file with HIERARCHY and MOTION")
    try:
        tokens, num_frames, frame_time, numbers = _split_file(text, str(path))
        h = _parse_hierarchy(tokens, str(path))
    except ValueError as error:
        raise BvhError(str(error)) from None
    num_channels = sum(len(c) for c in h.channels)
    try:
        values = np.array(numbers.split(), dtype=np.float64)
    except ValueError:
        bad = next(t for t in numbers.split() if not _is_number(t))
        raise BvhError(f"{path}: the MOTION section holds {bad!r}; expected numbers only") from None
    if num_channels == 0 or values.size % num_channels:
        raise BvhError(f"{path}: {values.size} motion values do not fill rows of {num_channels} channels")
    require_finite(path, "MOTION", values, "finite channel values in a BVH file")
    values = values.reshape(-1, num_channels)
    if values.shape[0] != num_frames:
        warnings.warn(f"{path}: header says {num_frames} frames, file has {values.shape[0]}", stacklevel=2)
    return BvhMotion(
        joint_names=h.names,
        parents=np.asarray(h.parents, dtype=np.int64),
        offsets=np.asarray(h.offsets, dtype=np.float64),
        frame_time=frame_time,
        positions=_forward_kinematics(h, values),
        channels=h.channels,
        path=str(path),
    )


# ------------------------------------------------------------ to H36M-17

def guess_unit_mm(thigh_length: float) -> float:
    """Length of one file unit in mm, the common unit that makes a thigh ~420 mm."""
    return min(_CANDIDATE_UNITS_MM.values(),
               key=lambda u: abs(math.log(thigh_length * u / _THIGH_MM)))


def _resolve_rig(motion: BvhMotion, rig: str | BvhRig | None) -> BvhRig:
    if isinstance(rig, BvhRig):
        return rig
    if rig is not None:
        if rig not in BVH_RIGS:
            raise ValueError(f"unknown BVH rig {rig!r}; known: {', '.join(BVH_RIGS)}")
        return BVH_RIGS[rig]
    found = detect_bvh_rig(motion.joint_names)
    if found is None:
        expected = "; ".join(f"{r.name}: {', '.join(r.required)}" for r in BVH_RIGS.values())
        raise ValueError(f"{motion.path or 'BVH motion'}: unknown rig, expected the joint names of one of {expected}")
    return found


def bvh_to_h36m(
    source: str | Path | BvhMotion,
    rig: str | BvhRig | None = None,
    unit_mm: float | None = None,
    root_relative: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """H36M-17 poses from a BVH file (or an already loaded :class:`BvhMotion`).

    rig: a name in ``pose3d.skeleton.BVH_RIGS`` (default: detected from the
    joint names; a ValueError names the file and the expected names if none
    fits).  unit_mm: millimetres per file unit (default: the rig's; if that is
    None, guessed from the thigh length).  Returns (poses (T, 17, 3) float32 in
    mm in the project camera frame (x right, y down, z forward; the person
    faces the camera), pelvis at the origin unless ``root_relative`` is False;
    mask (17,) bool, False for joints the rig lacks, which are zero).
    """
    motion = source if isinstance(source, BvhMotion) else load_bvh(source)
    spec = _resolve_rig(motion, rig)
    poses = np.zeros((motion.num_frames, NUM_JOINTS, 3))
    mask = np.zeros(NUM_JOINTS, dtype=bool)
    for name, joint in spec.joints.items():
        names = (joint,) if isinstance(joint, str) else joint
        poses[:, JOINT_INDEX[name]] = np.mean([motion.joint(n) for n in names], axis=0)
        mask[JOINT_INDEX[name]] = True
    if unit_mm is None:
        unit_mm = spec.unit_mm
    if unit_mm is None:
        thigh = np.linalg.norm(poses[:, JOINT_INDEX["l_knee"]] - poses[:, JOINT_INDEX["l_hip"]], axis=-1)
        unit_mm = guess_unit_mm(float(np.median(thigh)))
    poses = poses @ (FILE_TO_PROJECT.T * unit_mm)
    if root_relative:
        poses -= poses[:, ROOT:ROOT + 1]
    poses[:, ~mask] = 0.0
    return poses.astype(np.float32), mask


def load_bvh_poses(
    path_or_folder: str | Path,
    fps: float | None = None,
    rig: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """H36M-17 poses of one BVH file, or of every .bvh under a folder (sorted, recursive).

    fps: keep every k-th frame of each file, k = round(file fps / fps) (at
    least 1).  Returns (poses (N, 17, 3) float32 mm, root-relative, project
    frame; mask (17,) bool: the joints every file provides; others are zero).
    """
    path = Path(path_or_folder)
    files = sorted(path.rglob("*.bvh")) if path.is_dir() else [path]
    if not files:
        raise FileNotFoundError(f"no .bvh files under {path}")
    all_poses, mask = [], np.ones(NUM_JOINTS, dtype=bool)
    for file in files:
        motion = load_bvh(file)
        step = 1 if fps is None else max(1, round(motion.fps / fps))
        poses, file_mask = bvh_to_h36m(motion, rig=rig)
        all_poses.append(poses[::step])
        mask &= file_mask
    poses = np.concatenate(all_poses)
    poses[:, ~mask] = 0.0
    return poses, mask
