"""Synthetic subjects and the accessories that make the facing direction visible."""
from __future__ import annotations

import numpy as np
import torch

from pose3d.body import (
    PART_INDEX, TEST_SUBJECTS, TRAIN_SUBJECTS, VAL_SUBJECTS, accessory_capsules, facing_direction, make_subject,
)
from pose3d.pose_sampler import rest_pose
from pose3d.skeleton import JOINT_INDEX


def test_subjects_are_deterministic_and_distinct():
    a, b = make_subject(9), make_subject(9)
    assert np.array_equal(a.bone_lengths, b.bone_lengths) and np.array_equal(a.colours, b.colours)
    assert not np.allclose(make_subject(9).bone_lengths, make_subject(11).bone_lengths)
    assert not set(TRAIN_SUBJECTS) & set(VAL_SUBJECTS) and not set(TRAIN_SUBJECTS + VAL_SUBJECTS) & set(TEST_SUBJECTS)


def test_rest_pose_faces_the_camera_and_accessories_sit_on_the_right_side():
    body = make_subject(1)
    joints = torch.from_numpy(rest_pose(body.bone_lengths))[None].float()
    assert torch.allclose(facing_direction(joints), torch.tensor([[0.0, 0.0, -1.0]]), atol=1e-5)
    caps = accessory_capsules(joints, torch.from_numpy(body.part_radii)[None], torch.from_numpy(body.colours)[None])
    assert caps.shape == (1, 4, 10)
    r_foot_start, r_foot_end = caps[0, 0, :3], caps[0, 0, 3:6]
    assert torch.allclose(r_foot_start, joints[0, JOINT_INDEX["r_ankle"]])
    assert r_foot_end[2] < r_foot_start[2] - 50, "feet point forward (towards the camera, -z)"
    head_z = (joints[0, JOINT_INDEX["neck"], 2] + joints[0, JOINT_INDEX["head"], 2]) / 2
    nose_z, hair_z = caps[0, 2, 2], caps[0, 3, 2]
    head_radius = body.part_radii[PART_INDEX["head"]]
    assert nose_z == head_z - head_radius and hair_z > head_z, "nose in front, hair behind"
    assert torch.equal(caps[0, 3, 7:], torch.from_numpy(body.colours[4])), "hair has the hair colour"


def test_turning_the_person_turns_the_facing_direction():
    body = make_subject(5)
    joints = torch.from_numpy(rest_pose(body.bone_lengths)).float()
    turn = torch.tensor([[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]])  # 180 degrees about y
    assert torch.allclose(facing_direction((joints @ turn.T)[None]), torch.tensor([[0.0, 0.0, 1.0]]), atol=1e-5)
