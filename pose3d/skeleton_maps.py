"""Skeleton maps of DeepSkeleton: coloured sticks between joints, split into a
foreground and a background layer by depth (paper: ../shared/papers/deepskeleton_skeleton_maps.txt).

What a skeleton map is (paper Section 3.1)
------------------------------------------
"Skeleton map draws a stick with width l_i between neighbouring joints in the human
skeleton and assigns different colors to distinguish body parts"; the skeleton has
K = 16 joints (Section 3), "thorax as root", "in which 15 body parts are defined".
Our Human3.6M order has 17 joints and 16 bones (``pose3d.skeleton.H36M_BONES``). The
paper does not list its 16 joints; we drop the one joint that 16-joint Human3.6M
skeletons (and the MPII-style 2D detectors the paper matches against, Section 3.4)
do not have, **neck/nose (9)**, and merge its two bones thorax-neck and neck-head into
one stick thorax-head. Re-rooted at the thorax, the 15 parts are (proximal, distal)::

     0 thorax-head          5 r_knee-r_ankle      10 l_shoulder-l_elbow
     1 thorax-spine         6 pelvis-l_hip        11 l_elbow-l_wrist
     2 spine-pelvis         7 l_hip-l_knee        12 thorax-r_shoulder
     3 pelvis-r_hip         8 l_knee-l_ankle      13 r_shoulder-r_elbow
     4 r_hip-r_knee         9 thorax-l_shoulder   14 r_elbow-r_wrist

Each part has a fixed RGB colour (:data:`SKELETON_MAP_COLORS`, in [0, 1], pairwise
distinct, never black; right-side parts warm, left-side parts cool, trunk and head
purple/gold), so a map is a 3-channel image like the paper's 56x56 targets, which its
deconvolution network regresses per pixel with a sigmoid cross-entropy (Section 3.2).

Sticks. A map pixel (centre ``p``, same pixel-centre convention as
:mod:`pose3d.heatmaps`) belongs to part ``k`` with endpoints ``a, b`` (map pixels) when
its distance to the segment is at most half the stick width (a capsule, round ends)::

    t = clamp(<p - a, b - a> / |b - a|^2, 0, 1),   dist = |p - (a + t (b - a))| <= l / 2

Foreground and background (Section 3.2, "Deal with occlusion"): when points of two
bones project onto the same pixel, the foreground map takes the colour of the bone
closer to the camera and the background map the colour of the other one. Here each
covering part gets the depth of the stick point under the pixel, linearly interpolated
between its joints' camera depths, ``z = z_a + t (z_b - z_a)`` (linear in ``t`` rather
than perspective-correct, so adding one constant to all depths changes nothing and
root-relative ``z`` works as well as absolute). The foreground map is the colour of the
nearest part, the background map that of the second nearest (zero where at most one
part covers the pixel; deeper layers are not shown). Equal depths are broken in favour
of the lower part index.

Multi-scale (Section 3.2, "Deal with stick width"): the paper trains one network per
configuration ``(c_i, l_i)`` with ``l_i`` in [5, 15]; pass a list of stick widths to get
one pair of maps per width from a single distance computation.

How DeepSkeleton uses it (``lightning_modules/deepskeleton.py``)
----------------------------------------------------------------
Skeleton maps are not a datamodule key: the method makes them on demand from the batch
with :func:`skeleton_maps_for_batch` (ground-truth 2D joints and camera depths
``joints_3d[..., 2] + root_depth``) as the per-pixel target of its deconvolution
network(s), one per stick width, and as ground-truth input for the "regression from
skeleton map" ablations; the regression network then takes the concatenated
``(foreground, background)`` 6-channel map (:func:`stack_skeleton_maps`). For
2D-only samples (``has_3d`` False) depths are unknown, so the foreground map is still
right (up to which part wins at crossings) but the background map carries no occlusion
information and its loss should be masked with ``has_3d``.
"""
from __future__ import annotations

import numbers
from typing import Mapping, Sequence

import torch
from torch import Tensor

from pose3d.heatmaps import input_to_heatmap_coords, pixel_grid
from pose3d.skeleton import JOINT_INDEX

