"""The built-in target kinds: optional batch keys rendered from a batch's labels on request.

Each renderer is registered with :func:`pose3d.contract.target_kind` and called as
``render(batch, image_size, spec)`` on a batch of the shared contract (DESIGN.md) after any
augmentation, with ``spec`` complete (its kind's defaults filled in):

* ``heatmaps`` {size, sigma=1.0}: (B, J, size, size) Gaussians at ``joints_2d``, zero for
  unlabelled joints (``visible`` False; :mod:`datamodules.batch`) (:func:`pose3d.heatmaps.render_heatmaps`);
* ``skeleton_maps`` {size, stick_width=4.0, crop_scale=1.0}: DeepSkeleton's foreground and background maps
  stacked as 6 channels (:func:`pose3d.skeleton_maps.render_skeleton_maps`), depth-ordered by
  the camera depth ``joints_3d`` z + ``root_depth``. One stick width gives (B, 6, size, size);
  a list of W widths (the paper's multi-scale configurations) gives (B, W, 6, size, size), so
  ``maps[:, k]`` is the 6-channel map of the k-th width. ``crop_scale`` (one, or one per width):
  the maps of the crop zoomed out by that factor about its centre (:mod:`pose3d.zoom`;
  DeepSkeleton's ``c_i``); one distance computation per distinct scale.
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
from pose3d.zoom import zoom_coords


@target_kind("heatmaps", defaults={"sigma": 1.0})
def heatmaps(batch: Mapping[str, Tensor], image_size: int, spec: Mapping[str, Any]) -> Tensor:
    """(B, J, size, size) joint heatmaps (module docstring)."""
    size = int(spec["size"])
    return render_heatmaps(batch["joints_2d"], (image_size, image_size), (size, size), sigma=spec["sigma"],
                           visible=batch["visible"])


@target_kind("skeleton_maps", defaults={"stick_width": 4.0, "crop_scale": 1.0})
def skeleton_maps(batch: Mapping[str, Tensor], image_size: int, spec: Mapping[str, Any]) -> Tensor:
    """(B, 6, size, size) for one stick width, (B, W, 6, size, size) for a list of W (module docstring)."""
    size = int(spec["size"])
    depth = batch["joints_3d"][..., 2] + batch["root_depth"][:, None]
    width, scale = spec["stick_width"], spec["crop_scale"]
    single = isinstance(width, numbers.Real)
    widths = [float(width)] if single else [float(w) for w in width]
    scales = [float(scale)] * len(widths) if isinstance(scale, numbers.Real) else [float(c) for c in scale]
    if len(scales) != len(widths):
        raise ValueError(f"skeleton_maps: {len(scales)} crop scales for {len(widths)} stick widths; expected one or one per width")
    maps: list[Tensor | None] = [None] * len(widths)
    for c in dict.fromkeys(scales):  # one distance computation per crop scale
        index = [k for k, s in enumerate(scales) if s == c]
        joints = zoom_coords(batch["joints_2d"], image_size, c)
        rendered = render_skeleton_maps(joints, depth, (image_size, image_size), (size, size), [widths[k] for k in index])
        for k, m in zip(index, rendered):
            maps[k] = stack_skeleton_maps(m)
    stacked = torch.stack(maps, dim=1)
    return (stacked[:, 0] if single else stacked).contiguous()
