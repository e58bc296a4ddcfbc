"""Synthetic subjects: bone lengths, body-part volumes and clothing colours.

A subject is a pure function of its integer id, so subject 9 looks the same in every
run. Train subjects 1, 5, 6, 7, 8 and test subjects 9, 11 mirror Human3.6M Protocol #1:
the test bodies (proportions, thickness, clothes) are never seen in training. Training uses
further bodies beyond the protocol's five (:func:`train_subjects`, ``data.train_bodies``):
a network trained on five bodies learns those people (the baseline's quick preset: 190 mm on
20 unseen bodies after training on five, 147 mm after training on 200). Validation uses 20 unseen bodies (50..69), so that choosing a
checkpoint or a setting measures generalisation to new people without touching the test
subjects.

Canonical body frame (used by the pose sampler and the renderer before the camera
transform): millimetres, y down, the person facing -z (towards a camera at the origin
that looks along +z), the person's left on +x.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from pose3d.skeleton import JOINT_INDEX, NUM_JOINTS

TRAIN_SUBJECTS: tuple[int, ...] = (1, 5, 6, 7, 8)
# Twenty further bodies for validation, so that model selection faces unseen people (and not
# two who happen to resemble the training bodies) without ever looking at the test subjects.
VAL_SUBJECTS: tuple[int, ...] = tuple(range(50, 70))
TEST_SUBJECTS: tuple[int, ...] = (9, 11)
FIRST_EXTRA_TRAIN_SUBJECT = 100  # ids of training bodies beyond the protocol's five: 100, 101, ...


def train_subjects(count: int) -> tuple[int, ...]:
    """The ids of ``count`` training bodies: Human3.6M's five training subjects, then further
    bodies 100, 101, ... (never a validation or test id), so the test bodies stay unseen."""
    if count < 1:
        raise ValueError(f"need at least one training body, got {count}")
    extra = tuple(range(FIRST_EXTRA_TRAIN_SUBJECT, FIRST_EXTRA_TRAIN_SUBJECT + max(0, count - len(TRAIN_SUBJECTS))))
    return (TRAIN_SUBJECTS + extra)[:count]

# Mean bone length (mm) from each joint to its parent, close to Human3.6M's averages.
MEAN_BONE_LENGTHS = np.array(
    [0.0, 132.0, 442.0, 454.0, 132.0, 442.0, 454.0, 233.0, 257.0, 121.0, 115.0,
     151.0, 278.0, 252.0, 151.0, 278.0, 252.0],
    dtype=np.float32,
)

# Body parts as capsules between two joints (a sphere when both are the same joint):
# (name, joint a, joint b, mean radius in mm, colour slot).
# Colour slots: 0 skin, 1 shirt, 2 trousers, 3 shoes, 4 hair.
PARTS: tuple[tuple[str, int, int, float, int], ...] = (
    ("pelvis", 1, 4, 105.0, 2),
    ("lower_torso", 0, 7, 125.0, 1),
    ("upper_torso", 7, 8, 135.0, 1),
    ("shoulders", 11, 14, 62.0, 1),
    ("neck", 8, 9, 48.0, 0),
    ("head", 9, 10, 92.0, 0),
    ("r_thigh", 1, 2, 72.0, 2),
    ("r_shin", 2, 3, 52.0, 2),
    ("r_foot", 3, 3, 55.0, 3),
    ("l_thigh", 4, 5, 72.0, 2),
    ("l_shin", 5, 6, 52.0, 2),
    ("l_foot", 6, 6, 55.0, 3),
    ("l_upper_arm", 11, 12, 46.0, 1),
    ("l_forearm", 12, 13, 36.0, 0),
    ("l_hand", 13, 13, 42.0, 0),
    ("r_upper_arm", 14, 15, 46.0, 1),
    ("r_forearm", 15, 16, 36.0, 0),
    ("r_hand", 16, 16, 42.0, 0),
)
NUM_PARTS = len(PARTS)
NUM_COLOUR_SLOTS = 5
PART_JOINTS = np.array([[a, b] for _, a, b, _, _ in PARTS], dtype=np.int64)
PART_COLOUR_SLOT = np.array([slot for *_, slot in PARTS], dtype=np.int64)
MEAN_PART_RADII = np.array([r for _, _, _, r, _ in PARTS], dtype=np.float32)
PART_INDEX = {name: i for i, (name, *_) in enumerate(PARTS)}


@dataclass(frozen=True)
class SubjectBody:
    """One synthetic person: its id, bone lengths (17,), part radii (P,) and colours (5, 3) in [0, 1]."""

    subject: int
    bone_lengths: np.ndarray
    part_radii: np.ndarray
    colours: np.ndarray


def make_subject(subject: int) -> SubjectBody:
    """The body of subject ``subject`` (deterministic in the id)."""
    rng = np.random.default_rng(1_000_003 * (subject + 1))
    stature = rng.normal(1.0, 0.06)
    per_bone = rng.normal(1.0, 0.035, size=NUM_JOINTS)
    per_bone[[4, 5, 6]] = per_bone[[1, 2, 3]]  # symmetric limbs
    per_bone[[14, 15, 16]] = per_bone[[11, 12, 13]]
    bone_lengths = (MEAN_BONE_LENGTHS * stature * per_bone).astype(np.float32)
    girth = rng.normal(1.0, 0.12)
    part_radii = (MEAN_PART_RADII * girth * rng.normal(1.0, 0.05, size=NUM_PARTS)).astype(np.float32)
    skin = np.array([0.95, 0.78, 0.65]) * rng.uniform(0.45, 1.0)
    shirt, trousers, shoes = rng.uniform(0.05, 0.95, size=(3, 3))
    hair = np.array([0.25, 0.17, 0.10]) * rng.uniform(0.2, 2.5)
    colours = np.clip(np.stack([skin, shirt, trousers, shoes * 0.5, hair]), 0.0, 1.0).astype(np.float32)
    return SubjectBody(subject, bone_lengths, part_radii, colours)


def facing_direction(joints: Tensor) -> Tensor:
    """Unit forward direction (B, 3) of people (B, 17, 3): ``(l_hip - r_hip) x (thorax - pelvis)``,
    which is -z in the canonical frame (the person faces the camera)."""
    j = JOINT_INDEX
    forward = torch.cross(joints[:, j["l_hip"]] - joints[:, j["r_hip"]], joints[:, j["thorax"]] - joints[:, j["pelvis"]], dim=-1)
    return forward / forward.norm(dim=-1, keepdim=True).clamp(min=1e-6)


def accessory_capsules(joints: Tensor, part_radii: Tensor, colours: Tensor) -> Tensor:
    """Feet, a nose and hair as capsules (B, 4, 10) in the renderer's layout (start, end, radius, rgb).

    Capsule limbs alone look the same from the front and from the back; real people do not.
    Feet point forward from the ankles, the nose sits on the front of the head and the hair
    covers its back, so the facing direction can be seen, as in real images. ``colours`` is
    (B, 5, 3) by colour slot (:attr:`SubjectBody.colours`); ``part_radii`` (B, P).
    """
    j, p = JOINT_INDEX, PART_INDEX
    forward = facing_direction(joints)[:, None]  # (B, 1, 3)
    foot_radius = part_radii[:, [p["r_foot"], p["l_foot"]], None] * 0.75
    ankles = joints[:, [j["r_ankle"], j["l_ankle"]]]
    toes = ankles + forward * 3.0 * foot_radius
    head_centre = (joints[:, j["neck"]] + joints[:, j["head"]])[:, None] / 2
    head_radius = part_radii[:, p["head"], None, None]
    nose = head_centre + forward * head_radius
    hair = head_centre - forward * 0.25 * head_radius
    starts = torch.cat((ankles, nose, hair), 1)
    ends = torch.cat((toes, nose, hair), 1)
    radii = torch.cat((foot_radius, head_radius * 0.25, head_radius * 0.85), 1)
    rgb = colours[:, [3, 3, 0, 4]]  # shoes, shoes, skin, hair
    return torch.cat((starts, ends, radii, rgb), -1)
