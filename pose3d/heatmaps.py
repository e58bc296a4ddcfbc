"""Gaussian joint heatmaps: rendering targets and decoding predictions, batched torch.

Coordinate convention (pixel centres, used by every function here)
------------------------------------------------------------------
A pixel with integer index ``i`` covers the continuous interval ``[i - 0.5, i + 0.5)``
and has its centre at ``i``; this holds for the input image (``W x H``, the network's
input crop, DESIGN.md) and for the heatmap (``w x h``). Both grids span the same
physical extent, so a point maps between them as::

    x_hm = (x + 0.5) * w / W - 0.5          y_hm = (y + 0.5) * h / H - 0.5
    x    = (x_hm + 0.5) * W / w - 0.5       y    = (y_hm + 0.5) * H / h - 0.5

(:func:`input_to_heatmap_coords` and :func:`heatmaps_to_input_coords`). A joint at the
centre of input pixel 0 of a 256-wide crop lands at ``x_hm = -0.375`` on a 64-wide map,
i.e. inside heatmap pixel 0, and decoding inverts the mapping exactly.

Sizes are ``(width, height)`` pairs; tensors are ``(B, J, h, w)`` heatmaps and
``(B, J, 2)`` joints in ``(x, y)`` order. Nothing loops over samples or joints, so every
function runs unchanged on CPU and GPU and under autograd.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

Size = Sequence[int] | Tensor


def _scale(src_size: Size, dst_size: Size, like: Tensor) -> Tensor:
    """Per-axis factor ``dst / src`` as a (2,) tensor on ``like``'s device and dtype."""
    src = torch.as_tensor(src_size, dtype=like.dtype, device=like.device)
    dst = torch.as_tensor(dst_size, dtype=like.dtype, device=like.device)
    return dst / src


def input_to_heatmap_coords(coords: Tensor, image_size: Size, heatmap_size: Size) -> Tensor:
    """Input-image pixels ``(..., 2)`` to continuous heatmap pixels: ``(x + 0.5) * w / W - 0.5``."""
    return (coords + 0.5) * _scale(image_size, heatmap_size, coords) - 0.5


def heatmaps_to_input_coords(coords: Tensor, image_size: Size, heatmap_size: Size) -> Tensor:
    """Continuous heatmap pixels ``(..., 2)`` to input-image pixels: ``(x_hm + 0.5) * W / w - 0.5``.

    The exact inverse of :func:`input_to_heatmap_coords`.
    """
    return (coords + 0.5) * _scale(heatmap_size, image_size, coords) - 0.5


def pixel_grid(size: Size, like: Tensor) -> tuple[Tensor, Tensor]:
    """Pixel-centre coordinates ``(xs (w,), ys (h,))`` of a ``(w, h)`` grid, as ``like``."""
    w, h = (int(s) for s in size)
    xs = torch.arange(w, dtype=like.dtype, device=like.device)
    ys = torch.arange(h, dtype=like.dtype, device=like.device)
    return xs, ys


def render_heatmaps(
    joints_2d: Tensor,
    image_size: Size,
    heatmap_size: Size,
    sigma: float = 2.0,
    visible: Tensor | None = None,
) -> Tensor:
    """Gaussian heatmaps ``(B, J, h, w)`` for joints ``(B, J, 2)`` given in input pixels.

    Each joint is mapped to continuous heatmap coordinates ``(x_j, y_j)`` (module
    docstring) and drawn as an unnormalised Gaussian of amplitude 1::

        H_j(u, v) = exp(-((u - x_j)^2 + (v - y_j)^2) / (2 sigma^2))

    evaluated at every pixel centre ``(u, v)``; ``sigma`` is in heatmap pixels. The
    maximum is exactly 1 when the joint sits on a pixel centre, slightly less for a
    sub-pixel position. The map is all zeros where ``visible`` (B, J) is False, where the
    joint is not finite, or where it falls outside the map (not inside any heatmap pixel,
    i.e. ``x_j`` outside ``[-0.5, w - 0.5)`` or ``y_j`` outside ``[-0.5, h - 0.5)``).
    Separable: the 2D Gaussian is the outer product of two 1D ones.
    """
    w, h = (int(s) for s in heatmap_size)
    xy = input_to_heatmap_coords(joints_2d, image_size, heatmap_size)
    inside = (
        torch.isfinite(xy).all(-1)
        & (xy[..., 0] >= -0.5) & (xy[..., 0] < w - 0.5)
        & (xy[..., 1] >= -0.5) & (xy[..., 1] < h - 0.5)
    )
    if visible is not None:
        inside = inside & visible.to(device=xy.device, dtype=torch.bool)
    xy = torch.where(inside[..., None], xy, torch.zeros_like(xy))  # keep NaNs out of exp
    xs, ys = pixel_grid((w, h), xy)
    gx = torch.exp(-((xs - xy[..., 0:1]) ** 2) / (2.0 * sigma**2))  # (B, J, w)
    gy = torch.exp(-((ys - xy[..., 1:2]) ** 2) / (2.0 * sigma**2))  # (B, J, h)
    gx = gx * inside[..., None].to(gx.dtype)  # zero the whole map of a hidden joint
    return gy[..., :, None] * gx[..., None, :]


