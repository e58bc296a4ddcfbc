"""Probabilistic 3D pose model of Tome et al. 2017, "Lifting from the Deep" (Sec. 4).

A pose prior that is a mixture of probabilistic PCA models (Tipping & Bishop) learnt
from 3D poses after removing nuisance factors:

* size (Sec. 4): every pose is scaled so that the sum of its squared limb lengths is one;
* left/right symmetry (Sec. 4): the training set is augmented with mirrored poses
  (x -> -x and the left/right joint labels swapped);
* rotation in the ground plane (Sec. 4.1, Eq. 1): each pose P_i gets a rotation R_i about
  the vertical axis, found by alternating closed-form PPCA (mean mu, orthonormal basis e,
  variances, noise sigma^2) with per-pose rotation updates while the basis grows from 1 to
  its target size; the mean is initialised with the Tomasi-Kanade variant of Sec. 4.1;
* multi-modality (Sec. 4.2): greedy selection of cluster seeds (Eq. 2), assignment of every
  aligned pose to its nearest seed, then EM for a mixture of PPCA (Tipping & Bishop 1999).

Frames and units (DESIGN.md): poses are (N, 17, 3) in mm in the project's camera frame
(x right, y down, z forward), root-relative.  The vertical axis is -y, so ground-plane
rotations are rotations about y: ``R_y(t) = [[c, 0, s], [0, 1, 0], [-s, 0, c]]``
(``pose3d.camera.rotation_about_axis(t, "y")``).  A :class:`PosePrior` stores its model
in mm in a canonical body orientation; :meth:`PosePrior.lift` turns 2D joints into 3D
poses with :mod:`pose3d.lifting` (Sec. 5.3).

Command line::

    python -m pose3d.ppca fit --source SOURCE --components K --basis J --out FILE.npz

SOURCE is a folder of BVH files, a VideoPose3D ``data_3d_h36m.npz`` or ``synthetic``.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from pose3d.arguments import OneLineParser, bounded_int, int_at_least, open_fraction
from pose3d.config import SEED_RANGE
from pose3d.files import atomic_path, check_writable
from pose3d.h36m_mocap import PROTOCOL_TRAIN_SUBJECTS, PoseFileError, read_positions_3d
from pose3d.readers import FileFormatError, read_mat, read_npz
from pose3d.skeleton import FLIP_PERMUTATION, H36M_BONES, NUM_JOINTS, ROOT

NON_ROOT = np.array([j for j in range(NUM_JOINTS) if j != ROOT])
DIMS = 3 * len(NON_ROOT)  # a root-relative pose has 48 free coordinates

# A world frame with z up (Human3.6M / VideoPose3D, the Tome et al. release) to the
# project's camera-like frame (x right, y down, z forward): x' = x, y' = -z, z' = y.
# det = +1, so it is a proper rotation (left stays left); a person standing upright
# in the world has the head at negative y'.
WORLD_Z_UP_TO_CAMERA = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])

_VAR_FLOOR = 1e-10  # relative floor on PPCA variances (keeps log-densities finite)


# --------------------------------------------------------------------------- geometry

def limb_scale(poses: np.ndarray) -> np.ndarray:
    """sqrt(sum of squared limb lengths) of poses (..., 17, 3): the size normaliser of Sec. 4."""
    bones = np.stack([poses[..., c, :] - poses[..., p, :] for c, p in H36M_BONES], axis=-2)
    return np.sqrt((bones ** 2).sum(axis=(-1, -2)))


def mean_bone_length(poses: np.ndarray) -> float:
    """Median over poses (..., 17, 3) of their mean bone length (same unit as the poses)."""
    bones = np.stack([poses[..., c, :] - poses[..., p, :] for c, p in H36M_BONES], axis=-2)
    return float(np.median(np.linalg.norm(bones, axis=-1).mean(-1)))


# An adult's mean bone length over the 16 bones of H36M_BONES is about 260 mm (pose3d.body's
# MEAN_BONE_LENGTHS: 262 mm); poses whose mean bone length falls outside this range (one decade,
# so at most one power of ten brings a length into it) are not millimetres.
PLAUSIBLE_BONE_MM = (80.0, 800.0)
_UNIT_NAMES = {1e-3: "micrometres", 1.0: "millimetres", 10.0: "centimetres", 1000.0: "metres"}


def to_millimetres(poses: np.ndarray, what: str, unit: str = "mm") -> tuple[np.ndarray, str]:
    """``poses`` read as ``unit`` and converted to mm, checked by their bone lengths: unchanged when
    their mean bone length is an adult's (:data:`PLAUSIBLE_BONE_MM`), rescaled by the power of ten
    that makes it one (e.g. a "metres" file that holds millimetres) with a line saying so, or a
    :class:`SourceError` when no power of ten does."""
    length = mean_bone_length(poses)
    low, high = PLAUSIBLE_BONE_MM
    if low <= length <= high:
        return poses, ""
    factors = [10.0 ** k for k in range(-6, 7) if low <= length * 10.0 ** k < high]
    if not factors or not np.isfinite(length):
        raise SourceError(f"{what}: mean bone length {length:,.4g} mm when read as {unit}; expected an adult's "
                          f"{low:.0f}-{high:.0f} mm in some power-of-ten unit: check the file's unit")
    factor = factors[0]
    mm_per_unit = {"mm": 1.0, "metres": 1000.0}[unit] * factor
    held = _UNIT_NAMES.get(round(mm_per_unit, 6), f"units of {mm_per_unit:g} mm")
    return poses * factor, (f"{what}: mean bone length {length:,.4g} mm when read as {unit}, so it holds {held}: "
                            f"scaled by {factor:g} to millimetres (mean bone length {length * factor:.0f} mm)")


def mirror_poses(poses: np.ndarray) -> np.ndarray:
    """Left/right mirror images (Sec. 4): x -> -x and left and right joints swapped."""
    mirrored = poses[..., list(FLIP_PERMUTATION), :].copy()
    mirrored[..., 0] *= -1
    return mirrored


def yaw_matrix(theta: np.ndarray) -> np.ndarray:
    """Ground-plane rotations (..., 3, 3) about the camera y axis (same as camera.rotation_about_axis)."""
    theta = np.asarray(theta, dtype=np.float64)
    c, s = np.cos(theta), np.sin(theta)
    one, zero = np.ones_like(theta), np.zeros_like(theta)
    return np.stack([c, zero, s, zero, one, zero, -s, zero, c], axis=-1).reshape(theta.shape + (3, 3))


def rotate_yaw(poses: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """``R_y(theta) @ X`` for every joint of poses (N, L, 3) and angles (N,)."""
    return np.einsum("nij,nlj->nli", yaw_matrix(theta), poses)


def best_yaw(target: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Angles (N,) minimising ``||P - R_y(t) Q||^2`` for P = target, Q = source (N, L, 3).

    Closed form: ``<P, R_y(t) Q> = c * sum(px qx + pz qz) + s * sum(px qz - pz qx)``,
    maximised by ``t = atan2(sum(px qz - pz qx), sum(px qx + pz qz))``.
    """
    px, pz = target[..., 0], target[..., 2]
    qx, qz = source[..., 0], source[..., 2]
    return np.arctan2((px * qz - pz * qx).sum(-1), (px * qx + pz * qz).sum(-1))


