"""Habibie et al. 2019: Eq. 2, the losses of supp. Eq. 2-6, f3D's residual, gradients, stage 1."""
from __future__ import annotations

import pytest
import torch

from lightning_modules.habibie_projection import (
    ExplicitProjection,
    HeatmapPretraining,
    bone_loss_2d,
    bone_loss_3d,
    heatmap_loss,
    summarise_runs,
    weak_perspective,
)
from lightning_modules.blocks.residual_mlp import ResidualLifter
from pose3d.skeleton import BONE_CHILDREN, bone_vectors
from pose3d.config import ConfigError
from tests.helpers import OPTIM, fit_losses, random_batch

SMALL = {"width": 12, "blocks": 2, "f3d_channels": 24, "z_dim": 32, "camera_hidden": 16}
INFO = {"num_joints": 17, "image_size": 32}


def make(**model) -> ExplicitProjection:
    torch.manual_seed(0)
    return ExplicitProjection({**SMALL, **model}, OPTIM, INFO)


def test_weak_perspective_projection_eq2():
    p3d = torch.tensor([[[1.0, 2.0, 5.0], [-1.0, 0.5, 3.0]]])
    camera = torch.tensor([[2.0, 3.0, 0.1, -0.2]])
    expected = torch.tensor([[[2.0 + 0.1, 6.0 - 0.2], [-2.0 + 0.1, 1.5 - 0.2]]])
    assert torch.allclose(weak_perspective(p3d, camera), expected)


def test_camera_starts_at_alpha_init_and_stays_positive():
    model = make(alpha_init=0.5)
    out = model(torch.rand(3, 3, 32, 32))
    assert out["camera"].shape == (3, 4) and (out["camera"][:, :2] > 0).all()
    model.camera_net.mlp[-1].weight.data.zero_()
    model.camera_net.mlp[-1].bias.data.zero_()
    assert torch.allclose(model.camera_net(out["z"])[:, :2], torch.full((3, 2), 0.5))


def test_projection_gradient_reaches_f3d_from_a_2d_only_sample():
    model = make(latent_2d=False, bone_loss=False)
    batch = random_batch(2, image_size=32, heatmap_size=8, two_d_only=2)  # no 3D labels at all
    loss, logs = model.training_loss(batch)
    assert logs["loss_3d"] == 0 and logs["loss_2d_pose"] > 0
    loss.backward()
    for layer in (model.f3d.out, model.f3d.fc1[0], model.camera_net.mlp[0], model.to_z[1]):
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    # without the projection loss a 2D-only sample does not move f3D (no bone loss either)
    model = make(latent_2d=False, bone_loss=False, projection=False)
    loss, _ = model.training_loss(batch)
    loss.backward()
    assert model.f3d.out.weight.grad is None or model.f3d.out.weight.grad.abs().sum() == 0


def test_bone_loss_3d_compares_bone_vectors():
    target = torch.zeros(1, 17, 3)
    target[0, :, 0] = torch.arange(17.0)
    pred = target.clone()
    assert bone_loss_3d(pred, target).item() == 0.0
    pred[0, 3] += torch.tensor([0.0, 2.0, 0.0])  # r_ankle: a leaf, one bone (parent r_knee) changes by (0, 2, 0)
    assert bone_loss_3d(pred, target).item() == pytest.approx(4.0)
    moved = target + torch.tensor([5.0, -1.0, 2.0])  # a translated pose has the same bone vectors
    assert bone_loss_3d(moved, target).item() == pytest.approx(0.0, abs=1e-9)
    vectors = bone_vectors(target)
    assert vectors.shape == (1, 16, 3)


def test_bone_loss_2d_compares_lengths_only():
    pose = torch.randn(1, 17, 3)
    lengths = bone_vectors(pose).norm(dim=-1)
    rotation = torch.linalg.qr(torch.randn(3, 3))[0]
    assert bone_loss_2d(pose @ rotation.T, lengths).item() == pytest.approx(0.0, abs=1e-9)  # direction free
    assert bone_loss_2d(pose, lengths + 0.5).item() == pytest.approx(16 * 0.25, rel=1e-5)