_J = JOINT_INDEX
# The 15 parts, (proximal, distal) joint indices from the thorax outwards (module docstring).
SKELETON_MAP_BONES: tuple[tuple[int, int], ...] = (
    (_J["thorax"], _J["head"]),  # thorax-neck-head merged: neck/nose is not a DeepSkeleton joint
    (_J["thorax"], _J["spine"]),
    (_J["spine"], _J["pelvis"]),
    (_J["pelvis"], _J["r_hip"]),
    (_J["r_hip"], _J["r_knee"]),
    (_J["r_knee"], _J["r_ankle"]),
    (_J["pelvis"], _J["l_hip"]),
    (_J["l_hip"], _J["l_knee"]),
    (_J["l_knee"], _J["l_ankle"]),
    (_J["thorax"], _J["l_shoulder"]),
    (_J["l_shoulder"], _J["l_elbow"]),
    (_J["l_elbow"], _J["l_wrist"]),
    (_J["thorax"], _J["r_shoulder"]),
    (_J["r_shoulder"], _J["r_elbow"]),
    (_J["r_elbow"], _J["r_wrist"]),
)
NUM_PARTS = len(SKELETON_MAP_BONES)
SKELETON_MAP_ROOT = _J["thorax"]

# One RGB colour per part, in [0, 1].
SKELETON_MAP_COLORS: tuple[tuple[float, float, float], ...] = (
    (1.00, 0.85, 0.00),  # thorax-head        gold
    (0.55, 0.25, 0.80),  # thorax-spine       purple
    (0.95, 0.55, 0.95),  # spine-pelvis       lilac
    (1.00, 0.55, 0.00),  # pelvis-r_hip       orange
    (1.00, 0.00, 0.00),  # r_hip-r_knee       red
    (0.50, 0.00, 0.00),  # r_knee-r_ankle     dark red
    (0.00, 0.85, 0.85),  # pelvis-l_hip       cyan
    (0.00, 0.00, 1.00),  # l_hip-l_knee       blue
    (0.00, 0.00, 0.45),  # l_knee-l_ankle     navy
    (0.55, 1.00, 0.55),  # thorax-l_shoulder  light green
    (0.00, 0.75, 0.00),  # l_shoulder-l_elbow green
    (0.00, 0.35, 0.00),  # l_elbow-l_wrist    dark green
    (1.00, 0.65, 0.65),  # thorax-r_shoulder  salmon
    (1.00, 0.00, 0.60),  # r_shoulder-r_elbow rose
    (0.55, 0.30, 0.05),  # r_elbow-r_wrist    brown
)


def skeleton_map_palette(device=None, dtype=torch.float32) -> Tensor:
    """The part colours as a (15, 3) tensor."""
    return torch.tensor(SKELETON_MAP_COLORS, device=device, dtype=dtype)