def _flatten(poses: np.ndarray) -> np.ndarray:
    """(N, 17, 3) root-relative poses -> (N, 48): the non-root joints, row-major."""
    return poses[:, NON_ROOT].reshape(len(poses), DIMS)


def _unflatten(x: np.ndarray) -> np.ndarray:
    """(..., 48) -> (..., 17, 3) with the root at the origin."""
    out = np.zeros(x.shape[:-1] + (NUM_JOINTS, 3))
    out[..., NON_ROOT, :] = x.reshape(x.shape[:-1] + (len(NON_ROOT), 3))
    return out


# ------------------------------------------------------------------- probabilistic PCA

@dataclass
class PPCA:
    """One probabilistic PCA model ``x = mean + sum_j a_j basis_j + eps`` (Tipping & Bishop).

    ``a_j ~ N(0, variances_j)`` and ``eps ~ N(0, noise * I)``, so the covariance is
    ``C = sum_j variances_j e_j e_j^T + noise * I``.  ``basis`` rows are orthonormal.
    """

    mean: np.ndarray  # (D,)
    basis: np.ndarray  # (J, D)
    variances: np.ndarray  # (J,) prior variances of the coefficients (lambda_j - sigma^2)
    noise: float  # sigma^2

    @property
    def dims(self) -> int:
        return self.mean.shape[0]

    def log_density(self, x: np.ndarray) -> np.ndarray:
        """log N(x | mean, C) for rows of x (N, D), using the eigen-structure of C."""
        d = x - self.mean
        proj = d @ self.basis.T
        along = self.variances + self.noise  # eigenvalues of C along the basis
        maha = (proj ** 2 / along).sum(-1) + ((d ** 2).sum(-1) - (proj ** 2).sum(-1)) / self.noise
        logdet = np.log(along).sum() + (self.dims - len(along)) * np.log(self.noise)
        return -0.5 * (maha + logdet + self.dims * np.log(2 * np.pi))

    def coefficients(self, x: np.ndarray) -> np.ndarray:
        """Posterior mean of the coefficients: ``a_j = v_j / (v_j + sigma^2) * e_j^T (x - mean)``."""
        shrink = self.variances / (self.variances + self.noise)
        return ((x - self.mean) @ self.basis.T) * shrink

    def reconstruct(self, x: np.ndarray) -> np.ndarray:
        return self.mean + self.coefficients(x) @ self.basis


def fit_ppca(x: np.ndarray, basis: int, weights: np.ndarray | None = None) -> PPCA:
    """Closed-form (weighted) maximum-likelihood PPCA (Tipping & Bishop 1999, Eqs. 7-8).

    With S the (weighted) sample covariance and ``S = U diag(l) U^T`` its eigen-decomposition
    (l descending): ``sigma^2 = mean(l_{J+1..D})`` and the basis is ``U_{1..J}`` with coefficient
    variances ``l_j - sigma^2``.  ``weights`` (N,) are EM responsibilities (Sec. 4.2).
    """
    n, dims = x.shape
    if not 1 <= basis < dims:
        raise ValueError(f"basis must be in 1..{dims - 1}, got {basis}")
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    total = max(w.sum(), 1e-12)
    mean = w @ x / total
    d = x - mean
    cov = (d * w[:, None]).T @ d / total
    evals, evecs = np.linalg.eigh(cov)
    evals, evecs = evals[::-1], evecs[:, ::-1]
    floor = _VAR_FLOOR * max(evals.sum() / dims, 1e-300)
    noise = max(float(evals[basis:].mean()), floor)
    variances = np.maximum(evals[:basis] - noise, floor)
    return PPCA(mean, evecs[:, :basis].T.copy(), variances, noise)


# ------------------------------------------------------------ rotation alignment (4.1)