def test_2d_only_bone_target_is_a_random_3d_labelled_training_sample():
    model = make()
    batch = random_batch(4, two_d_only=2)
    bones = model.random_bone_lengths(batch)  # the bank now holds the batch's two 3D samples
    labelled = bone_vectors(batch["joints_3d"][:2] / 1000.0).norm(dim=-1)
    assert bones.shape == (4, 16)
    for row in bones:
        assert any(torch.allclose(row, candidate) for candidate in labelled)
    empty = make()
    only_2d = random_batch(3, two_d_only=3)
    assert torch.allclose(empty.random_bone_lengths(only_2d), empty.template_bones.expand(3, -1))
    assert empty.template_bones[BONE_CHILDREN.index(2)] == pytest.approx(0.442)  # r_knee bone, metres


def test_heatmap_loss_is_masked_per_joint():
    target = torch.zeros(2, 17, 4, 4)
    maps = torch.zeros(2, 17, 4, 4)
    maps[0, 3] = 1.0  # joint 3 of sample 0 wrong in all 16 pixels
    maps[1, 5] = 0.5
    mask = torch.ones(2, 17, dtype=torch.bool)
    assert heatmap_loss(maps, target, mask).tolist() == pytest.approx([16.0, 4.0])
    mask[0, 3] = False  # joint 3 of sample 0 is not labelled
    assert heatmap_loss(maps, target, mask).tolist() == pytest.approx([0.0, 4.0])


def test_heatmap_term_uses_visible_and_intermediate_maps():
    model = make(intermediate=False)
    batch = random_batch(2)
    out = model(batch["image"])
    full = model.heatmap_terms(out, batch)
    batch["visible"][:] = False
    assert model.heatmap_terms(out, batch).item() == 0.0
    assert full > 0
    with_taps = make(intermediate=True)
    out = with_taps(batch["image"])
    assert len(out["intermediate"]) == 2 and out["intermediate"][0].shape == (2, 17, 8, 8)


def test_f3d_residual_from_z_to_second_layer():
    lifter = ResidualLifter(8, 6)
    for layer in (lifter.fc1[0], lifter.fc2[0]):
        layer.weight.data.zero_()
        layer.bias.data.zero_()
    seen = {}
    lifter.fc3.register_forward_hook(lambda module, inputs, output: seen.setdefault("input", inputs[0]))
    z = torch.randn(3, 8)
    lifter(z)
    assert torch.allclose(seen["input"], z)  # the second layer's output is 0, so fc3 sees z itself
    model = make()
    assert isinstance(model.f3d, ResidualLifter) and model.f3d.fc1[0].in_features == model.cfg.z_dim


def test_batch_of_only_2d_samples_trains_without_nan():
    model = make()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = random_batch(4, two_d_only=4)
    for _ in range(3):
        loss, logs = model.training_loss(batch)
        assert torch.isfinite(loss) and all(torch.isfinite(v) for v in logs.values())
        optimizer.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        optimizer.step()


def test_loss_goes_down_on_a_fixed_batch():
    losses = fit_losses(make(), random_batch(8, two_d_only=3, seed=1), steps=25)
    assert losses[-1] < 0.5 * losses[0]


def test_predict_shapes_and_2d_source():
    batch = random_batch(2)
    out = make().predict(batch)
    assert out["joints_3d"].shape == (2, 17, 3) and out["joints_2d"].shape == (2, 17, 2)
    assert "joints_2d" not in make(latent_2d=False, projection=False).predict(batch)
    stage1 = HeatmapPretraining(SMALL, OPTIM, INFO).predict(batch)
    assert "joints_3d" not in stage1 and stage1["joints_2d"].shape == (2, 17, 2)


def test_config_errors():
    with pytest.raises(ConfigError, match="f3d_channels"):
        make(f3d_channels=8)


