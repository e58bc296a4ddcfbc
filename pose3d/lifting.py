"""Batched lifting of 2D joints into 3D with a PPCA pose prior (Tome et al. 2017, Sec. 5.3).

For 2D joints Y (17 x 2, y down) and a prior component (mean mu, orthonormal basis e,
coefficient variances v_j, noise sigma^2), Eq. 4 of the paper is

    min_{R, s, a}  ||Y - s Pi R (mu + a . e)||^2 + ||sigma . a||^2

with Pi the orthographic projection (weak perspective) and R a ground-plane rotation,
here ``R_y(theta)`` about the camera's vertical axis.  As the paper does, we

1. quantise theta (``rotations`` angles, default 80) and search them exhaustively;
2. for a fixed rotation solve the problem in closed form.  Footnote 3's
   reparameterisation ``b = s a`` makes it linear least squares in ``x = (s, b)``:
   ``||y - A_theta x||^2 + x^T Gamma x + g (s - 1)^2`` with
   ``A_theta = [Pi R mu, Pi R e_1, ..., Pi R e_J]`` (centred: the 2D translation is
   eliminated) and ``Gamma = diag(0, gamma_j)``, ``gamma_j = prior_weight * sigma^2 / v_j``
   (the PPCA posterior: Eq. 4 with the data term in units of the model noise).  Y is first
   centred and scaled to the model's size, so s is about 1 and the prior on b is the prior
   on a; the result is invariant to the scale and position of Y.  The reparameterised
   problem has degenerate minima with s ~ 0 (the shape made by b alone, i.e. an unbounded
   a = b / s) when some variances are large; the scale prior ``g = scale_prior * |y|^2``
   (relative, default 0.05) rules them out, like the release's ``scale_prior``;
3. for a mixture solve every component and keep the most probable one (Sec. 5.3, last
   paragraph): score = cost / sigma_k^2 + log det C_k - 2 log pi_k.

Speed: with ``N_theta = A_theta^T A_theta + Gamma + g e0 e0^T = L L^T`` (it depends on the
rotation and the model only, not on the pose) the minimum cost at an angle is
``|y|^2 + g - |z|^2`` with ``z = L^-1 (A_theta^T y + g e0) = Mx y_x + My y_y + c``.  ``|z|^2`` is
a quadratic form in y whose coefficients are precomputed per angle and component, so the
whole search is two matrix products of pose features (coordinate products, 578 + 289
columns) with (features x components * angles) weights: no per-pose linear algebra.
Because ``R_y(theta + pi)`` only flips the sign of the projected x, ``N_{theta+pi} = N_theta``
and ``Mx`` changes sign: the terms odd in x change sign, so half the angles suffice.
With ``refine=True`` (default) the best angle of each component is refined by the minimum
of the quartic through its cost and two neighbours' on each side (whose value also scores
the component), and only the chosen component is solved at that angle, from the nearest
angle of a finer precomputed table of ``N^-1`` plus one Richardson step
``x += N_f^-1 (q - N_theta x)`` with ``N_theta = P + cos(2 theta) Q + sin(2 theta) S``.
Without refinement the solve uses the coarse table exactly.

Camera extrinsics (Sec. 5.3, ``E``): the paper lifts in the world frame, ``Y = s Pi E R (mu + a . e)``
with the camera's known rotation ``E`` and ``R`` about the world's vertical.  ``camera_rotation``
(B, 3, 3), world-to-camera in a gravity-aligned world whose y axis points down (the prior's
frame; the batch key of the same name), factors as ``E = R_z(roll) R_x(pitch) R_y(phi)``:
``phi`` is absorbed by the search; the roll about the optical axis commutes with the orthographic
projection (``Pi R_z(roll) = R2(roll) Pi``), so it is undone exactly by rotating the 2D joints
by ``-roll`` before the lift and the lifted pose by ``roll`` after it (the cost is invariant to
image-plane rotations); only the pitch ``T = R_x(pitch)`` changes the problem.  Each row r of
``Pi T R_y(theta)`` applied to the model columns is ``cos(t) U_r + sin(t) V_r + W_r``
(``U_r = T_r0 vx + T_r2 vz``, ``V_r = T_r0 vz - T_r2 vx``, ``W_r = T_r1 vy``), so ``N_theta``
gains first harmonics, ``P + cos(2t) Q + sin(2t) S + cos(t) Q1 + sin(t) S1``, and the
theta + pi symmetry is lost (every angle is searched).  Pitches are quantised
(``tilt_step_deg``, default 0.5 degrees) and their tables cached like the joint-weight
patterns; the level camera is the identity case, ``Q1 = S1 = 0``.

Backward (supplementary, Sec. 1.1): with the chosen rotation (and component) fixed, the
output is a smooth function of Y; ``differentiable=True`` recomputes the final solve with
autograd-tracked operations, giving the sub-gradient dY_hat/dY = E Ebar^+ of Eq. 8.  With
``refine=False`` (discrete rotations, as in the paper) this is the exact gradient almost
everywhere; with refinement the angle varies continuously with Y and its dependence is
left out, as the supplementary does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from pose3d.camera import rotation_about_axis
from pose3d.skeleton import NUM_JOINTS, ROOT

MODEL_UNIT_MM = 1000.0  # the tables work in metres: well scaled for float32
ROOT_RELATIVE_DIMS = 3 * (NUM_JOINTS - 1)  # dimension D of the log-determinant (Sec. 4)
_CHUNK_ELEMENTS = 1 << 21  # per-chunk size of the (batch x angles x unknowns) products
_MAX_TABLES = 256  # cached (joint-weight pattern, pitch) tables


class LiftResult(NamedTuple):
    """Batched lifting output; the first item is the 3D pose."""

    joints_3d: Tensor  # (B, 17, 3) mm, camera frame (x right, y down, z forward), pelvis at 0
    component: Tensor  # (B,) long: chosen mixture component
    angle: Tensor  # (B,) rad: joints_3d = R_z(roll) R_x(pitch) R_y(angle) @ model pose, minus its root
    #                (pitch, roll: the camera's, 0 without camera_rotation)
    scale: Tensor  # (B,) joints_2d ~ scale * joints_3d[..., :2] + translation
    translation: Tensor  # (B, 2)
    coefficients: Tensor  # (B, J) basis coefficients a in mm
    cost: Tensor  # (B,) score of the chosen component (lower is better)


@dataclass
class _Tables:
    """Everything that depends only on the model, the angles and the joint weights."""

    weights: Tensor  # (17,) joint weights w
    omega: Tensor  # (17,) sqrt(w)
    weight_sum: float
    ref_rms: float  # rms size of the projected mean: y is scaled to it
    energy: float  # |y_tilde|^2 (the same for every pose after scaling) + g
    scale_prior: float  # g
    tilt: Tensor  # (3, 3) camera pitch T = R_x(pitch) (identity: a level camera)
    symmetric: bool  # T = I: theta + pi only flips the projected x (half the angles)
    u_cos: Tensor  # (K, 2, J+1, 17): image row r of the model columns [mu, e_1..e_J] at angle t is
    u_sin: Tensor  #   cos(t) u_cos[:, r] + sin(t) u_sin[:, r] + u_const[:, r] (weighted, centred)
    u_const: Tensor
    w_even: Tensor  # (578, K * Rn): |L^-1 q~|^2 as linear forms of pose features, see
    w_even_lin: Tensor  # (17, K * Rn)      _quadratic_form_weights
    w_const: Tensor  # (K * Rn,)
    w_odd: Tensor  # (289, K * Rn): the part that changes sign at theta + pi
    w_odd_lin: Tensor  # (17, K * Rn)
    p: Tensor  # (K, J+1, J+1): N_theta = P + cos(2t) Q + sin(2t) S + cos(t) Q1 + sin(t) S1
    q: Tensor
    s: Tensor
    q1: Tensor
    s1: Tensor
    inv_coarse: Tensor  # (K, Rn, J+1, J+1) N^-1 at the coarse angles (mod pi when R is even)
    inv_fine: Tensor  # (K, Rf, J+1, J+1) N^-1 at the fine angles in [0, pi)


def _tilted_rows(vx: Tensor, vy: Tensor, vz: Tensor, tilt: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(U, V, W)`` (K, 2, J+1, 17): image row r of ``Pi T R_y(t)`` applied to the columns is
    ``cos(t) U_r + sin(t) V_r + W_r``, with ``R_y(t) (x, y, z) = (c x + s z, y, -s x + c z)``."""
    rows = tilt[:2].to(vx)  # (2, 3)
    a, b, c = (rows[:, i, None, None] for i in range(3))
    u = a * vx[:, None] + c * vz[:, None]
    v = a * vz[:, None] - c * vx[:, None]
    w = b * vy[:, None]
    return u, v, w