def tomasi_kanade_mean(poses: np.ndarray) -> np.ndarray:
    """Initial mean pose (L, 3) for ground-plane alignment, the Tomasi-Kanade variant of Sec. 4.1.

    The y component (untouched by ground-plane rotations) is the plain mean.  The x and z
    rows of all poses are interleaved into a 2N x L matrix M, factorised at rank two as
    M ~ A B, every 2x2 block of A is replaced by its closest rotation (giving A^), and the
    x/z rows of the mean are ``pinv(A^) M = A^T M / N`` (the blocks being orthonormal).
    """
    n, joints, _ = poses.shape
    m = poses[..., [0, 2]].transpose(0, 2, 1).reshape(2 * n, joints)  # rows x_1, z_1, x_2, ...
    # rank-two factor A = U_2 S_2 from the small L x L Gram matrix (M^T M = V S^2 V^T)
    evals, v = np.linalg.eigh(m.T @ m)
    v2 = v[:, ::-1][:, :2]
    a = (m @ v2).reshape(n, 2, 2)
    u, _, vt = np.linalg.svd(a)
    flip = np.sign(np.linalg.det(u @ vt))
    u[:, :, 1] *= flip[:, None]
    a_hat = u @ vt  # closest rotation to each block
    xz = np.einsum("nij,nil->jl", a_hat, m.reshape(n, 2, joints)) / n
    mean = np.empty((joints, 3))
    mean[:, 0], mean[:, 2] = xz
    mean[:, 1] = poses[..., 1].mean(0)
    return mean


@dataclass
class Alignment:
    """Result of :func:`align_poses`: per-pose angles and the final single PPCA model."""

    theta: np.ndarray  # (N,) with P_i ~ R_y(theta_i) (mean + a_i . e)
    model: PPCA  # on the aligned, flattened poses R_y(-theta_i) P_i
    cost: list[float]  # mean squared reconstruction error after every rotation update


def align_poses(poses: np.ndarray, basis: int, rounds: int = 2) -> Alignment:
    """Ground-plane alignment of size-normalised poses (N, 17, 3) by Eq. 1 (Sec. 4.1).

    Alternates closed-form PPCA on the aligned poses ``R_i^T P_i`` with rotation updates
    (the closed-form yaw of :func:`best_yaw` between each P_i and its reconstruction
    ``mean + a_i . e``), ``rounds`` times for every basis size 1, 2, ..., ``basis``, so that
    deformations a rotation explains are not locked into the basis early.
    """
    theta = best_yaw(poses, tomasi_kanade_mean(poses)[None])
    cost: list[float] = []
    model = None
    for size in range(1, basis + 1):
        for _ in range(rounds):
            aligned = _flatten(rotate_yaw(poses, -theta))
            model = fit_ppca(aligned, size)
            recon = _unflatten(model.reconstruct(aligned))
            theta = best_yaw(poses, recon)
            cost.append(float(((rotate_yaw(recon, theta) - poses) ** 2).sum((1, 2)).mean()))
    aligned = _flatten(rotate_yaw(poses, -theta))
    return Alignment(theta, fit_ppca(aligned, basis), cost)


# ------------------------------------------------------------------ mixture (Sec. 4.2)