def test_stage1_checkpoint_initialises_stage2(tmp_path):
    import lightning.pytorch as pl

    from harness.init_from import load_matching

    torch.manual_seed(1)
    stage1 = HeatmapPretraining(SMALL, OPTIM, INFO)
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(stage1)
    path = tmp_path / "stage1.ckpt"
    torch.save({"state_dict": stage1.state_dict()}, path)
    stage2 = make()
    loaded, left = load_matching(stage2, str(path))
    assert any(k.startswith("extractor.") for k in loaded) and "to_f3d.weight" in loaded
    assert all(k.startswith(("f3d.", "to_z.", "camera_net.")) for k in left)
    assert torch.equal(stage2.extractor.stem[0][0].weight, stage1.extractor.stem[0][0].weight)
    assert "extractor.stem.0.0.weight" in stage2.pretrained_names


def test_prerequisite_declares_stage1_only_when_asked():
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"init_from": None, "data": {"name": "synthetic", "image_size": 64},
                            "model": {**ExplicitProjection.Config().__dict__, "pretrain_2d": True}})
    [declaration] = ExplicitProjection.prerequisites(cfg)
    assert declaration.experiment == "habibie_2d_pretrain" and declaration.into == "init_from"
    assert declaration.data_overrides == {"train_domain": "wild"}
    cfg.data.name = "mixed"  # stage 1 on mixed's 2D-only sources (MPII + LSP), Sec. 4.2
    assert ExplicitProjection.prerequisites(cfg)[0].data_overrides == {"ratio_3d": 0.0}
    cfg.init_from = "/some/run"
    assert ExplicitProjection.prerequisites(cfg) == []
    assert HeatmapPretraining.prerequisites(cfg) == []


def test_paper_preset_layer_shapes():
    with torch.device("meta"):
        model = ExplicitProjection({"backbone": "resnet50", "z_dim": 1024}, OPTIM, {"num_joints": 17, "image_size": 256})
    assert model.map_size == 16 and model.to_f3d.out_channels == 64 and model.to_f3d.in_channels == 1024
    assert model.extractor.res5a.conv2.stride == (1, 1) and model.extractor.res5a.conv3.out_channels == 1024
    assert len(model.extractor.backbone.layer3) == 6 and not hasattr(model.extractor.backbone, "layer4")
    assert model.to_z[1].in_features == 64 * 16 * 16 and model.to_z[1].out_features == 1024
    assert model.f3d.fc1[0].in_features == 1024 and model.f3d.out.out_features == 51
    assert "layer3.5.conv3.weight" in model.extractor.backbone.state_dict()  # torchvision names (res4f)


def test_stage1_paper_preset_resolves_to_adadelta_through_the_shared_optim_schema():
    """Sec. 4.2: Adadelta ("momentum" 0.9), lr 0.05 decayed exponentially, in stage 1 as in stage 2."""
    from omegaconf import OmegaConf

    from harness.prerequisites import trained_run_config
    from harness.train import load_config
    from lightning_modules.base import build_optimizer

    stage1 = load_config(["experiment=habibie_2d_pretrain", "preset=paper"])
    assert (stage1.optim.name, stage1.optim.rho, stage1.optim.lr) == ("adadelta", 0.9, 0.05)
    assert (stage1.optim.scheduler, stage1.optim.step_size, stage1.optim.gamma) == ("step", 1, 0.8)
    configured = build_optimizer([torch.nn.Parameter(torch.zeros(1))], stage1.optim, stage1.trainer.max_epochs)
    assert isinstance(configured["optimizer"], torch.optim.Adadelta)
    assert configured["optimizer"].param_groups[0]["rho"] == 0.9 and configured["optimizer"].param_groups[0]["lr"] == 0.05
    # the stage-1 run that the paper preset of stage 2 declares resolves to the same optimiser
    stage2 = load_config(["experiment=habibie_projection", "preset=paper"])
    [declaration] = ExplicitProjection.prerequisites(stage2)
    prerequisite = trained_run_config(declaration, stage2)
    assert prerequisite.optim.name == "adadelta" and prerequisite.model.heatmap_joints == "subset_14"
    assert OmegaConf.select(prerequisite, "model.optimizer") is None


