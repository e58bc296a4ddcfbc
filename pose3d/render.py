"""A small batched software renderer for capsule people (the synthetic dataset's pixels).

Every body part of :data:`pose3d.body.PARTS` is a *capsule*: the solid swept by a
sphere of radius ``r`` along the 3D segment from joint ``a`` to joint ``b`` (a sphere
when ``a == b``). Extra occluders are capsules too. Everything lives in the camera
frame (mm, x right, y down, z forward) and is rendered straight into the output crop
whose pinhole intrinsics ``(fx, fy, cx, cy)`` are given per sample. Pixel ``(u, v)``
(column, row) is sampled at its centre, which has the continuous coordinates ``(u, v)``
(OpenCV convention, the same as :func:`pose3d.camera.project`).

How a pixel is shaded
---------------------
The ray through pixel ``(u, v)`` is ``t * d`` with ``d = ((u - cx) / fx, (v - cy) / fy, 1)``,
so ``t`` is the z-depth in mm. For each capsule we take the point ``C`` of its segment
closest to the ray (exact: a clamped 1D quadratic), and intersect the ray with the
sphere of radius ``r`` centred at ``C``.

* Silhouettes are exact: the ray hits the capsule iff its distance to the segment is
  at most ``r``.
* Depth is approximate: the front intersection with the sphere at ``C`` lies on or
  slightly behind the true capsule surface (they agree where the capsule is seen
  side-on; for a capsule pointing at the camera the error is a fraction of ``r``).
  The depth is still the depth of a point inside the part, so the z-buffer orders
  parts correctly whenever they do not interpenetrate by more than that error.
* The normal is ``(P - C) / r`` at the hit point ``P``; shading is Lambertian,
  ``colour * (ambient + (1 - ambient) * max(0, n . light_dir))``, ``light_dir`` pointing
  from the surface *towards* the light.
* Rays that start inside a capsule (camera inside a part) see nothing of it.

How it is made fast
-------------------
The image is cut into ``tile x tile`` pixel tiles. A conservative screen-space box of
every capsule selects the (sample, capsule, tile) triples that can be hit; only those
are evaluated, as one flat batch of ``(N, tile, tile)`` elementwise ops (no loop over
samples or parts). The z-buffer is a single ``scatter_reduce(amin)`` of int64 keys that
pack ``(depth bits << 16) | (1 + primitive index)`` (float32 bit patterns of positive
numbers sort like the numbers; the background key is ``(inf bits << 16) | 0``), giving the
nearest depth and its primitive at once, with ties going to the lower index. Shading then
runs only on the foreground pixels, with one gather of the winning capsule per pixel.
Every value a pixel gets depends only on its own sample's inputs, so a sample renders
bit-identically alone or inside any batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from pose3d.body import NUM_PARTS, PART_JOINTS
from pose3d.skeleton import NUM_JOINTS

#: Layout of one capsule row in ``extra_capsules`` (and of the internal capsule table):
#: start xyz (mm, camera frame), end xyz (mm), radius (mm; <= 0 means "no capsule",
#: use it to pad), colour rgb in [0, 1].
CAPSULE_FIELDS = 10

_NEAR_MM = 1.0          # nothing closer to the camera than this is drawn
_INDEX_BITS = 16        # low bits of a z-buffer key hold 1 + the primitive index (0: none)
_INDEX_MASK = (1 << _INDEX_BITS) - 1
_INF_BITS = 0x7F800000  # float32 +inf as an int32 bit pattern
_BACKGROUND_KEY = _INF_BITS << _INDEX_BITS  # beats every miss (inf, 1 + q), loses to every hit

# JOINT_IN_PART[j, p]: joint j is an end point of body part p.
JOINT_IN_PART = np.zeros((NUM_JOINTS, NUM_PARTS), dtype=bool)
JOINT_IN_PART[PART_JOINTS[:, 0], np.arange(NUM_PARTS)] = True
JOINT_IN_PART[PART_JOINTS[:, 1], np.arange(NUM_PARTS)] = True


@dataclass
class RenderOutput:
    """What :func:`render_people` returns.

    ``image`` (B,3,H,W) float32 in [0, 1]; ``depth`` (B,H,W) float32 z-depth in mm, ``inf``
    on the background; ``part_index`` (B,H,W) long: body part ``0..P-1``, extra capsule ``k`` as
    ``P + k``, ``-1`` on the background; ``visible`` (B,17) bool.
    """

    image: Tensor
    depth: Tensor
    part_index: Tensor
    visible: Tensor


def body_capsules(joints_cam: Tensor, part_radii: Tensor, part_colours: Tensor) -> Tensor:
    """The body parts of people (B,17,3) as a capsule table (B,P,CAPSULE_FIELDS)."""
    ends = torch.as_tensor(PART_JOINTS, device=joints_cam.device)
    start, end = joints_cam[:, ends[:, 0]], joints_cam[:, ends[:, 1]]
    radii = part_radii.to(joints_cam).expand(joints_cam.shape[0], -1)
    colours = part_colours.to(joints_cam).expand(joints_cam.shape[0], -1, -1)
    return torch.cat((start, end, radii[..., None], colours), dim=-1)


def _dot3(a: tuple[Tensor, Tensor, Tensor], b: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    """Dot product written out, so it rounds the same for any batch shape."""
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


class _Capsules:
    """Capsule quantities for the ray test, one tensor per quantity, all of one shape.

    They come from a packed table (..., 13): start xyz, axis xyz (end - start), radius,
    colour rgb, and the dot products A.e, e.e, A.A; selecting capsules per pixel is then
    a single gather.
    """

    def __init__(self, columns: Tensor):
        c = columns.unbind(0)
        self.start, self.axis, self.radius, self.colour = c[0:3], c[3:6], c[6], c[7:10]
        self.start_axis, self.axis_axis, self.start_start = c[10], c[11], c[12]

    @staticmethod
    def pack(table: Tensor) -> Tensor:
        """A (B,Q,CAPSULE_FIELDS) capsule table as the packed (13,B,Q) table."""
        start, end = table[..., 0:3], table[..., 3:6]
        axis = end - start
        s, e = start.unbind(-1), axis.unbind(-1)
        dots = torch.stack((_dot3(s, e), _dot3(e, e), _dot3(s, s)), dim=-1)
        return torch.cat((start, axis, table[..., 6:10], dots), dim=-1).permute(2, 0, 1).contiguous()

    @classmethod
    def gather(cls, packed: Tensor, sample: Tensor, index: Tensor, shape: tuple[int, ...]) -> "_Capsules":
        """Capsules ``packed[:, sample, index]`` with every quantity reshaped to ``shape``."""
        columns = packed.flatten(1).index_select(1, sample * packed.shape[2] + index)  # (13, N)
        return cls(columns.reshape((columns.shape[0],) + shape))


def _ray_norm2(x: Tensor, y: Tensor) -> Tensor:
    """``|d|^2 = x^2 + y^2 + 1`` for rays ``d = (x, y, 1)``, always rounded the same way."""
    return (x * x + 1.0) + y * y


def _ray_capsule(x: Tensor, y: Tensor, ray_norm2: Tensor, caps: _Capsules) -> tuple[Tensor, Tensor]:
    """Front z-depth (``inf`` on a miss) and segment parameter ``s`` of the closest point.

    The ray is ``t * (x, y, 1)``; ``ray_norm2 = x^2 + y^2 + 1``; all arguments broadcast.
    """
    # (the grouping keeps the terms that depend on x or y alone small when x, y broadcast)
    start_ray = (caps.start[0] * x + caps.start[2]) + caps.start[1] * y   # A . d
    axis_ray = (caps.axis[0] * x + caps.axis[2]) + caps.axis[1] * y       # e . d
    # closest point of the line A + s e to the ray, clamped to the segment
    num = start_ray * axis_ray - caps.start_axis * ray_norm2
    den = (caps.axis_axis * ray_norm2 - axis_ray * axis_ray).clamp_min(1e-6)
    s = (num / den).clamp(0.0, 1.0)
    # ray / sphere(C = A + s e, r):  t^2 |d|^2 - 2 t (C . d) + |C|^2 - r^2 = 0
    centre_ray = start_ray + s * axis_ray
    centre2 = caps.start_start + s * (2.0 * caps.start_axis + s * caps.axis_axis)
    disc = centre_ray * centre_ray - ray_norm2 * (centre2 - caps.radius * caps.radius)
    depth = (centre_ray - disc.sqrt()) / ray_norm2  # NaN where disc < 0: a miss
    return torch.where(depth > _NEAR_MM, depth, float("inf")), s


def _screen_boxes(caps_table: Tensor, intrinsics: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Conservative pixel boxes (umin, umax, vmin, vmax), each (B,Q), of every capsule.

    A capsule lies in the convex hull of the axis-aligned boxes around its end spheres;
    ``x / z`` over that hull is extreme at one of the boxes' corners. Capsules reaching
    behind the near plane get an unbounded box; those entirely behind it an empty one.
    """
    start, end, radius = caps_table[..., 0:3], caps_table[..., 3:6], caps_table[..., 6:7]
    ends = torch.stack((start, end), dim=-2)                      # (B,Q,2,3)
    sign = torch.tensor([-1.0, 1.0], dtype=ends.dtype, device=ends.device)
    offsets = radius[..., None] * sign                             # (B,Q,1,2)
    z = (ends[..., 2:3] + offsets)[..., None, :]                  # (B,Q,2,1,2)
    fx, fy, cx, cy = (c[:, None] for c in intrinsics.unbind(-1))
    boxes = []
    for axis, f, c in ((0, fx, cx), (1, fy, cy)):
        coord = (ends[..., axis:axis + 1] + offsets)[..., :, None]  # (B,Q,2,2,1)
        ratio = (coord / z.clamp_min(_NEAR_MM)).flatten(-3)
        boxes += [f * ratio.amin(-1) + c, f * ratio.amax(-1) + c]
    z_lo = ends[..., 2].amin(-1) - radius[..., 0]
    z_hi = ends[..., 2].amax(-1) + radius[..., 0]
    crosses_near = z_lo <= _NEAR_MM
    absent = (z_hi <= _NEAR_MM) | (radius[..., 0] <= 0)
    inf = torch.full_like(z_lo, float("inf"))
    for k in range(4):
        unbounded = -inf if k % 2 == 0 else inf
        empty = inf if k % 2 == 0 else -inf
        boxes[k] = torch.where(absent, empty, torch.where(crosses_near, unbounded, boxes[k]))
    return boxes[0], boxes[1], boxes[2], boxes[3]


