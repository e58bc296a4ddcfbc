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
    data = random_batch(size, seed=1)
    data["joints_3d"] = data["joints_3d"] * 0.5  # bones of about 225 mm: a person's scale, as the prior's
    return data


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


# -- the paper's CPM trunk (Sec. 5.2) --------------------------------------------------------
PAPER_NET = {"trunk": "vgg", "stages": 6, "channels": 128, "kernel": 7, "stage_layers": 5}


def test_the_paper_trunk_is_cpms_vgg_at_stride_8(prior_file):
    from lightning_modules.blocks.cpm import CPMFeatures, vgg19_names

    model = LiftingFromTheDeep(model={**PAPER_NET, "prior": prior_file}, optim=OPTIM,
                               data_info={**INFO, "image_size": 368})
    assert model.features.stride == 8 and model.heatmap_size == 46  # CPM: 368 px in, 46 px maps
    # VGG-19 conv1_1..conv4_2 (5,865,536 weights) + conv4_3_CPM..conv4_7_CPM (3,245,184)
    assert sum(p.numel() for p in model.features.parameters()) == 5_865_536 + 3_245_184
    # stage 1: two 1x1 convs (128->512->17); stages 2-6: 5 7x7 convs (146 or 128 -> 128) + 1x1 128 + 1x1 17
    stage_1 = 128 * 512 + 512 + 512 * 17 + 17
    stage_t = (146 * 128 * 49 + 128) + 4 * (128 * 128 * 49 + 128) + (128 * 128 + 128) + (128 * 17 + 17)
    assert sum(p.numel() for p in model.stages.parameters()) == stage_1 + 5 * stage_t
    names = set(model.state_dict())
    assert {"features.conv1_1.weight", "features.conv4_2.weight", "features.conv4_7_CPM.bias",
            "stages.0.conv5_2_CPM.weight", "stages.5.Mconv7_stage6.weight"} <= names
    # a torchvision-style VGG-19 state dict loads into the trunk by name
    trunk = CPMFeatures()
    vgg = {f"{old}.{kind}": torch.full_like(trunk.state_dict()[f"{new}.{kind}"], 0.5)
           for old, new in vgg19_names().items() for kind in ("weight", "bias")}
    renamed = {f"{vgg19_names()[k.rsplit('.', 1)[0]]}.{k.rsplit('.', 1)[1]}": v for k, v in vgg.items()}
    missing = trunk.load_state_dict(renamed, strict=False).missing_keys
    assert trunk.conv4_2.weight.eq(0.5).all() and all("CPM" in key for key in missing)
    # the network runs at any multiple of 8 (small input here to stay fast); maps at 1/8
    small = LiftingFromTheDeep(model={**PAPER_NET, "stages": 2, "prior": prior_file}, optim=OPTIM,
                               data_info={**INFO, "image_size": 64})
    outputs = small(torch.rand(2, 3, 64, 64))
    assert [o["cnn"].shape for o in outputs] == [(2, 17, 8, 8)] * 2 and small.required_targets()["heatmaps"]["size"] == 8


def test_image_size_must_be_a_multiple_of_the_trunk_stride(prior_file):
    with pytest.raises(ConfigError, match="data.image_size: 60; model.trunk=vgg has stride 8"):
        LiftingFromTheDeep(model={**PAPER_NET, "prior": prior_file}, optim=OPTIM, data_info={**INFO, "image_size": 60})


def test_the_paper_preset_uses_the_vgg_trunk_and_fits_the_prior_on_mocap():
    from harness.train import load_config

    paper = load_config(["experiment=tome_lifting", "preset=paper"])
    assert (paper.model.trunk, paper.model.stages, paper.model.prior_source, paper.data.image_size) == ("vgg", 6, "auto", 368)
    quick = load_config(["experiment=tome_lifting", "preset=quick"])
    assert (quick.model.trunk, quick.model.prior_source) == ("small", "synthetic")


def test_the_paper_preset_trains_with_sgd_momentum_and_projects_with_sigma_1(prior_file):
    """Sec. 5.6: SGD with momentum; supplementary Sec. 1.2: the projected belief maps use sigma = 1,
    while the ground-truth maps keep CPM's width."""
    from harness.train import load_config

    paper = load_config(["experiment=tome_lifting", "preset=paper"])
    assert (paper.optim.name, paper.optim.momentum) == ("sgd", 0.9)
    assert (paper.model.projected_sigma, paper.model.sigma) == (1.0, 0.875)
    model = network(prior_file, sigma=0.5, projected_sigma=1.5)
    maps = render_heatmaps(torch.full((1, 17, 2), 16.0), (32, 32), (8, 8), sigma=1.0)
    lifted, projected = model.project_lift(maps)
    joints = lifted.scale[:, None, None] * lifted.joints_3d[..., :2] + lifted.translation[:, None, :]
    torch.testing.assert_close(projected, render_heatmaps(joints, (32, 32), (8, 8), sigma=1.5))
    assert model.required_targets()["heatmaps"]["sigma"] == 0.5


# -- the prior of the paper preset: Human3.6M training mocap (Sec. 4, 6) ---------------------
@pytest.fixture(scope="module")
def h36m_poses(tmp_path_factory):
    from tests.fixtures_h36m import write_poses_layout

    root = tmp_path_factory.mktemp("h36m_poses")
    write_poses_layout(root, num_frames=40)
    return root