def test_the_paper_presets_train_14_heatmap_channels():
    """Sec. 3.1: the first 14 channels of F3D are h2D (the 14-joint subset: no pelvis, spine, neck/nose)."""
    from harness.train import load_config
    from pose3d.skeleton import SUBSET_14

    for experiment in ("habibie_projection", "habibie_2d_pretrain"):
        assert load_config([f"experiment={experiment}", "preset=paper"]).model.heatmap_joints == "subset_14"
    model = make(heatmap_joints="subset_14")
    batch = random_batch(2)
    out = model(batch["image"])
    assert out["heatmaps"].shape[1] == 14 and all(m.shape[1] == 14 for m in out["intermediate"])
    assert model.heatmap_joints == list(SUBSET_14)
    # the loss compares channel k with the target map of joint SUBSET_14[k]
    expected = heatmap_loss(out["heatmaps"], batch["heatmaps"][:, list(SUBSET_14)], torch.ones(2, 14, dtype=torch.bool))
    expected = expected + sum(heatmap_loss(m, batch["heatmaps"][:, list(SUBSET_14)], torch.ones(2, 14, dtype=torch.bool))
                              for m in out["intermediate"])
    assert torch.allclose(model.heatmap_terms(out, batch), expected.mean())
    joints_2d = model.predict(batch)["joints_2d"]
    assert joints_2d.shape == (2, 17, 2)
    pelvis = (joints_2d[:, 1] + joints_2d[:, 4]) / 2  # between the hips
    assert torch.allclose(joints_2d[:, 0], pelvis)


def test_model_pretrained_loads_a_torchvision_named_resnet50(tmp_path):
    """Sec. 3.3, ImageNet features: a ResNet-50 state dict under torchvision's names (here saved
    from our own ResNet-50, with its classifier) initialises conv1..res4f."""
    from lightning_modules.blocks.resnet import resnet50

    torch.manual_seed(1)
    source = resnet50(num_classes=1000)
    torch.save(source.state_dict(), tmp_path / "resnet50.pth")
    info = {"num_joints": 17, "image_size": 64}
    torch.manual_seed(2)
    loaded = ExplicitProjection({"backbone": "resnet50", "pretrained": str(tmp_path / "resnet50.pth")}, OPTIM, info)
    torch.manual_seed(2)
    fresh = ExplicitProjection({"backbone": "resnet50"}, OPTIM, info)
    backbone = loaded.extractor.backbone.state_dict()
    assert torch.equal(backbone["layer3.5.conv3.weight"], source.state_dict()["layer3.5.conv3.weight"])
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in backbone.items())
    assert not torch.equal(backbone["conv1.weight"], fresh.extractor.backbone.state_dict()["conv1.weight"])
    # res5a (from scratch in the paper) is not touched by the file's layer4
    assert torch.equal(loaded.extractor.res5a.conv1.weight, fresh.extractor.res5a.conv1.weight)
    with pytest.raises(ConfigError, match="model.pretrained: .*missing.pth"):
        ExplicitProjection({"backbone": "resnet50", "pretrained": str(tmp_path / "missing.pth")}, OPTIM, info)


def test_summary_table(tmp_path):
    import json

    import yaml

    runs = []
    for variant, pck in (("baseline", 40.0), ("latent2d", 45.0), ("projection", 46.0), ("full", 50.0)):
        run = tmp_path / variant
        run.mkdir()
        (run / "config.yaml").write_text(yaml.safe_dump({"variant": variant}))
        metrics = {f"test/{d}/{m}": pck for d in ("wild", "studio") for m in ("pck3d_scaled", "auc3d_scaled", "n_mpjpe")}
        (run / "metrics.json").write_text(json.dumps(metrics))
        runs.append(run)
    text = summarise_runs(runs, tmp_path / "out", {"values": {"baseline": 62.3, "full": 70.4}, "auc": {"full": 36.0}})
    assert "| full | 1 | 50.0" in text and "70.4 | 36.0 |" in text and "holds" in text
    assert (tmp_path / "out" / "projection.md").is_file()