def greedy_seeds(x: np.ndarray, k: int, subsample: int = 1500, min_separation: float = 0.25,
                 rng: np.random.Generator | None = None) -> np.ndarray:
    """k cluster seeds (rows of x) by the greedy selection of Sec. 4.2, Eq. 2.

    On a random subsample, repeatedly add the candidate s that most lowers
    ``sum_p min_{s in S} d(s, p)``.  As in the paper, candidates closer than
    ``min_separation`` times the median pairwise distance to a chosen seed are not
    proposed (one seed per dominant mode), unless nothing else is left.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    idx = rng.choice(len(x), size=min(subsample, len(x)), replace=False)
    sub = x[idx]
    sq = (sub ** 2).sum(1)
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None] - 2 * sub @ sub.T, 0.0))
    too_close = min_separation * np.median(dist)
    nearest = np.full(len(sub), np.inf)
    chosen: list[int] = []
    for _ in range(min(k, len(sub))):
        total = np.minimum(dist, nearest[None]).sum(1)  # cost if candidate s were added
        allowed = np.ones(len(sub), bool) if not chosen else dist[:, chosen].min(1) > too_close
        if not allowed.any():
            allowed = ~np.isin(np.arange(len(sub)), chosen)
        best = int(np.argmin(np.where(allowed, total, np.inf)))
        chosen.append(best)
        nearest = np.minimum(nearest, dist[best])
    return idx[chosen]


class MixtureFit(NamedTuple):
    models: list[PPCA]
    weights: np.ndarray  # (K,) mixing proportions
    log_likelihood: np.ndarray  # (iterations,) mean log-likelihood per sample before each M-step


def _log_joint(x: np.ndarray, models: list[PPCA], weights: np.ndarray) -> np.ndarray:
    """(N, K) log(pi_k N(x | mu_k, C_k))."""
    return np.stack([np.log(w) + m.log_density(x) for m, w in zip(models, weights)], axis=1)


def _logsumexp(a: np.ndarray) -> np.ndarray:
    top = a.max(1, keepdims=True)
    return (top + np.log(np.exp(a - top).sum(1, keepdims=True)))[:, 0]


def fit_mppca(x: np.ndarray, components: int, basis: int, iterations: int = 100, tol: float = 1e-7,
              labels: np.ndarray | None = None, rng: np.random.Generator | None = None) -> MixtureFit:
    """EM for a mixture of probabilistic PCA models (Tipping & Bishop 1999; Sec. 4.2).

    Initialisation (Sec. 4.2): greedy seeds (:func:`greedy_seeds`), every sample assigned
    to its nearest seed, one closed-form PPCA per cluster.  Then EM with the component
    labels as the hidden variables: E-step ``r_nk = pi_k N(x_n|k) / sum_l pi_l N(x_n|l)``;
    M-step ``pi_k = mean_n r_nk``, ``mu_k`` the r-weighted mean and (W_k, sigma_k^2) the
    closed-form PPCA of the r-weighted covariance, which maximises the expected
    complete-data log-likelihood exactly, so the log-likelihood never decreases.
    """
    n = len(x)
    if labels is None:
        seeds = x[greedy_seeds(x, components, rng=rng)]
        d2 = (x ** 2).sum(1)[:, None] - 2 * x @ seeds.T + (seeds ** 2).sum(1)[None]
        labels = d2.argmin(1)
    resp = np.zeros((n, components))
    resp[np.arange(n), labels] = 1.0
    resp = 0.98 * resp + 0.02 / components  # no empty component at the start
    history: list[float] = []
    models, weights = None, None
    for _ in range(iterations):
        weights = resp.mean(0)
        models = [fit_ppca(x, basis, resp[:, k]) for k in range(components)]  # M-step
        log_joint = _log_joint(x, models, weights)
        log_lik = _logsumexp(log_joint)
        history.append(float(log_lik.mean()))
        resp = np.exp(log_joint - log_lik[:, None])  # E-step
        if len(history) > 1 and history[-1] - history[-2] < tol * abs(history[-2]):
            break
    return MixtureFit(models, weights, np.asarray(history))


# --------------------------------------------------------------------------- the prior

class LiftOutput(NamedTuple):
    """What :meth:`PosePrior.lift` returns (the same fields as ``pose3d.lifting.LiftResult``)."""

    joints_3d: object  # (N, 17, 3) mm, camera frame, pelvis at the origin
    component: object  # (N,) chosen mixture component
    angle: object  # (N,) rad: joints_3d = R_y(angle) @ model pose (root-relative)
    scale: object  # (N,) joints_2d ~ scale * joints_3d[..., :2] + translation
    translation: object  # (N, 2)
    coefficients: object  # (N, J) basis coefficients in mm
    cost: object  # (N,) score of the chosen component (lower is better)


class PriorError(ValueError):
    """Values a :class:`PosePrior` cannot hold: what was ``found`` and what was ``expected``."""

    def __init__(self, found: str, expected: str):
        self.found, self.expected = found, expected
        super().__init__(f"PosePrior: {found}; expected {expected}")


@dataclass
class PosePrior:
    """A mixture of PPCA models of 3D pose in mm (the model of Sec. 4).

    Pose k's density: ``x = means[k] + sum_j a_j basis[k, j] + eps`` with
    ``a_j ~ N(0, variances[k, j])`` and ``eps ~ N(0, noise[k] I)`` (mm^2), in a canonical
    ground-plane orientation of the camera-like frame (y down).  ``basis`` vectors are
    orthonormal as 51-vectors.  ``unit_mm`` is the typical size (sqrt of the sum of squared
    limb lengths) the normalised training poses were scaled back by.
    """

    means: np.ndarray  # (K, 17, 3)
    basis: np.ndarray  # (K, J, 17, 3)
    variances: np.ndarray  # (K, J)
    noise: np.ndarray  # (K,)
    weights: np.ndarray  # (K,)
    unit_mm: float = 1000.0
    log_likelihood: np.ndarray = field(default_factory=lambda: np.zeros(0))
    subjects: tuple = ()  # the mocap subjects it was fitted on (e.g. S1, S5, ...); () = no subject ids (synthetic, BVH)
    _lifters: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.means = np.asarray(self.means, dtype=np.float64)
        self.basis = np.asarray(self.basis, dtype=np.float64)
        self.variances = np.asarray(self.variances, dtype=np.float64)
        self.noise = np.asarray(self.noise, dtype=np.float64).reshape(-1)
        self.weights = np.asarray(self.weights, dtype=np.float64).reshape(-1)
        if self.variances.ndim != 2:
            raise PriorError(f"'variances' has shape {self.variances.shape}", "(K, J)")
        k, j = self.variances.shape
        expected = {"means": (k, NUM_JOINTS, 3), "basis": (k, j, NUM_JOINTS, 3), "noise": (k,), "weights": (k,)}
        for name, shape in expected.items():
            if getattr(self, name).shape != shape:
                raise PriorError(f"'{name}' has shape {getattr(self, name).shape}", str(shape))
        self._check_values()

    def _check_values(self) -> None:
        """Finite numbers, positive variances, noise and size, weights >= 0 of positive sum: what
        the lifting's normal equations need (a NaN there would make every factorisation fail)."""
        for name in ("means", "basis", "variances", "noise", "weights"):
            if not np.isfinite(getattr(self, name)).all():
                raise PriorError(f"'{name}' holds NaN or infinity", "finite numbers")
        for name in ("variances", "noise"):
            if (getattr(self, name) <= 0).any():
                raise PriorError(f"'{name}' holds {getattr(self, name).min():g}", f"{name} > 0")
        if (self.weights < 0).any() or not self.weights.sum() > 0:
            raise PriorError(f"'weights' are {self.weights.tolist()}", "weights >= 0 of positive sum")
        if not (np.isfinite(self.unit_mm) and self.unit_mm > 0):
            raise PriorError(f"'unit_mm' is {self.unit_mm}", "a size in mm > 0")

    @property
    def components(self) -> int:
        return self.means.shape[0]

    @property
    def basis_size(self) -> int:
        return self.basis.shape[1]

    def component(self, k: int) -> PPCA:
        """Component k as a flattened (51-dim) :class:`PPCA` in mm."""
        return PPCA(self.means[k].reshape(-1), self.basis[k].reshape(self.basis_size, -1),
                    self.variances[k], float(self.noise[k]))

    # ---------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        with atomic_path(path) as partial, open(partial, "wb") as f:  # an open file keeps numpy from appending '.npz'
            np.savez(f, means=self.means, basis=self.basis, variances=self.variances, noise=self.noise,
                     weights=self.weights, unit_mm=np.float64(self.unit_mm), log_likelihood=self.log_likelihood,
                     subjects=np.array(self.subjects, dtype=str))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "PosePrior":
        """The prior :meth:`save` wrote; any other file is a one-line :class:`~pose3d.readers.FileFormatError`."""
        data = read_npz(path, PRIOR_FILE, shapes=PRIOR_SHAPES, finite=PRIOR_SHAPES, optional=("subjects",))
        return _prior_of(path, PRIOR_FILE, means=data["means"], basis=data["basis"], variances=data["variances"],
                         noise=data["noise"], weights=data["weights"], unit_mm=float(data["unit_mm"]),
                         log_likelihood=data["log_likelihood"],
                         subjects=tuple(str(s) for s in data["subjects"]) if "subjects" in data else ())

    def check_unseen(self, test_subjects, what: str = "the pose prior") -> None:
        """Raise a one-line ``ValueError`` when the prior was fitted on any of ``test_subjects``."""
        seen = sorted(set(self.subjects) & {str(s) for s in test_subjects})
        if seen:
            raise ValueError(f"{what} was fitted on test subject(s) {', '.join(seen)} (fitted on "
                             f"{', '.join(self.subjects)}); expected a prior of training subjects only: refit it with "
                             "python -m pose3d.ppca fit --subjects ...")

    def mean_bone_length(self) -> float:
        """Mean bone length (mm) of the components' mean poses, weighted by the mixing proportions."""
        bones = np.stack([self.means[:, c] - self.means[:, p] for c, p in H36M_BONES], axis=1)
        return float(np.linalg.norm(bones, axis=-1).mean(-1) @ (self.weights / self.weights.sum()))

    def check_scale(self, poses, what: str = "the pose prior", tolerance: float = 2.0) -> None:
        """Raise a one-line ``ValueError`` when this prior's mean bone length and that of ``poses``
        (N, 17, 3) mm, the data it is to lift, are more than a factor ``tolerance`` apart (a prior
        fitted in other units, or on other data)."""
        data = mean_bone_length(np.asarray(poses, dtype=np.float64))
        own = self.mean_bone_length()
        ratio = max(own, data) / max(min(own, data), 1e-12)
        if not ratio <= tolerance:
            raise ValueError(f"{what} has a mean bone length of {own:,.4g} mm but the data's is {data:,.4g} mm "
                             f"(a factor {ratio:,.3g} apart, more than {tolerance:g}); expected a prior fitted on poses "
                             "in millimetres of this data's scale: refit it with python -m pose3d.ppca fit")

    # ---------------------------------------------------------------- lifting
    def lifter(self, rotations: int = 80, refine: bool = True, prior_weight: float = 1.0,
               device=None, dtype=None, tilt_step_deg: float = 0.5):
        """A cached :class:`pose3d.lifting.Lifter` for this prior."""
        import torch

        from pose3d.lifting import Lifter

        dtype = torch.float32 if dtype is None else dtype
        key = (rotations, refine, prior_weight, str(device), dtype, tilt_step_deg)
        if key not in self._lifters:
            self._lifters[key] = Lifter(self, rotations=rotations, refine=refine, prior_weight=prior_weight,
                                        device=device, dtype=dtype, tilt_step_deg=tilt_step_deg)
        return self._lifters[key]

    def lift(self, joints_2d, weights=None, rotations: int = 80, refine: bool = True,
             prior_weight: float = 1.0, differentiable: bool = False, device=None,
             camera_rotation=None) -> LiftOutput:
        """3D poses from 2D joints (N, 17, 2) (any pixel-like unit, y down) by Sec. 5.3, Eq. 4.

        Returns a :class:`LiftOutput` whose first item is the 3D poses (N, 17, 3) in mm,
        camera frame, pelvis at the origin.  numpy in -> numpy out; torch in -> torch out.
        ``weights`` (N, 17): per-joint visibility/confidence (0 = ignore the joint).
        ``camera_rotation`` (N, 3, 3): world-to-camera rotations ``E`` (y-down world), None = level.
        """
        import torch

        as_numpy = not isinstance(joints_2d, torch.Tensor)
        y = torch.as_tensor(np.asarray(joints_2d) if as_numpy else joints_2d)
        dtype = y.dtype if y.dtype in (torch.float32, torch.float64) else torch.float32
        if device is None:
            device = y.device
        lifter = self.lifter(rotations, refine, prior_weight, device=device, dtype=dtype)
        w = None if weights is None else torch.as_tensor(np.asarray(weights) if as_numpy else weights)
        rotation = None if camera_rotation is None else torch.as_tensor(np.asarray(camera_rotation) if as_numpy
                                                                          else camera_rotation)
        out = lifter(y, w, differentiable=differentiable, camera_rotation=rotation)
        if as_numpy:
            return LiftOutput(*(t.detach().cpu().numpy() for t in out))
        return LiftOutput(*out)


