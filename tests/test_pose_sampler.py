"""Tests of the kinematic pose sampler (pose3d/pose_sampler.py). Fast: a few hundred poses."""
from __future__ import annotations


import numpy as np
import pytest

from pose3d.body import make_subject
from pose3d.pose_sampler import (
    ACTIVITIES,
    ACTIVITY_INDEX,
    JOINT_LIMITS,
    ELBOW,
    KNEE,
    ANGLE_SIGNS,
    foot_offset,
    forward_kinematics,
    local_rotations,
    rest_pose,
    retarget,
    sample_angles,
    sample_pose,
    sample_poses,
)
from pose3d.skeleton import FLIP_PERMUTATION, H36M_BONES, H36M_PARENTS, NUM_JOINTS

BONES = np.array(H36M_BONES)  # (16, 2): child, parent
BODY = make_subject(1).bone_lengths
N_PER_ACTIVITY = 60


def _poses(activity: int, seed: int = 0, n: int = N_PER_ACTIVITY, bone_lengths=BODY) -> np.ndarray:
    return sample_poses(np.random.default_rng(seed), bone_lengths, np.full(n, activity))


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _bone_lengths_of(poses: np.ndarray) -> np.ndarray:
    return np.linalg.norm(poses[..., BONES[:, 0], :] - poses[..., BONES[:, 1], :], axis=-1)


ALL = list(range(len(ACTIVITIES)))


def test_shapes_and_root():
    pose = sample_pose(np.random.default_rng(0), BODY, 0)
    assert pose.shape == (NUM_JOINTS, 3) and pose.dtype == np.float32
    assert np.all(pose[0] == 0)
    poses = _poses(1, n=5)
    assert poses.shape == (5, NUM_JOINTS, 3) and poses.dtype == np.float32
    assert ACTIVITIES[ACTIVITY_INDEX["bending"]] == "bending" and len(ACTIVITIES) == 6


def test_rest_pose_layout():
    p = rest_pose(BODY)
    assert p[4, 0] > 0 > p[1, 0]                     # left hip on +x, right hip on -x
    assert p[11, 0] > 0 > p[14, 0]                   # shoulders likewise
    assert p[3, 1] > p[2, 1] > p[1, 1]               # legs hang down (+y)
    assert p[13, 1] > p[12, 1] > p[11, 1]            # arms hang down
    assert p[10, 1] < p[9, 1] < p[8, 1] < p[7, 1] < 0  # spine and head up (-y)
    assert p[9, 2] < p[8, 2]                         # the nose is in front (-z) of the thorax
    np.testing.assert_allclose(foot_offset(p), BODY[2] + BODY[3], atol=1e-3)


@pytest.mark.parametrize("subject", [1, 9])
@pytest.mark.parametrize("activity", ALL)
def test_bone_lengths_are_the_subjects(activity, subject):
    lengths = make_subject(subject).bone_lengths
    poses = _poses(activity, seed=subject, bone_lengths=lengths)
    np.testing.assert_allclose(_bone_lengths_of(poses), np.broadcast_to(lengths[BONES[:, 0]], (len(poses), 16)), atol=1e-3)


@pytest.mark.parametrize("activity", ALL)
def test_angles_within_limits(activity):
    rng = np.random.default_rng(3)
    for _ in range(N_PER_ACTIVITY):
        angles = sample_angles(rng, activity)
        assert np.all(angles >= JOINT_LIMITS[..., 0] - 1e-12) and np.all(angles <= JOINT_LIMITS[..., 1] + 1e-12)
        assert np.all(angles[list(KNEE) + list(ELBOW), 1:] == 0)     # hinges have one DoF
        assert np.all(angles[list(KNEE) + list(ELBOW), 0] >= 0)      # and bend one way only


def test_local_rotation_is_rx_rz_ry():
    angles = np.random.default_rng(4).uniform(-2, 2, size=(NUM_JOINTS, 3))
    got = local_rotations(angles)
    x, z, y = np.moveaxis(angles * ANGLE_SIGNS, -1, 0)
    c, s = np.cos, np.sin
    for j in range(NUM_JOINTS):
        rx = np.array([[1, 0, 0], [0, c(x[j]), -s(x[j])], [0, s(x[j]), c(x[j])]])
        rz = np.array([[c(z[j]), -s(z[j]), 0], [s(z[j]), c(z[j]), 0], [0, 0, 1]])
        ry = np.array([[c(y[j]), 0, s(y[j])], [0, 1, 0], [-s(y[j]), 0, c(y[j])]])
        np.testing.assert_allclose(got[j], rx @ rz @ ry, atol=1e-12)


