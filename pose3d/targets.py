"""The built-in target kinds: optional batch keys rendered from a batch's labels on request.

Each renderer is registered with :func:`pose3d.contract.target_kind` and called as
``render(batch, image_size, spec)`` on a batch of the shared contract (DESIGN.md) after any
augmentation, with ``spec`` complete (its kind's defaults filled in):

* ``heatmaps`` {size, sigma=1.0}: (B, J, size, size) Gaussians at ``joints_2d``, zero for
  invisible joints (:func:`pose3d.heatmaps.render_heatmaps`);
* ``skeleton_maps`` {size, stick_width=4.0}: DeepSkeleton's foreground and background maps
  stacked as 6 channels (:func:`pose3d.skeleton_maps.render_skeleton_maps`), depth-ordered by
  the camera depth ``joints_3d`` z + ``root_depth``. One stick width gives (B, 6, size, size);
  a list of W widths (the paper's multi-scale configurations) gives (B, W, 6, size, size), so
  ``maps[:, k]`` is the 6-channel map of the k-th width.
"""
from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from pose3d.contract import target_kind
from pose3d.heatmaps import render_heatmaps
from pose3d.skeleton_maps import render_skeleton_maps, stack_skeleton_maps


@target_kind("heatmaps", defaults={"sigma": 1.0})
def heatmaps(batch: Mapping[str, Tensor], image_size: int, spec: Mapping[str, Any]) -> Tensor:
    """(B, J, size, size) joint heatmaps (module docstring)."""
    size = int(spec["size"])
    return render_heatmaps(batch["joints_2d"], (image_size, image_size), (size, size), sigma=spec["sigma"],
                           visible=batch["visible"])


@target_kind("skeleton_maps", defaults={"stick_width": 4.0})
def skeleton_maps(batch: Mapping[str, Tensor], image_size: int, spec: Mapping[str, Any]) -> Tensor:
    """(B, 6, size, size) for one stick width, (B, W, 6, size, size) for a list of W (module docstring)."""
    size = int(spec["size"])
    depth = batch["joints_3d"][..., 2] + batch["root_depth"][:, None]
    width = spec["stick_width"]
    maps = render_skeleton_maps(batch["joints_2d"], depth, (image_size, image_size), (size, size), width)
    if isinstance(width, numbers.Real):
        return stack_skeleton_maps(maps).contiguous()
    return torch.stack([stack_skeleton_maps(m) for m in maps], dim=1).contiguous()