PRIOR_FILE = "a PosePrior .npz (python -m pose3d.ppca fit)"
PRIOR_SHAPES = {"means": ("K", NUM_JOINTS, 3), "basis": ("K", "J", NUM_JOINTS, 3), "variances": ("K", "J"),
                "noise": ("K",), "weights": ("K",), "unit_mm": (), "log_likelihood": (None,)}
RELEASE_FILE = "the prob_model_params.mat of Tome et al. 2017: mu (K, 51), e (K, J, 51), sigma (K, J+1) > 0"


def _prior_of(path: str | Path, expected: str, **fields) -> PosePrior:
    """A :class:`PosePrior` of values read from ``path``; a value it refuses names the file."""
    try:
        return PosePrior(**fields)
    except PriorError as error:
        raise FileFormatError(path, error.found, f"{error.expected} in {expected}") from None


def prior_from_mixture(fit: MixtureFit, unit_mm: float) -> PosePrior:
    """A :class:`PosePrior` in mm from a mixture fitted on size-normalised flattened poses."""
    k, j = len(fit.models), fit.models[0].basis.shape[0]
    means = np.stack([_unflatten(m.mean) for m in fit.models]) * unit_mm
    basis = np.stack([_unflatten(m.basis) for m in fit.models]).reshape(k, j, NUM_JOINTS, 3)
    variances = np.stack([m.variances for m in fit.models]) * unit_mm ** 2
    noise = np.array([m.noise for m in fit.models]) * unit_mm ** 2
    return PosePrior(means, basis, variances, noise, fit.weights, unit_mm, fit.log_likelihood)


