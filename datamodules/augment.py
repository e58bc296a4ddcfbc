"""Training augmentations that keep images, 2D and 3D labels consistent.

* :class:`Photometric`: albumentations colour jitter, noise and blur on the image only.
* :func:`flip_horizontal`: mirror chosen samples of a batch; the image is flipped, 2D points
  map to ``u' = W - 1 - u`` (pixel centres at integer coordinates, as in
  :func:`pose3d.camera.project`), 3D points to ``x' = -x``, the principal point to
  ``cx' = W - 1 - cx`` (so 3D still projects onto 2D), left/right joints swap, and the camera
  rotation becomes ``D R D`` with ``D = diag(-1, 1, 1)`` (camera and world mirrored across x).
"""
from __future__ import annotations

import os

import numpy as np
import torch
from torch import Tensor

from pose3d.skeleton import FLIP_PERMUTATION

# a horizontal flip mirrors the camera's and the world's x axes: R -> D R D with D = diag(-1, 1, 1),
# i.e. R_ij * d_i d_j: still a rotation, and the world's vertical (y) seen from the camera keeps its y, z
MIRROR_SIGNS = np.outer([-1.0, 1.0, 1.0], [-1.0, 1.0, 1.0])

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


class Photometric:
    """Colour jitter (optionally with hue rotation), sensor noise and blur with albumentations, per image."""

    def __init__(self, seed: int = 0, hue: float = 0.0):
        """``hue``: largest hue rotation as a fraction of the colour circle (0.5 = any hue)."""
        import albumentations as A

        self.pipeline = A.Compose(
            [
                A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=hue, p=0.8),
                A.GaussNoise(std_range=(0.01, 0.04), p=0.3),
                A.GaussianBlur(blur_limit=(3, 3), p=0.15),
            ],
            seed=seed,
        )

    def _generators(self) -> list:
        """The pipeline and each of its transforms: albumentations gives each its own generators."""
        return [self.pipeline, *self.pipeline.transforms]

    def state(self) -> list:
        """Every generator albumentations draws from (numpy and Python), for an exact resume."""
        return [{"numpy": t.random_generator.bit_generator.state, "python": list(t.py_random.getstate())}
                for t in self._generators()]

    def set_state(self, state: list) -> None:
        for transform, saved in zip(self._generators(), state):
            transform.random_generator.bit_generator.state = saved["numpy"]
            version, internal, gauss = saved["python"]
            transform.py_random.setstate((version, tuple(internal), gauss))

    def reseed(self, seed: int) -> None:
        """Start every generator afresh from ``seed``."""
        self.pipeline.set_random_seed(seed)

    def __call__(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) float images in [0, 1] -> augmented copies."""
        array = images.permute(0, 2, 3, 1).contiguous().numpy()
        out = np.stack([self.pipeline(image=image)["image"] for image in array])
        return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def flip_horizontal(batch: dict[str, Tensor], which: Tensor) -> dict[str, Tensor]:
    """Mirror the samples where ``which`` (B,) is true; returns a new batch dict."""
    for key in ("heatmaps", "skeleton_maps"):
        if key in batch:
            raise ValueError(f"flip_horizontal must run before '{key}' are made; expected a batch without them")
    if not bool(which.any()):
        return batch
    out = dict(batch)
    width = batch["image"].shape[-1]
    sel = which.view(-1, *([1] * 3))
    out["image"] = torch.where(sel, batch["image"].flip(-1), batch["image"])
    perm = list(FLIP_PERMUTATION)

    def mirrored(key: str, axis_flip) -> Tensor:
        value = batch[key]
        flipped = axis_flip(value)[:, perm]
        return torch.where(which.view(-1, *([1] * (value.dim() - 1))), flipped, value)

    out["joints_2d"] = mirrored("joints_2d", lambda p: torch.stack((width - 1 - p[..., 0], p[..., 1]), -1))
    out["joints_3d"] = mirrored("joints_3d", lambda p: p * p.new_tensor([-1.0, 1.0, 1.0]))
    for key in ("visible", "occluded"):  # per-joint flags follow their joints
        if key in batch:
            out[key] = mirrored(key, lambda v: v)
    camera = batch["camera"].clone()
    camera[which, 2] = width - 1 - camera[which, 2]
    out["camera"] = camera
    if "camera_rotation" in batch:
        mirrored_rotation = batch["camera_rotation"] * torch.as_tensor(MIRROR_SIGNS, dtype=batch["camera_rotation"].dtype)
        out["camera_rotation"] = torch.where(which.view(-1, 1, 1), mirrored_rotation, batch["camera_rotation"])
    return out