def _part_depths(
    joints_2d: Tensor, depth: Tensor, image_size, map_size, visible: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Squared distance (B, P, h, w) of every pixel centre to every stick, and the stick depth there.

    Parts with an invisible or non-finite endpoint get an infinite depth everywhere, which
    keeps them out of both layers. In-place steps keep the number of full-size passes low.
    """
    xy = input_to_heatmap_coords(joints_2d, image_size, map_size)
    proximal = torch.tensor([p for p, _ in SKELETON_MAP_BONES], device=xy.device)
    distal = torch.tensor([d for _, d in SKELETON_MAP_BONES], device=xy.device)
    a, b = xy[:, proximal], xy[:, distal]  # (B, P, 2)
    za, zb = depth[:, proximal], depth[:, distal]  # (B, P)
    ok = torch.isfinite(a).all(-1) & torch.isfinite(b).all(-1) & torch.isfinite(za) & torch.isfinite(zb)
    if visible is not None:
        vis = visible.to(device=xy.device, dtype=torch.bool)
        ok = ok & vis[:, proximal] & vis[:, distal]
    zero = torch.zeros((), dtype=xy.dtype, device=xy.device)
    a, b = torch.where(ok[..., None], a, zero), torch.where(ok[..., None], b, zero)
    dz = torch.where(ok, zb - za, zero)
    za = torch.where(ok, za, torch.full_like(za, float("inf")))

    xs, ys = pixel_grid(map_size, xy)
    ex, ey = (b - a).unbind(-1)  # bone direction (B, P)
    rx = (xs - a[..., 0:1])[..., None, :]  # p - a along x: (B, P, 1, w)
    ry = (ys - a[..., 1:2])[..., :, None]  # p - a along y: (B, P, h, 1)
    ex, ey, dz = ex[..., None, None], ey[..., None, None], dz[..., None, None]
    inv_len2 = 1.0 / (ex * ex + ey * ey).clamp_min(1e-12)
    t = (ry * ey + rx * ex).mul_(inv_len2).clamp_(0.0, 1.0)  # (B, P, h, w)
    dx = torch.addcmul(rx, t, -ex)  # p - (a + t (b - a))
    dy = torch.addcmul(ry, t, -ey)
    dist2 = dx.square_().addcmul_(dy, dy)
    z = torch.addcmul(za[..., None, None], t, dz)  # z_a + t (z_b - z_a)
    return dist2, z


def _layers(dist2: Tensor, z: Tensor, stick_width: float, palette: Tensor) -> dict[str, Tensor]:
    """Foreground/background maps for one stick width from per-part squared distances and depths.

    The nearest covering part is an arg-min over parts (ties go to the first, i.e. the lower
    part index); the second nearest is the arg-min once the nearest is removed.
    """
    inf = torch.full_like(z, float("inf"))
    z = torch.where(dist2 <= (0.5 * stick_width) ** 2, z, inf)  # (B, P, h, w)
    out: dict[str, Tensor] = {}
    for name in ("foreground", "background"):
        nearest, part = z.min(dim=1)  # (B, h, w)
        hit = torch.isfinite(nearest)
        part = torch.where(hit, part, torch.full_like(part, -1))
        colour = palette[part.clamp_min(0)] * hit[..., None].to(palette.dtype)  # (B, h, w, 3)
        out[name] = colour.permute(0, 3, 1, 2)
        out[f"{name}_part"] = part
        z = z.scatter(1, part.clamp_min(0)[:, None], inf)  # peel off this layer
    return out


def render_skeleton_maps(
    joints_2d: Tensor,
    depth: Tensor,
    image_size,
    map_size,
    stick_width: float | Sequence[float],
    visible: Tensor | None = None,
    colors: Tensor | None = None,
) -> dict[str, Tensor] | list[dict[str, Tensor]]:
    """DeepSkeleton foreground/background skeleton maps for a batch (module docstring).

    Args:
        joints_2d: (B, 17, 2) joints in input-image pixels (H36M order).
        depth: (B, 17) camera depth of each joint in mm (absolute or root-relative ``z``).
        image_size: ``(W, H)`` of the input image the joints are given in.
        map_size: ``(w, h)`` of the maps; joints are mapped with the pixel-centre
            convention of :mod:`pose3d.heatmaps`.
        stick_width: stick width ``l`` in map pixels, or a list of widths (multi-scale).
        visible: optional (B, 17) bool; a part is drawn only if both its joints are visible.
        colors: optional (15, 3) palette replacing :data:`SKELETON_MAP_COLORS`.

    Returns:
        For one width, a dict with ``foreground`` and ``background`` (B, 3, h, w) in [0, 1]
        (stored channels-last; call ``.contiguous()`` if a kernel needs NCHW strides) and ``foreground_part`` / ``background_part`` (B, h, w) int64 part indices (-1 where
        no part is in that layer); for a list of widths, a list of such dicts, one per width.
    """
    joints_2d, depth = joints_2d.detach(), depth.detach()  # hard part assignment: not differentiable
    palette = skeleton_map_palette(joints_2d.device, joints_2d.dtype) if colors is None else colors
    palette = palette.to(device=joints_2d.device, dtype=joints_2d.dtype)
    dist2, z = _part_depths(joints_2d, depth.to(joints_2d.dtype), image_size, map_size, visible)
    if isinstance(stick_width, numbers.Real):
        return _layers(dist2, z, float(stick_width), palette)
    return [_layers(dist2, z, float(width), palette) for width in stick_width]


def stack_skeleton_maps(maps: Mapping[str, Tensor]) -> Tensor:
    """The 6-channel regression input ``cat(foreground, background)``: (B, 6, h, w)."""
    return torch.cat((maps["foreground"], maps["background"]), dim=1)


def skeleton_maps_for_batch(
    batch: Mapping[str, Tensor], map_size, stick_width: float | Sequence[float]
) -> dict[str, Tensor] | list[dict[str, Tensor]]:
    """Skeleton maps made on demand from a batch of the shared contract (DESIGN.md).

    Uses ``joints_2d`` (input-crop pixels; the crop size is read from ``image``), depths
    ``joints_3d[..., 2] + root_depth`` and ``visible`` when present.
    """
    height, width = batch["image"].shape[-2:]
    depth = batch["joints_3d"][..., 2]
    if "root_depth" in batch:
        depth = depth + batch["root_depth"][:, None].to(depth.dtype)
    return render_skeleton_maps(
        batch["joints_2d"], depth, (width, height), map_size, stick_width, visible=batch.get("visible")
    )
