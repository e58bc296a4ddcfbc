"""Lifting 2D joints to 3D with a PPCA prior (Tome et al. 2017, Sec. 5.3; pose3d.lifting)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pose3d.camera import rotation_about_axis
from pose3d.lifting import Lifter
from pose3d.ppca import NON_ROOT, PosePrior, load_synthetic


def toy_prior(components: int = 1, basis: int = 4, seed: int = 0) -> PosePrior:
    """Means from the kinematic sampler, random orthonormal bases (root fixed at 0)."""
    rng = np.random.default_rng(seed)
    means = load_synthetic(components, seed=seed)
    means = means - means[:, :1]
    vectors = np.zeros((components, basis, 17, 3))
    for k in range(components):
        q, _ = np.linalg.qr(rng.standard_normal((3 * len(NON_ROOT), basis)))
        vectors[k][:, NON_ROOT] = q.T.reshape(basis, len(NON_ROOT), 3)
    variances = np.tile((120.0 / (1 + np.arange(basis))) ** 2, (components, 1))
    return PosePrior(means, vectors, variances, np.full(components, 20.0 ** 2), np.full(components, 1 / components))


def model_poses(prior: PosePrior, count: int, seed: int = 1, component: int = 0):
    """Poses drawn from one component, in the model frame (mm, root-relative)."""
    rng = np.random.default_rng(seed)
    coeff = rng.standard_normal((count, prior.basis_size)) * np.sqrt(prior.variances[component])
    poses = prior.means[component] + np.einsum("nj,jlc->nlc", coeff, prior.basis[component])
    return torch.as_tensor(poses - poses[:, :1])


def project(poses: torch.Tensor, theta: torch.Tensor, scale: float = 0.4, shift=(320.0, 240.0)):
    """Turn poses by theta about y, weak-perspective project: returns (2D, 3D camera frame)."""
    cam = poses @ rotation_about_axis(theta, "y").mT
    return scale * cam[..., :2] + torch.tensor(shift, dtype=cam.dtype), cam


def mpjpe(a, b) -> float:
    return float((torch.as_tensor(a) - torch.as_tensor(b)).norm(dim=-1).mean())


def test_noiseless_model_pose_is_recovered():
    prior = toy_prior()
    poses = model_poses(prior, 16)
    exact = dict(prior_weight=0.0, scale_prior=0.0, dtype=torch.float64)  # plain least squares
    theta = torch.randint(0, 80, (16,), dtype=torch.float64) * (2 * math.pi / 80)  # on the grid
    joints_2d, truth = project(poses, theta)
    out = Lifter(prior, rotations=80, refine=False, **exact)(joints_2d)
    assert mpjpe(out.joints_3d, truth) < 1e-6
    assert torch.allclose(out.scale, torch.full((16,), 0.4, dtype=torch.float64))
    reprojected = out.scale[:, None, None] * out.joints_3d[..., :2] + out.translation[:, None]
    assert torch.allclose(reprojected, joints_2d, atol=1e-6)
    # off the grid the refinement still finds it; with the prior the error stays small
    theta = torch.rand(16, dtype=torch.float64) * 2 * math.pi
    joints_2d, truth = project(poses, theta)
    assert mpjpe(Lifter(prior, **exact)(joints_2d).joints_3d, truth) < 0.05
    assert mpjpe(Lifter(prior, dtype=torch.float64)(joints_2d).joints_3d, truth) < 15.0


def test_quantisation_error_shrinks_with_more_rotations():
    prior = toy_prior(seed=3)
    poses = model_poses(prior, 64, seed=4)
    theta = torch.rand(64, dtype=torch.float64) * 2 * math.pi
    joints_2d, truth = project(poses, theta)
    exact = dict(prior_weight=0.0, scale_prior=0.0, dtype=torch.float64)
    errors = [mpjpe(Lifter(prior, rotations=r, refine=False, **exact)(joints_2d).joints_3d, truth)
              for r in (10, 40, 160)]
    assert errors[0] > errors[1] > errors[2]
    assert mpjpe(Lifter(prior, rotations=40, **exact)(joints_2d).joints_3d, truth) < errors[2]


def test_scale_and_translation_invariance():
    prior = toy_prior(components=2, seed=5)
    joints_2d, _ = project(model_poses(prior, 8, seed=6), torch.rand(8, dtype=torch.float64) * 6)
    lifter = Lifter(prior, dtype=torch.float64)
    a, b = lifter(joints_2d), lifter(3.0 * joints_2d + 17.0)
    assert torch.allclose(a.joints_3d, b.joints_3d, atol=1e-6)
    assert torch.allclose(3.0 * a.scale, b.scale)
    assert torch.equal(a.component, b.component)


def test_mixture_picks_the_generating_component():
    prior = toy_prior(components=3, seed=7)
    for k in range(3):
        joints_2d, truth = project(model_poses(prior, 10, seed=k, component=k), torch.rand(10, dtype=torch.float64) * 6)
        out = Lifter(prior, prior_weight=0.0, scale_prior=0.0, dtype=torch.float64)(joints_2d)
        assert (out.component == k).float().mean() >= 0.9
        assert mpjpe(out.joints_3d[out.component == k], truth[out.component == k]) < 0.5


def test_missing_joints_are_ignored():
    prior = toy_prior(seed=8)
    poses = model_poses(prior, 12, seed=9)
    joints_2d, truth = project(poses, torch.rand(12, dtype=torch.float64) * 6)
    weights = torch.ones(12, 17, dtype=torch.float64)
    weights[:6, [3, 13]] = 0  # two patterns in one batch
    weights[6:, [10]] = 0
    corrupted = torch.where(weights[..., None] > 0, joints_2d, torch.full_like(joints_2d, float("nan")))
    lifter = Lifter(prior, prior_weight=0.0, scale_prior=0.0, dtype=torch.float64)
    out = lifter(corrupted, weights)
    assert mpjpe(out.joints_3d, truth) < 0.5
    single = lifter(corrupted[7], weights[7])  # one pose, (17, 2)
    assert torch.allclose(single.joints_3d, out.joints_3d[7])


def test_float32_batch_matches_float64():
    prior = toy_prior(components=2, seed=10)
    joints_2d, _ = project(model_poses(prior, 32, seed=11), torch.rand(32, dtype=torch.float64) * 6)
    a = Lifter(prior, dtype=torch.float64)(joints_2d)
    b = Lifter(prior, dtype=torch.float32)(joints_2d.float())
    assert mpjpe(a.joints_3d, b.joints_3d.double()) < 0.5


def test_backward_matches_finite_differences():
    prior = toy_prior(basis=3, seed=12)
    joints_2d, _ = project(model_poses(prior, 2, seed=13), torch.tensor([0.3, 2.0], dtype=torch.float64))
    joints_2d = joints_2d + 0.5 * torch.randn_like(joints_2d)  # not exactly on the model
    # discrete rotations (no refinement): the map is piecewise smooth and the sub-gradient
    # with the chosen rotation fixed (supplementary Sec. 1.1) is its exact gradient
    lifter = Lifter(prior, rotations=24, refine=False, dtype=torch.float64)
    weights = torch.ones(2, 17, dtype=torch.float64)
    weights[1, 4] = 0.0
    inputs = joints_2d.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda y: lifter(y, weights, differentiable=True).joints_3d, (inputs,),
                                    eps=1e-6, atol=1e-5)
    assert not lifter(joints_2d).joints_3d.requires_grad  # off by default


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    prior = toy_prior(components=2, seed=14)
    joints_2d, _ = project(model_poses(prior, 64, seed=15), torch.rand(64, dtype=torch.float64) * 6)
    cpu = Lifter(prior, dtype=torch.float64)(joints_2d)
    gpu = Lifter(prior, dtype=torch.float64, device="cuda")(joints_2d.cuda())
    assert mpjpe(cpu.joints_3d, gpu.joints_3d.cpu()) < 1e-3