def test_knee_hinge_bends_backwards_and_elbow_forwards():
    angles = np.zeros((NUM_JOINTS, 3))
    angles[list(KNEE), 0] = np.pi / 2
    angles[list(ELBOW), 0] = np.pi / 2
    p = forward_kinematics(angles, BODY)
    assert p[3, 2] > p[2, 2] + 400 and p[6, 2] > p[5, 2] + 400    # ankles behind the knees (+z)
    assert p[13, 2] < p[12, 2] - 200 and p[16, 2] < p[15, 2] - 200  # wrists in front (-z)


def _hinge_angle_deg(p, a, b, c):
    """Angle (deg) between bone a->b and bone b->c: 0 when straight."""
    cos = np.sum(_unit(p[:, b] - p[:, a]) * _unit(p[:, c] - p[:, b]), axis=-1)
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


@pytest.mark.parametrize("activity", ALL)
def test_knees_never_hyperextend(activity):
    p = _poses(activity, seed=11)
    lateral = p[:, 4] - p[:, 1]                      # right hip -> left hip: the person's left
    for hip, knee, ankle in ((1, 2, 3), (4, 5, 6)):
        flex = _hinge_angle_deg(p, hip, knee, ankle)
        assert np.all((flex >= 0) & (flex <= 160))
        # flexion turns the shin about the knee's lateral axis, towards the back of the thigh:
        # thigh x shin points to the person's left (rest: +y x +z = +x)
        axis = np.cross(_unit(p[:, knee] - p[:, hip]), _unit(p[:, ankle] - p[:, knee]))
        assert np.all(np.sum(axis * _unit(lateral), axis=-1) >= -1e-4)


@pytest.mark.parametrize("activity", ALL)
def test_hinges_bend_the_anatomical_way_in_the_bone_frame(activity):
    """In the thigh's frame the shin goes back (+z); in the upper arm's, the forearm forward (-z)."""
    rng = np.random.default_rng(5)
    angles = np.stack([sample_angles(rng, activity) for _ in range(N_PER_ACTIVITY)])
    p, frames = forward_kinematics(angles, BODY, return_frames=True)
    for parent_bone, child_bone, sign in ((2, 3, 1), (5, 6, 1), (12, 13, -1), (15, 16, -1)):
        joint = H36M_PARENTS[child_bone]
        local = np.einsum("nji,nj->ni", frames[:, parent_bone], _unit(p[:, child_bone] - p[:, joint]))
        assert np.all(sign * local[:, 2] >= -1e-4)
        assert np.all(np.abs(local[:, 0]) < 1e-4)    # a hinge: stays in the bone's sagittal plane
        elbow_or_knee = _hinge_angle_deg(p, H36M_PARENTS[joint], joint, child_bone)
        assert np.all(elbow_or_knee <= 160)


@pytest.mark.parametrize("activity", ALL)
def test_left_stays_left_and_no_mirrored_bodies(activity):
    p = _poses(activity, seed=7)
    assert np.all(p[:, 4, 0] > p[:, 1, 0]) and np.all(p[:, 11, 0] > p[:, 14, 0])
    # (left - right) x up points to the front: +x cross -y = -z at rest. The trunk only flexes
    # forward (by < 135 deg), so the normal lies between front (-z) and down (+y).
    normal = _unit(np.cross(p[:, 4] - p[:, 1], p[:, 8] - p[:, 0]))
    assert np.all(normal @ np.array([0.0, 1.0, -1.0]) > 0)
    if ACTIVITIES[activity] != "bending":
        assert np.all(normal[:, 2] < 0)
    rest_normal = np.cross(*(lambda r: (r[4] - r[1], r[8] - r[0]))(rest_pose(BODY)))
    assert rest_normal[2] < 0 and abs(rest_normal[0]) < 1e-6