def decode_argmax(heatmaps: Tensor, image_size: Size, subpixel: bool = True) -> tuple[Tensor, Tensor]:
    """Joints ``(B, J, 2)`` in input pixels and confidences ``(B, J)`` from heatmaps ``(B, J, h, w)``.

    The classic hourglass decoder: take the arg-max pixel ``(u, v)`` and move a quarter
    pixel towards the higher of its two neighbours on each axis,
    ``x_hm = u + 0.25 * sign(H(u+1, v) - H(u-1, v))`` (likewise for ``y``; no shift on the
    map border or when both neighbours are equal). This bounds the per-axis error at
    0.25 heatmap pixels for a Gaussian target instead of 0.5, and halves the mean. The
    result goes back to input pixels with :func:`heatmaps_to_input_coords`. The
    confidence is the map's maximum value (0 for an all-zero map, whose location is
    then meaningless). ``subpixel=False``: the arg-max pixel itself.
    """
    b, j, h, w = heatmaps.shape
    flat = heatmaps.reshape(b, j, h * w)
    confidence, index = flat.max(dim=-1)
    u, v = index % w, torch.div(index, w, rounding_mode="floor")

    def value(du: int, dv: int) -> Tensor:
        uu, vv = (u + du).clamp(0, w - 1), (v + dv).clamp(0, h - 1)
        return flat.gather(-1, (vv * w + uu)[..., None])[..., 0]

    interior_x = (u > 0) & (u < w - 1) & subpixel
    interior_y = (v > 0) & (v < h - 1) & subpixel
    dx = torch.sign(value(1, 0) - value(-1, 0)) * interior_x
    dy = torch.sign(value(0, 1) - value(0, -1)) * interior_y
    xy_hm = torch.stack((u + 0.25 * dx, v + 0.25 * dy), dim=-1).to(heatmaps.dtype)
    return heatmaps_to_input_coords(xy_hm, image_size, (w, h)), confidence


def soft_argmax(heatmaps: Tensor, image_size: Size, beta: float = 20.0) -> Tensor:
    """Differentiable integral regression: joints ``(B, J, 2)`` in input pixels.

    The map is turned into a distribution with a softmax at temperature ``beta`` and the
    joint is its expected pixel centre (Sun et al. 2018, "Integral human pose
    regression")::

        p(u, v) = softmax_{u,v}(beta * H(u, v)),   x_hm = sum p(u, v) u,   y_hm = sum p(u, v) v

    then mapped to input pixels. For a rendered Gaussian target (values in [0, 1]),
    ``beta`` must be large enough that the ``h * w`` background pixels (weight
    ``exp(0) = 1`` each) do not drag the mean towards the map centre, and small enough
    that the peak ``exp(beta * H)`` (std about ``sigma / sqrt(beta)``) still spans more
    than one pixel (else the mean snaps towards the nearest pixel centre). For
    ``sigma = 2`` the default 20 keeps the round trip under 0.05 heatmap pixel on maps
    from 32x32 to 128x128 (10 leaks background on 64x64, 40 already snaps by 0.17 px);
    a wider target tolerates a larger ``beta``. For network logits use the temperature
    the model was trained with (often 1).
    """
    b, j, h, w = heatmaps.shape
    prob = torch.softmax(beta * heatmaps.reshape(b, j, h * w), dim=-1).reshape(b, j, h, w)
    xs, ys = pixel_grid((w, h), heatmaps)
    x = (prob.sum(dim=-2) * xs).sum(dim=-1)  # marginal over rows, then mean column
    y = (prob.sum(dim=-1) * ys).sum(dim=-1)
    return heatmaps_to_input_coords(torch.stack((x, y), dim=-1), image_size, (w, h))
