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


# ------------------------------------------------------------------ camera extrinsics (Sec. 5.3, E)

def tilted_view(poses: torch.Tensor, pitch: torch.Tensor, roll: torch.Tensor, yaw: torch.Tensor):
    """World-to-camera rotations E = R_z(roll) R_x(pitch) R_y(yaw) and the weak-perspective 2D
    and camera-frame 3D of model-frame poses seen through them."""
    rotation = rotation_about_axis(roll, "z") @ rotation_about_axis(pitch, "x") @ rotation_about_axis(yaw, "y")
    cam = poses @ rotation.mT
    return 0.4 * cam[..., :2] + 100.0, cam, rotation


def test_tilt_angles_recover_pitch_and_roll():
    prior = toy_prior()
    lifter = Lifter(prior, dtype=torch.float64, tilt_step_deg=0.5)
    pitch, roll = torch.tensor([0.2, -0.05, 0.4], dtype=torch.float64), torch.tensor([0.0, 0.1, -2.5], dtype=torch.float64)
    _, _, rotation = tilted_view(model_poses(prior, 3), pitch, roll, torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64))
    got_pitch, got_roll = lifter.tilt_angles(rotation)
    assert torch.allclose(got_pitch, pitch) and torch.allclose(got_roll, roll)
    bins = lifter.pitch_bins(got_pitch)
    assert torch.equal(bins, torch.round(pitch / math.radians(0.5)).long())
    down = rotation_about_axis(-roll[2], "z") @ rotation[2, :, 1]  # the vertical without the roll
    assert torch.allclose(lifter.tilt_matrix(int(bins[2])) @ torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64), down, atol=5e-3)


def test_known_camera_tilt_is_lifted_exactly():
    """With E the search over the vertical axis recovers the pose in the camera frame; ignoring
    the tilt leaves an error that the ground-plane search cannot explain."""
    prior = toy_prior(seed=7)
    poses = model_poses(prior, 32, seed=8)
    step = math.radians(0.5)
    pitch = torch.randint(-10, 50, (32,), dtype=torch.float64) * step  # on the tilt grid
    roll = (torch.rand(32, dtype=torch.float64) - 0.5) * 1.2  # any roll: exact (an image rotation)
    joints_2d, truth, rotation = tilted_view(poses, pitch, roll, torch.rand(32, dtype=torch.float64) * 2 * math.pi)
    exact = dict(prior_weight=0.0, scale_prior=0.0, dtype=torch.float64)
    with_e = Lifter(prior, **exact)(joints_2d, camera_rotation=rotation)
    assert mpjpe(with_e.joints_3d, truth - truth[:, :1]) < 0.05
    reprojected = with_e.scale[:, None, None] * with_e.joints_3d[..., :2] + with_e.translation[:, None]
    assert torch.allclose(reprojected, joints_2d, atol=1e-2)  # yaw off the grid: refined, not exact
    without = Lifter(prior, **exact)(joints_2d)
    assert mpjpe(without.joints_3d, truth - truth[:, :1]) > 20 * max(mpjpe(with_e.joints_3d, truth - truth[:, :1]), 1.0)


def test_tilted_lifting_on_the_coarse_grid_and_differentiable():
    prior = toy_prior(components=2, seed=9)
    poses = model_poses(prior, 8, seed=10)
    theta = torch.randint(0, 40, (8,), dtype=torch.float64) * (2 * math.pi / 40)
    pitch = torch.full((8,), math.radians(15.0), dtype=torch.float64)
    joints_2d, truth, rotation = tilted_view(poses, pitch, torch.full((8,), 0.3, dtype=torch.float64), theta)
    lifter = Lifter(prior, rotations=40, refine=False, prior_weight=0.0, scale_prior=0.0, dtype=torch.float64)
    assert mpjpe(lifter(joints_2d, camera_rotation=rotation).joints_3d, truth - truth[:, :1]) < 1e-4
    y = joints_2d.clone().requires_grad_(True)
    out = lifter(y, camera_rotation=rotation, differentiable=True)
    assert torch.allclose(out.joints_3d.detach(), lifter(joints_2d, camera_rotation=rotation).joints_3d, atol=1e-8)
    out.joints_3d.square().sum().backward()
    assert y.grad is not None and bool(torch.isfinite(y.grad).all()) and float(y.grad.abs().sum()) > 0


