"""Batched similarity (Procrustes) alignment, after Umeyama (1991).

Given predicted points ``x_j`` and target points ``y_j`` (rows of (B, J, D), D = 3
or 2) and 0/1 weights ``w_j`` (the joint mask), find the rotation R (det +1), the
uniform scale s and the translation t that minimise

    sum_j w_j || y_j - (s R x_j + t) ||^2 .

With n = sum_j w_j, centroids mu_x = sum_j w_j x_j / n, mu_y likewise, centred
points x'_j = x_j - mu_x, y'_j = y_j - mu_y, the cross-covariance and variance

    Sigma = sum_j w_j y'_j x'_j^T        (D x D)
    var_x = sum_j w_j |x'_j|^2

and the SVD Sigma = U S V^T, the minimiser is (Umeyama 1991, Lemma + Theorem):

    E = diag(1, ..., 1, sign(det(U V^T)))   # no reflection: det R = +1
    R = U E V^T                             # = argmax over SO(D) of <Sigma, R>
    s = trace(S E) / var_x                  # = <Sigma, R> / var_x
    t = mu_y - s R mu_x

(the 1/n normalisations cancel in s, so they are left out).

Samples with fewer than ``MIN_POINTS`` valid joints, or whose valid prediction or
target is collapsed to a point, have no well-defined rotation; they fall back to
the identity rotation, unit scale and the centroid translation ``mu_y - mu_x``
(zero when no joint is valid). Nothing ever becomes NaN.

Gradients: ``torch.linalg.svd``'s backward divides by ``s_i^2 - s_j^2`` and so
returns NaN/inf whenever two singular values coincide (a rank-deficient Sigma,
collinear joints, ...), even though R itself only depends on the smoother
``1 / (s_i + s_j)``. The rotation therefore has its own small autograd function
(:class:`_NearestRotation`) with that closed-form backward.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

MIN_POINTS = 3
_VAR_EPS = 1e-8  # squared units; below this a point set counts as collapsed


class Similarity(NamedTuple):
    """A batch of similarity transforms ``x -> s R x + t``."""

    rotation: Tensor  # (B, D, D), det +1
    scale: Tensor  # (B,)
    translation: Tensor  # (B, D)

    def apply(self, points: Tensor) -> Tensor:
        """Transform points (B, J, D): rows x become ``s R x + t``."""
        rotated = points @ self.rotation.transpose(-1, -2)
        return self.scale[:, None, None] * rotated + self.translation[:, None, :]


class _NearestRotation(torch.autograd.Function):
    """R = argmax over SO(D) of <M, R> for a batch of square matrices M (B, D, D).

    Forward: M = U S V^T, E = diag(1, .., 1, d), d = sign(det(U V^T)), R = U E V^T.
    Writing V' = V E and the signed singular values s' = S E, M = U diag(s') V'^T
    and R = U V'^T. Differentiating gives dR = U X V'^T with the skew matrix

        X_ij = (P_ij - P_ji) / (s'_i + s'_j),   P = U^T dM V'

    so for an upstream gradient G = dL/dR, with K = U^T G V':

        dL/dM = U Y V'^T,   Y_ij = (K_ij - K_ji) / (s'_i + s'_j).

    Where s'_i + s'_j vanishes (both singular values zero, or a reflection fix on a
    tie) R is not differentiable; that component of the gradient is set to zero.
    """

    @staticmethod
    def forward(ctx, m: Tensor) -> Tensor:
        u, s, vh = torch.linalg.svd(m)
        d = torch.sign(torch.linalg.det(u @ vh))
        d = torch.where(d == 0, torch.ones_like(d), d)
        e = torch.ones_like(s)
        e[:, -1] = d
        v_signed = vh.transpose(-1, -2) * e[:, None, :]  # V' = V E
        ctx.save_for_backward(u, s * e, v_signed)
        return u @ v_signed.transpose(-1, -2)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_r: Tensor) -> Tensor:
        u, s_signed, v_signed = ctx.saved_tensors
        k = u.transpose(-1, -2) @ grad_r @ v_signed
        denom = s_signed[:, :, None] + s_signed[:, None, :]
        tol = torch.finfo(denom.dtype).eps * s_signed.abs().amax(-1).clamp_min(1.0)
        ok = denom.abs() > tol[:, None, None] * denom.shape[-1]
        y = torch.where(ok, (k - k.transpose(-1, -2)) / torch.where(ok, denom, 1.0), 0.0)
        return u @ y @ v_signed.transpose(-1, -2)


def nearest_rotation(m: Tensor) -> Tensor:
    """Proper rotation (det +1) closest to each M (B, D, D), i.e. argmax <M, R>."""
    return _NearestRotation.apply(m)


def procrustes_transform(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Similarity:
    """Similarity (R, s, t) that best maps ``pred`` onto ``target`` (see module doc).

    Args:
        pred, target: (B, J, D) points, D = 3 or 2.
        mask: optional (B, J) bool; only joints that are True define the fit.

    Returns:
        ``Similarity(rotation (B, D, D), scale (B,), translation (B, D))``, so that
        ``procrustes_transform(p, t, m).apply(p)`` is the aligned prediction.
    """
    if pred.shape != target.shape or pred.dim() != 3:
        raise ValueError(f"pred and target must both be (B, J, D), got {tuple(pred.shape)} and {tuple(target.shape)}")
    out_dtype = pred.dtype
    if pred.dtype in (torch.float16, torch.bfloat16):  # the SVD needs float32 or better
        pred, target = pred.float(), target.float()
    batch, _, dim = pred.shape
    w = torch.ones(pred.shape[:2], dtype=torch.bool, device=pred.device) if mask is None else mask.bool()
    # zero the masked-out joints with `where` so NaNs or garbage there cannot leak in
    x = torch.where(w[..., None], pred, 0.0)
    y = torch.where(w[..., None], target, 0.0)
    wf = w.to(x.dtype)[..., None]
    n = wf.sum(1)  # (B, 1)
    mu_x = x.sum(1) / n.clamp_min(1.0)
    mu_y = y.sum(1) / n.clamp_min(1.0)
    xc = (x - mu_x[:, None]) * wf
    yc = (y - mu_y[:, None]) * wf

    sigma = yc.transpose(-1, -2) @ xc  # (B, D, D) = sum_j y'_j x'_j^T
    var_x = xc.square().sum((1, 2))
    var_y = yc.square().sum((1, 2))
    ok = (n[:, 0] >= MIN_POINTS) & (var_x > _VAR_EPS) & (var_y > _VAR_EPS)

    eye = torch.eye(dim, dtype=x.dtype, device=x.device).expand(batch, dim, dim)
    rot = torch.where(ok[:, None, None], nearest_rotation(sigma), eye)
    safe_var_x = torch.where(ok, var_x, 1.0)  # keeps the unused branch's gradient finite
    scale = torch.where(ok, (sigma * rot).sum((1, 2)) / safe_var_x, 1.0)  # <Sigma, R> / var_x
    trans = mu_y - scale[:, None] * (mu_x[:, None, :] @ rot.transpose(-1, -2))[:, 0]
    return Similarity(rot.to(out_dtype), scale.to(out_dtype), trans.to(out_dtype))


def procrustes_align(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """``pred`` (B, J, D) after the similarity that best fits it to ``target``.

    All joints are transformed, but only the ones with ``mask`` True define the fit.
    """
    return procrustes_transform(pred, target, mask).apply(pred)
