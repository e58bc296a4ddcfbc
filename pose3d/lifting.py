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

Few, large operations: a call normalises, searches, refines and assembles its whole batch at
once; poses whose tables differ (a joint-weight pattern, a camera pitch) share every step but
the products with their own tables (the search's two matrix products and the closed-form
solve), so a batch of 64 poses under 40 pitches is about 3,000 tensor operations, not 15,000.
Below ``SINGLE_THREAD_BELOW`` poses (4,096) a call runs with one intra-op thread
(:func:`pose3d.threads.intra_op_threads`): a second thread cannot pay for its barriers there, and
where another process holds a core each barrier waits for that core's time slice (measured with
``python -m pose3d.bench lifting``: its ``as_found`` and ``beside_busy_process`` figures at batch 64
and at 16,384, default threads against one; docs/results/tome2017.md, "Lifting speed").

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
from pose3d.threads import intra_op_threads

MODEL_UNIT_MM = 1000.0  # the tables work in metres: well scaled for float32
ROOT_RELATIVE_DIMS = 3 * (NUM_JOINTS - 1)  # dimension D of the log-determinant (Sec. 4)
_CHUNK_ELEMENTS = 1 << 21  # per-chunk size of the (batch x angles x unknowns) products
_MAX_TABLES = 256  # cached (joint-weight pattern, pitch) tables
SINGLE_THREAD_BELOW = 4096  # poses: smaller batches lift with one intra-op thread (see the module docstring)


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

    weight_sum: float
    ref_rms: float  # rms size of the projected mean: y is scaled to it
    energy: float  # |y_tilde|^2 (the same for every pose after scaling) + g
    scale_prior: float  # g
    tilt: Tensor  # (3, 3) camera pitch T = R_x(pitch) (identity: a level camera)
    symmetric: bool  # T = I: theta + pi only flips the projected x (half the angles)
    projection: Tensor  # (34, K * 3 * (J+1)): (U^T y, V^T y, W^T y) of each component, see _projection_table
    w_even: Tensor  # (578 + 17, K * Rn): |L^-1 q~|^2 as linear forms of the even pose features,
    w_const: Tensor  # (K * Rn,)                    see _quadratic_form_weights and _features
    w_odd: Tensor  # (289 + 17, K * Rn): the part that changes sign at theta + pi
    normal: Tensor  # (J+1, K * 5 * (J+1)): x @ normal gives x^T [Q1, S1, P, Q, S] of each component
    inv_coarse: Tensor  # (K, Rn, J+1, J+1) N^-1 at the coarse angles (mod pi when R is even)
    inv_fine: Tensor  # (K, Rf, J+1, J+1) N^-1 at the fine angles in [0, pi)

    def normal_parts(self) -> Tensor:
        """(K, 5, J+1, J+1): ``[Q1, S1, P, Q, S]`` of each component, the order of :func:`_harmonic_weights`."""
        size = self.normal.shape[0]
        return self.normal.view(size, -1, 5, size).permute(1, 2, 0, 3)


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


# [cos t, sin t, 1, cos 2t, sin 2t] = cos(frequency * t - phase): the weights of (U, V, W) in A_t and
# of (Q1, S1, P, Q, S) in N_t, one elementwise cosine for a batch of angles
_FREQUENCY = (1.0, 1.0, 0.0, 2.0, 2.0)
_PHASE = (0.0, math.pi / 2, 0.0, 0.0, math.pi / 2)


