"""Projection round trips and crop transforms, against hand-computed values."""
from __future__ import annotations

import math

import pytest
import torch

from pose3d import camera as cam


def test_project_hand_values():
    # X=(100, -50, 2000) mm, f=1000, c=(500, 400): u = 1000*100/2000 + 500 = 550, v = 1000*-50/2000 + 400 = 375
    points = torch.tensor([[[100.0, -50.0, 2000.0]]])
    uv = cam.project(points, torch.tensor([[1000.0, 1000.0, 500.0, 400.0]]))
    assert torch.allclose(uv, torch.tensor([[[550.0, 375.0]]]))


def test_backproject_inverts_project():
    torch.manual_seed(0)
    points = torch.randn(4, 17, 3) * 300 + torch.tensor([0.0, 0.0, 4000.0])
    intrinsics = torch.tensor([1145.0, 1143.0, 512.0, 515.0]).expand(4, 4)
    uv = cam.project(points, intrinsics)
    back = cam.backproject(uv, points[..., 2], intrinsics)
    assert torch.allclose(back, points, atol=1e-3)


def test_weak_perspective_matches_perspective_for_a_flat_far_object():
    # a body flat at depth Z projects like s = f / Z with the principal point as translation
    points = torch.tensor([[[120.0, -340.0, 5000.0], [-80.0, 410.0, 5000.0]]])
    f, cx, cy = 1000.0, 320.0, 240.0
    perspective = cam.project(points, torch.tensor([[f, f, cx, cy]]))
    weak = cam.weak_perspective(points, torch.tensor([f / 5000.0]), torch.tensor([[cx, cy]]))
    assert torch.allclose(perspective, weak, atol=1e-4)


def test_crop_intrinsics_agree_with_cropping_projected_points():
    torch.manual_seed(1)
    points = torch.randn(3, 17, 3) * 400 + torch.tensor([0.0, 0.0, 5000.0])
    full = torch.tensor([1145.0, 1145.0, 500.0, 500.0]).expand(3, 4)
    box = torch.tensor([[300.0, 200.0, 400.0, 400.0], [350.0, 250.0, 300.0, 300.0], [0.0, 0.0, 1000.0, 1000.0]])
    crop_k = cam.crop_intrinsics(full, box, (64, 64))
    direct = cam.project(points, crop_k)
    via_full = cam.crop_points(cam.project(points, full), box, (64, 64))
    assert torch.allclose(direct, via_full, atol=1e-3)
    assert torch.allclose(cam.uncrop_points(via_full, box, (64, 64)), cam.project(points, full), atol=1e-3)


def test_quaternion_and_matrix_world_to_camera_agree_and_invert():
    angle = torch.tensor(math.radians(30.0))
    # 30 degrees about y as a quaternion (w, x, y, z) = (cos 15, 0, sin 15, 0)
    q = torch.tensor([math.cos(angle / 2), 0.0, math.sin(angle / 2), 0.0])
    R = cam.rotation_about_axis(angle, "y")
    assert torch.allclose(cam.quaternion_to_matrix(q), R, atol=1e-6)
    assert torch.allclose(torch.linalg.det(R), torch.tensor(1.0))
    world = torch.randn(17, 3) * 500
    centre = torch.tensor([100.0, -1500.0, 3000.0])
    a = cam.world_to_camera(world, q, centre)
    b = cam.world_to_camera(world, R, centre)
    assert torch.allclose(a, b, atol=1e-3)
    assert torch.allclose(cam.camera_to_world(a, R, centre), world, atol=1e-3)
    # the camera centre maps to the origin
    assert torch.allclose(cam.world_to_camera(centre[None], R, centre), torch.zeros(1, 3))


def test_bad_rotation_shape_is_a_clear_error():
    with pytest.raises(ValueError, match="rotation must be"):
        cam.world_to_camera(torch.zeros(2, 3), torch.zeros(2, 2), torch.zeros(3))