def fit(poses: np.ndarray, components: int = 1, basis: int = 10, mirror: bool = True, align_rounds: int = 2,
        em_iterations: int = 100, seed: int = 0) -> PosePrior:
    """Fit the pose prior of Sec. 4 to 3D poses (N, 17, 3), mm, camera frame, y down.

    Sizes are normalised (sum of squared limb lengths one), the set is augmented by its
    mirror images, poses are aligned in the ground plane with a single PPCA (Sec. 4.1),
    then a mixture of ``components`` PPCA models with ``basis`` basis vectors each is
    fitted by EM (Sec. 4.2).  The model is scaled back to mm by the median pose size.
    """
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (NUM_JOINTS, 3):
        raise ValueError(f"poses must have shape (N, {NUM_JOINTS}, 3), got {poses.shape}")
    if not np.isfinite(poses).all():
        raise ValueError("poses contain NaN or inf")
    poses = poses - poses[:, ROOT:ROOT + 1]
    size = limb_scale(poses)
    keep = size > 1e-6 * max(np.median(size), 1e-300)
    if keep.sum() < max(2 * components, basis + 2):
        raise ValueError(f"need at least {max(2 * components, basis + 2)} non-degenerate poses, got {keep.sum()}")
    unit_mm = float(np.median(size[keep]))
    normalised = poses[keep] / size[keep, None, None]
    if mirror:
        normalised = np.concatenate([normalised, mirror_poses(normalised)])
    rng = np.random.default_rng(seed)
    alignment = align_poses(normalised, basis, rounds=align_rounds)
    aligned = _flatten(rotate_yaw(normalised, -alignment.theta))
    if components == 1:
        model = alignment.model
        history = np.array([model.log_density(aligned).mean()])
        mixture = MixtureFit([model], np.ones(1), history)
    else:
        mixture = fit_mppca(aligned, components, basis, iterations=em_iterations, rng=rng)
    return prior_from_mixture(mixture, unit_mm)


def load_tome_release(path: str | Path) -> PosePrior:
    """The published model of Tome et al. 2017 (``prob_model_params.mat``) as a PosePrior.

    ``mu`` (K, 51) and ``e`` (K, J, 51) hold poses as [x(17), y(17), z(17)] in mm in a
    world frame with z up; they are rotated once into the camera-like frame by
    :data:`WORLD_Z_UP_TO_CAMERA`.  ``sigma`` (K, J+1) holds, as the release uses them
    (its ``sigma`` is the weight of ``||sigma . a||^2`` in Eq. 4 and its log-determinant is
    built from ``-log sigma``), inverse standard deviations: of the J coefficients, and
    last of the residual noise; so variances = sigma^-2.
    """
    data = read_mat(path, RELEASE_FILE, shapes={"mu": ("K", 3 * NUM_JOINTS), "e": ("K", "J", 3 * NUM_JOINTS),
                                                "sigma": ("K", None)}, finite=("mu", "e", "sigma"))
    mu, e, sigma = (np.asarray(data[k], dtype=np.float64) for k in ("mu", "e", "sigma"))
    k, j = e.shape[:2]
    if sigma.shape[1] != j + 1:
        raise FileFormatError(path, f"'sigma' has shape {sigma.shape} for J={j} basis vectors", RELEASE_FILE)
    means = mu.reshape(k, 3, NUM_JOINTS).transpose(0, 2, 1) @ WORLD_Z_UP_TO_CAMERA.T
    basis = e.reshape(k, j, 3, NUM_JOINTS).transpose(0, 1, 3, 2) @ WORLD_Z_UP_TO_CAMERA.T
    means = means - means[:, ROOT:ROOT + 1]
    variances = sigma[:, :j] ** -2.0
    noise = sigma[:, j] ** -2.0
    with np.errstate(divide="ignore"):
        return _prior_of(path, RELEASE_FILE, means=means, basis=basis, variances=variances, noise=noise,
                         weights=np.full(k, 1.0 / k), unit_mm=float(np.median(limb_scale(means))))