def test_mpi_inf_3dhp_per_scene_table_carries_scaled_and_procrustes_pck_auc():
    from datamodules.mpi_inf_3dhp import evaluate

    generator = torch.Generator().manual_seed(0)
    target = torch.randn(4, 17, 3, generator=generator) * 300.0
    target = target - target[:, :1]
    out = evaluate(target * 2.0, target, subject=torch.tensor([1, 2, 5, 6]))  # twice too large
    for scene in ("", "/GS", "/outdoor"):
        # every error is 0 up to rounding: 100 % within 150 mm; within the 30 thresholds 5..150 mm at least
        assert out[f"pck3d_scaled{scene}"] == pytest.approx(100.0) and out[f"auc3d_scaled{scene}"] >= 100.0 * 30 / 31
        assert out[f"pck3d_pa{scene}"] == pytest.approx(100.0) and out[f"auc3d_pa{scene}"] >= 100.0 * 30 / 31
    assert out["pck3d"] < 100.0


def test_synthetic_eval_domain_both_and_cache():
    from datamodules.synthetic import SyntheticDataModule

    base = {"name": "synthetic", "image_size": 32, "train_size": 8, "test_size": 4, "photometric": False, "flip": False}
    test = SyntheticDataModule({**base, "eval_domain": "both"}).dataset("test").__getitems__([0, 1, 2, 3])
    assert [s["domain"].item() for s in test] == [0, 1, 0, 1] and all(s["has_3d"] for s in test)
    studio = SyntheticDataModule(base).dataset("test").__getitems__([0])[0]
    assert "domain" not in studio
    plain = SyntheticDataModule({**base, "train_domain": "mixed"}).dataset("train").__getitems__([2, 5])
    cached = SyntheticDataModule({**base, "train_domain": "mixed", "cache_mb": 1}).dataset("train")
    cached.__getitems__([5])
    again = cached.__getitems__([2, 5])
    assert all(torch.equal(plain[k][key], again[k][key]) for k in range(2) for key in plain[0])


def test_baseline_drops_2d_only_samples():
    batch = random_batch(4, two_d_only=2, seed=3)
    baseline = make(latent_2d=False, projection=False, use_2d_only=False)
    loss, _ = baseline.training_loss(batch)
    three_d = {k: v[:2] for k, v in batch.items()}
    reference = make(latent_2d=False, projection=False, use_2d_only=False)
    reference.train()
    assert torch.allclose(loss, reference.training_loss(three_d)[0])
    only_2d = random_batch(2, two_d_only=2)
    zero, _ = baseline.training_loss(only_2d)
    assert zero.item() == 0.0 and zero.requires_grad


def test_adadelta_with_the_pretrained_lr_factor():
    optim = {**OPTIM, "name": "adadelta", "rho": 0.9, "lr": 0.05, "scheduler": "step", "step_size": 1, "gamma": 0.8,
             "pretrained_lr_scale": 0.01}
    torch.manual_seed(0)
    model = ExplicitProjection(SMALL, optim, INFO)
    model.pretrained_names = {n for n, _ in model.named_parameters() if n.startswith(("extractor.", "to_f3d."))}
    from omegaconf import OmegaConf

    from lightning_modules.base import build_optimizer, split_pretrained

    groups = split_pretrained(model.parameter_groups(), model.named_parameters(), model.pretrained_names, 0.01, 0.05)
    configured = build_optimizer(groups, OmegaConf.create(optim), max_epochs=5)  # what configure_optimizers does
    optimizer = configured["optimizer"]
    assert isinstance(optimizer, torch.optim.Adadelta) and all(g["rho"] == 0.9 for g in optimizer.param_groups)
    assert sorted(g["lr"] for g in optimizer.param_groups) == pytest.approx([0.0005, 0.05])
    optimizer.step()  # (no gradients: a no-op, in the order the scheduler expects)
    configured["lr_scheduler"]["scheduler"].step()
    assert sorted(g["lr"] for g in optimizer.param_groups) == pytest.approx([0.0004, 0.04])


# -- real-data layouts: Human3.6M 3D + MPII/LSP 2D-only, tested on MPI-INF-3DHP ----
# The tiny layouts are the ones the data tests write (imported fixtures, not copies).
from tests.test_mpi_inf_3dhp import layout as mpi_inf_3dhp_layout  # noqa: E402,F401
from tests.test_mpii_lsp import lsp_layout, mpii_json  # noqa: E402,F401


