"""Chance floors: what a model that does not look at the person scores on a test split.

A table of 3D errors means little without the error of a model that ignores the image. Two
floors are computed from a dataset's own labels (root-relative 3D joints in the camera frame):

* **mean pose** -- every test sample is predicted as the mean root-relative training pose in
  camera coordinates, whatever the image: the error of knowing the data set but not the image;
* **orientation** -- the mean *canonical* training pose, turned into each test sample's own
  body orientation: the error of a model that knows exactly which way the body faces and how
  the camera looks at it (its elevation and roll) but nothing of the pose or the body's shape.

A pose's body orientation is the rotation of its body frame (:func:`body_frame`): y points
down along gravity, x along the hips (right hip -> left hip) made horizontal, z = x cross y.
Gravity in the camera frame is the second column of the sample's ``camera_rotation`` (the
contract's world is y down, :mod:`datamodules.batch`); where a dataset does not know its
cameras' orientation, the trunk (thorax -> pelvis) stands in for it, which also fixes how the
trunk leans and so gives a lower floor. A pose is canonical in its body frame (``R^T p``); the
mean canonical training pose turned by a test pose's ``R`` is the orientation floor's
prediction. On the embedded data this equals, to 0.2 mm, the mean body-frame pose turned by
each sample's true yaw and camera elevation (the data's own generating rotation). Both floors
need only 3D labels (and the cameras' orientation), so they are defined for every dataset
with 3D (the synthetic data, Human3.6M, MPI-INF-3DHP) and for each test domain on its own.

Each floor is scored with the shared metric functions (:mod:`pose3d.metrics.functional`):
MPJPE, PA-MPJPE, N-MPJPE, 3DPCK@150 mm and AUC, over the joints the protocol scores. A method
whose MPJPE is not well below the orientation floor has learned little more than which way
the body faces.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from pose3d.metrics import functional as F
from pose3d.skeleton import JOINT_INDEX

FLOORS: tuple[str, ...] = ("mean_pose", "orientation")
FLOOR_TITLES = {"mean_pose": "floor: training mean pose", "orientation": "floor: mean pose, true orientation"}
FLOOR_METRICS = {  # key in a run's metrics (test/<key>) -> the function that scores a floor
    "mpjpe": F.mpjpe,
    "pa_mpjpe": F.pa_mpjpe,
    "n_mpjpe": F.n_mpjpe,
    "pck3d": F.pck3d,
    "auc3d": F.auc3d,
}


@dataclass
class PoseLabels:
    """The 3D labels of one split: ``joints_3d`` (N, J, 3) root-relative mm in the camera frame,
    ``has_3d`` (N,) bool, ``domain`` (N,) ids (of the DataModule's ``domains``) or None, and
    ``down`` (N, 3), gravity's direction in each camera frame, or None where it is not known."""

    joints_3d: Tensor
    has_3d: Tensor
    domain: Tensor | None = None
    down: Tensor | None = None

    def select(self, rows: Tensor) -> "PoseLabels":
        pick = lambda t: None if t is None else t[rows]  # noqa: E731
        return PoseLabels(self.joints_3d[rows], self.has_3d[rows], pick(self.domain), pick(self.down))


def body_frame(joints: Tensor, down: Tensor | None = None) -> Tensor:
    """(..., J, 3) poses -> (..., 3, 3) rotations whose columns are the body frame's axes in the
    pose's coordinates (module docstring): y = ``down`` (..., 3) (default: down the trunk),
    x = the hips made orthogonal to y, z = x cross y."""
    if down is None:
        down = joints[..., JOINT_INDEX["pelvis"], :] - joints[..., JOINT_INDEX["thorax"], :]
    hips = joints[..., JOINT_INDEX["l_hip"], :] - joints[..., JOINT_INDEX["r_hip"], :]
    y = torch.nn.functional.normalize(down.to(joints.dtype), dim=-1)
    x = torch.nn.functional.normalize(hips - (hips * y).sum(-1, keepdim=True) * y, dim=-1)
    return torch.stack((x, y, torch.linalg.cross(x, y, dim=-1)), dim=-1)


def floor_predictions(train: PoseLabels, test: PoseLabels) -> dict[str, Tensor]:
    """Each floor's (N, J, 3) predictions for the ``test`` poses from the ``train`` poses (both
    root-relative mm). Gravity is used where both splits know it, else the trunk for both."""
    known = train.down is not None and test.down is not None
    train_poses, test_poses = train.joints_3d.double(), test.joints_3d.double()
    train_frame = body_frame(train_poses, train.down if known else None)
    test_frame = body_frame(test_poses, test.down if known else None)
    mean_canonical = (train_poses @ train_frame).mean(0)
    return {
        "mean_pose": train_poses.mean(0).expand_as(test_poses),
        "orientation": mean_canonical @ test_frame.transpose(-1, -2),
    }


def floor_metrics(train: PoseLabels, test: PoseLabels, eval_joints: Sequence[int] | None = None,
                  domains: Sequence[str] = ()) -> dict[str, dict[str, float]]:
    """``{floor: {metric: value, "<domain>/<metric>": value}}`` on the test samples that have 3D,
    from the training samples that have 3D, over ``eval_joints`` (default all); per domain where
    ``test.domain`` holds ids of ``domains``."""
    train, test = train.select(train.has_3d.bool()), test.select(test.has_3d.bool())
    if not len(train.has_3d) or not len(test.has_3d):
        raise ValueError("chance floors need 3D labels in both the training and the test split")
    test_poses = test.joints_3d.double()
    joints = list(eval_joints) if eval_joints is not None else list(range(test_poses.shape[1]))
    groups = {"": torch.ones(len(test_poses), dtype=torch.bool)}
    if test.domain is not None and domains:
        groups.update({f"{name}/": test.domain == k for k, name in enumerate(domains) if (test.domain == k).any()})
    out = {}
    for floor, prediction in floor_predictions(train, test).items():
        scores = {}
        for prefix, rows in groups.items():
            pred, target = prediction[rows][:, joints], test_poses[rows][:, joints]
            scores.update({f"{prefix}{key}": float(metric(pred, target)) for key, metric in FLOOR_METRICS.items()})
        out[floor] = scores
    return out
