"""Pinhole camera maths on batched torch tensors.

Conventions (DESIGN.md): camera coordinates in mm with x right, y down, z forward;
intrinsics are a (..., 4) tensor ``(fx, fy, cx, cy)`` in pixels of the image the
points are projected into (for a crop, the crop's pixels: see :func:`crop_intrinsics`).
A world-to-camera transform is ``X_cam = R @ (X_world - C)`` with ``R`` the rotation
(matrix or unit quaternion ``(w, x, y, z)``) and ``C`` the camera centre in world
coordinates (Human3.6M's ``R``/``T`` convention).
"""
from __future__ import annotations

import torch
from torch import Tensor


def _split_intrinsics(intrinsics: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    fx, fy, cx, cy = intrinsics.unbind(-1)
    # broadcast over the joint dimension
    return fx[..., None], fy[..., None], cx[..., None], cy[..., None]


def project(points: Tensor, intrinsics: Tensor, min_depth: float = 1e-3) -> Tensor:
    """Perspective projection of camera-frame points (..., J, 3) to pixels (..., J, 2)."""
    fx, fy, cx, cy = _split_intrinsics(intrinsics)
    z = points[..., 2].clamp(min=min_depth)
    u = fx * points[..., 0] / z + cx
    v = fy * points[..., 1] / z + cy
    return torch.stack((u, v), dim=-1)


def backproject(points_2d: Tensor, depth: Tensor, intrinsics: Tensor) -> Tensor:
    """Inverse of :func:`project`: pixels (..., J, 2) and depths (..., J) to points (..., J, 3)."""
    fx, fy, cx, cy = _split_intrinsics(intrinsics)
    x = (points_2d[..., 0] - cx) * depth / fx
    y = (points_2d[..., 1] - cy) * depth / fy
    return torch.stack((x, y, depth), dim=-1)


def weak_perspective(points: Tensor, scale: Tensor, translation: Tensor) -> Tensor:
    """Scaled orthographic projection ``s * X[:2] + t`` for points (..., J, 3).

    ``scale`` is (...) and ``translation`` (..., 2); for a perspective camera looking at a
    body at depth ``Z`` the matching weak-perspective scale is ``f / Z``.
    """
    return scale[..., None, None] * points[..., :2] + translation[..., None, :]


def crop_intrinsics(intrinsics: Tensor, box: Tensor, out_size: tuple[int, int] | Tensor) -> Tensor:
    """Intrinsics of a crop ``box = (x0, y0, w, h)`` (..., 4) resized to ``out_size = (W, H)``.

    A point projected with the returned intrinsics lands where :func:`crop_points`
    maps its projection in the full image.
    """
    out = torch.as_tensor(out_size, dtype=intrinsics.dtype, device=intrinsics.device)
    x0, y0, w, h = box.unbind(-1)
    sx, sy = out[..., 0] / w, out[..., 1] / h
    fx, fy, cx, cy = intrinsics.unbind(-1)
    return torch.stack((fx * sx, fy * sy, (cx - x0) * sx, (cy - y0) * sy), dim=-1)


def crop_points(points_2d: Tensor, box: Tensor, out_size: tuple[int, int] | Tensor) -> Tensor:
    """Map full-image pixels (..., J, 2) into a crop ``box = (x0, y0, w, h)`` resized to ``out_size``."""
    out = torch.as_tensor(out_size, dtype=points_2d.dtype, device=points_2d.device)
    origin = box[..., None, :2]
    size = box[..., None, 2:]
    return (points_2d - origin) * out / size


def uncrop_points(points_2d: Tensor, box: Tensor, out_size: tuple[int, int] | Tensor) -> Tensor:
    """Inverse of :func:`crop_points`."""
    out = torch.as_tensor(out_size, dtype=points_2d.dtype, device=points_2d.device)
    return points_2d * box[..., None, 2:] / out + box[..., None, :2]


def quaternion_to_matrix(quaternion: Tensor) -> Tensor:
    """Unit quaternions (..., 4) as ``(w, x, y, z)`` to rotation matrices (..., 3, 3)."""
    q = quaternion / quaternion.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    rows = (
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    )
    return torch.stack(rows, dim=-1).reshape(q.shape[:-1] + (3, 3))


def _as_matrix(rotation: Tensor) -> Tensor:
    if rotation.shape[-1] == 4:
        return quaternion_to_matrix(rotation)
    if rotation.shape[-2:] == (3, 3):
        return rotation
    raise ValueError(f"rotation must be a (...,3,3) matrix or a (...,4) quaternion, got shape {tuple(rotation.shape)}")


def world_to_camera(points: Tensor, rotation: Tensor, centre: Tensor) -> Tensor:
    """``R @ (X - C)`` for points (..., J, 3); ``rotation`` a matrix (...,3,3) or quaternion (...,4)."""
    R = _as_matrix(rotation)
    return torch.einsum("...ij,...nj->...ni", R, points - centre[..., None, :])


def camera_to_world(points: Tensor, rotation: Tensor, centre: Tensor) -> Tensor:
    """Inverse of :func:`world_to_camera`: ``R^T @ X + C``."""
    R = _as_matrix(rotation)
    return torch.einsum("...ji,...nj->...ni", R, points) + centre[..., None, :]


def rotation_about_axis(angle: Tensor, axis: str) -> Tensor:
    """Rotation matrices (..., 3, 3) by ``angle`` radians about the camera ``x``, ``y`` or ``z`` axis."""
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    if axis == "x":
        rows = (one, zero, zero, zero, c, -s, zero, s, c)
    elif axis == "y":
        rows = (c, zero, s, zero, one, zero, -s, zero, c)
    elif axis == "z":
        rows = (c, -s, zero, s, c, zero, zero, zero, one)
    else:
        raise ValueError(f"axis must be one of 'x', 'y', 'z', got {axis!r}")
    return torch.stack(rows, dim=-1).reshape(angle.shape + (3, 3))


def known_camera_rotation(batch) -> Tensor:
    """The batch's ``camera_rotation`` (B, 3, 3) where ``has_camera_rotation``, the level camera
    (identity) elsewhere: Tome's ``E`` (Sec. 5.3), whatever a loader left in the unknown rows."""
    known = batch["has_camera_rotation"][:, None, None]
    rotation = batch["camera_rotation"]
    return torch.where(known, rotation, torch.eye(3, dtype=rotation.dtype, device=rotation.device))


def translation_filling_box(points: Tensor, intrinsics: Tensor, centre: Tensor, extent: Tensor,
                            iterations: int = 30) -> Tensor:
    """Where root-relative points (..., J, 3) stand when seen as a person-centred crop frames them:
    the translation (..., 3) that centres the bounding box of their projection on ``centre``
    (..., 2) pixels and makes its longer side ``extent`` (...) pixels.

    Starts from the weak-perspective answer (depth = focal x size / extent), then alternates
    scaling the translation (which keeps the root's pixel and resizes the projection) with a
    shift across the optical axis that recentres it; points that do project so (the crop of a
    synthetic sample without jitter) are placed to float precision.
    """
    fx, fy, cx, cy = intrinsics.unbind(-1)
    focal, principal = torch.stack((fx, fy), -1), torch.stack((cx, cy), -1)
    low, high = points[..., :2].amin(-2), points[..., :2].amax(-2)
    depth = focal.mean(-1) * (high - low).amax(-1).clamp(min=1.0) / extent
    across = (centre - principal) * depth[..., None] / focal - (low + high) / 2
    translation = torch.cat((across, depth[..., None]), -1)
    for _ in range(iterations):
        pixels = project(points + translation[..., None, :], intrinsics)
        low, high = pixels.amin(-2), pixels.amax(-2)
        translation = translation * ((high - low).amax(-1) / extent)[..., None]
        pixels = project(points + translation[..., None, :], intrinsics)
        shift = (centre - (pixels.amin(-2) + pixels.amax(-2)) / 2) * translation[..., 2:] / focal
        translation = translation + torch.cat((shift, torch.zeros_like(shift[..., :1])), -1)
    return translation
