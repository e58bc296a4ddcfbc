"""Pose metrics as plain functions of tensors.

Every metric here is a mean over *items* (a joint, or a bone for PCP) of a per-item
value v, taken over the valid items of the whole batch:

    metric = sum_{b, i valid} v_bi / #{(b, i) valid}

so each one is built from a ``*_sum_count`` function returning the per-sample
``sums`` (B,) and ``counts`` (B,) of that formula; the scalar version divides their
totals, and the Metric classes in :mod:`pose3d.metrics.classes` accumulate them.
Inputs are (B, J, 3) in mm or (B, J, 2) in pixels; ``mask`` is an optional (B, J)
bool joint mask (False = ignore this joint). A batch with no valid item gives NaN
(0 / 0); masked-out joints may hold anything, even NaN.

3D metrics come in three alignment protocols, as MPI-INF-3DHP papers report them: ``"none"``
(the prediction as it is), ``"scaled"`` (times the per-sample least-squares scale,
:func:`scale_to`, as N-MPJPE) and ``"pa"`` (the Procrustes similarity fit,
:func:`pose3d.procrustes.procrustes_align`, as PA-MPJPE); ``"bone_scaled"``
(:func:`scale_to_bone_lengths`) is a second reading of "globally scaled", outside the suite.

"Globally scaled" (Habibie et al. 2019, Sec. 4.1: predictions "globally scaled with ground
truth scale before evaluation", their Tables 1, 2, 4, 5) is one scale factor per pose, no
rotation or translation; the paper does not say how the factor is found. Rhodin et al. 2018
(N-MPJPE) fit it by least squares to the ground truth, which is ``"scaled"`` here and the
suite's ``n_mpjpe`` / ``pck3d_scaled`` / ``auc3d_scaled``; Zhou et al. 2017, whose Human3.6M
protocol Habibie et al. follow for Table 2, scale the prediction's summed bone length to a
skeleton's in their released evaluation, which is ``"bone_scaled"`` with the ground truth's
skeleton. For a good prediction both factors nearly agree; the least-squares one is never
worse. MPI-INF-3DHP's own protocol (Mehta et al. 2017) scores unscaled poses against its
universal-skeleton ground truth; the "GS" of its tables' columns is the green-screen scenes,
not a scaling. :func:`aligned_errors`
gives the per-joint errors under one of them; the statistics of those errors
(:func:`mean_sum_count`, :func:`within_sum_count`, :func:`auc_sum_count`) make the
metrics, so several statistics can share one alignment of a batch.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from pose3d.procrustes import procrustes_align

SumCount = tuple[Tensor, Tensor]  # (sums (B,), counts (B,))

AUC_THRESHOLDS_MM: tuple[float, ...] = tuple(5.0 * k for k in range(31))  # 0, 5, ..., 150
ALIGNMENTS: tuple[str, ...] = ("none", "scaled", "pa", "bone_scaled")


# --------------------------------------------------------------------------- helpers

def _valid(pred: Tensor, target: Tensor, mask: Tensor | None) -> Tensor:
    """Check shapes and return the (B, J) bool mask (all True when ``mask`` is None)."""
    if pred.shape != target.shape or pred.dim() != 3:
        raise ValueError(f"pred and target must both be (B, J, D), got {tuple(pred.shape)} and {tuple(target.shape)}")
    if mask is None:
        return torch.ones(pred.shape[:2], dtype=torch.bool, device=pred.device)
    if mask.shape != pred.shape[:2]:
        raise ValueError(f"mask must be (B, J) = {tuple(pred.shape[:2])}, got {tuple(mask.shape)}")
    return mask.bool()


def joint_errors(pred: Tensor, target: Tensor) -> Tensor:
    """Euclidean distance per joint, e_bj = ||pred_bj - target_bj||_2, shape (B, J)."""
    return torch.linalg.vector_norm(pred - target, dim=-1)


def _masked_sum_count(values: Tensor, valid: Tensor) -> SumCount:
    """sums_b = sum_{i valid} values_bi, counts_b = #{i valid}; values (B, N), valid (B, N)."""
    sums = torch.where(valid, values, torch.zeros((), dtype=values.dtype, device=values.device)).sum(-1)
    return sums, valid.sum(-1).to(sums.dtype)


def _mean(sum_count: SumCount) -> Tensor:
    """Scalar mean over all valid items: sum_b sums_b / sum_b counts_b (NaN when empty)."""
    sums, counts = sum_count
    return sums.sum() / counts.sum()


def _percent_within(errors: Tensor, threshold: Tensor | float) -> Tensor:
    """100 * [errors <= threshold], as a float tensor."""
    return (errors <= threshold).to(errors.dtype) * 100.0


