"""The batch contract every DataModule produces (DESIGN.md).

A batch is a dict of tensors; ``B`` samples, ``J`` = 17 joints in the Human3.6M order.
Methods read what they need and must work when a 2D-only sample has zeros in ``joints_3d``.

``visible`` means *labelled*: the joint has a 2D label to train and score on. As in MPII, LSP
and Human3.6M, a joint hidden by the body or an object is labelled (its annotated or projected
position); unlabelled joints (missing in MPII, outside the crop) are False. 2D targets and 2D
losses use it as their mask. The synthetic data also carries ``occluded`` (B, J) bool, the
renderer's depth test, for analyses.

``camera_rotation`` is the crop camera's world-to-camera rotation ``X_cam = R X_world`` in a
gravity-aligned world whose y axis points down (the camera frame of a level camera; a level
camera facing any direction has a rotation about y). Only its tilt carries information a
method can use (yaw is arbitrary per dataset). ``has_camera_rotation`` is False where the
dataset does not know it (MPII, LSP, MPI-INF-3DHP's test set); ``camera_rotation`` is then the
identity and means nothing.
"""
from __future__ import annotations

import torch
from torch import Tensor

# key -> (shape with symbolic dims, dtype)
BATCH_KEYS: dict[str, tuple[tuple[str | int, ...], torch.dtype]] = {
    "image": (("B", 3, "H", "W"), torch.float32),
    "joints_2d": (("B", "J", 2), torch.float32),
    "joints_3d": (("B", "J", 3), torch.float32),
    "has_3d": (("B",), torch.bool),
    "has_2d": (("B",), torch.bool),
    "visible": (("B", "J"), torch.bool),
    "camera": (("B", 4), torch.float32),
    "camera_rotation": (("B", 3, 3), torch.float32),
    "has_camera_rotation": (("B",), torch.bool),
    "root_depth": (("B",), torch.float32),
    "subject": (("B",), torch.int64),
    "action": (("B",), torch.int64),
}


def check_batch(batch: dict[str, Tensor], num_joints: int = 17) -> None:
    """Raise ``ValueError`` naming the first key that breaks the contract."""
    sizes: dict[str, int] = {"J": num_joints}
    for key, (shape, dtype) in BATCH_KEYS.items():
        if key not in batch:
            raise ValueError(f"batch is missing '{key}'; expected keys: {', '.join(BATCH_KEYS)}")
        value = batch[key]
        if value.dtype != dtype or value.dim() != len(shape):
            raise ValueError(f"batch['{key}'] is {value.dtype} {tuple(value.shape)}; expected {dtype} {shape}")
        for dim, expected in zip(value.shape, shape):
            if isinstance(expected, int):
                ok = dim == expected
            else:
                ok = sizes.setdefault(expected, dim) == dim
            if not ok:
                raise ValueError(f"batch['{key}'] has shape {tuple(value.shape)}; expected {shape} with {sizes}")