def test_level_cameras_take_the_untilted_tables():
    prior = toy_prior(seed=11)
    joints_2d, _ = project(model_poses(prior, 6, seed=12), torch.rand(6, dtype=torch.float64) * 6)
    lifter = Lifter(prior, dtype=torch.float64)
    level = rotation_about_axis(torch.rand(6, dtype=torch.float64) * 6, "y")  # yaw only: no tilt
    a, b = lifter(joints_2d), lifter(joints_2d, camera_rotation=level)
    assert torch.allclose(a.joints_3d, b.joints_3d) and len(lifter._tables) == 1


# ------------------------------------------------------------------ a fixed input against recorded outputs

REFERENCE = __import__("pathlib").Path(__file__).with_name("data") / "lifting_reference.npz"


def reference_case():
    """A mixture prior and 40 poses mixing level and tilted, rolled cameras (pitches shared by
    several poses and not) and two missing-joint patterns: every grouping the lifting makes."""
    prior = toy_prior(components=3, basis=5, seed=21)
    count = 40
    generator = torch.Generator().manual_seed(22)
    poses = torch.cat([model_poses(prior, 14, seed=23 + k, component=k) for k in range(3)])[:count]
    pitch = torch.randint(-10, 40, (count,), generator=generator).double() * math.radians(0.37)
    pitch[:12] = 0.0  # level cameras
    pitch[12:18] = pitch[12]  # one pitch shared by six poses
    roll = (torch.rand(count, generator=generator, dtype=torch.float64) - 0.5) * 0.4
    roll[:12] = 0.0
    yaw = torch.rand(count, generator=generator, dtype=torch.float64) * 2 * math.pi
    joints_2d, _, rotation = tilted_view(poses, pitch, roll, yaw)
    joints_2d = joints_2d + 1.5 * torch.randn(joints_2d.shape, generator=generator, dtype=torch.float64)
    weights = torch.ones(count, 17, dtype=torch.float64)
    weights[5:9, [3, 13]] = 0
    weights[20:30, 10] = 0
    return prior, joints_2d, weights, rotation


def reference_outputs(prior, joints_2d, weights, rotation) -> dict[str, np.ndarray]:
    """Every output of the refined and the coarse-grid lifting, and the gradient of the latter."""
    out = {}
    for refine in (True, False):
        lifter = Lifter(prior, refine=refine, dtype=torch.float64)
        result = lifter(joints_2d, weights, camera_rotation=rotation)
        out.update({f"{name}_{'refined' if refine else 'grid'}": value.numpy()
                    for name, value in result._asdict().items()})
    y = joints_2d.clone().requires_grad_(True)
    lifted = Lifter(prior, refine=False, dtype=torch.float64)(y, weights, camera_rotation=rotation, differentiable=True)
    lifted.joints_3d.square().sum().backward()
    out["gradient_grid"] = y.grad.numpy()
    return out


def test_outputs_match_the_recorded_reference():
    """The batched search and solve (every group's poses together) give what the per-group
    implementation recorded in tests/data/lifting_reference.npz gave, to float64 rounding."""
    recorded = np.load(REFERENCE)
    got = reference_outputs(*reference_case())
    assert set(got) == set(recorded.files)
    for name, value in got.items():
        if name.startswith("component"):
            np.testing.assert_array_equal(value, recorded[name], err_msg=name)
        elif name.startswith("joints_3d"):
            assert np.abs(value - recorded[name]).max() < 1e-4, name  # mm
        else:
            np.testing.assert_allclose(value, recorded[name], rtol=1e-7, atol=1e-9, err_msg=name)


def test_the_benchmark_reports_both_batches_as_found_and_beside_a_busy_process():
    from harness.bench import _competing_process, bench_lifting

    with _competing_process() as child:
        assert child.poll() is None  # spinning while the block runs
    assert child.returncode is not None  # killed and reaped after it
    result = bench_lifting(256, rounds=1, device="cpu", compare=20, small_batch=16)
    for condition in ("as_found", "beside_busy_process"):
        for batch in ("batch_16", "batch_256"):
            for threads in ("default_threads", "one_thread"):
                figures = result[condition][batch][threads]
                assert set(figures) == {"single", "mixture"} and min(figures.values()) > 0
    assert result["poses_per_s_single"] > 0 and result["small_batch_size"] == 16
    assert result["mean_diff_vs_exhaustive_mm"] < 5.0