# ------------------------------------------------------------------ evaluation helpers

def reconstruction_error(prior: PosePrior, poses: np.ndarray, angles: int = 72) -> np.ndarray:
    """Per-pose 3D reconstruction error (N,) in mm of held-out poses (N, 17, 3) under the prior.

    Each pose is scaled to the prior's size, rotated in the ground plane to the best of
    ``angles`` trial angles (then refined by alternating :func:`best_yaw` with the posterior
    coefficients), reconstructed by the component of highest likelihood, and scaled back.
    """
    poses = np.asarray(poses, dtype=np.float64)
    poses = poses - poses[:, ROOT:ROOT + 1]
    size = np.maximum(limb_scale(poses), 1e-9)
    scaled = poses * (prior.unit_mm / size)[:, None, None]
    trial = np.arange(angles) * 2 * np.pi / angles
    flat = lambda p: p.reshape(len(p), -1)  # noqa: E731
    best_rec = np.zeros_like(poses)
    best_ll = np.full(len(poses), -np.inf)
    for k in range(prior.components):
        model = prior.component(k)
        # coarse: log-likelihood of the pose turned back by each trial angle
        ll = np.stack([model.log_density(flat(rotate_yaw(scaled, np.full(len(poses), -t)))) for t in trial], 1)
        theta = trial[ll.argmax(1)]
        for _ in range(3):
            rec = model.reconstruct(flat(rotate_yaw(scaled, -theta))).reshape(-1, NUM_JOINTS, 3)
            theta = best_yaw(scaled, rec)
        aligned = flat(rotate_yaw(scaled, -theta))
        rec = rotate_yaw(model.reconstruct(aligned).reshape(-1, NUM_JOINTS, 3), theta)
        rec -= rec[:, ROOT:ROOT + 1]
        ll = model.log_density(aligned) + np.log(prior.weights[k])
        better = ll > best_ll
        best_ll = np.where(better, ll, best_ll)
        best_rec[better] = rec[better]
    best_rec *= (size / prior.unit_mm)[:, None, None]
    return np.linalg.norm(best_rec - poses, axis=-1).mean(-1)


# ------------------------------------------------------------------------ data sources

class SourceError(ValueError):
    """Bad --source input: the message names what was wrong and what was expected."""


def load_videopose3d(path: str | Path, stride: int = 1, subjects=PROTOCOL_TRAIN_SUBJECTS[1]) -> np.ndarray:
    """Poses (N, 17, 3) mm, camera-like frame, root-relative, from VideoPose3D's data_3d_h36m.npz
    (world metres, z up; read by :func:`pose3d.h36m_mocap.read_positions_3d`), of ``subjects``
    only (default: Protocol #1's training subjects, so a prior never sees S9 or S11)."""
    try:
        positions = read_positions_3d(path)
    except PoseFileError as exc:
        raise SourceError(str(exc)) from None
    positions = {s: actions for s, actions in positions.items() if s in set(subjects)}
    if not positions:
        raise SourceError(f"{path} holds none of the subjects {', '.join(subjects)}; expected Human3.6M training subjects")
    chunks = [np.asarray(positions[subject][action], dtype=np.float64)[::stride]
              for subject in sorted(positions) for action in sorted(positions[subject])]
    poses = np.concatenate(chunks) * 1000.0 @ WORLD_Z_UP_TO_CAMERA.T
    poses, note = to_millimetres(poses, str(path), unit="metres")
    if note:
        print(note, file=sys.stderr)
    return poses - poses[:, ROOT:ROOT + 1]


def load_bvh_folder(folder: str | Path, stride: int = 1) -> np.ndarray:
    """Poses (N, 17, 3) mm from every .bvh under a folder whose rig provides all 17 joints.

    Files whose rig lacks joints (e.g. no head end site) are skipped: the model has no
    way to learn a joint that is never observed, and joints are never invented.
    """
    from pose3d.bvh import bvh_to_h36m, load_bvh

    files = sorted(Path(folder).rglob("*.bvh"))
    if not files:
        raise SourceError(f"{folder}: no .bvh files; expected a folder of BVH motion files")
    chunks, skipped = [], []
    for file in files:
        try:
            poses, mask = bvh_to_h36m(load_bvh(file))
        except ValueError as exc:
            skipped.append(f"{file.name} ({exc})")
            continue
        if mask.all():
            chunks.append(poses[::stride])
        else:
            skipped.append(file.name)
    if not chunks:
        raise SourceError(f"{folder}: none of {len(files)} BVH files provides all 17 H36M joints (first: {skipped[0]}); "
                          "expected files of a rig with a head end site (e.g. CMU original)")
    if skipped:
        print(f"skipped {len(skipped)} of {len(files)} BVH files without all 17 joints", file=sys.stderr)
    return np.concatenate(chunks).astype(np.float64)


def load_synthetic(count: int = 20000, seed: int = 0) -> np.ndarray:
    """Poses (N, 17, 3) mm from the kinematic sampler (pose3d.pose_sampler), random yaw."""
    from pose3d.body import MEAN_BONE_LENGTHS
    from pose3d.pose_sampler import ACTIVITIES, sample_poses

    rng = np.random.default_rng(seed)
    activities = rng.integers(0, len(ACTIVITIES), size=count)
    poses = np.asarray(sample_poses(rng, MEAN_BONE_LENGTHS, activities), dtype=np.float64)
    return rotate_yaw(poses, rng.uniform(0, 2 * np.pi, size=count))


