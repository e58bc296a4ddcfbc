"""Tome et al. 2017 network: projected-belief fusion (Eq. 7), the stage loss (Eq. 8), the prior step."""
from __future__ import annotations

import pytest
import torch

from lightning_modules.tome_lifting import LiftingFromTheDeep
from pose3d import ppca
from pose3d.config import ConfigError
from pose3d.heatmaps import render_heatmaps
from tests.helpers import OPTIM, random_batch

INFO = {"num_joints": 17, "image_size": 32, "action_names": ("a",)}


@pytest.fixture(scope="module")
def prior_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("prior") / "prior.npz"
    ppca.fit(ppca.load_synthetic(1500, seed=0), components=1, basis=6).save(path)
    return str(path)


def network(prior_file, **model) -> LiftingFromTheDeep:
    torch.manual_seed(0)
    cfg = {"stages": 2, "channels": 8, "stage_layers": 1, "prior": prior_file, "fusion_weight_init": 0.3, **model}
    return LiftingFromTheDeep(model=cfg, optim=OPTIM, data_info=INFO).eval()


def batch(size: int = 3) -> dict[str, torch.Tensor]:
    return random_batch(size, seed=1)


def test_stages_fuse_cnn_and_projected_maps_with_eq7(prior_file):
    model = network(prior_file)
    outputs = model(batch()["image"])
    assert len(outputs) == 2 and outputs[0]["cnn"].shape == (3, 17, 8, 8)
    for out in outputs:
        _, projected = model.project_lift(out["cnn"])
        torch.testing.assert_close(out["fused"], 0.3 * out["cnn"] + 0.7 * projected, atol=1e-5, rtol=1e-4)


def test_projected_maps_peak_at_the_reprojected_pose(prior_file):
    """Maps rendered from a pose the prior can explain come back (almost) where they were."""
    model = network(prior_file)
    pose = model.prior.means[0][None]  # the mean pose, camera frame, mm
    joints_2d = torch.as_tensor(pose[..., :2] / 2000.0 * 24 + 16, dtype=torch.float32)  # weak perspective into the crop
    maps = render_heatmaps(joints_2d, (32, 32), (8, 8), sigma=1.0)
    _, projected = model.project_lift(maps)
    assert (model.decode(projected) - model.decode(maps)).norm(dim=-1).mean() < 2.0  # pixels of a 32 px crop


def test_loss_is_the_sum_of_stage_losses_and_reaches_the_fusion_weights(prior_file):
    model = network(prior_file).train()
    data = batch()
    loss, logs = model.training_loss(data)
    assert loss.item() == pytest.approx((logs["stage0"] + logs["stage1"]).item(), rel=1e-5)
    assert logs["w0"].item() == pytest.approx(0.3, abs=1e-6)
    loss.backward()
    assert model.fusion_logits.grad is not None and model.fusion_logits.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.stages[0].parameters())


def test_without_fusion_the_stages_are_a_plain_cpm(prior_file):
    model = network(prior_file, fusion=False)
    assert model.fusion_logits is None
    for out in model(batch()["image"]):
        assert out["fused"] is out["cnn"]
    prediction = model.predict(batch())
    assert prediction["joints_3d"].shape == (3, 17, 3) and set(prediction["aux"]["stage_joints_2d"]) == {"0_cnn", "0_fused", "1_cnn", "1_fused"}


def test_missing_prior_is_a_one_line_error(tmp_path):
    with pytest.raises(ConfigError, match="model.prior=.*does not exist"):
        network(str(tmp_path / "nope.npz"))


def test_the_published_prior_loads_from_its_mat_file(shared_data):
    model = network(str(shared_data / "tome2017_ppca" / "prob_model_params.mat"))
    assert model.prior.components == 3 and model.prior.basis_size == 25
    assert model.predict(batch())["joints_3d"].shape == (3, 17, 3)
