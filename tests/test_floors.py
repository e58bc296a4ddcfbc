"""Chance floors (pose3d.floors): hand-worked values on tiny splits, and the cached per-data-config floors."""
from __future__ import annotations


import pytest
import torch

from harness.floors import data_floors, versus_floor
from pose3d.camera import rotation_about_axis
from pose3d.floors import PoseLabels, body_frame, floor_metrics, floor_predictions
from pose3d.skeleton import JOINT_INDEX, NUM_JOINTS

DOWN = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)


def standing(offset: float = 0.0) -> torch.Tensor:
    """A pose facing the camera (canonical frame: x = left, y = down), arms moved by ``offset`` mm."""
    pose = torch.zeros(NUM_JOINTS, 3, dtype=torch.float64)
    for name, xyz in {"r_hip": (-100, 0, 0), "l_hip": (100, 0, 0), "r_knee": (-100, 400, 0), "l_knee": (100, 400, 0),
                      "r_ankle": (-100, 800, 0), "l_ankle": (100, 800, 0), "spine": (0, -200, 0),
                      "thorax": (0, -450, 0), "neck": (0, -550, -50), "head": (0, -650, 0),
                      "l_shoulder": (150, -450, 0), "r_shoulder": (-150, -450, 0), "l_elbow": (150, -150, 0),
                      "r_elbow": (-150, -150, 0), "l_wrist": (150, 100, 0), "r_wrist": (-150, 100, 0)}.items():
        pose[JOINT_INDEX[name]] = torch.tensor(xyz, dtype=torch.float64)
    for arm in ("l_wrist", "r_wrist"):
        pose[JOINT_INDEX[arm], 2] -= offset
    return pose


def turned(pose: torch.Tensor, yaw: float) -> torch.Tensor:
    return pose @ rotation_about_axis(torch.tensor(yaw, dtype=torch.float64), "y").T


def labels(poses: list[torch.Tensor], down: bool = True, domain=None) -> PoseLabels:
    joints = torch.stack(poses)
    return PoseLabels(joints, torch.ones(len(poses), dtype=torch.bool),
                      None if domain is None else torch.tensor(domain), DOWN.expand(len(poses), 3) if down else None)


def test_body_frame_is_the_turn_about_gravity():
    yaw = 0.7
    frame = body_frame(turned(standing(), yaw), DOWN)
    torch.testing.assert_close(frame, rotation_about_axis(torch.tensor(yaw, dtype=torch.float64), "y"))
    # without gravity the trunk stands in for it: the same for an upright body
    torch.testing.assert_close(body_frame(turned(standing(), yaw)), frame)


def test_mean_pose_floor_by_hand():
    a, b = standing(0.0), standing(200.0)  # the wrists 200 mm apart in depth, all else equal
    floors = floor_metrics(labels([a, b]), labels([a]))
    # mean pose = a with wrists 100 mm off: 2 of 17 joints wrong by 100 mm
    assert floors["mean_pose"]["mpjpe"] == pytest.approx(2 * 100.0 / NUM_JOINTS)
    assert floors["mean_pose"]["pck3d"] == pytest.approx(100.0)


def test_orientation_floor_turns_the_mean_canonical_pose():
    a, b = standing(0.0), standing(200.0)
    train = labels([turned(a, 0.3), turned(b, -2.0)])  # canonical: a and b
    test = labels([turned(a, 1.1), turned(b, 2.5)])
    prediction = floor_predictions(train, test)["orientation"]
    mean_canonical = (a + b) / 2
    torch.testing.assert_close(prediction[0], turned(mean_canonical, 1.1))
    floors = floor_metrics(train, test)
    assert floors["orientation"]["mpjpe"] == pytest.approx(2 * 100.0 / NUM_JOINTS)
    # the mean camera-frame pose faces a mixture of directions: a much higher floor
    assert floors["mean_pose"]["mpjpe"] > 5 * floors["orientation"]["mpjpe"]


def test_floors_per_domain_and_only_on_samples_with_3d():
    a, b = standing(0.0), standing(200.0)
    train = labels([a, b, standing(5000.0)])
    train.has_3d[2] = False  # a 2D-only sample: ignored however far off its zeros are
    test = labels([a, b], domain=[0, 1])
    floors = floor_metrics(train, test, domains=("studio", "wild"))
    assert floors["mean_pose"]["studio/mpjpe"] == pytest.approx(2 * 100.0 / NUM_JOINTS)
    assert floors["mean_pose"]["wild/mpjpe"] == pytest.approx(2 * 100.0 / NUM_JOINTS)
    only = floor_metrics(train, test, eval_joints=[JOINT_INDEX["l_wrist"]])
    assert only["mean_pose"]["mpjpe"] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="3D labels"):
        floor_metrics(labels([a]), PoseLabels(test.joints_3d, torch.zeros(2, dtype=torch.bool)))


def test_data_floors_of_the_synthetic_data_are_cached(tmp_path):
    cfg = {"name": "synthetic", "train_size": 64, "val_size": 4, "test_size": 16, "image_size": 32}
    floors = data_floors(cfg, tmp_path)
    assert set(floors) == {"mean_pose", "orientation"}
    assert 0 < floors["orientation"]["mpjpe"] < floors["mean_pose"]["mpjpe"]
    assert len(list(tmp_path.glob("*.json"))) == 1
    assert data_floors(cfg, tmp_path) == floors  # read back from the cache
    assert versus_floor(floors["orientation"]["mpjpe"] / 2, floors) == "0.50x"
    assert versus_floor(None, floors) == "-"


def test_data_floors_of_2d_only_data_are_none(tmp_path):
    cfg = {"name": "synthetic", "train_size": 8, "val_size": 4, "test_size": 4, "image_size": 32,
           "train_domain": "wild"}  # wild training samples carry 2D labels only
    assert data_floors(cfg, tmp_path) is None