def test_left_right_angle_convention_is_a_mirror():
    """Swapping left/right angle rows and negating midline lateral bend/twist mirrors the pose in x."""
    angles = sample_angles(np.random.default_rng(2), ACTIVITY_INDEX["reaching"])
    mirrored = angles[list(FLIP_PERMUTATION)].copy()
    mirrored[[0, 7, 8, 9, 10], 1:] *= -1
    assert np.allclose(BODY[[1, 2, 3, 11, 12, 13]], BODY[[4, 5, 6, 14, 15, 16]])  # symmetric body
    p, q = forward_kinematics(angles, BODY), forward_kinematics(mirrored, BODY)
    np.testing.assert_allclose(q, p[list(FLIP_PERMUTATION)] * np.array([-1, 1, 1]), atol=1e-3)


@pytest.mark.parametrize("name", ["standing", "walking", "reaching"])
def test_head_above_pelvis_when_upright(name):
    p = _poses(ACTIVITY_INDEX[name], seed=13)
    assert np.all(p[:, 10, 1] < p[:, 0, 1] - 300)


def test_activity_families_differ():
    poses = {name: _poses(ACTIVITY_INDEX[name], seed=17, n=150) for name in ACTIVITIES}
    feet = {name: foot_offset(p).mean() for name, p in poses.items()}
    assert feet["crouching"] < feet["sitting"] - 50
    assert feet["sitting"] < feet["standing"] - 250
    # standing feet are a leg's length below the pelvis (up to a relaxed knee)
    assert feet["standing"] > 0.9 * (BODY[2] + BODY[3])
    head = {name: -(p[:, 10, 1] - p[:, 0, 1]).mean() for name, p in poses.items()}
    assert head["bending"] < head["standing"] - 300
    wrist = {name: -np.minimum(p[:, 13, 1], p[:, 16, 1]).mean() for name, p in poses.items()}
    assert wrist["reaching"] > wrist["standing"] + 300
    stride = {name: np.abs(p[:, 3, 2] - p[:, 6, 2]).mean() for name, p in poses.items()}
    assert stride["walking"] > stride["standing"] + 80
    knee = {name: _hinge_angle_deg(p, 1, 2, 3).mean() for name, p in poses.items()}
    assert knee["crouching"] > 100 > knee["sitting"] > 50 > knee["standing"]


def test_deterministic():
    a = _poses(4, seed=123, n=20)
    np.testing.assert_array_equal(a, _poses(4, seed=123, n=20))
    assert not np.allclose(a, _poses(4, seed=124, n=20))
    rng = np.random.default_rng(9)
    one_by_one = np.stack([sample_pose(rng, BODY, act) for act in [0, 5, 2, 3]])
    np.testing.assert_array_equal(one_by_one, sample_poses(np.random.default_rng(9), BODY, np.array([0, 5, 2, 3])))


def test_variety():
    p = _poses(0, seed=1, n=100)
    assert np.all(np.std(p, axis=0)[[3, 6, 13, 16]] > 20)  # ankles and wrists really move


def test_retarget_keeps_directions_and_sets_lengths():
    source = _poses(1, seed=21, n=30, bone_lengths=make_subject(5).bone_lengths) + np.float32(100.0)
    target_lengths = make_subject(11).bone_lengths
    out = retarget(source, target_lengths)
    assert out.shape == source.shape and out.dtype == np.float32
    np.testing.assert_allclose(out[:, 0], source[:, 0])  # the root stays
    np.testing.assert_allclose(_bone_lengths_of(out), np.broadcast_to(target_lengths[BONES[:, 0]], (30, 16)), atol=1e-3)
    d_out = _unit(out[:, BONES[:, 0]] - out[:, BONES[:, 1]])
    d_src = _unit(source[:, BONES[:, 0]] - source[:, BONES[:, 1]])
    np.testing.assert_allclose(d_out, d_src, atol=1e-5)
    np.testing.assert_allclose(retarget(out, target_lengths), out, atol=1e-3)  # idempotent


def test_retarget_zero_length_bone_uses_rest_direction():
    source = np.repeat(rest_pose(BODY)[None], 2, axis=0)
    source[:, 10] = source[:, 9]                     # a mocap rig without a head-top joint
    out = retarget(source, BODY)
    np.testing.assert_allclose(out[0], rest_pose(BODY), atol=1e-3)