def _normal_parts(u: Tensor, v: Tensor, w: Tensor, gamma: Tensor) -> tuple[Tensor, ...]:
    """P, Q, S, Q1, S1 with ``A_t^T A_t + Gamma = P + cos(2t) Q + sin(2t) S + cos(t) Q1 + sin(t) S1``.

    ``A_t`` stacks the rows ``cos(t) U_r + sin(t) V_r + W_r``; expanding ``c^2 = (1 + cos 2t) / 2``,
    ``s^2 = (1 - cos 2t) / 2``, ``cs = sin(2t) / 2`` gives ``P = (UU + VV) / 2 + WW + Gamma``,
    ``Q = (UU - VV) / 2``, ``S = (UV + VU) / 2``, ``Q1 = UW + WU``, ``S1 = VW + WV`` (summed over
    the rows). A level camera has ``U_x = vx``, ``V_x = vz``, ``W_y = vy`` and the rest zero, so
    ``Q1 = S1 = 0``.
    """
    def gram(a: Tensor, b: Tensor) -> Tensor:
        return (a @ b.mT).sum(1)

    uu, vv, ww, uv, uw, vw = gram(u, u), gram(v, v), gram(w, w), gram(u, v), gram(u, w), gram(v, w)
    p = (uu + vv) / 2 + ww + torch.diag_embed(gamma)
    return p, (uu - vv) / 2, (uv + uv.mT) / 2, uw + uw.mT, vw + vw.mT