def _harmonic_weights(theta: Tensor) -> Tensor:
    """(B, 5) ``[cos t, sin t, 1, cos 2t, sin 2t]`` of angles (B,)."""
    frequency, phase = (torch.tensor(v, dtype=theta.dtype, device=theta.device) for v in (_FREQUENCY, _PHASE))
    return torch.cos(torch.addcmul(-phase, theta[:, None], frequency))


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
    Features (see :func:`_features`): [x_i x_j, y_i y_j, y] for the even part, [x_i y_j, x]
    for the odd part.  Returns the weights (features, K * Rn) of the even part (595,), its
    constant (K * Rn,) and the weights of the odd part (306,).
    """
    columns = lambda t: t.flatten(0, 1).T  # noqa: E731  (K, Rn, F) -> (F, K * Rn)
    squares = torch.cat([(mx.mT @ mx).flatten(-2), (my.mT @ my).flatten(-2)], -1)
    lin_y = 2 * (bias[..., None, :] @ my)[..., 0, :]
    const = (bias ** 2).sum(-1).flatten()
    cross = 2 * (mx.mT @ my).flatten(-2)
    lin_x = 2 * (bias[..., None, :] @ mx)[..., 0, :]
    return [torch.cat([columns(squares), columns(lin_y)]), const, torch.cat([columns(cross), columns(lin_x)])]


def _projection_table(u: Tensor, v: Tensor, w: Tensor) -> Tensor:
    """(34, K * 3 * (J+1)) from the rows (K, 2, J+1, 17) of :func:`_tilted_rows`: the pose's image
    rows (B, 2, 17) flattened times it give ``(U^T y, V^T y, W^T y)`` (summed over the rows) of
    every component, the pieces of ``A_t^T y = cos(t) U^T y + sin(t) V^T y + W^T y``."""
    return torch.stack([u, v, w], 1).permute(2, 4, 0, 1, 3).flatten(0, 1).flatten(1)


def _normal_table(parts: tuple[Tensor, ...]) -> Tensor:
    """(J+1, K * 5 * (J+1)) from ``P, Q, S, Q1, S1`` (K, J+1, J+1): ``x @`` it gives ``x^T`` times
    each of ``Q1, S1, P, Q, S`` of every component (the order of :func:`_harmonic_weights`)."""
    p, q, s, q1, s1 = parts
    return torch.stack([q1, s1, p, q, s], 1).permute(2, 0, 1, 3).flatten(1)


def _features(planes: Tensor) -> Tensor:
    """(B, 901) pose features of planes (B, 2, 17) = (x, y) rows: the even part
    ``[x_i x_j, y_i y_j, y]`` (595) then the odd part ``[x_i y_j, x]`` (306)."""
    b, n = planes.shape[0], NUM_JOINTS
    out = planes.new_empty(b, 2 * n * n + n + n * n + n)
    even, odd = 2 * n * n + n, n * n + n
    torch.mul(planes[..., :, None], planes[..., None, :], out=out[:, :2 * n * n].view(b, 2, n, n))
    out[:, 2 * n * n:even] = planes[:, 1]
    torch.mul(planes[:, 0, :, None], planes[:, 1, None, :], out=out[:, even:even + n * n].view(b, n, n))
    out[:, even + n * n:even + odd] = planes[:, 0]
    return out


def _quartic_forms() -> Tensor:
    """(17, 5) linear maps of the costs at offsets -2..2: the coefficients (of ``t^0..t^4``) of the
    quartic through them, of its first and of its second derivative, then the parabola's
    ``c(-1) - 2 c(0) + c(1)`` and ``c(-1) - c(1)``."""
    quartic = torch.linalg.inv(torch.arange(-2.0, 3.0, dtype=torch.float64)[:, None] ** torch.arange(5.0))
    derivative = torch.diag(torch.arange(1.0, 5.0, dtype=torch.float64), 1)  # c_k t^k -> k c_k t^(k-1)
    first = derivative @ quartic
    parabola = torch.tensor([[0.0, 1.0, -2.0, 1.0, 0.0], [0.0, 1.0, 0.0, -1.0, 0.0]], dtype=torch.float64)
    return torch.cat([quartic, first, derivative @ first, parabola])


_QUARTIC_FORMS = _quartic_forms()


def _quartic_minimum(costs: Tensor) -> tuple[Tensor, Tensor]:
    """Sub-step offset in [-1, 1] and value at the minimum of the quartic through costs (..., 5)
    at offsets -2..2 (Newton from the parabola's vertex); offset 0 where it does not help.
    The quartic and its derivatives are evaluated together, one product per Newton step."""
    forms = costs @ _QUARTIC_FORMS.to(costs).T  # (..., 17)
    polynomials = forms[..., :15].unflatten(-1, (3, 5))  # (..., 3, 5): value, first, second derivative
    curvature, slope = forms[..., 15], forms[..., 16]
    t = torch.where(curvature > 0, 0.5 * slope / curvature.clamp(min=1e-30), 0.0).clamp(-0.5, 0.5)

    def evaluate(t: Tensor) -> Tensor:  # (..., 3): value, first and second derivative at t
        powers = t[..., None].expand(*t.shape, 4).cumprod(-1)  # t, t^2, t^3, t^4
        return torch.baddbmm(polynomials[..., 0].flatten(0, -2)[..., None],
                             polynomials[..., 1:].flatten(0, -3), powers.flatten(0, -2)[..., None]).view(*t.shape, 3)

    for _ in range(3):
        d = evaluate(t)
        d1, d2 = d[..., 1], d[..., 2]
        t = torch.where(d2 > 0, t - d1 / d2.clamp(min=1e-30), t).clamp(-1.0, 1.0)
    value, c0 = evaluate(t)[..., 0], costs[..., 2]
    keep = value < c0
    return torch.where(keep, t, 0.0), torch.where(keep, value, c0)


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
        # (J, K * 51): coefficients (B, J) times it give every component's basis combination
        self._basis_columns = self._to(self._basis.flatten(2).permute(1, 0, 2).flatten(1))
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
        return _Tables(w_sum, ref_rms, w_sum * ref_rms ** 2 + g, g, self._to(tilt), half,
                       self._to(_projection_table(u, v, c)), *(self._to(f) for f in forms),
                       self._to(_normal_table(parts)), self._to(inv_coarse), self._to(inv_fine))

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
        slot, groups = self._groups(w, pitches)
        with intra_op_threads(1 if b < SINGLE_THREAD_BELOW else None):
            out = self._lift(y, w, slot, groups, differentiable)
        if roll is not None:  # back into the rolled camera: R_z(roll) on the pose, R2(roll) on the translation
            out = out._replace(joints_3d=torch.cat([out.joints_3d[..., :2] @ roll.mT, out.joints_3d[..., 2:]], -1),
                               translation=(out.translation[:, None] @ roll.mT)[:, 0])
        return LiftResult(*(t[0] for t in out)) if single else out

    def _groups(self, w: Tensor, pitches: Tensor) -> tuple[Tensor | None, list[tuple[Tensor | None, _Tables]]]:
        """The poses of each (joint-weight pattern, quantised pitch) and its tables: ``(slot, [(rows, tables)])``
        with ``slot`` (B,) the group of every pose; ``(None, [(None, default tables)])`` when all
        joints are seen by level cameras."""
        if bool((w == 1).all()) and not bool(pitches.any()):
            return None, [(None, self._default)]
        keys = torch.cat([w.cpu().double(), pitches.double()[:, None]], 1)
        patterns, inverse, counts = torch.unique(keys, dim=0, return_inverse=True, return_counts=True)
        rows = torch.argsort(inverse, stable=True).to(w.device).split(counts.tolist())
        tables = [self.tables(row[:NUM_JOINTS], int(row[NUM_JOINTS])) for row in patterns]
        if len(tables) == 1:
            return None, [(None, tables[0])]
        return inverse.to(w.device), list(zip(rows, tables))

    def _lift(self, y: Tensor, w: Tensor, slot: Tensor | None, groups: list[tuple[Tensor | None, _Tables]],
              differentiable: bool) -> LiftResult:
        """The whole batch at once; only the products with a group's own tables run per group."""
        def per_pose(values: list) -> Tensor:  # (B,) (or (1,) for one group) of per-table values
            stacked = torch.tensor(values, dtype=self.dtype, device=y.device)
            return stacked if slot is None else stacked[slot]

        tables = [t for _, t in groups]
        weight_sum, ref_rms, energy = (per_pose([getattr(t, name) for t in tables])
                                       for name in ("weight_sum", "ref_rms", "energy"))
        yt, t0, s0 = self._normalise(y, w, weight_sum, ref_rms)
        flat = yt.transpose(1, 2).reshape(y.shape[0], 2 * NUM_JOINTS)  # (B, 34): (x, y) image rows
        with torch.no_grad():
            chunk = max(1, _CHUNK_ELEMENTS // (3 * max(t.w_even.shape[1] for t in tables) + 900))
            picks = [self._search(flat[i:i + chunk].detach(), energy if slot is None else energy[i:i + chunk],
                                  _chunk_groups(groups, i, min(i + chunk, y.shape[0])))
                     for i in range(0, y.shape[0], chunk)]
            component, theta, solution, cost = (torch.cat(t) for t in zip(*picks))
        if differentiable:
            solution = self._solve_differentiable(flat, groups, component, theta)
        tilt = torch.stack([t.tilt for t in tables])
        return self._assemble(w, weight_sum, t0, s0, tilt if slot is None else tilt[slot], component, theta, solution, cost)

    @staticmethod
    def _normalise(y: Tensor, w: Tensor, weight_sum: Tensor, ref_rms: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Centre (weighted) and scale Y to the model's size: returns (y_tilde, t0, s0).

        ``y_tilde = sqrt(w) (y - t0) / s0`` with t0 the weighted centroid and s0 the weighted
        rms distance to it over ``ref_rms``; s0 makes the result scale invariant.
        """
        t0 = (y * w[..., None]).sum(1) / weight_sum[:, None]
        centred = y - t0[:, None]
        s0 = ((centred ** 2).sum(-1) * w).sum(-1).div(weight_sum).sqrt() / ref_rms
        s0 = s0.clamp(min=torch.finfo(y.dtype).tiny ** 0.5)
        return centred * (w.sqrt()[..., None] / s0[:, None, None]), t0, s0

    def _fit(self, features: Tensor, tables: _Tables) -> Tensor:
        """(B, K, R) ``|L^-1 q~|^2`` at every angle and component: the heavy products, linear forms
        of the pose features; the cost is ``|y|^2 + g`` minus it."""
        b, even = features.shape[0], tables.w_even.shape[0]
        fit = torch.addmm(tables.w_const, features[:, :even], tables.w_even)
        if not tables.symmetric:
            return fit.addmm_(features[:, even:], tables.w_odd).view(b, self.components, -1)
        even_part, odd_part = fit.view(b, self.components, -1), torch.mm(features[:, even:], tables.w_odd).view(b, self.components, -1)
        rn = even_part.shape[-1]
        out = fit.new_empty(b, self.components, 2 * rn)
        torch.add(even_part, odd_part, out=out[..., :rn])  # angles theta_r
        torch.sub(even_part, odd_part, out=out[..., rn:])  # angles theta_r + pi
        return out

    def _search(self, flat: Tensor, energy: Tensor, groups: list[tuple[Tensor | None, _Tables]]
                ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Exhaustive search over angles and components of normalised poses (B, 34):
        (component, theta, x, score) per pose."""
        b, k = flat.shape[0], self.components
        features = _features(flat.view(b, 2, NUM_JOINTS))
        if groups[0][0] is None:
            fit = self._fit(features, groups[0][1])
        else:
            fit = flat.new_empty(b, k, self.rotations)
            for rows, tables in groups:
                fit[rows] = self._fit(features[rows], tables)
        best = fit.argmax(-1)  # (B, K): cost = |y|^2 + g - fit is smallest
        if self.refine:  # quartic through the best angle and two neighbours on each side
            around = (best[..., None] + torch.arange(-2, 3, device=flat.device)) % self.rotations
            step, c0 = _quartic_minimum(energy[:, None, None] - fit.gather(-1, around))
        else:
            step = torch.zeros(b, k, dtype=flat.dtype, device=flat.device)
            c0 = energy[:, None] - fit.gather(-1, best[..., None])[..., 0]
        if k == 1:
            component = torch.zeros(b, dtype=torch.long, device=flat.device)
            theta = (best + step)[:, 0] * self.coarse_step
        else:
            component = (c0 * self._inv_noise + self._score_offset).argmin(-1)  # (B,)
            theta = (best + step).gather(1, component[:, None])[:, 0] * self.coarse_step
        harmonics = _harmonic_weights(theta)
        if groups[0][0] is None:
            x, final = self._solve_at(flat, harmonics, theta, component, groups[0][1])
        else:
            x, final = flat.new_empty(b, self.basis_size + 1), flat.new_empty(b)
            for rows, tables in groups:
                x[rows], final[rows] = self._solve_at(flat[rows], harmonics[rows], theta[rows], component[rows], tables)
        return component, theta, x, final * self._inv_noise[component] + self._score_offset[component]

    def _pick(self, per_component: Tensor, component: Tensor) -> Tensor:
        """Rows (B, ...) of the chosen component from (B, K, ...)."""
        if self.components == 1:
            return per_component[:, 0]
        return per_component[torch.arange(component.shape[0], device=component.device), component]

    def _rhs(self, flat: Tensor, harmonics: Tensor, component: Tensor, tables: _Tables) -> Tensor:
        """(B, J+1) ``A_theta^T y + g e0 = cos(t) U^T y + sin(t) V^T y + W^T y + g e0``."""
        j1 = self.basis_size + 1
        pieces = self._pick((flat @ tables.projection).view(-1, self.components, 3, j1), component)  # (B, 3, J+1)
        rhs = (harmonics[:, None, :3] @ pieces)[:, 0]
        rhs[:, 0] += tables.scale_prior
        return rhs

    def _solve_at(self, flat: Tensor, harmonics: Tensor, theta: Tensor, component: Tensor,
                  tables: _Tables) -> tuple[Tensor, Tensor]:
        """(x, cost) of normalised poses (B, 34) at angles theta (B,) for their components.

        On the coarse grid (``refine=False``) ``x = N^-1 q`` from the coarse table, exactly.
        Otherwise the nearest fine-table inverse plus one Richardson step
        ``x += N_f^-1 (q - N_theta x)``.  cost = ``|y|^2 + g - q^T x``.
        """
        qv = self._rhs(flat, harmonics, component, tables)
        table, step = (tables.inv_fine, self.fine_step) if self.refine else (tables.inv_coarse, self.coarse_step)
        index = torch.round(theta / step).long() % table.shape[1]
        if self.components > 1:
            index += component * table.shape[1]
        inv = table.flatten(0, 1).flatten(1).index_select(0, index).view(-1, *table.shape[2:])
        x = torch.bmm(inv, qv[..., None])
        if self.refine:  # N_theta x = sum_h weight_h x^T part_h (parts symmetric)
            j1 = self.basis_size + 1
            parts = self._pick((x[..., 0] @ tables.normal).view(-1, self.components, 5, j1), component)
            x = torch.baddbmm(x, inv, qv[..., None] - (harmonics[:, None] @ parts).mT)
        x = x[..., 0]
        return x, tables.energy - (qv * x).sum(-1)

    def _solve_differentiable(self, flat: Tensor, groups: list[tuple[Tensor | None, _Tables]], component: Tensor,
                              theta: Tensor) -> Tensor:
        """Closed-form solve at the chosen (fixed) angle and component with autograd:
        ``x = N_theta^-1 (A_theta^T y_tilde + g e0)`` (supplementary Eqs. 5-8)."""
        harmonics = _harmonic_weights(theta)
        solutions = []
        for rows, tables in groups:
            h, comp = _rows(harmonics, rows), _rows(component, rows)
            rhs = self._rhs(_rows(flat, rows), h, comp, tables)
            normal = (h[:, :, None, None] * tables.normal_parts()[comp]).sum(1)
            solutions.append(torch.linalg.solve(normal, rhs))
        if groups[0][0] is None:
            return solutions[0]
        order = torch.cat([rows for rows, _ in groups])
        return torch.cat(solutions)[torch.argsort(order)]

    def _model_pose(self, component: Tensor, coeff: Tensor) -> Tensor:
        """``mu_k + a . e_k`` (B, 17, 3) in metres: every component's in one product, the chosen one kept."""
        every = torch.addmm(self.mean.flatten(), coeff, self._basis_columns).view(-1, self.components, NUM_JOINTS * 3)
        return self._pick(every, component).view(-1, NUM_JOINTS, 3)

    def _assemble(self, w: Tensor, weight_sum: Tensor, t0: Tensor, s0: Tensor, tilt: Tensor, component: Tensor,
                  theta: Tensor, x: Tensor, cost: Tensor) -> LiftResult:
        """3D pose ``T R_y(theta) (mu + (b / s) . e)`` in mm, root-relative, with its 2D scale/translation."""
        s1 = x[:, 0]
        safe = s1.clamp(min=1e-6)
        coeff = x[:, 1:] / safe[:, None]  # a = b / s (footnote 3), metres
        model = self._model_pose(component, coeff)
        rotation = tilt @ rotation_about_axis(theta, "y")  # (B, 3, 3)
        pose = model @ rotation.mT * MODEL_UNIT_MM
        pose = pose - pose[:, ROOT:ROOT + 1]
        scale = s0 * s1 / MODEL_UNIT_MM
        centroid = (pose[..., :2] * w[..., None]).sum(1) / weight_sum[:, None]
        translation = t0 - scale[:, None] * centroid
        return LiftResult(pose, component, theta % (2 * math.pi), scale, translation, coeff * MODEL_UNIT_MM, cost)


def _chunk_groups(groups: list[tuple[Tensor | None, _Tables]], start: int, stop: int
                  ) -> list[tuple[Tensor | None, _Tables]]:
    """The groups' rows among poses ``start:stop``, counted from ``start`` (groups without any dropped)."""
    if groups[0][0] is None or (start == 0 and stop >= max(int(rows[-1]) for rows, _ in groups) + 1):
        return groups
    picked = [(rows[(rows >= start) & (rows < stop)] - start, tables) for rows, tables in groups]
    return [(rows, tables) for rows, tables in picked if rows.numel()]


def lift(prior, joints_2d: Tensor, weights: Tensor | None = None, **options) -> LiftResult:
    """Functional form: ``Lifter(prior, **options)(joints_2d, weights)`` (builds the tables each call)."""
    joints_2d = torch.as_tensor(joints_2d)
    differentiable = options.pop("differentiable", False)
    lifter = Lifter(prior, device=joints_2d.device, dtype=options.pop("dtype", joints_2d.dtype), **options)
    return lifter(joints_2d, weights, differentiable=differentiable)