def scale_to(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """``pred`` times the per-sample least-squares scale of N-MPJPE (Rhodin et al. 2018):

        s_b = <pred_b, target_b> / <pred_b, pred_b>   (sums over the valid joints)

    A sample whose valid prediction is all zeros keeps s = 1.
    """
    valid = _valid(pred, target, mask)[..., None]
    p = torch.where(valid, pred, 0.0)
    pt = (p * torch.where(valid, target, 0.0)).sum((1, 2))
    pp = p.square().sum((1, 2))
    nonzero = pp > 0
    s = torch.where(nonzero, pt / torch.where(nonzero, pp, 1.0), 1.0)
    return s[:, None, None] * pred


def scale_to_bone_lengths(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """``pred`` (B, 17, 3) times the ratio of the skeletons' sizes, the ground truth's summed bone
    length over the prediction's (the bones of :data:`pose3d.skeleton.H36M_BONES` whose two joints
    are valid). A sample whose valid bones have zero length keeps s = 1."""
    from pose3d.skeleton import BONE_CHILDREN, BONE_PARENTS, NUM_JOINTS

    valid = _valid(pred, target, mask)
    if pred.shape[1] != NUM_JOINTS:
        raise ValueError(f"bone_scaled needs the {NUM_JOINTS} Human3.6M joints, got {pred.shape[1]}")
    children, parents = list(BONE_CHILDREN), list(BONE_PARENTS)
    bones = valid[:, children] & valid[:, parents]
    length = lambda p: torch.where(bones, (p[:, children] - p[:, parents]).norm(dim=-1), 0.0).sum(-1)  # noqa: E731
    own, truth = length(torch.where(valid[..., None], pred, 0.0)), length(torch.where(valid[..., None], target, 0.0))
    nonzero = own > 0
    s = torch.where(nonzero, truth / torch.where(nonzero, own, 1.0), 1.0)
    return s[:, None, None] * pred


def align(pred: Tensor, target: Tensor, mask: Tensor | None = None, alignment: str = "none") -> Tensor:
    """``pred`` aligned to ``target`` on the valid joints by one of :data:`ALIGNMENTS`:
    ``none`` (unchanged), ``scaled`` (:func:`scale_to`) or ``pa`` (Procrustes)."""
    if alignment == "none":
        return pred
    if alignment == "scaled":
        return scale_to(pred, target, mask)
    if alignment == "pa":
        return procrustes_align(pred, target, mask)
    if alignment == "bone_scaled":
        return scale_to_bone_lengths(pred, target, mask)
    raise ValueError(f"unknown alignment '{alignment}'; choose one of: {', '.join(ALIGNMENTS)}")


def aligned_errors(pred: Tensor, target: Tensor, mask: Tensor | None = None, alignment: str = "none") -> Tensor:
    """Joint errors (B, J) of ``pred`` after :func:`align`, e_bj = ||align(pred)_bj - target_bj||."""
    _valid(pred, target, mask)
    return joint_errors(align(pred, target, mask, alignment), target)


# ------------------------------------------- statistics of per-item errors (B, N)

def _valid_items(errors: Tensor, mask: Tensor | None) -> Tensor:
    if mask is None:
        return torch.ones_like(errors, dtype=torch.bool)
    if mask.shape != errors.shape:
        raise ValueError(f"mask must be {tuple(errors.shape)} like the errors, got {tuple(mask.shape)}")
    return mask.bool()


def mean_sum_count(errors: Tensor, mask: Tensor | None = None) -> SumCount:
    """Sums and counts of the errors themselves (their mean is MPJPE and its aligned variants)."""
    return _masked_sum_count(errors, _valid_items(errors, mask))


def within_sum_count(errors: Tensor, threshold: Tensor | float, mask: Tensor | None = None) -> SumCount:
    """Sums and counts of 100 * [e_bi <= threshold] (a PCK); ``threshold`` a number or (B, 1)."""
    return _masked_sum_count(_percent_within(errors, threshold), _valid_items(errors, mask))


def auc_sum_count(errors: Tensor, mask: Tensor | None = None) -> SumCount:
    """Sums and counts of 100 * mean_k [e_bi <= tau_k], tau_k = 0, 5, ..., 150 mm.

    Every threshold has the same valid items, so the mean of these per-item values
    equals the mean over thresholds of the PCK at tau_k.
    """
    taus = torch.tensor(AUC_THRESHOLDS_MM, dtype=errors.dtype, device=errors.device)
    return _masked_sum_count(_percent_within(errors[..., None], taus).mean(-1), _valid_items(errors, mask))


# ------------------------------------------------------------ per-sample sums/counts

def mpjpe_sum_count(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> SumCount:
    """Sums and counts of the joint errors ||pred_bj - target_bj|| (also the 2D pixel error)."""
    return mean_sum_count(aligned_errors(pred, target, mask), mask)


def pa_mpjpe_sum_count(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> SumCount:
    """As :func:`mpjpe_sum_count` after Procrustes-aligning pred to target on the valid joints."""
    return mean_sum_count(aligned_errors(pred, target, mask, "pa"), mask)


def n_mpjpe_sum_count(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> SumCount:
    """As :func:`mpjpe_sum_count` after the optimal uniform scale (:func:`scale_to`)."""
    return mean_sum_count(aligned_errors(pred, target, mask, "scaled"), mask)


def pck3d_sum_count(
    pred: Tensor, target: Tensor, threshold: float = 150.0, mask: Tensor | None = None, alignment: str = "none"
) -> SumCount:
    """Sums and counts of 100 * [e_bj <= threshold], e after ``alignment`` (:func:`align`)."""
    return within_sum_count(aligned_errors(pred, target, mask, alignment), threshold, mask)


def auc3d_sum_count(pred: Tensor, target: Tensor, mask: Tensor | None = None, alignment: str = "none") -> SumCount:
    """Sums and counts of the per-joint AUC values (:func:`auc_sum_count`), e after ``alignment``."""
    return auc_sum_count(aligned_errors(pred, target, mask, alignment), mask)


def pckh_sum_count(
    pred2d: Tensor, target2d: Tensor, head_size: Tensor, alpha: float = 0.5, mask: Tensor | None = None
) -> SumCount:
    """Sums and counts of 100 * [e_bj <= alpha * head_size_b]; head_size (B,)."""
    threshold = alpha * head_size.to(pred2d.dtype)[:, None]
    return within_sum_count(aligned_errors(pred2d, target2d, mask), threshold, mask)


def pcp_sum_count(
    pred: Tensor,
    target: Tensor,
    bones: Sequence[tuple[int, int]],
    alpha: float = 0.5,
    mask: Tensor | None = None,
) -> SumCount:
    """Sums and counts over bones of strict PCP, 100 * [e_c <= a L and e_p <= a L].

    For a bone (c, p): L = ||target_c - target_p|| is its ground-truth length and
    e_c, e_p the errors of its two end joints. A bone counts only when both of its
    joints are valid.
    """
    valid = _valid(pred, target, mask)
    child = torch.tensor([c for c, _ in bones], dtype=torch.long, device=pred.device)
    parent = torch.tensor([p for _, p in bones], dtype=torch.long, device=pred.device)
    errors = joint_errors(pred, target)
    limit = alpha * joint_errors(target[:, child], target[:, parent])  # (B, bones)
    correct = (errors[:, child] <= limit) & (errors[:, parent] <= limit)
    return _masked_sum_count(correct.to(errors.dtype) * 100.0, valid[:, child] & valid[:, parent])


# ------------------------------------------------------------------ scalar metrics

def mpjpe(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean per-joint position error: mean over valid (b, j) of ||pred_bj - target_bj|| (mm)."""
    return _mean(mpjpe_sum_count(pred, target, mask))


def pa_mpjpe(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """MPJPE after the similarity (R, s, t) Procrustes fit of pred to target (mm)."""
    return _mean(pa_mpjpe_sum_count(pred, target, mask))


def n_mpjpe(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """MPJPE of s_b * pred_b, s_b = <pred_b, target_b> / <pred_b, pred_b> (Rhodin et al. 2018)."""
    return _mean(n_mpjpe_sum_count(pred, target, mask))


def pck3d(pred: Tensor, target: Tensor, threshold: float = 150.0, mask: Tensor | None = None) -> Tensor:
    """Percentage of valid joints with error <= threshold (mm): 3DPCK."""
    return _mean(pck3d_sum_count(pred, target, threshold, mask))


def auc3d(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean of 3DPCK over the 31 thresholds 0, 5, ..., 150 mm, in percent."""
    return _mean(auc3d_sum_count(pred, target, mask))


def pck3d_scaled(pred: Tensor, target: Tensor, threshold: float = 150.0, mask: Tensor | None = None) -> Tensor:
    """3DPCK of s_b * pred_b, the least-squares scale of N-MPJPE (:func:`scale_to`)."""
    return _mean(pck3d_sum_count(pred, target, threshold, mask, "scaled"))


def auc3d_scaled(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """AUC (0..150 mm) of s_b * pred_b, the least-squares scale of N-MPJPE."""
    return _mean(auc3d_sum_count(pred, target, mask, "scaled"))


def pck3d_pa(pred: Tensor, target: Tensor, threshold: float = 150.0, mask: Tensor | None = None) -> Tensor:
    """3DPCK after the Procrustes similarity fit of pred to target (as PA-MPJPE)."""
    return _mean(pck3d_sum_count(pred, target, threshold, mask, "pa"))


def auc3d_pa(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """AUC (0..150 mm) after the Procrustes similarity fit of pred to target."""
    return _mean(auc3d_sum_count(pred, target, mask, "pa"))


def pixel_error(pred2d: Tensor, target2d: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean 2D Euclidean joint error in pixels."""
    return _mean(mpjpe_sum_count(pred2d, target2d, mask))


def pckh(
    pred2d: Tensor, target2d: Tensor, head_size: Tensor, alpha: float = 0.5, mask: Tensor | None = None
) -> Tensor:
    """PCKh@alpha: percentage of valid joints with 2D error <= alpha * head_size_b."""
    return _mean(pckh_sum_count(pred2d, target2d, head_size, alpha, mask))


def pcp(
    pred: Tensor,
    target: Tensor,
    bones: Sequence[tuple[int, int]],
    alpha: float = 0.5,
    mask: Tensor | None = None,
) -> Tensor:
    """Strict percentage of correct parts (see :func:`pcp_sum_count`), 2D or 3D."""
    return _mean(pcp_sum_count(pred, target, bones, alpha, mask))