def source_subjects(source: str, subjects=None) -> tuple:
    """The mocap subjects a prior fitted from ``source`` sees: for a Human3.6M file ``subjects``
    (default: Protocol #1's training subjects); other sources carry no subject ids."""
    if Path(source).suffix == ".npz":
        return tuple(subjects or PROTOCOL_TRAIN_SUBJECTS[1])
    return ()


def load_source(source: str, stride: int = 1, count: int = 20000, seed: int = 0, subjects=None) -> np.ndarray:
    """Training poses from a SOURCE of the command line (see the module doc); ``subjects``
    restricts a Human3.6M file (default: Protocol #1's training subjects)."""
    if source == "synthetic":
        return load_synthetic(count, seed)
    path = Path(source)
    if path.is_dir():
        return load_bvh_folder(path, stride)
    if path.is_file() and path.suffix == ".npz":
        return load_videopose3d(path, stride, source_subjects(source, subjects))
    if not path.exists():
        raise SourceError(f"--source {source}: no such file or folder; expected a BVH folder, "
                          "a VideoPose3D data_3d_h36m.npz or 'synthetic'")
    raise SourceError(f"--source {source}: unsupported file type; expected a BVH folder, "
                      "a VideoPose3D data_3d_h36m.npz or 'synthetic'")


# ------------------------------------------------------------------------ command line

def _lifting_error(prior: PosePrior, poses: np.ndarray, rng: np.random.Generator) -> float:
    """Mean PA-MPJPE (mm) of lifting noiseless projections of poses turned by random yaws."""
    import torch

    from pose3d.procrustes import procrustes_align

    turned = rotate_yaw(poses, rng.uniform(0, 2 * np.pi, len(poses)))
    lifted = prior.lift(turned[..., :2].astype(np.float32)).joints_3d
    target = torch.as_tensor(turned, dtype=torch.float32)
    aligned = procrustes_align(torch.as_tensor(lifted), target)
    return float((aligned - target).norm(dim=-1).mean())


def main(argv: list[str] | None = None) -> int:
    used_by = ("The .npz it writes is what experiment=tome_lifting lifts with: python -m pose3d.train "
               "experiment=tome_lifting model.prior=<file.npz>; that run's keys and their notes: python -m "
               "pose3d.train experiment=tome_lifting --keys (python -m pose3d.train --help lists the experiments).")
    parser = OneLineParser(prog="python -m pose3d.ppca", description=__doc__.splitlines()[0], epilog=used_by)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fit", help="fit a (mixture of) PPCA pose prior(s) and save it as .npz", epilog=used_by)
    p.add_argument("--source", required=True, help="BVH folder, VideoPose3D data_3d_h36m.npz, or 'synthetic'")
    p.add_argument("--components", type=int_at_least(1), default=1)
    p.add_argument("--basis", type=int_at_least(1), default=10)
    p.add_argument("--out", required=True)
    p.add_argument("--stride", type=int_at_least(1), default=1, help="keep every k-th frame")
    p.add_argument("--max-poses", type=int_at_least(1), default=200000, help="random subsample cap")
    p.add_argument("--holdout", type=open_fraction, default=0.1, help="fraction of poses held out")
    p.add_argument("--count", type=int_at_least(1), default=20000, help="poses drawn for 'synthetic'")
    p.add_argument("--seed", type=bounded_int(*SEED_RANGE), default=0)
    p.add_argument("--subjects", default="", help="Human3.6M subjects to fit on, e.g. S1,S5,S6,S7,S8,S9 "
                   "(default: Protocol #1's training subjects S1,S5,S6,S7,S8)")
    args = parser.parse_args(argv)
    try:
        if args.basis >= DIMS:
            raise SourceError(f"--basis {args.basis}: expected at most {DIMS - 1}")
        subjects = tuple(s.strip() for s in args.subjects.split(",") if s.strip()) or None
        if subjects and Path(args.source).suffix != ".npz":
            raise SourceError(f"--subjects {args.subjects}: --source {args.source} has no subject ids; expected "
                              "--subjects only with a Human3.6M data_3d_h36m.npz")
        check_writable(Path(args.out).parent, "a writable folder for --out")
        poses = load_source(args.source, args.stride, args.count, args.seed, subjects)
        rng = np.random.default_rng(args.seed)
        order = rng.permutation(len(poses))[:args.max_poses]
        held = max(1, int(round(args.holdout * len(order))))
        train, test = poses[order[held:]], poses[order[:held]]
        prior = fit(train, components=args.components, basis=args.basis, seed=args.seed)
        prior.subjects = source_subjects(args.source, subjects)
        path = prior.save(args.out)
    except (SourceError, ValueError) as exc:  # ValueError: also an unwritable --out (pose3d.files)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"subjects: {', '.join(prior.subjects) if prior.subjects else 'none (no subject ids in this source)'}")
    test = test[:2000]
    recon = reconstruction_error(prior, test)
    lift = _lifting_error(prior, test, rng)
    print(f"fitted {args.components} component(s) x {args.basis} basis on {len(train)} poses "
          f"(+ mirrored); size unit {prior.unit_mm:.0f} mm")
    if len(prior.log_likelihood) > 1:
        print(f"EM: {len(prior.log_likelihood)} iterations, mean log-likelihood "
              f"{prior.log_likelihood[0]:.2f} -> {prior.log_likelihood[-1]:.2f}")
    print(f"held-out ({len(test)} poses) 3D reconstruction error: {recon.mean():.1f} mm "
          f"(median {np.median(recon):.1f})")
    print(f"held-out lifting PA-MPJPE from noiseless 2D at random yaw: {lift:.1f} mm")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
