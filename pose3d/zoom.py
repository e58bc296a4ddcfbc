"""Zooming a square crop about its centre: DeepSkeleton's crop scales ``c_i`` (Sec. 3.2).

A crop scale ``c`` shows the content of a ``c`` times larger box about the same centre at
the same resolution: the image shrinks by ``1 / c`` and the border is zero (our loaders
crop the 1.0 box, so there are no pixels beyond it; what the larger box buys on truncated
in-the-wild people is room in the maps for the parts outside the 1.0 box). Pixel-centre
convention of :mod:`pose3d.heatmaps`: pixel ``i`` has its centre at ``i``, the crop spans
``[-0.5, S - 0.5)`` and its centre is ``(S - 1) / 2``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def zoom_coords(coords: Tensor, image_size: int, scale: float) -> Tensor:
    """Crop pixels ``(..., 2)`` to the pixels of the ``scale``-times larger crop."""
    if scale == 1.0:
        return coords
    centre = (image_size - 1) / 2.0
    return centre + (coords - centre) / scale


def zoom_images(images: Tensor, scale: float) -> Tensor:
    """(B, C, S, S) crops -> the ``scale``-times larger crop at the same size (zero border for
    ``scale > 1``); the same map as :func:`zoom_coords` (bilinear, ``align_corners=False``)."""
    if scale == 1.0:
        return images
    theta = torch.tensor([[scale, 0.0, 0.0], [0.0, scale, 0.0]], dtype=images.dtype, device=images.device)
    grid = F.affine_grid(theta.expand(images.shape[0], 2, 3), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