def _zbuffer(caps_table: Tensor, intrinsics: Tensor, width: int, height: int, tile: int) -> Tensor:
    """Nearest-primitive keys (B, Hp, Wp) int64 over the tile-padded image."""
    batch, device = caps_table.shape[0], caps_table.device
    tiles_x, tiles_y = -(-width // tile), -(-height // tile)
    pad_w, pad_h = tiles_x * tile, tiles_y * tile
    umin, umax, vmin, vmax = _screen_boxes(caps_table, intrinsics)
    first = torch.arange(0, pad_w, tile, device=device, dtype=caps_table.dtype)
    first_v = torch.arange(0, pad_h, tile, device=device, dtype=caps_table.dtype)
    hit_u = (umax[..., None] >= first - 0.5) & (umin[..., None] <= first + tile - 0.5)
    hit_v = (vmax[..., None] >= first_v - 0.5) & (vmin[..., None] <= first_v + tile - 0.5)
    b, q, ty, tx = (hit_v[..., :, None] & hit_u[..., None, :]).nonzero(as_tuple=True)

    keys = torch.full((batch * pad_h * pad_w,), _BACKGROUND_KEY, dtype=torch.int64, device=device)
    if b.numel() == 0:
        return keys.view(batch, pad_h, pad_w)
    fx, fy, cx, cy = (c[b] for c in intrinsics.unbind(-1))
    offs = torch.arange(tile, device=device)
    u = (tx * tile)[:, None] + offs                                  # (N, T)
    v = (ty * tile)[:, None] + offs
    x = ((u.to(fx) - cx[:, None]) / fx[:, None])[:, None, :]          # (N, 1, T)
    y = ((v.to(fy) - cy[:, None]) / fy[:, None])[:, :, None]          # (N, T, 1)
    ray_norm2 = _ray_norm2(x, y)
    caps = _Capsules.gather(_Capsules.pack(caps_table), b, q, (-1, 1, 1))
    depth, _ = _ray_capsule(x, y, ray_norm2, caps)                   # (N, T, T)

    key = (depth.view(torch.int32).to(torch.int64) << _INDEX_BITS) | (q + 1)[:, None, None]
    pixel = (b[:, None, None] * pad_h + v[:, :, None]) * pad_w + u[:, None, :]
    keys.scatter_reduce_(0, pixel.flatten(), key.flatten(), reduce="amin")
    return keys.view(batch, pad_h, pad_w)


def _joint_visibility(joints_cam: Tensor, intrinsics: Tensor, part_radii: Tensor,
                      part_ends: Tensor, depth: Tensor, part_index: Tensor) -> Tensor:
    """Joint j is visible when it projects into the image and the front surface at its
    (nearest) pixel is (a) one of j's own parts (those with j as an end point), (b) a body
    part whose volume holds j (within 15 % of its radius: a hip seen through the pelvis'
    or torso's skin), or (c) no nearer than j minus the largest radius of j's own parts."""
    batch, height, width = depth.shape
    fx, fy, cx, cy = (c[:, None] for c in intrinsics.unbind(-1))
    z = joints_cam[..., 2]
    safe_z = z.clamp_min(_NEAR_MM)
    u = torch.round(fx * joints_cam[..., 0] / safe_z + cx)
    v = torch.round(fy * joints_cam[..., 1] / safe_z + cy)
    inside = (z > _NEAR_MM) & (u >= 0) & (u <= width - 1) & (v >= 0) & (v <= height - 1)
    ui = u.clamp(0, width - 1).long()
    vi = v.clamp(0, height - 1).long()
    rows = torch.arange(batch, device=depth.device)[:, None]
    front_depth = depth[rows, vi, ui]
    front_part = part_index[rows, vi, ui]

    own = torch.as_tensor(JOINT_IN_PART, device=depth.device)                  # (J,P)
    radii = part_radii.expand(batch, -1)[:, None, :].masked_fill(~own, 0.0)   # (B,J,P)
    reach = radii.amax(-1)
    num_parts = own.shape[1]
    is_body = (front_part >= 0) & (front_part < num_parts)
    front_body = front_part.clamp(0, num_parts - 1)
    own_front = own[torch.arange(NUM_JOINTS, device=depth.device), front_body]
    holds = _segment_distance(joints_cam, part_ends[..., 0, :], part_ends[..., 1, :]) \
        <= 1.15 * part_radii.expand(batch, -1)[:, None, :]                       # (B,J,P)
    holds_front = holds.gather(2, front_body[..., None])[..., 0]
    return inside & ((is_body & (own_front | holds_front)) | (front_depth >= z - reach))


def _segment_distance(points: Tensor, start: Tensor, end: Tensor) -> Tensor:
    """Distance (B,J,P) from points (B,J,3) to segments (B,P,3)-(B,P,3)."""
    axis = (end - start)[:, None]                                      # (B,1,P,3)
    rel = points[:, :, None] - start[:, None]                          # (B,J,P,3)
    s = ((rel * axis).sum(-1) / (axis * axis).sum(-1).clamp_min(1e-6)).clamp(0.0, 1.0)
    return (rel - s[..., None] * axis).norm(dim=-1)


def render_people(
    joints_cam: Tensor,
    intrinsics: Tensor,
    part_radii: Tensor,
    part_colours: Tensor,
    image_size: tuple[int, int],
    light_dir: Tensor,
    ambient: Tensor,
    background: Tensor,
    extra_capsules: Tensor | None = None,
    tile: int | None = None,
) -> RenderOutput:
    """Render a batch of capsule people straight into crops of ``image_size = (W, H)``.

    Args:
        joints_cam: (B,17,3) joints in mm, camera frame.
        intrinsics: (B,4) ``fx, fy, cx, cy`` in pixels of the output crop.
        part_radii: (B,P) radius of every part of :data:`pose3d.body.PARTS` in mm.
        part_colours: (B,P,3) part colours in [0, 1].
        light_dir: (B,3) direction from the surface towards the light (normalised here).
        ambient: (B,) ambient light in [0, 1].
        background: (B,3,H,W) what shows where no primitive is hit.
        extra_capsules: optional (B,K,CAPSULE_FIELDS) occluders (see :data:`CAPSULE_FIELDS`);
            they join the z-buffer as primitives ``P..P+K-1``; rows with radius <= 0 are
            padding and never drawn.
        tile: tile edge in pixels for the culling pass, a speed knob that never changes the
            result; default 4 up to 64 pixels, else 8 (fastest on a 2-core CPU).

    Runs on the device of ``joints_cam`` and computes in float32 whatever the input dtype.
    """
    width, height = int(image_size[0]), int(image_size[1])
    batch = joints_cam.shape[0]
    if tile is None:
        tile = 4 if min(width, height) <= 64 else 8
    caps_table = body_capsules(joints_cam.float(), part_radii, part_colours)  # float32 inside
    if extra_capsules is not None and extra_capsules.shape[1] > 0:
        caps_table = torch.cat((caps_table, extra_capsules.to(caps_table)), dim=1)
    if caps_table.shape[1] >= _INDEX_MASK:
        raise ValueError(f"at most {_INDEX_MASK - 1} primitives per image, got {caps_table.shape[1]}")

    keys = _zbuffer(caps_table, intrinsics.to(caps_table), width, height, tile)[:, :height, :width]
    depth = (keys >> _INDEX_BITS).to(torch.int32).view(torch.float32)
    part_index = (keys & _INDEX_MASK) - 1

    # shade the foreground pixels only
    image = background.to(caps_table).clamp(0.0, 1.0)  # a copy: the input stays untouched
    b, v, u = (part_index >= 0).nonzero(as_tuple=True)
    if b.numel() > 0:
        light = light_dir.to(caps_table)
        light = light / torch.sqrt(_dot3(light.unbind(-1), light.unbind(-1))).clamp_min(1e-6)[:, None]
        per_sample = torch.cat((intrinsics.to(caps_table), light, ambient.to(caps_table)[:, None]), dim=-1)
        fx, fy, cx, cy, lx, ly, lz, amb = per_sample.T.contiguous().index_select(1, b).unbind(0)
        x, y = (u.to(fx) - cx) / fx, (v.to(fy) - cy) / fy
        caps = _Capsules.gather(_Capsules.pack(caps_table), b, part_index[b, v, u], (-1,))
        _, s = _ray_capsule(x, y, _ray_norm2(x, y), caps)
        t = depth[b, v, u]  # the z-buffer's own depth: always finite here
        normal = [t * d - (a + s * e) for d, a, e in zip((x, y, 1.0), caps.start, caps.axis)]
        length = torch.sqrt(_dot3(normal, normal)).clamp_min(1e-6)
        lambert = (_dot3(normal, (lx, ly, lz)) / length).clamp_min(0.0)
        shade = amb + (1.0 - amb) * lambert
        rgb = torch.stack([(c * shade).clamp(0.0, 1.0) for c in caps.colour], dim=-1)
        image.permute(0, 2, 3, 1)[b, v, u] = rgb

    part_ends = caps_table[:, :NUM_PARTS, 0:6].unflatten(-1, (2, 3))
    visible = _joint_visibility(joints_cam.to(caps_table), intrinsics.to(caps_table), part_radii.to(caps_table),
                                part_ends, depth, part_index)
    assert image.shape == (batch, 3, height, width)
    return RenderOutput(image=image, depth=depth, part_index=part_index, visible=visible)
