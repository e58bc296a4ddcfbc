"""The PPCA pose prior of Tome et al. 2017, Sec. 4 (pose3d.ppca)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy.linalg import subspace_angles

from pose3d import ppca
from pose3d.procrustes import procrustes_align
from pose3d.skeleton import H36M_32_TO_17


def test_ppca_recovers_a_low_rank_gaussian():
    rng = np.random.default_rng(0)
    dims, rank, n = 48, 4, 6000
    basis, _ = np.linalg.qr(rng.standard_normal((dims, rank)))
    std = np.array([3.0, 2.0, 1.5, 1.0])
    x = 5 + (rng.standard_normal((n, rank)) * std) @ basis.T + 0.1 * rng.standard_normal((n, dims))
    model = ppca.fit_ppca(x, rank)
    assert np.degrees(subspace_angles(model.basis.T, basis)).max() < 2.0
    np.testing.assert_allclose(model.basis @ model.basis.T, np.eye(rank), atol=1e-10)
    assert model.noise == pytest.approx(0.01, rel=0.1)
    np.testing.assert_allclose(np.sqrt(model.variances), std, rtol=0.05)


def test_mixture_em_log_likelihood_never_decreases():
    rng = np.random.default_rng(1)
    centres = rng.normal(0, 4, (3, 12))
    x = np.concatenate([c + rng.normal(0, 1, (300, 12)) * rng.uniform(0.3, 1.5, 12) for c in centres])
    fit = ppca.fit_mppca(x, components=3, basis=2, iterations=40, tol=0, rng=rng)
    history = fit.log_likelihood
    assert len(history) == 40
    assert np.all(np.diff(history) >= -1e-9 * np.abs(history[:-1]))
    assert history[-1] > history[0]
    assert fit.weights.sum() == pytest.approx(1.0)


def test_greedy_seeds_pick_one_per_mode():
    rng = np.random.default_rng(2)
    modes = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = np.concatenate([m + rng.normal(0, 0.5, (200, 2)) for m in modes])
    seeds = x[ppca.greedy_seeds(x, 3, rng=rng)]
    nearest = np.linalg.norm(seeds[:, None] - modes[None], axis=-1).argmin(1)
    assert sorted(nearest.tolist()) == [0, 1, 2]


def test_alignment_removes_ground_plane_rotation():
    poses = ppca.load_synthetic(200, seed=3)
    poses = ppca.rotate_yaw(poses, -ppca.best_yaw(poses, poses[:1].repeat(200, 0)))  # roughly one way
    rng = np.random.default_rng(4)
    yaw = rng.uniform(0, 2 * np.pi, len(poses))
    turned = ppca.rotate_yaw(poses, yaw) / ppca.limb_scale(poses)[:, None, None]
    theta = ppca.align_poses(turned, basis=3).theta
    # every pose is turned back by the same angle up to one global rotation
    residual = np.angle(np.exp(1j * (theta - yaw)) / np.exp(1j * (theta - yaw)).mean())
    assert np.median(np.abs(residual)) < np.radians(10)


def test_tomasi_kanade_mean_of_rotated_copies():
    mean = ppca.load_synthetic(1, seed=5)[0]
    yaw = np.random.default_rng(6).uniform(0, 2 * np.pi, 50)
    estimate = ppca.tomasi_kanade_mean(ppca.rotate_yaw(np.repeat(mean[None], 50, 0), yaw))
    turned = ppca.rotate_yaw(estimate[None], ppca.best_yaw(mean[None], estimate[None]))[0]
    np.testing.assert_allclose(turned, mean, atol=1e-6)


def test_fit_save_load_and_lift(tmp_path):
    poses = ppca.load_synthetic(400, seed=7)
    prior = ppca.fit(poses, components=2, basis=5, em_iterations=30)
    assert prior.means.shape == (2, 17, 3) and prior.basis.shape == (2, 5, 17, 3)
    flat = prior.basis.reshape(2, 5, -1)
    np.testing.assert_allclose(flat @ flat.transpose(0, 2, 1), np.broadcast_to(np.eye(5), (2, 5, 5)), atol=1e-8)
    assert np.all(prior.variances > 0) and np.all(prior.noise > 0)
    assert np.all(np.diff(prior.log_likelihood) >= -1e-9 * np.abs(prior.log_likelihood[:-1]))
    assert np.allclose(prior.means[:, 0], 0)
    assert np.all(prior.means[:, 10, 1] < prior.means[:, [3, 6], 1].min(1))  # head above the ankles (y down)
    path = prior.save(tmp_path / "prior.npz")
    loaded = ppca.PosePrior.load(path)
    for name in ("means", "basis", "variances", "noise", "weights", "log_likelihood"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(prior, name))
    assert loaded.unit_mm == prior.unit_mm
    test = ppca.load_synthetic(50, seed=8)
    out = loaded.lift(test[..., :2].astype(np.float32))
    assert isinstance(out.joints_3d, np.ndarray) and out.joints_3d.shape == (50, 17, 3)
    target = torch.as_tensor(test, dtype=torch.float32)
    error = (procrustes_align(torch.as_tensor(out.joints_3d), target) - target).norm(dim=-1).mean()
    assert float(error) < 80.0
    assert ppca.reconstruction_error(loaded, test).mean() < 80.0  # a tiny 5-basis model


def test_tome_release_loads_and_lifts_cmu(shared_data):
    from pose3d.bvh import bvh_to_h36m

    prior = ppca.load_tome_release(shared_data / "tome2017_ppca" / "prob_model_params.mat")
    assert prior.means.shape == (3, 17, 3) and prior.basis.shape == (3, 25, 17, 3)
    assert np.linalg.det(ppca.WORLD_Z_UP_TO_CAMERA) == pytest.approx(1.0)
    head, ankles = prior.means[:, 10, 1], prior.means[:, [3, 6], 1]
    assert np.all(head < -400) and np.all(ankles > 300)  # upright: y down
    assert np.all(prior.means[:, 1, 0] > 0) == np.all(prior.means[:, 4, 0] < 0)
    poses, mask = bvh_to_h36m(shared_data / "cmu_bvh" / "cmu_original" / "131_01.bvh")
    assert mask.all()
    poses = ppca.rotate_yaw(poses[::10].astype(np.float64), np.linspace(0, 2 * np.pi, len(poses[::10])))
    out = prior.lift(torch.as_tensor(0.2 * poses[..., :2] + 300.0))
    target = torch.as_tensor(poses)
    pa_mpjpe = (procrustes_align(out.joints_3d.double(), target) - target).norm(dim=-1).mean()
    assert float(pa_mpjpe) < 100.0
    assert torch.all(out.joints_3d[:, 10, 1] < out.joints_3d[:, 3, 1])  # head above the feet


def test_release_missing_variable_is_reported(tmp_path):
    from scipy.io import savemat

    savemat(tmp_path / "bad.mat", {"mu": np.zeros((1, 51))})
    with pytest.raises(ValueError, match="no variable 'e'"):
        ppca.load_tome_release(tmp_path / "bad.mat")


def test_videopose3d_source(tmp_path):
    rng = np.random.default_rng(9)
    positions = {"S1": {"Walking": rng.normal(0, 0.3, (20, 32, 3))}, "S5": {"Sitting": rng.normal(0, 0.3, (10, 32, 3))}}
    np.savez(tmp_path / "data_3d_h36m.npz", positions_3d=positions)
    poses = ppca.load_source(str(tmp_path / "data_3d_h36m.npz"), stride=2)
    assert poses.shape == (15, 17, 3)
    assert np.allclose(poses[:, 0], 0)
    raw = positions["S1"]["Walking"][0, list(H36M_32_TO_17)] * 1000.0
    expected = (raw - raw[0]) @ ppca.WORLD_Z_UP_TO_CAMERA.T
    np.testing.assert_allclose(poses[0], expected)


@pytest.mark.parametrize("name", ["missing_folder", "poses.txt"])
def test_cli_bad_source_exits_2_with_one_line(tmp_path, name):
    (tmp_path / "poses.txt").write_text("not poses\n")
    source = str(tmp_path / name)
    result = subprocess.run([sys.executable, "-m", "pose3d.ppca", "fit", "--source", source, "--out",
                             str(tmp_path / "p.npz")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "expected" in lines[0] and source in lines[0]


def test_cli_fits_synthetic(tmp_path, capsys):
    out = tmp_path / "prior.npz"
    assert ppca.main(["fit", "--source", "synthetic", "--count", "400", "--components", "2", "--basis", "4",
                      "--out", str(out)]) == 0
    assert "held-out" in capsys.readouterr().out
    assert ppca.PosePrior.load(out).components == 2


def test_a_prior_of_human36m_sees_only_training_subjects_and_says_so(tmp_path, capsys):
    rng = np.random.default_rng(0)
    data = {s: {"Walking": rng.normal(size=(40, 32, 3)).astype(np.float32) * 0.2} for s in ("S1", "S5", "S9", "S11")}
    path = tmp_path / "data_3d_h36m.npz"
    np.savez_compressed(path, positions_3d=data)
    poses = ppca.load_videopose3d(path)  # default: Protocol #1's training subjects
    assert len(poses) == 80  # S1 and S5 only: S9 and S11 are test subjects
    assert len(ppca.load_videopose3d(path, subjects=("S1", "S5", "S9"))) == 120
    out = tmp_path / "prior.npz"
    assert ppca.main(["fit", "--source", str(path), "--components", "1", "--basis", "3", "--out", str(out)]) == 0
    assert "subjects: S1, S5, S6, S7, S8" in capsys.readouterr().out
    prior = ppca.PosePrior.load(out)
    assert prior.subjects == ("S1", "S5", "S6", "S7", "S8")
    prior.check_unseen(("S9", "S11"))  # fine
    prior.subjects = ("S1", "S9")
    with pytest.raises(ValueError, match="was fitted on test subject\\(s\\) S9"):
        prior.check_unseen(("S9", "S11"))


def test_lifting_with_a_prior_that_saw_the_test_subjects_stops(tmp_path):
    from lightning_modules.tome_lifting import LiftingFromTheDeep
    from pose3d.config import ConfigError
    from tests.helpers import OPTIM

    prior = ppca.fit(ppca.load_synthetic(800, seed=0), components=1, basis=4)
    prior.subjects = ("S1", "S5", "S11")
    prior.save(tmp_path / "leaky.npz")
    info = {"num_joints": 17, "image_size": 32, "action_names": (), "test_subjects": ("S9", "S11")}
    with pytest.raises(ConfigError, match="leaky.npz was fitted on test subject\\(s\\) S11"):
        LiftingFromTheDeep(model={"stages": 1, "channels": 8, "stage_layers": 1, "prior": str(tmp_path / "leaky.npz")},
                           optim=OPTIM, data_info=info)


def _mocap_file(path, scale_to_file_unit: float):
    """A data_3d_h36m.npz of sampled people (world z up), in metres times ``scale_to_file_unit``."""
    poses_mm = ppca.load_synthetic(300, seed=4)  # camera-like frame, mm
    world = poses_mm @ ppca.WORLD_Z_UP_TO_CAMERA / 1000.0 * scale_to_file_unit
    full = np.zeros((len(world), 32, 3))
    full[:, list(H36M_32_TO_17)] = world
    np.savez_compressed(path, positions_3d={"S1": {"Walking": full[:150]}, "S5": {"Eating": full[150:]}})
    return path


def test_fit_converts_a_mocap_file_in_millimetres_and_says_so(tmp_path):
    source = _mocap_file(tmp_path / "data_3d_h36m.npz", 1000.0)  # millimetres where metres are expected
    out = tmp_path / "prior.npz"
    result = subprocess.run([sys.executable, "-m", "pose3d.ppca", "fit", "--source", str(source), "--components", "1",
                             "--basis", "4", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (f"{source}: mean bone length 2.59e+05 mm when read as metres, so it holds millimetres: scaled by 0.001 "
            "to millimetres (mean bone length 259 mm)") in result.stderr
    prior = ppca.PosePrior.load(out)
    assert 150 < prior.mean_bone_length() < 300 and 500 < prior.unit_mm < 1500
    assert np.allclose(ppca.load_source(str(_mocap_file(tmp_path / "metres.npz", 1.0))),
                       ppca.load_source(str(source)), atol=1e-6)  # metres: read as they are, the same poses


def test_fit_refuses_a_mocap_file_of_no_unit(tmp_path):
    source = _mocap_file(tmp_path / "data_3d_h36m.npz", 0.0)  # every joint at the origin
    result = subprocess.run([sys.executable, "-m", "pose3d.ppca", "fit", "--source", str(source), "--out",
                             str(tmp_path / "p.npz")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and not (tmp_path / "p.npz").exists()
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "mean bone length 0 mm when read as metres; expected an adult's 80-800 mm" in lines[0]


def test_the_scale_check_compares_mean_bone_lengths():
    prior = ppca.fit(ppca.load_synthetic(500, seed=1), components=1, basis=4)
    poses = ppca.load_synthetic(50, seed=2)
    assert prior.mean_bone_length() == pytest.approx(ppca.mean_bone_length(poses), rel=0.25)
    relative = poses * (prior.mean_bone_length() / ppca.mean_bone_length(poses))  # the prior's own scale
    for factor in (1.0, 1.9, 1 / 1.9):
        prior.check_scale(relative * factor)
    for factor in (2.1, 1 / 2.1):
        with pytest.raises(ValueError, match=r"a factor 2.1 apart, more than 2"):
            prior.check_scale(relative * factor, "p.npz")