def _harmonics(theta: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(cos 2t, sin 2t, cos t, sin t)``: the weights of ``Q, S, Q1, S1`` in ``N_theta``."""
    return torch.cos(2 * theta), torch.sin(2 * theta), torch.cos(theta), torch.sin(theta)


def _combine(p: Tensor, harmonic_parts: tuple[Tensor, ...], theta: Tensor) -> Tensor:
    """``P + cos(2t) Q + sin(2t) S + cos(t) Q1 + sin(t) S1``; ``theta`` broadcasts against the parts."""
    out = p
    for weight, part in zip(_harmonics(theta), harmonic_parts):
        out = out + weight * part
    return out


def _normal(p: Tensor, q: Tensor, s: Tensor, q1: Tensor, s1: Tensor, theta: Tensor) -> Tensor:
    """N_theta (K, R, J+1, J+1) for angles (R,)."""
    return _combine(p[:, None], (q[:, None], s[:, None], q1[:, None], s1[:, None]), theta[:, None, None])


_RIDGE_TRIES = 8  # ridges 1e-10 .. 1e4 times the mean diagonal


def _cholesky(n: Tensor) -> Tensor:
    """Cholesky factors, with a tiny ridge where a system is (numerically) singular; a system that
    no ridge up to 1e4 times its diagonal makes positive definite (a prior holding NaN, or negative
    variances) is a ``ValueError``, never an endless search."""
    if not bool(torch.isfinite(n).all()):
        raise ValueError("the lifting's normal equations hold NaN or infinity; expected a pose prior of finite values")
    ridge = 1e-10 * n.diagonal(dim1=-2, dim2=-1).mean(-1).clamp(min=1e-30)
    eye = torch.eye(n.shape[-1], dtype=n.dtype)
    for _ in range(_RIDGE_TRIES):
        factor, info = torch.linalg.cholesky_ex(n + ridge[..., None, None] * eye)
        if not bool((info > 0).any()):
            return factor
        ridge = ridge * 100
    raise ValueError("the lifting's normal equations are not positive definite; expected a pose prior of positive variances")


def _quadratic_form_weights(mx: Tensor, my: Tensor, bias: Tensor) -> list[Tensor]:
    """Weights that turn ``|Mx y_x + My y_y + c|^2`` into linear forms of pose features.

    With ``H_ab = M_a^T M_b``: ``|z|^2 = even + odd`` where
    ``even = y_x^T Hxx y_x + y_y^T Hyy y_y + 2 c^T My y_y + |c|^2`` and
    ``odd = 2 y_x^T Hxy y_y + 2 c^T Mx y_x``; at theta + pi (Mx -> -Mx) it is ``even - odd``.
    Features (see :func:`_features`): [x_i x_j, y_i y_j] and y for the even part,
    [x_i y_j] and x for the odd part.  Returns the weights, each (features, K * Rn):
    (578,), (17,), constant (K * Rn,), (289,), (17,).
    """
    columns = lambda t: t.flatten(0, 1).T.contiguous()  # noqa: E731  (K, Rn, F) -> (F, K * Rn)
    squares = torch.cat([(mx.mT @ mx).flatten(-2), (my.mT @ my).flatten(-2)], -1)
    lin_y = 2 * (bias[..., None, :] @ my)[..., 0, :]
    const = (bias ** 2).sum(-1).flatten()
    cross = 2 * (mx.mT @ my).flatten(-2)
    lin_x = 2 * (bias[..., None, :] @ mx)[..., 0, :]
    return [columns(squares), columns(lin_y), const, columns(cross), columns(lin_x)]


def _features(planes: Tensor) -> tuple[Tensor, Tensor]:
    """Products of coordinates (B, 578) ``[x_i x_j, y_i y_j]`` and (B, 289) ``[x_i y_j]`` of
    planes (B, 2, 17) = (x, y) rows."""
    b = planes.shape[0]
    squares = (planes[..., :, None] * planes[..., None, :]).view(b, -1)
    cross = (planes[:, 0, :, None] * planes[:, 1, None, :]).view(b, -1)
    return squares, cross


# quartic through the costs at offsets -2..2 of the best coarse angle: coefficients = _QUARTIC @ costs
_QUARTIC = torch.linalg.inv(torch.arange(-2.0, 3.0, dtype=torch.float64)[:, None] ** torch.arange(5.0))


def _quartic_minimum(costs: Tensor) -> tuple[Tensor, Tensor]:
    """Sub-step offset in [-1, 1] and value at the minimum of the quartic through costs (..., 5)
    at offsets -2..2 (Newton from the parabola's vertex); offset 0 where it does not help."""
    c = costs @ _QUARTIC.to(costs).T  # (..., 5) polynomial coefficients, c[..., k] t^k
    cm, c0, cp = costs[..., 1], costs[..., 2], costs[..., 3]
    curvature = cm - 2 * c0 + cp
    t = torch.where(curvature > 0, 0.5 * (cm - cp) / curvature.clamp(min=1e-30), torch.zeros_like(c0))
    t = t.clamp(-0.5, 0.5)
    for _ in range(3):
        d1 = c[..., 1] + t * (2 * c[..., 2] + t * (3 * c[..., 3] + 4 * t * c[..., 4]))
        d2 = 2 * c[..., 2] + t * (6 * c[..., 3] + 12 * t * c[..., 4])
        t = torch.where(d2 > 0, t - d1 / d2.clamp(min=1e-30), t).clamp(-1.0, 1.0)
    value = c[..., 0] + t * (c[..., 1] + t * (c[..., 2] + t * (c[..., 3] + t * c[..., 4])))
    keep = value < c0
    return torch.where(keep, t, torch.zeros_like(t)), torch.where(keep, value, c0)


def _rows(t: Tensor, index: Tensor | None) -> Tensor:
    return t if index is None else t[index]


class Lifter:
    """Lift batches of 2D joints (B, 17, 2) to 3D with a :class:`pose3d.ppca.PosePrior`.

    ``rotations``: quantised ground-plane angles searched exhaustively (Sec. 5.3).
    ``refine``: refine the best angle (quartic interpolation of the costs, fine table).
    ``prior_weight``: multiplies the variance prior of Eq. 4 (0 = plain least squares).
    ``scale_prior``: weight g / |y|^2 of the prior ``g (s - 1)^2`` on the relative scale.
    ``fine``: angles of the refinement table per coarse step.
    ``tilt_step_deg``: quantisation of the camera's pitch when a call gives ``camera_rotation``
    (the tables of each pitch are built on first use and cached; the roll is exact).
    All tables are built once (float64) and kept on ``device`` in ``dtype``.
    """

    def __init__(self, prior, rotations: int = 80, refine: bool = True, prior_weight: float = 1.0,
                 device=None, dtype: torch.dtype = torch.float32, scale_prior: float = 0.05,
                 fine: int = 16, tilt_step_deg: float = 0.5):
        if rotations < 1:
            raise ValueError(f"rotations must be at least 1, got {rotations}")
        if not tilt_step_deg > 0:
            raise ValueError(f"tilt_step_deg must be positive, got {tilt_step_deg}")
        self.rotations = int(rotations)
        self.refine = bool(refine) and rotations >= 5
        self.prior_weight = float(prior_weight)
        self.scale_prior = float(scale_prior)
        self.fine = max(2, 2 * (int(fine) // 2))  # even: the fine grid is the same mod pi
        self.tilt_step = math.radians(float(tilt_step_deg))
        self.device = torch.device("cpu" if device is None else device)
        self.dtype = dtype
        unit, f64 = MODEL_UNIT_MM, torch.float64
        self._mean = torch.as_tensor(prior.means / unit, dtype=f64)  # (K, 17, 3) metres
        self._basis = torch.as_tensor(prior.basis, dtype=f64)  # (K, J, 17, 3)
        self._var = torch.as_tensor(prior.variances / unit ** 2, dtype=f64)
        self._noise = torch.as_tensor(prior.noise / unit ** 2, dtype=f64)
        self.components, self.basis_size = self._var.shape
        logdet = (torch.log(self._var + self._noise[:, None]).sum(1)
                  + (ROOT_RELATIVE_DIMS - self.basis_size) * torch.log(self._noise))
        log_pi = torch.log(torch.as_tensor(prior.weights, dtype=f64).clamp(min=1e-300))
        self._score_offset = self._to(logdet - 2 * log_pi)
        self._inv_noise = self._to(1.0 / self._noise)
        self.mean = self._to(self._mean)
        self.basis = self._to(self._basis)
        self._tables: dict[tuple, _Tables] = {}
        self._default = self.tables(torch.ones(NUM_JOINTS, dtype=f64))

    def _to(self, t: Tensor) -> Tensor:
        return t.to(device=self.device, dtype=self.dtype).contiguous()

    @property
    def coarse_step(self) -> float:
        return 2 * math.pi / self.rotations

    @property
    def fine_step(self) -> float:
        return self.coarse_step / self.fine

    # ----------------------------------------------------------------- tilts
    @staticmethod
    def tilt_angles(camera_rotation: Tensor) -> tuple[Tensor, Tensor]:
        """(pitch, roll) (B,) float64 rad of world-to-camera rotations (B, 3, 3).

        The world's downward vertical seen from the camera is ``d = E e_y``; with
        ``E = R_z(roll) R_x(pitch) R_y(phi)``, ``d = (-sin(roll) cos(pitch), cos(roll) cos(pitch), sin(pitch))``,
        so ``pitch = asin(d_z)`` and ``roll = atan2(-d_x, d_y)``.
        """
        down = camera_rotation.detach().to(torch.float64)[..., :, 1]
        pitch = torch.asin(down[..., 2].clamp(-1.0, 1.0))
        roll = torch.atan2(-down[..., 0], down[..., 1])
        return pitch, roll

    def pitch_bins(self, pitch: Tensor) -> Tensor:
        """(B,) long: the quantised pitches (the key of their tables)."""
        return torch.round(pitch / self.tilt_step).long().cpu()

    def tilt_matrix(self, pitch_bin: int) -> Tensor:
        """``T = R_x(pitch)`` (3, 3) float64 of one quantised pitch."""
        return rotation_about_axis(torch.tensor(pitch_bin * self.tilt_step, dtype=torch.float64), "x")

    # ----------------------------------------------------------------- tables
    def tables(self, weights: Tensor, pitch_bin: int = 0) -> _Tables:
        """The precomputed tables for one joint-weight pattern (17,) and quantised pitch, cached."""
        weights = weights.detach().to(device="cpu", dtype=torch.float64)
        key = (tuple(np.round(weights.numpy(), 6).tolist()), int(pitch_bin))
        if key not in self._tables:
            if len(self._tables) >= _MAX_TABLES:
                default = (tuple([1.0] * NUM_JOINTS), 0)
                for old in [k for k in self._tables if k != default][:_MAX_TABLES // 2]:
                    del self._tables[old]
            self._tables[key] = self._build(weights, key[1])
        return self._tables[key]

    def _build(self, w: Tensor, pitch_bin: int) -> _Tables:
        """Model columns, normal-equation pieces and whitened projections (all float64)."""
        k = self.components
        symmetric = pitch_bin == 0
        tilt = self.tilt_matrix(pitch_bin)
        cols = torch.cat([self._mean[:, None], self._basis], 1)  # (K, J+1, 17, 3)
        w_sum = float(w.sum().clamp(min=1e-12))
        centroid = (cols * w[:, None]).sum(-2, keepdim=True) / w_sum  # weighted: eliminates t
        cols = (cols - centroid) * w.sqrt()[:, None]
        u, v, c = _tilted_rows(*cols.unbind(-1), tilt)  # (K, 2, J+1, 17)
        # rms of the projected centred means over all angles: E[(cos U + sin V + W)^2] = (U^2 + V^2) / 2 + W^2
        mean_sq = ((u[:, :, 0] ** 2 + v[:, :, 0] ** 2) / 2 + c[:, :, 0] ** 2).sum((1, 2)) / w_sum
        ref_rms = float(mean_sq.mean().sqrt())
        g = self.scale_prior * w_sum * ref_rms ** 2  # |y_tilde|^2 = w_sum ref_rms^2
        gamma = torch.cat([torch.full((k, 1), g, dtype=torch.float64),
                           self.prior_weight * self._noise[:, None] / self._var], 1)
        parts = _normal_parts(u, v, c, gamma)
        half = symmetric and self.rotations % 2 == 0  # theta + pi: only the projected x flips
        rn = self.rotations // 2 if half else self.rotations
        theta = torch.arange(rn, dtype=torch.float64) * self.coarse_step
        factor = _cholesky(_normal(*parts, theta))  # (K, Rn, J+1, J+1)
        cos, sin = (f(theta)[:, None, None, None] for f in (torch.cos, torch.sin))
        rows = cos * u[:, None] + sin * v[:, None] + c[:, None]  # (K, Rn, 2, J+1, 17)
        mx = torch.linalg.solve_triangular(factor, rows[:, :, 0], upper=False)  # (K, Rn, J+1, 17)
        my = torch.linalg.solve_triangular(factor, rows[:, :, 1], upper=False)
        e0 = torch.zeros(factor.shape[:-1] + (1,), dtype=torch.float64)
        e0[..., 0, 0] = g
        bias = torch.linalg.solve_triangular(factor, e0, upper=False)[..., 0]  # (K, Rn, J+1)
        forms = _quadratic_form_weights(mx, my, bias)
        inv_coarse = torch.cholesky_inverse(factor)
        if self.refine:  # N_theta has period pi when symmetric, 2 pi otherwise
            count = self.rotations * self.fine // (2 if symmetric else 1)
            fine_theta = torch.arange(count, dtype=torch.float64) * self.fine_step
            inv_fine = torch.cholesky_inverse(_cholesky(_normal(*parts, fine_theta)))
        else:
            inv_fine = inv_coarse[:, :0]
        return _Tables(self._to(w), self._to(w.sqrt()), w_sum, ref_rms, w_sum * ref_rms ** 2 + g, g,
                       self._to(tilt), half, self._to(u), self._to(v), self._to(c), *(self._to(f) for f in forms),
                       *(self._to(t) for t in parts), self._to(inv_coarse), self._to(inv_fine))

    # ----------------------------------------------------------------- forward
    def __call__(self, joints_2d: Tensor, weights: Tensor | None = None, differentiable: bool = False,
                 camera_rotation: Tensor | None = None) -> LiftResult:
        """Lift joints_2d (B, 17, 2) (or (17, 2)); ``weights`` (B, 17) or (17,) >= 0, 0 = missing;
        ``camera_rotation`` (B, 3, 3) world-to-camera rotations (or (3, 3)), None = level cameras."""
        y = torch.as_tensor(joints_2d)
        single = y.dim() == 2
        if single:
            y = y[None]
        if y.dim() != 3 or y.shape[1:] != (NUM_JOINTS, 2):
            raise ValueError(f"joints_2d must have shape (B, {NUM_JOINTS}, 2), got {tuple(y.shape)}")
        y = y.to(device=self.device, dtype=self.dtype)
        b = y.shape[0]
        w = torch.ones(b, NUM_JOINTS, dtype=self.dtype, device=y.device)
        if weights is not None:
            w = torch.as_tensor(weights).detach().to(device=y.device, dtype=self.dtype).expand(b, NUM_JOINTS).clamp(min=0)
            y = torch.where(w[..., None] > 0, y, torch.zeros((), dtype=y.dtype, device=y.device))
        pitches, roll = torch.zeros(b, dtype=torch.long), None
        if camera_rotation is not None:
            rotation = torch.as_tensor(camera_rotation)
            if rotation.shape[-2:] != (3, 3):
                raise ValueError(f"camera_rotation must have shape (B, 3, 3), got {tuple(rotation.shape)}")
            pitch, roll = self.tilt_angles(rotation.expand(b, 3, 3))
            pitches = self.pitch_bins(pitch)
            roll = rotation_about_axis(roll.to(device=y.device, dtype=self.dtype), "z")[:, :2, :2]  # R2(roll)
            y = y @ roll  # R2(-roll) y per joint: the lift of a camera without roll
        groups: list[tuple[Tensor | None, _Tables]] = [(None, self._default)]
        if not (bool((w == 1).all()) and not bool(pitches.any())):
            keys = torch.cat([w.cpu().double(), pitches.double()[:, None]], 1)
            patterns, inverse = torch.unique(keys, dim=0, return_inverse=True)
            groups = [((inverse == g).nonzero()[:, 0].to(y.device), self.tables(row[:NUM_JOINTS], int(row[NUM_JOINTS])))
                      for g, row in enumerate(patterns)]
        parts = [(index, self._lift_group(_rows(y, index), tables, differentiable)) for index, tables in groups]
        out = parts[0][1] if parts[0][0] is None else _scatter(parts, b)
        if roll is not None:  # back into the rolled camera: R_z(roll) on the pose, R2(roll) on the translation
            out = out._replace(joints_3d=torch.cat([out.joints_3d[..., :2] @ roll.mT, out.joints_3d[..., 2:]], -1),
                               translation=(out.translation[:, None] @ roll.mT)[:, 0])
        return LiftResult(*(t[0] for t in out)) if single else out

    def _lift_group(self, y: Tensor, tables: _Tables, differentiable: bool) -> LiftResult:
        with torch.no_grad():
            chunk = max(1, _CHUNK_ELEMENTS // (3 * tables.w_even.shape[1] + 900))
            picks = [self._search(y[i:i + chunk], tables) for i in range(0, y.shape[0], chunk)]
            component, theta, solution, cost = (torch.cat(t) for t in zip(*picks))
        if differentiable:
            solution = self._solve_differentiable(y, tables, component, theta)
        return self._assemble(y, tables, component, theta, solution, cost)

    def _normalise(self, y: Tensor, tables: _Tables) -> tuple[Tensor, Tensor, Tensor]:
        """Centre (weighted) and scale Y to the model's size: returns (y_tilde, t0, s0).

        ``y_tilde = sqrt(w) (y - t0) / s0`` with t0 the weighted centroid and s0 the weighted
        rms distance to it over ``ref_rms``; s0 makes the result scale invariant.
        """
        w = tables.weights
        t0 = (y * w[:, None]).sum(1) / tables.weight_sum
        centred = y - t0[:, None]
        s0 = ((centred ** 2).sum(-1) * w).sum(-1).div(tables.weight_sum).sqrt() / tables.ref_rms
        s0 = s0.clamp(min=torch.finfo(y.dtype).tiny ** 0.5)
        return centred * (tables.omega[:, None] / s0[:, None, None]), t0, s0

    def _search(self, y: Tensor, tables: _Tables) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Exhaustive search over angles and components: (component, theta, x, score) per pose."""
        yt, _, _ = self._normalise(y, tables)
        planes = yt.transpose(1, 2).contiguous()  # (B, 2, 17)
        yx, yy = planes[:, 0], planes[:, 1]
        b, k, j1 = y.shape[0], self.components, self.basis_size + 1
        squares, cross = _features(planes)
        # the heavy products: |L^-1 q~|^2 at every angle and component as linear forms
        even = torch.addmm(tables.w_const, squares, tables.w_even).addmm_(yy, tables.w_even_lin).view(b, k, -1)
        odd = torch.mm(cross, tables.w_odd).addmm_(yx, tables.w_odd_lin).view(b, k, -1)
        if tables.symmetric:
            rn = even.shape[-1]
            fit = even.new_empty(b, k, 2 * rn)
            torch.add(even, odd, out=fit[..., :rn])  # angles theta_r
            torch.sub(even, odd, out=fit[..., rn:])  # angles theta_r + pi
        else:
            fit = even.add_(odd)
        best = fit.argmax(-1)  # (B, K): cost = |y|^2 + g - fit is smallest
        if self.refine:  # quartic through the best angle and two neighbours on each side
            around = (best[..., None] + torch.arange(-2, 3, device=y.device)) % self.rotations
            step, c0 = _quartic_minimum(tables.energy - fit.gather(-1, around))
        else:
            step = torch.zeros(b, k, dtype=y.dtype, device=y.device)
            c0 = tables.energy - fit.gather(-1, best[..., None])[..., 0]
        if k == 1:
            component = torch.zeros(b, dtype=torch.long, device=y.device)
            theta = (best + step)[:, 0] * self.coarse_step
        else:
            component = (c0 * self._inv_noise + self._score_offset).argmin(-1)  # (B,)
            theta = (best + step).gather(1, component[:, None])[:, 0] * self.coarse_step
        x = yt.new_empty(b, j1)
        final = yt.new_empty(b)
        for comp in range(k):
            index = None if k == 1 else (component == comp).nonzero()[:, 0]
            if index is not None and index.numel() == 0:
                continue
            u = self._projections(_rows(yx, index), _rows(yy, index), tables, comp)
            sub_x, sub_cost = self._solve_at(_rows(theta, index), u, tables, comp)
            if index is None:
                x, final = sub_x, sub_cost
            else:
                x[index], final[index] = sub_x, sub_cost
        return component, theta, x, final * self._inv_noise[component] + self._score_offset[component]

    @staticmethod
    def _projections(yx: Tensor, yy: Tensor, tables: _Tables, comp: int) -> tuple[Tensor, Tensor, Tensor]:
        """``(U^T y, V^T y, W^T y + g e0)`` (B, J+1), summed over the image rows: the pieces of
        ``A_t^T y + g e0`` for any angle t."""
        def project(rows: Tensor) -> Tensor:
            return yx @ rows[comp, 0].T + yy @ rows[comp, 1].T

        constant = project(tables.u_const)
        constant[:, 0] += tables.scale_prior
        return project(tables.u_cos), project(tables.u_sin), constant

    @staticmethod
    def _rhs(u: tuple[Tensor, Tensor, Tensor], theta: Tensor) -> Tensor:
        """``A_theta^T y + g e0 = cos(t) U^T y + sin(t) V^T y + W^T y + g e0``."""
        uc, us, u0 = u
        return torch.cos(theta)[:, None] * uc + torch.sin(theta)[:, None] * us + u0

    def _solve_at(self, theta: Tensor, u, tables: _Tables, comp: int) -> tuple[Tensor, Tensor]:
        """(x, cost) at angles theta (B,) for one component.

        On the coarse grid (``refine=False``) ``x = N^-1 q`` from the coarse table, exactly.
        Otherwise the nearest fine-table inverse plus one Richardson step
        ``x += N_f^-1 (q - N_theta x)``.  cost = ``|y|^2 + g - q^T x``.
        """
        qv = self._rhs(u, theta)
        if self.refine:
            table, step = tables.inv_fine[comp], self.fine_step
        else:
            table, step = tables.inv_coarse[comp], self.coarse_step
        index = torch.round(theta / step).long() % table.shape[0]
        inv = table.flatten(1).index_select(0, index).view(-1, *table.shape[1:])
        x = torch.bmm(inv, qv[..., None])
        if self.refine:
            x = torch.baddbmm(x, inv, (qv - self._apply_normal(tables, comp, theta, x[..., 0]))[..., None])
        x = x[..., 0]
        return x, tables.energy - (qv * x).sum(-1)

    @staticmethod
    def _apply_normal(tables: _Tables, comp: int, theta: Tensor, x: Tensor) -> Tensor:
        """``N_theta x`` for x (B, J+1) (P, Q, S, Q1, S1 symmetric)."""
        parts = (x @ tables.q[comp], x @ tables.s[comp], x @ tables.q1[comp], x @ tables.s1[comp])
        return _combine(x @ tables.p[comp], parts, theta[:, None])

    def _solve_differentiable(self, y: Tensor, tables: _Tables, component: Tensor, theta: Tensor) -> Tensor:
        """Closed-form solve at the chosen (fixed) angle and component with autograd:
        ``x = N_theta^-1 (A_theta^T y_tilde + g e0)`` (supplementary Eqs. 5-8)."""
        yt, _, _ = self._normalise(y, tables)

        def project(rows: Tensor) -> Tensor:  # (B, J+1) = sum_r rows_r^T y_r
            picked = rows[component]  # (B, 2, J+1, 17)
            return (picked @ yt.transpose(1, 2)[..., None]).sum(1)[..., 0]

        c, s = torch.cos(theta)[:, None], torch.sin(theta)[:, None]
        rhs = c * project(tables.u_cos) + s * project(tables.u_sin) + project(tables.u_const)
        prior_rhs = torch.zeros(rhs.shape[-1], dtype=rhs.dtype, device=rhs.device)
        prior_rhs[0] = tables.scale_prior
        rhs = rhs + prior_rhs
        parts = (tables.q[component], tables.s[component], tables.q1[component], tables.s1[component])
        normal = _combine(tables.p[component], parts, theta[:, None, None])
        return torch.linalg.solve(normal, rhs)

    def _model_pose(self, component: Tensor, coeff: Tensor) -> Tensor:
        """``mu_k + a . e_k`` (B, 17, 3) in metres, one matrix product per component."""
        flat_basis = self.basis.flatten(2)  # (K, J, 51)
        if self.components == 1:
            return (self.mean[0].flatten() + coeff @ flat_basis[0]).view(-1, NUM_JOINTS, 3)
        out = coeff.new_empty(coeff.shape[0], NUM_JOINTS * 3)
        for comp in range(self.components):
            index = (component == comp).nonzero()[:, 0]
            out[index] = self.mean[comp].flatten() + coeff[index] @ flat_basis[comp]
        return out.view(-1, NUM_JOINTS, 3)

    def _assemble(self, y: Tensor, tables: _Tables, component: Tensor, theta: Tensor, x: Tensor,
                  cost: Tensor) -> LiftResult:
        """3D pose ``T R_y(theta) (mu + (b / s) . e)`` in mm, root-relative, with its 2D scale/translation."""
        _, t0, s0 = self._normalise(y, tables)
        s1 = x[:, 0]
        safe = s1.clamp(min=1e-6)
        coeff = x[:, 1:] / safe[:, None]  # a = b / s (footnote 3), metres
        model = self._model_pose(component, coeff)
        rotation = tables.tilt @ rotation_about_axis(theta, "y")  # (B, 3, 3)
        pose = model @ rotation.mT * MODEL_UNIT_MM
        pose = pose - pose[:, ROOT:ROOT + 1]
        scale = s0 * s1 / MODEL_UNIT_MM
        centroid = (pose[..., :2] * tables.weights[:, None]).sum(1) / tables.weight_sum
        translation = t0 - scale[:, None] * centroid
        return LiftResult(pose, component, theta % (2 * math.pi), scale, translation, coeff * MODEL_UNIT_MM, cost)


def _scatter(parts: list[tuple[Tensor | None, LiftResult]], size: int) -> LiftResult:
    """Reassemble per-weight-pattern results into batch order."""
    fields = []
    for f in range(len(LiftResult._fields)):
        first = parts[0][1][f]
        out = first.new_zeros((size,) + tuple(first.shape[1:]))
        for index, result in parts:
            out = out.index_copy(0, index, result[f])
        fields.append(out)
    return LiftResult(*fields)


def lift(prior, joints_2d: Tensor, weights: Tensor | None = None, **options) -> LiftResult:
    """Functional form: ``Lifter(prior, **options)(joints_2d, weights)`` (builds the tables each call)."""
    joints_2d = torch.as_tensor(joints_2d)
    differentiable = options.pop("differentiable", False)
    lifter = Lifter(prior, device=joints_2d.device, dtype=options.pop("dtype", joints_2d.dtype), **options)
    return lifter(joints_2d, weights, differentiable=differentiable)