def prior_cfg(*overrides):
    from harness.train import load_config

    return load_config(["experiment=tome_lifting", "preset=paper", "model.prior_basis=4", "model.prior_components=2",
                        "model.prior_stride=2", *overrides])


def test_auto_prior_source_fits_on_the_human36m_training_mocap(h36m_poses, tmp_path):
    cfg = prior_cfg("data.name=human36m", f"data.root={h36m_poses}", "data.layout=poses", "data.protocol=2")
    [artifact] = LiftingFromTheDeep.prerequisites(cfg)
    assert artifact.recipe == {"source": str(h36m_poses / "data_3d_h36m.npz"), "components": 2, "basis": 4,
                               "stride": 2, "subjects": ["S1", "S5", "S6", "S7", "S8", "S9"]}
    artifact.build(tmp_path / "prior.npz")
    prior = ppca.PosePrior.load(tmp_path / "prior.npz")
    assert prior.subjects == ("S1", "S5", "S6", "S7", "S8", "S9") and prior.components == 2
    # mixed data with a Human3.6M 3D source: the same file, Protocol #1's subjects
    mixed = prior_cfg("data.name=mixed", "data.sources.three_d.name=human36m", f"data.sources.three_d.root={h36m_poses}",
                      "data.sources.three_d.layout=poses", "data.sources.two_d.name=lsp", "data.sources.two_d.root=/nowhere")
    [artifact] = LiftingFromTheDeep.prerequisites(mixed)
    assert artifact.recipe["source"] == str(h36m_poses / "data_3d_h36m.npz")
    assert artifact.recipe["subjects"] == ["S1", "S5", "S6", "S7", "S8"]
    # other data: the synthetic prior
    [artifact] = LiftingFromTheDeep.prerequisites(prior_cfg())
    assert artifact.recipe["source"] == "synthetic"


def test_auto_prior_source_without_the_mocap_file_exits_2_with_one_line(tmp_path, smoke_args, capsys):
    from harness.train import main

    from tests.fixtures_h36m import write_images_layout

    images_root = tmp_path / "h36m_images"  # the images layout ships no data_3d_h36m.npz
    write_images_layout(images_root, num_frames=46)  # 46 frames: a 10 Hz frame in the last 10 % (the validation)
    assert main([*smoke_args, "experiment=tome_lifting", "model.prior_source=auto", "data.name=human36m",
                 f"data.root={images_root}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"model.prior_source=auto on Human3.6M data needs {images_root / 'data_3d_h36m.npz'}" in err
    assert "set model.prior_source=synthetic" in err
    assert main([*smoke_args, "experiment=tome_lifting", f"model.prior_source={tmp_path / 'nope.npz'}"]) == 2
    assert "bad value for model.prior_source" in capsys.readouterr().err


def test_the_lifting_uses_the_batchs_extrinsics_where_known(prior_file):
    """Eq. 5's E: the batch's camera_rotation where has_camera_rotation, the level camera where not;
    model.extrinsics=false lifts every sample with E = I."""
    from pose3d.camera import rotation_about_axis

    data = batch()
    data["camera_rotation"] = rotation_about_axis(torch.tensor([0.35, 0.35, -0.2]), "x")
    data["has_camera_rotation"] = torch.tensor([True, False, True])
    model = network(prior_file, fusion=False)
    final = model(data["image"])[-1]["fused"]
    joints_2d = model.decode(final)
    expected_e = data["camera_rotation"].clone()
    expected_e[1] = torch.eye(3)
    with torch.no_grad():
        got = model.predict(data)["joints_3d"]
        assert torch.allclose(got, model.lifter()(joints_2d, camera_rotation=expected_e).joints_3d, atol=1e-4)
        level = network(prior_file, fusion=False, extrinsics=False).predict(data)["joints_3d"]
    assert torch.allclose(level, model.lifter()(joints_2d).joints_3d, atol=1e-4)
    assert torch.allclose(got[1], level[1], atol=0.1) and not torch.allclose(got[0], level[0], atol=1.0)


def test_a_prior_of_another_scale_stops_the_lifting_with_one_line(prior_file, tmp_path):
    """A prior fitted on poses in other units (here metres read as millimetres) lifts to poses a
    thousand times too small; the first batch with 3D labels stops the run (exit 2 in the harness)."""
    tiny = ppca.PosePrior.load(prior_file)
    tiny.means = tiny.means / 1000.0
    tiny.variances, tiny.noise = tiny.variances / 1e6, tiny.noise / 1e6
    tiny.save(tmp_path / "metres.npz")
    model = network(str(tmp_path / "metres.npz"))
    data = batch()
    data["has_3d"][:] = False
    with torch.no_grad():
        model.predict(data)  # no 3D labels: nothing to compare with
        data["has_3d"][:] = True
        with pytest.raises(ConfigError) as error:
            model.predict(data)
    message = str(error.value)
    assert "\n" not in message and "metres.npz has a mean bone length of 0.2122 mm but the data's is 225.5 mm" in message
    assert "a factor 1.06e+03 apart, more than 2" in message
    with torch.no_grad():
        network(prior_file).predict(data)  # the prior's own scale passes