@pytest.fixture(scope="module")
def human36m_images(tmp_path_factory):
    from tests.fixtures_h36m import write_images_layout

    root = tmp_path_factory.mktemp("h36m_habibie")
    write_images_layout(root, num_frames=30, subjects=(1, 5, 9))
    return root


def real_data(h36m, mpii, lsp, dhp, ratio_3d: float = 0.5, eval_source: str = "eval") -> list[str]:
    """``data.name=mixed`` overrides: Human3.6M 3D + [MPII, LSP] 2D-only, evaluated on MPI-INF-3DHP."""
    return ["data.name=mixed", "data.image_size=32", "data.batch_size=4", "data.train_size=8", "data.val_size=4",
            "data.test_size=4", f"data.ratio_3d={ratio_3d}", f"data.eval_source={eval_source}",
            f"data.sources.three_d={{name: human36m, root: {h36m}, train_size: 16}}",
            f"data.sources.two_d=[{{name: mpii, root: {mpii}}}, {{name: lsp, root: {lsp}}}]",
            f"data.sources.eval={{name: mpi_inf_3dhp, root: {dhp}, test_sequences: [1, 3, 5], subjects: [1], "
            "sequences: [1], cameras: [0, 2], train_stride: 5}"]


def test_smoke_trains_on_human36m_mpii_lsp_and_tests_on_mpi_inf_3dhp(
        tmp_path, smoke_args, human36m_images, mpii_json, lsp_layout, mpi_inf_3dhp_layout):
    import json
    import math

    from harness.train import main

    data = real_data(human36m_images, mpii_json[0], lsp_layout[0], mpi_inf_3dhp_layout[0])
    # stage 1 (Sec. 4.2) on the 2D-only sources of the same mixed data (ratio_3d=0), then stage 2 from it
    pretrain = ",".join(f"'{o}'" for o in real_data(human36m_images, mpii_json[0], lsp_layout[0],
                                                     mpi_inf_3dhp_layout[0], ratio_3d=0.0))
    assert main(["experiment=habibie_projection", *smoke_args, "threads=1", *data, "model.pretrain_2d=true",
                 f"model.pretrain_overrides=[{pretrain}]"]) == 0
    runs = {p.name.split("-")[0]: p for p in (tmp_path / "runs").iterdir()}
    assert {"habibie_projection", "habibie_2d_pretrain"} <= set(runs)
    metrics = json.loads((runs["habibie_projection"] / "metrics.json").read_text())
    assert "test/mpjpe" in metrics and all(math.isfinite(v) for k, v in metrics.items() if k.startswith("test/"))
    pretrain_cfg = (runs["habibie_2d_pretrain"] / "config.yaml").read_text()
    assert "ratio_3d: 0.0" in pretrain_cfg and "mpi_inf_3dhp" in pretrain_cfg
    assert "init_from" in (runs["habibie_projection"] / "config.yaml").read_text()


def test_the_mixed_real_data_concatenates_mpii_and_lsp_and_evaluates_on_3dhp(
        human36m_images, mpii_json, lsp_layout, mpi_inf_3dhp_layout):
    from datamodules.mixed import MixedDataModule
    from harness.train import load_config
    from omegaconf import OmegaConf

    cfg = load_config(["experiment=habibie_projection", "preset=smoke",
                       *real_data(human36m_images, mpii_json[0], lsp_layout[0], mpi_inf_3dhp_layout[0])])
    dm = MixedDataModule(OmegaConf.to_container(cfg.data))
    dm.setup("fit")
    two_d = dm.dataset("train").parts[1]
    assert [len(p) for p in two_d.parts] == [len(dm.sources["two_d"].dataset("train")),
                                             len(dm.source_modules["two_d"][1].dataset("train"))]
    assert dm.sources["two_d"].cfg.name == "mpii" and dm.source_modules["two_d"][1].cfg.name == "lsp"
    assert dm.info == dm.sources["eval"].info  # 3DHP's joints, actions, test subjects
    batch = next(iter(dm.train_dataloader()))
    assert batch["has_3d"].tolist() == [True, True, False, False]
    assert next(iter(dm.test_dataloader()))["has_3d"].all()
