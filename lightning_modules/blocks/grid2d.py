"""2D joint positions as classification over an ``N_g x N_g`` grid of image cells (Park et al.
2016, Section 3.1, Eq. 1-3), batched over samples and joints.

The crop (``S x S`` pixels) is cut into ``N_g x N_g`` square cells of width ``w_g = S / N_g``;
cell ``i = row * N_g + col`` is one class per joint. Pixel coordinates follow
:mod:`pose3d.heatmaps` (pixel ``k`` covers ``[k - 0.5, k + 0.5)``), so the image spans
``[-0.5, S - 0.5)`` and cell ``(row, col)`` has its centre at
``((col + 0.5) w_g - 0.5, (row + 0.5) w_g - 0.5)`` pixels: the grid is a heatmap of ``N_g``
pixels and :func:`pose3d.heatmaps.input_to_heatmap_coords` maps joints onto it.

* :func:`soft_labels`: Eq. 1-2, probability proportional to the inverse distance from the
  joint to each cell centre, non-zero only where that distance is below ``w_g`` (at most the
  four nearest cells), normalised to sum 1. A joint exactly at a centre gets the one-hot
  label (the limit of Eq. 1); a joint with no cell centre within ``w_g`` (outside the crop by
  more than half a cell), not visible, or in a sample without 2D labels gets none.
* :func:`grid_cross_entropy`: Eq. 3 per joint, ``-sum_i p_hat(g_i) log p(g_i)``.
* :func:`expected_position`: the 2D joint decoded as the expectation of the cell centres
  under the softmax; :func:`containing_cell`: the cell a point lies in (for cell accuracy).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from pose3d.heatmaps import heatmaps_to_input_coords, input_to_heatmap_coords

_AT_CENTRE = 1e-6  # grid units: closer than this to a centre counts as on it (Eq. 1's limit)


def grid_coords(joints_2d: Tensor, image_size: int, grid: int) -> Tensor:
    """Crop pixels (..., 2) -> continuous grid coordinates in cell widths (centres at integers)."""
    return input_to_heatmap_coords(joints_2d, (image_size, image_size), (grid, grid))


def _centres_in_cells(grid: int, like: Tensor) -> Tensor:
    """(N_g * N_g, 2) cell centres in grid coordinates, ``(col, row)``, row-major."""
    k = torch.arange(grid, dtype=like.dtype, device=like.device)
    rows, cols = torch.meshgrid(k, k, indexing="ij")
    return torch.stack((cols, rows), -1).reshape(-1, 2)


def cell_centres(image_size: int, grid: int, like: Tensor) -> Tensor:
    """(N_g * N_g, 2) cell centres in crop pixels, ``(x, y)``, row-major (index = row * N_g + col)."""
    return heatmaps_to_input_coords(_centres_in_cells(grid, like), (image_size, image_size), (grid, grid))


def soft_labels(joints_2d: Tensor, mask: Tensor, image_size: int, grid: int) -> Tensor:
    """Eq. 1-2: target probabilities (B, J, N_g * N_g) for joints (B, J, 2) in crop pixels.

    ``mask`` (B, J): joints with a 2D label (visible, ``has_2d``); the others, and joints
    with no cell centre closer than one cell width, get an all-zero row (no 2D loss).
    Distances are in cell widths, so the indicator ``d < w_g`` of Eq. 2 is ``d < 1``."""
    offsets = grid_coords(joints_2d, image_size, grid)[..., None, :] - _centres_in_cells(grid, joints_2d)
    distance = offsets.norm(dim=-1)  # (B, J, N_g^2), in cell widths
    near = (distance < 1.0) & mask[..., None] & torch.isfinite(distance)
    inverse = torch.where(near, 1.0 / distance.clamp(min=_AT_CENTRE), torch.zeros_like(distance))
    total = inverse.sum(-1, keepdim=True)
    return torch.where(total > 0, inverse / total.clamp(min=1e-12), torch.zeros_like(inverse))


def grid_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Eq. 3 per joint: ``-sum_i p_hat(g_i) log softmax(logits)_i``, (B, J); 0 for an all-zero label."""
    return -(labels * F.log_softmax(logits, dim=-1)).sum(-1)


def expected_position(probabilities: Tensor, image_size: int) -> Tensor:
    """(B, J, N_g * N_g) cell probabilities -> (B, J, 2) expected joint position in crop pixels."""
    grid = int(round(probabilities.shape[-1] ** 0.5))
    return probabilities @ cell_centres(image_size, grid, probabilities)


def containing_cell(joints_2d: Tensor, image_size: int, grid: int) -> tuple[Tensor, Tensor]:
    """The cell index (B, J) each point lies in, and whether it lies inside the crop at all."""
    cell = torch.floor(grid_coords(joints_2d, image_size, grid) + 0.5).long()  # cell k spans [k - 0.5, k + 0.5)
    inside = ((cell >= 0) & (cell < grid)).all(-1)
    cell = cell.clamp(0, grid - 1)
    return cell[..., 1] * grid + cell[..., 0], inside
