"""Skeleton definitions and the one place where other skeletons map into ours.

The project's joint order is Human3.6M's 17 joints (DESIGN.md). Every other
skeleton (MPI-INF-3DHP, MPII, CMU BVH rigs) is mapped into it here; a joint a
source does not have is *masked*, never invented.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

H36M_JOINTS: tuple[str, ...] = (
    "pelvis", "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle",
    "spine", "thorax", "neck", "head",
    "l_shoulder", "l_elbow", "l_wrist", "r_shoulder", "r_elbow", "r_wrist",
)
NUM_JOINTS = len(H36M_JOINTS)
JOINT_INDEX = {name: i for i, name in enumerate(H36M_JOINTS)}
ROOT = JOINT_INDEX["pelvis"]

# parent of every joint, -1 for the root
H36M_PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)

# (child, parent) pairs: the 16 bones of the kinematic tree
H36M_BONES: tuple[tuple[int, int], ...] = tuple(
    (j, p) for j, p in enumerate(H36M_PARENTS) if p >= 0
)
BONE_CHILDREN: tuple[int, ...] = tuple(child for child, _ in H36M_BONES)  # a bone's index -> its child joint
BONE_PARENTS: tuple[int, ...] = tuple(parent for _, parent in H36M_BONES)


def bone_vectors(joints):
    """(..., 17, 3) -> (..., 16, 3) child minus parent of every bone, :data:`H36M_BONES` order
    (numpy arrays or torch tensors)."""
    return joints[..., list(BONE_CHILDREN), :] - joints[..., list(BONE_PARENTS), :]


def bone_lengths(joints):
    """(..., 17, 3) -> (..., 16) lengths of the bones, :data:`H36M_BONES` order (torch tensors)."""
    return bone_vectors(joints).norm(dim=-1)

# left/right pairs, used to mirror poses and to swap labels when flipping images
H36M_LR_PAIRS: tuple[tuple[int, int], ...] = ((4, 1), (5, 2), (6, 3), (11, 14), (12, 15), (13, 16))


def flip_permutation(num_joints: int = NUM_JOINTS) -> list[int]:
    """Index permutation that swaps left and right joints (its own inverse)."""
    perm = list(range(num_joints))
    for left, right in H36M_LR_PAIRS:
        perm[left], perm[right] = right, left
    return perm


FLIP_PERMUTATION: tuple[int, ...] = tuple(flip_permutation())

# The 14-joint subset of LSP/MPII-style 2D data and of Protocols #2/#3: drops pelvis, spine, neck.
SUBSET_14: tuple[int, ...] = tuple(i for i in range(NUM_JOINTS) if i not in (0, 7, 9))

# Human3.6M's 32-joint mocap skeleton (VideoPose3D's files) -> our 17 joints: the source index
# of each of our joints (the H36M-17 skeleton is the subset of the 32 that it keeps).
H36M_32_TO_17: tuple[int, ...] = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)

# Left/right joint pairs that 2D benchmarks report as one part (MPII PCKh, LSP PCK tables);
# each benchmark adds its own "Head" pair.
PART_PAIRS: dict[str, tuple[int, int]] = {
    part: (JOINT_INDEX[f"l_{joint}"], JOINT_INDEX[f"r_{joint}"])
    for part, joint in (("Shoulder", "shoulder"), ("Elbow", "elbow"), ("Wrist", "wrist"),
                        ("Hip", "hip"), ("Knee", "knee"), ("Ankle", "ankle"))
}


# ---------------------------------------------------------------------------
# Other skeletons -> H36M-17.  Each source is a table: its joint names in the
# source's own order, and the H36M joint each of them *is*.  A source joint
# with no H36M counterpart maps to None; an H36M joint no source joint fills
# stays masked (zeros, mask False).  Nothing is interpolated or invented here.
# ---------------------------------------------------------------------------

# MPI-INF-3DHP test set, 17 joints ("relevant" joint set of the official
# evaluation code): 'neck' is the base of the neck (between the shoulders),
# 'head' the centre of the head (nose level), 'head_top' the crown.
MPI_INF_3DHP_17: tuple[str, ...] = (
    "head_top", "neck", "r_shoulder", "r_elbow", "r_wrist",
    "l_shoulder", "l_elbow", "l_wrist", "r_hip", "r_knee", "r_ankle",
    "l_hip", "l_knee", "l_ankle", "pelvis", "spine", "head",
)

# MPII Human Pose, 16 joints.  'thorax' is the base of the neck, 'upper_neck'
# the top of the neck under the chin, 'head_top' the crown.
MPII_16: tuple[str, ...] = (
    "r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "pelvis",
    "thorax", "upper_neck", "head_top", "r_wrist", "r_elbow", "r_shoulder",
    "l_shoulder", "l_elbow", "l_wrist",
)

# Leeds Sports Pose, 14 joints.
LSP_14: tuple[str, ...] = (
    "r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "r_wrist",
    "r_elbow", "r_shoulder", "l_shoulder", "l_elbow", "l_wrist", "neck", "head_top",
)

# Joint names that mean the same thing in every source and in H36M.
_LIMBS = {name: name for name in (
    "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle",
    "l_shoulder", "l_elbow", "l_wrist", "r_shoulder", "r_elbow", "r_wrist",
)}


@dataclass(frozen=True)
class SourceSkeleton:
    """A skeleton other than ours: joint names in its order and what they are in H36M.

    ``to_h36m`` maps a source joint name to the H36M joint name it is; source
    joints not listed have no H36M counterpart and are dropped.
    """

    name: str
    joints: tuple[str, ...]
    to_h36m: dict[str, str]

    def __post_init__(self) -> None:
        unknown = set(self.to_h36m) - set(self.joints)
        bad = set(self.to_h36m.values()) - set(H36M_JOINTS)
        if unknown or bad or len(set(self.to_h36m.values())) != len(self.to_h36m):
            raise ValueError(f"inconsistent skeleton table {self.name!r}: {unknown or bad or 'duplicate targets'}")

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    @property
    def source_index(self) -> np.ndarray:
        """(17,) int: for each H36M joint, the source joint index filling it, or -1."""
        index = np.full(NUM_JOINTS, -1, dtype=np.int64)
        for src, dst in self.to_h36m.items():
            index[JOINT_INDEX[dst]] = self.joints.index(src)
        return index

    @property
    def h36m_mask(self) -> np.ndarray:
        """(17,) bool: which H36M joints this source provides."""
        return self.source_index >= 0


SOURCE_SKELETONS: dict[str, SourceSkeleton] = {
    "h36m": SourceSkeleton("h36m", H36M_JOINTS, {name: name for name in H36M_JOINTS}),
    # 3DHP 'neck' (neck base) is our thorax, its 'head' (head centre, nose
    # level) our neck/nose, its 'head_top' our head; all 17 are present.
    "mpi_inf_3dhp": SourceSkeleton("mpi_inf_3dhp", MPI_INF_3DHP_17, {
        **_LIMBS, "pelvis": "pelvis", "spine": "spine", "neck": "thorax",
        "head": "neck", "head_top": "head",
    }),
    # MPII: thorax -> thorax, upper_neck (top of the neck) -> neck/nose,
    # head_top -> head.  MPII has no mid-back joint: our 'spine' stays masked.
    "mpii": SourceSkeleton("mpii", MPII_16, {
        **_LIMBS, "pelvis": "pelvis", "thorax": "thorax", "upper_neck": "neck",
        "head_top": "head",
    }),
    # LSP: its 'neck' is our thorax, as SUBSET_14 fixes (the 14-joint set is
    # H36M without pelvis, spine and neck/nose).
    "lsp": SourceSkeleton("lsp", LSP_14, {**_LIMBS, "neck": "thorax", "head_top": "head"}),
}


def _skeleton(source: str) -> SourceSkeleton:
    try:
        return SOURCE_SKELETONS[source.lower()]
    except KeyError:
        raise ValueError(f"unknown skeleton {source!r}; known: {', '.join(SOURCE_SKELETONS)}") from None


def map_to_h36m(points, source: str):
    """Place the joints of a ``source`` skeleton in their H36M-17 slots.

    points: (..., K, D) numpy array or torch tensor in the source's joint order.
    Returns (points (..., 17, D) of the same type, dtype and device, mask (17,)
    numpy bool).  Slots the source does not provide are zero with mask False.
    """
    skel = _skeleton(source)
    if points.shape[-2] != skel.num_joints:
        raise ValueError(f"{source} has {skel.num_joints} joints, got points of shape {tuple(points.shape)}")
    index = skel.source_index
    mask = index >= 0
    return _gather(points, index), mask


def h36m_to_subset(points, subset: str):
    """The inverse of :func:`map_to_h36m`: H36M-17 points in a source's joint order.

    points: (..., 17, D).  ``subset`` is a name in SOURCE_SKELETONS.
    Returns (points (..., K, D), mask (K,) numpy bool: the source joints H36M has).
    """
    skel = _skeleton(subset)
    if points.shape[-2] != NUM_JOINTS:
        raise ValueError(f"expected {NUM_JOINTS} H36M joints, got points of shape {tuple(points.shape)}")
    index = np.full(skel.num_joints, -1, dtype=np.int64)
    for src, dst in skel.to_h36m.items():
        index[skel.joints.index(src)] = JOINT_INDEX[dst]
    return _gather(points, index), index >= 0


def _gather(points, index: np.ndarray):
    """points[..., index, :] with zeros where index is -1 (numpy or torch alike)."""
    missing = index < 0
    out = points[..., np.where(missing, 0, index).tolist(), :]  # a copy for both
    out[..., missing.tolist(), :] = 0
    return out


# ---------------------------------------------------------------------------
# BVH rigs -> H36M-17 (parsing and forward kinematics live in pose3d/bvh.py).
# Each H36M joint is one rig joint, an end site ('<joint>_end'), or the
# midpoint of two joints where H36M defines it so (pelvis = hip centre).
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class BvhRig:
    """How a BVH rig's joints give the H36M joints.

    ``joints`` maps an H36M joint name to a rig joint name or a pair of names
    (midpoint); H36M joints not listed are masked.  ``unit_mm`` is the length
    of one file unit in millimetres (None: guess it from the thigh length).
    """

    name: str
    joints: dict[str, str | tuple[str, str]]
    unit_mm: float | None

    @property
    def required(self) -> tuple[str, ...]:
        """Every rig joint name the table refers to (used to recognise the rig)."""
        names: list[str] = []
        for spec in self.joints.values():
            names.extend([spec] if isinstance(spec, str) else spec)
        return tuple(dict.fromkeys(names))


BVH_RIGS: dict[str, BvhRig] = {
    # CMU ASF->BVH (cgspeed style).  One unit is the ASF 'length 0.45': 1/0.45
    # inch.  'Neck' is the top of the lower-neck bone, at shoulder height (our
    # thorax); 'Head' the top of the upper neck (our neck/nose); the head
    # bone's end site is the crown (our head).  'Chest' sits about halfway up
    # the back (our spine).
    "cmu_original": BvhRig("cmu_original", {
        "pelvis": ("LeftHip", "RightHip"),
        "r_hip": "RightHip", "r_knee": "RightKnee", "r_ankle": "RightAnkle",
        "l_hip": "LeftHip", "l_knee": "LeftKnee", "l_ankle": "LeftAnkle",
        "spine": "Chest", "thorax": "Neck", "neck": "Head", "head": "Head_end",
        "l_shoulder": "LeftShoulder", "l_elbow": "LeftElbow", "l_wrist": "LeftWrist",
        "r_shoulder": "RightShoulder", "r_elbow": "RightElbow", "r_wrist": "RightWrist",
    }, unit_mm=25.4 / 0.45),
    # Reallusion iClone Character Creator 'CC_Base' rig, centimetres.  The head
    # has facial bones and eyes but no crown joint or end site: head masked.
    "iclone_cc": BvhRig("iclone_cc", {
        "pelvis": ("CC_Base_L_Thigh", "CC_Base_R_Thigh"),
        "r_hip": "CC_Base_R_Thigh", "r_knee": "CC_Base_R_Calf", "r_ankle": "CC_Base_R_Foot",
        "l_hip": "CC_Base_L_Thigh", "l_knee": "CC_Base_L_Calf", "l_ankle": "CC_Base_L_Foot",
        "spine": "CC_Base_Spine02", "thorax": "CC_Base_NeckTwist01", "neck": "CC_Base_Head",
        "l_shoulder": "CC_Base_L_Upperarm", "l_elbow": "CC_Base_L_Forearm", "l_wrist": "CC_Base_L_Hand",
        "r_shoulder": "CC_Base_R_Upperarm", "r_elbow": "CC_Base_R_Forearm", "r_wrist": "CC_Base_R_Hand",
    }, unit_mm=10.0),
    # Daz/Poser-style rig of the acRNN release, centimetres.  The hip joints are
    # lThigh/rThigh (the 'Buttock' joints are offsets above them); the head
    # ends in the eyes, no crown: head masked.
    "acrnn_daz": BvhRig("acrnn_daz", {
        "pelvis": ("lThigh", "rThigh"),
        "r_hip": "rThigh", "r_knee": "rShin", "r_ankle": "rFoot",
        "l_hip": "lThigh", "l_knee": "lShin", "l_ankle": "lFoot",
        "spine": "chest", "thorax": "neck", "neck": "head",
        "l_shoulder": "lShldr", "l_elbow": "lForeArm", "l_wrist": "lHand",
        "r_shoulder": "rShldr", "r_elbow": "rForeArm", "r_wrist": "rHand",
    }, unit_mm=10.0),
}


def detect_bvh_rig(joint_names) -> BvhRig | None:
    """The BVH_RIGS entry whose joints all occur in ``joint_names``, or None."""
    present = set(joint_names)
    for rig in BVH_RIGS.values():
        if set(rig.required) <= present:
            return rig
    return None
