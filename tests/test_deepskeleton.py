"""DeepSkeleton (lightning_modules/deepskeleton.py): the paper's maths on small inputs."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from lightning_modules.blocks.skeleton_nets import BilinearUpsample, DeconvNet, MapRegressor, bilinear_kernel
from lightning_modules.blocks.stacked import GroupedStack, StackedModules
from lightning_modules.deepskeleton import (
    DeepSkeleton,
    masked_map_bce,
    match_hypotheses,
    select_widths,
    solve_translation,
    summarise_runs,
)
from pose3d.camera import project
from pose3d.config import ConfigError
from pose3d.prerequisites import TrainedRun
from pose3d.targets import skeleton_maps
from pose3d.zoom import zoom_coords, zoom_images
from tests.helpers import OPTIM, random_batch

SMALL = {"encoder_widths": [4, 8, 8, 8], "decoder_channels": 4, "regression_hidden": 16, "regression_size": 16,
         "width_unit": "map_56", "two_d": {"source": "ground_truth"}}


def contract_batch(size: int = 4, image_size: int = 32, seed: int = 0, two_d_only: int = 0) -> dict:
    batch = random_batch(size, image_size, seed=seed, two_d_only=two_d_only)
    batch["joints_3d"] = batch["joints_3d"] - batch["joints_3d"][:, :1]
    batch["camera"] = torch.tensor([[60.0, 60.0, image_size / 2, image_size / 2]]).repeat(size, 1)
    batch["root_depth"] = torch.full((size,), 5000.0)
    return batch


def build(image_size: int = 32, **model) -> DeepSkeleton:
    torch.manual_seed(0)
    return DeepSkeleton({**SMALL, **model}, OPTIM, {"image_size": image_size})


def with_targets(model: DeepSkeleton, batch: dict) -> dict:
    for key, spec in model.required_targets().items():
        batch[key] = skeleton_maps(batch, batch["image"].shape[-1], spec)
    return batch


# -- Sec. 3.2: the decoder ---------------------------------------------------------------------
def test_upsampling_starts_as_bilinear():
    up = BilinearUpsample(3)
    x = torch.rand(2, 3, 6, 6)
    expected = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    out = up(x)
    assert out.shape == expected.shape
    torch.testing.assert_close(out[..., 1:-1, 1:-1], expected[..., 1:-1, 1:-1])  # zero padding differs at the border
    assert up.weight.requires_grad  # learnable, only initialised as bilinear
    net = DeconvNet("small", (4, 8, 8, 8), 4)
    for layer in net.upsample:
        torch.testing.assert_close(layer.weight[:, 0], bilinear_kernel(4).expand(4, 4, 4))


def test_deconv_outputs_every_level_at_a_quarter_of_the_input():
    out = DeconvNet("small", (4, 8, 8, 8), 4)(torch.rand(2, 3, 64, 64))
    assert [tuple(o.shape) for o in out] == [(2, 6, 4, 4), (2, 6, 8, 8), (2, 6, 16, 16)]


def test_sigmoid_cross_entropy_masks_the_background_without_depth():
    torch.manual_seed(1)
    logits, target = torch.randn(2, 3, 6, 4, 4), torch.rand(2, 3, 6, 4, 4)
    has_2d = torch.tensor([True, True, False])
    has_3d = torch.tensor([True, False, False])
    got = masked_map_bce(logits, target, has_2d, has_3d)
    for h in range(2):
        elementwise = -(target[h] * torch.log(torch.sigmoid(logits[h])) + (1 - target[h]) * torch.log(1 - torch.sigmoid(logits[h])))
        counted = torch.cat((elementwise[0].flatten(), elementwise[1, :3].flatten()))  # sample 1: foreground only; 2: nothing
        torch.testing.assert_close(got[h], counted.mean())
    # changing the background of the 2D-only sample, or anything of the unlabelled one, changes nothing
    changed = target.clone()
    changed[:, 1, 3:] = 1 - changed[:, 1, 3:]
    changed[:, 2] = 0.5
    torch.testing.assert_close(masked_map_bce(logits, changed, has_2d, has_3d), got)


# -- Sec. 3.2-3.3: batched, independent hypotheses ------------------------------------------------
# Two implementations of one contract: torch.func.vmap over stacked parameters, and one grouped
# network (grouped convolutions, batch norm over H x the channels, batched linear layers).
STACKS = {
    "vmap": StackedModules,
    "grouped": lambda nets: GroupedStack(nets, nets[0].input_conv),
    "grouped_channels_last": lambda nets: GroupedStack(nets, nets[0].input_conv, channels_last=True),
}
stack_kinds = pytest.mark.parametrize("kind", list(STACKS))


@stack_kinds
def test_batched_hypotheses_equal_separate_ones_and_have_independent_gradients(kind):
    torch.manual_seed(0)
    nets = [DeconvNet("small", (4, 8, 8, 8), 4) for _ in range(3)]
    stacked = STACKS[kind](nets)
    image = torch.rand(4, 3, 32, 32)
    for mode in (True, False):
        stacked.train(mode)
        separate = [stacked.unstack(i).train(mode) for i in range(3)]
        batched = stacked(image)
        for i, net in enumerate(separate):
            for level, out in enumerate(net(image)):
                torch.testing.assert_close(batched[level][i], out, atol=1e-5, rtol=1e-5)
    # the gradient of hypothesis 1's loss reaches hypothesis 1's parameters only, equal to its own
    stacked.train()
    separate = stacked.unstack(1).train()
    stacked(image)[-1][1].square().mean().backward()
    separate(image)[-1].square().mean().backward()
    params = dict(separate.named_parameters())
    for name in stacked._names:
        grad = getattr(stacked, name.replace(".", "__")).grad
        if grad is None:  # the intermediate heads do not feed the output
            assert params[name].grad is None, name
            continue
        assert grad[0].abs().max() == 0 and grad[2].abs().max() == 0, name
        torch.testing.assert_close(grad[1], params[name].grad, atol=1e-5, rtol=1e-4)


@stack_kinds
def test_batched_regression_with_one_input_per_hypothesis(kind):
    torch.manual_seed(0)
    stacked = STACKS[kind]([MapRegressor("small", 17, 16, 6, (4, 8, 8, 8), 16) for _ in range(2)]).eval()
    maps = torch.rand(2, 3, 6, 8, 8)
    out = stacked(maps, shared=False)
    assert out.shape == (2, 3, 17, 3)
    for i in range(2):
        torch.testing.assert_close(out[i], stacked.unstack(i).eval()(maps[i]), atol=1e-5, rtol=1e-5)
    assert (out[:, :, 0] == 0).all()  # root-relative


@stack_kinds
def test_batch_norm_statistics_update_per_hypothesis(kind):
    stacked = STACKS[kind]([DeconvNet("small", (4, 8, 8, 8), 4) for _ in range(2)]).train()
    separate = [stacked.unstack(i).train() for i in range(2)]
    before = stacked.encoder__stem__0__1__running_mean.clone()
    image = torch.rand(2, 3, 32, 32)
    stacked(image)
    after = stacked.encoder__stem__0__1__running_mean
    assert not torch.equal(before, after)
    assert not torch.equal(after[0], after[1])  # different weights, different statistics
    for i, net in enumerate(separate):  # each copy's are the ones its own network accumulates
        net(image)
        torch.testing.assert_close(after[i], net.encoder.stem[0][1].running_mean, atol=1e-6, rtol=1e-5)


# -- Sec. 3.4: matching ------------------------------------------------------------------------
def constructed_case():
    torch.manual_seed(3)
    pose = torch.randn(2, 17, 3) * 250
    pose = pose - pose[:, :1]
    camera = torch.tensor([[1100.0, 1080.0, 500.0, 490.0], [900.0, 900.0, 300.0, 320.0]])
    translation = torch.tensor([[120.0, -80.0, 4500.0], [-300.0, 50.0, 6000.0]])
    joints_2d = project(pose + translation[:, None], camera)
    return pose, camera, translation, joints_2d


def test_closed_form_translation_recovers_the_root():
    pose, camera, translation, joints_2d = constructed_case()
    torch.testing.assert_close(solve_translation(pose, joints_2d, camera), translation, atol=1e-2, rtol=1e-5)
    # weights: a joint with weight 0 may be anywhere
    corrupted = joints_2d.clone()
    corrupted[:, 5] += 300
    weights = torch.ones(2, 17)
    weights[:, 5] = 0
    torch.testing.assert_close(solve_translation(pose, corrupted, camera, weights), translation, atol=1e-2, rtol=1e-5)


def test_matching_picks_the_hypothesis_that_reprojects_best():
    pose, camera, translation, joints_2d = constructed_case()
    torch.manual_seed(4)
    wrong = pose + torch.randn(2, 17, 3) * 80
    mirrored = pose * torch.tensor([-1.0, 1.0, 1.0])
    hypotheses = torch.stack((wrong, mirrored, pose, pose * 1.0 + torch.randn(2, 17, 3) * 30))
    chosen, errors, solved = match_hypotheses(hypotheses, joints_2d, camera)
    assert chosen.tolist() == [2, 2]
    assert errors.shape == (4, 2) and errors[2].max() < 1e-2
    torch.testing.assert_close(solved[2], translation, atol=1e-2, rtol=1e-5)
    # a collapsed hypothesis cannot win by moving onto the camera centre
    collapsed = torch.zeros_like(pose)
    chosen, errors, solved = match_hypotheses(torch.stack((collapsed, pose)), joints_2d, camera)
    assert chosen.tolist() == [1, 1] and (errors[0] > 10).all() and (solved[0, :, 2] > 0).all()


def test_prediction_is_the_matched_hypothesis_and_oracle_metrics():
    model = build(stick_widths=[5, 10, 15]).eval()
    batch = with_targets(model, contract_batch(4))
    prediction = model.predict(batch)
    aux = prediction["aux"]
    rows = torch.arange(4)
    torch.testing.assert_close(prediction["joints_3d"], aux["hypotheses"][aux["chosen"], rows])
    assert aux["reprojection"].shape == (3, 4)
    torch.testing.assert_close(aux["chosen"], aux["reprojection"].argmin(0))
    metrics = {name: metric for name, metric in model.method_metrics().items()}
    model.update_method_metrics(metrics, batch, prediction, "val")
    error = (aux["hypotheses"] - batch["joints_3d"][None]).norm(dim=-1).mean(-1).min(0).values.mean()
    torch.testing.assert_close(metrics["oracle_mpjpe"].compute(), error)
    assert float(metrics["reprojection_error"].compute()) == pytest.approx(float(aux["reprojection"].min(0).values.mean().detach()), rel=1e-5)


# -- Sec. 3.3: the regression sees the maps only -----------------------------------------------------
def test_regression_network_receives_no_image():
    model = build(stick_widths=[6, 12], regression_input="predicted").eval()
    template = model.regression._template
    assert template.encoder.stem[0][0].in_channels == 6  # the 6-channel maps
    seen = []
    model.regression.register_forward_pre_hook(lambda module, args, kwargs: seen.append(args[0]), with_kwargs=True)
    batch = with_targets(model, contract_batch(2))
    image = batch["image"].requires_grad_(True)
    out = model(batch)
    assert len(seen) == 1 and seen[0].shape == (2, 2, 6, 8, 8)
    torch.testing.assert_close(seen[0], out["maps"])
    assert not seen[0].requires_grad  # detached maps: no path from the regression back to the image
    assert torch.autograd.grad(out["hypotheses"].sum(), image, allow_unused=True)[0] is None
    # with ground-truth maps the image is not read at all
    gt = build(stick_widths=[6, 12], regression_input="ground_truth").eval()
    batch = with_targets(gt, contract_batch(2))
    first = gt.predict(batch)["joints_3d"]
    batch["image"] = torch.rand_like(batch["image"])
    torch.testing.assert_close(gt.predict(batch)["joints_3d"], first)


def test_direct_rgb_reads_the_image_and_needs_no_targets():
    model = build(regression_input="image", stick_widths=[10])
    assert model.required_targets() == {} and model.deconv is None and model.two_d is None
    assert model.regression._template.encoder.stem[0][0].in_channels == 3
    assert model.predict(contract_batch(2))["joints_3d"].shape == (2, 17, 3)


def test_targets_render_each_width_once():
    model = build(stick_widths=[10, 10, 10])
    spec = model.required_targets()["skeleton_maps"]
    assert spec["stick_width"] == [pytest.approx(10 * 8 / 56)] and spec["size"] == 8
    batch = with_targets(model, contract_batch(2))
    assert batch["skeleton_maps"].shape == (2, 1, 6, 8, 8)
    assert model.target_maps(batch).shape == (3, 2, 6, 8, 8)


def test_crop_scales_zoom_the_input_and_the_targets_of_their_hypotheses():
    model = build(stick_widths=[10, 10, 5], crop_scales=[1.0, 1.5, 1.5])
    spec = model.required_targets()["skeleton_maps"]
    assert sorted(zip(spec["stick_width"], spec["crop_scale"])) == sorted(model.unique_configs)
    assert len(model.unique_configs) == 3
    batch = with_targets(model, contract_batch(2))
    targets = model.target_maps(batch)
    for h, (width, scale) in enumerate(zip(model.map_widths, model.crop_scales)):
        zoomed = {**batch, "joints_2d": zoom_coords(batch["joints_2d"], 32, scale)}
        alone = skeleton_maps(zoomed, 32, {"size": 8, "stick_width": width, "crop_scale": 1.0})
        torch.testing.assert_close(targets[h], alone)
    assert not torch.equal(targets[0], targets[1])  # same width, another scale: another map
    inputs, shared = model.hypothesis_inputs(batch["image"])
    assert not shared and inputs.shape == (3, 2, 3, 32, 32)
    torch.testing.assert_close(inputs[0], batch["image"])
    torch.testing.assert_close(inputs[2], zoom_images(batch["image"], 1.5))
    loss, _ = model.training_loss(batch)
    assert torch.isfinite(loss)
    assert model.predict(batch)["joints_3d"].shape == (2, 17, 3)


# -- training ----------------------------------------------------------------------------------
def test_loss_goes_down_on_a_fixed_batch():
    model = build(stick_widths=[6, 12], deconv_epochs=0, freeze_deconv=False).train()
    batch = with_targets(model, contract_batch(8, two_d_only=2))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss, logs = model.training_loss(batch)
        assert set(logs) == {"map_loss", "loss_3d"}
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0]


def test_stages_train_deconvolution_then_regression_with_it_frozen():
    model = build(stick_widths=[6, 12], deconv_epochs=1).train()
    batch = with_targets(model, contract_batch(4))
    epoch = {"value": 0}
    type(model).current_epoch = property(lambda self: epoch["value"])
    try:
        loss, logs = model.training_loss(batch)
        loss.backward()
        assert set(logs) == {"map_loss"}
        assert all(p.grad is None for p in model.regression.parameters())
        model.zero_grad(set_to_none=True)
        epoch["value"] = 1
        model.on_train_epoch_start()
        assert not model.deconv.training
        loss, logs = model.training_loss(batch)
        loss.backward()
        assert set(logs) == {"loss_3d"}
        assert all(p.grad is None for p in model.deconv.parameters())
        assert any(p.grad is not None for p in model.regression.parameters())
    finally:
        del type(model).current_epoch


def test_each_training_phase_has_its_own_learning_rate_schedule():
    """Sec. 5.1: the deconvolution networks train from 1e-5, then the regression networks from 1e-2;
    the paper preset's step schedule (x0.1 every 20 epochs) restarts with each phase, so the
    regression starts at 1e-2 after 25 deconvolution epochs."""
    from omegaconf import OmegaConf

    from harness.train import load_config
    from lightning_modules.base import build_optimizer

    cfg = load_config(["experiment=deepskeleton", "preset=paper"])
    assert (cfg.model.deconv_epochs, cfg.model.deconv_lr, cfg.optim.lr) == (25, 1e-5, 0.01)
    model = build(stick_widths=[6, 12], deconv_epochs=cfg.model.deconv_epochs, deconv_lr=cfg.model.deconv_lr)
    configured = build_optimizer(model.parameter_groups(), cfg.optim, cfg.trainer.max_epochs)
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    regression, deconv = optimizer.param_groups
    assert {id(p) for p in deconv["params"]} == {id(p) for p in model.deconv.parameters()}
    rates = {}
    for epoch in range(cfg.trainer.max_epochs):
        rates[epoch] = (regression["lr"], deconv["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0][1] == pytest.approx(1e-5) and rates[19][1] == pytest.approx(1e-5)
    assert rates[20][1] == pytest.approx(1e-6)  # the deconvolution phase's own drop
    assert rates[25][0] == pytest.approx(1e-2) and rates[44][0] == pytest.approx(1e-2)  # regression from 1e-2
    assert rates[45][0] == pytest.approx(1e-3)  # 20 regression epochs later
    # cosine: each phase anneals over its own epochs
    cosine = OmegaConf.merge(cfg.optim, {"scheduler": "cosine"})
    configured = build_optimizer(model.parameter_groups(), cosine, 50)
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    for _ in range(25):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-2) and optimizer.param_groups[1]["lr"] == pytest.approx(0.0)
    # without a separate deconvolution phase, one schedule
    assert all("epochs" not in g for g in build(stick_widths=[6, 12], deconv_epochs=0).parameter_groups())


def test_the_paper_ensemble_reads_one_skeleton_map_network():
    """Table 6: k regression networks on the maps of ONE l = 10 deconvolution network
    (``ensemble``); ``ensemble_maps`` keeps k (map, regression) pairs."""
    from harness.train import load_config

    for variant, shared in (("ensemble", True), ("ensemble_maps", False)):
        cfg = load_config(["experiment=deepskeleton", "preset=smoke", f"variant={variant}"])
        assert cfg.model.shared_deconv is shared and set(cfg.model.stick_widths) == {10.0}
    model = build(stick_widths=[10, 10, 10], shared_deconv=True, deconv_epochs=0, freeze_deconv=False).train()
    assert model.deconv.count == 1 and model.regression.count == 3
    batch = with_targets(model, contract_batch(2))
    out = model(batch)
    assert out["maps"].shape[0] == 3 and torch.equal(out["maps"][0], out["maps"][2])  # the same maps for every one
    assert out["logits"][-1].shape[0] == 1
    hypotheses = out["hypotheses"]
    assert not torch.allclose(hypotheses[0], hypotheses[1])  # independent regression networks
    loss, logs = model.training_loss(batch)
    loss.backward()
    assert set(logs) == {"map_loss", "loss_3d"} and all(p.grad is not None for p in model.deconv.parameters())
    with pytest.raises(ConfigError, match="shared_deconv"):
        build(stick_widths=[5, 10], shared_deconv=True)


def test_the_thorax_as_root():
    """Sec. 3.1 / 5: the regression target is relative to the thorax; the output stays pelvis-relative
    (the batch contract) and ``mpjpe_thorax`` scores it after aligning the thoraxes, as the paper does."""
    from harness.train import load_config

    assert load_config(["experiment=deepskeleton", "preset=paper"]).model.root == "thorax"
    model = build(stick_widths=[10], regression_input="ground_truth", root="thorax").eval()
    batch = with_targets(model, contract_batch(2))
    target = model.regression_target(batch)
    assert torch.allclose(target[:, 8], torch.zeros(2, 3))
    assert torch.allclose(target - target[:, :1], batch["joints_3d"] - batch["joints_3d"][:, :1])
    out = model(batch)
    assert torch.allclose(out["hypotheses"][..., 0, :], torch.zeros(1, 2, 3))
    assert torch.allclose(out["hypotheses"] - out["regressed"], -out["regressed"][..., :1, :].expand_as(out["regressed"]))
    metrics = {name: metric.clone() for name, metric in model.method_metrics().items()}
    prediction = model.predict(batch)
    model.update_method_metrics(metrics, batch, prediction, "val")
    thorax_aligned = lambda j: j - j[:, 8:9]  # noqa: E731
    expected = (thorax_aligned(prediction["joints_3d"]) - thorax_aligned(batch["joints_3d"])).norm(dim=-1).mean()
    assert metrics["mpjpe_thorax"].compute() == pytest.approx(expected.item(), rel=1e-5)


# -- configuration ------------------------------------------------------------------------------
def test_config_choices_and_errors():
    assert select_widths(range(5, 16), 5) == [5, 7, 10, 13, 15]
    assert select_widths([10] * 11, 3) == [10, 10, 10]
    assert select_widths([5, 10], None) == [5, 10]
    with pytest.raises(ConfigError, match="crop_scales"):
        build(stick_widths=[5, 10, 15], crop_scales=[1.0, 1.25])  # neither one nor one per width
    with pytest.raises(ConfigError, match="crop_scales"):
        build(crop_scales=[0.0])
    with pytest.raises(ConfigError, match="stick_widths"):
        build(stick_widths=[])
    model = build(stick_widths=[10], width_unit="input_224")
    assert model.map_width(10) == pytest.approx(10 * 32 / 224 / 4)


def test_prerequisites_only_when_there_is_a_choice():
    from omegaconf import OmegaConf

    def cfg(**model):
        return OmegaConf.create({"model": {"two_d": {"source": "predicted", "checkpoint": None, "experiment": "heatmap2d"},
                                           "max_hypotheses": None, **model}})

    assert DeepSkeleton.prerequisites(cfg(stick_widths=[10])) == []
    needs = DeepSkeleton.prerequisites(cfg(stick_widths=[5, 10]))
    assert len(needs) == 1 and isinstance(needs[0], TrainedRun) and needs[0].experiment == "heatmap2d"
    assert DeepSkeleton.prerequisites(cfg(stick_widths=[5, 10], max_hypotheses=1)) == []
    sized = DeepSkeleton.prerequisites(cfg(stick_widths=[5, 10], two_d_overrides=["trainer.max_epochs=3"], two_d_train_size=100))
    assert sized[0].overrides == ("trainer.max_epochs=3",) and sized[0].data_overrides == {"train_size": 100}


@pytest.mark.slow
def test_paper_preset_shapes_on_the_meta_device():
    from harness.train import load_config

    cfg = load_config(["experiment=deepskeleton", "preset=paper", "variant=multi_hyp", "model.two_d.source=ground_truth"])
    assert cfg.data.image_size == 224 and cfg.model.encoder == "resnet50"
    with torch.device("meta"):
        model = DeepSkeleton(dict(cfg.model), dict(cfg.optim), {"image_size": cfg.data.image_size})
        assert model.hypotheses == 11 and model.map_size == 56
        assert model.map_widths == pytest.approx([w / 4 for w in range(5, 16)])
        logits = model.deconv_logits(torch.empty(2, 3, 224, 224))
        assert [tuple(x.shape) for x in logits] == [(11, 2, 6, 14, 14), (11, 2, 6, 28, 28), (11, 2, 6, 56, 56)]
        hypotheses = model.regress(torch.empty(11, 2, 6, 56, 56), shared=False)
        assert tuple(hypotheses.shape) == (11, 2, 17, 3)
    assert model.regression._template.input_size == 224


def test_ablation_summary_checks_the_orderings(tmp_path):
    import yaml

    values = {"direct_rgb": 120.0, "one_map": 110.0, "ensemble": 105.0, "multi_hyp": 95.0,
              "gt_maps_one": 80.0, "gt_maps_multi": 75.0}
    dirs = []
    for variant, mpjpe in values.items():
        run = tmp_path / variant
        run.mkdir()
        (run / "config.yaml").write_text(yaml.safe_dump({"variant": variant, "seed": 0}))
        (run / "metrics.json").write_text(json.dumps({"test/mpjpe": mpjpe, "test/oracle_mpjpe": mpjpe - 20,
                                                      "test/reprojection_error": 3.0, "test/oracle_hit": 0.5}))
        dirs.append(run)
    (tmp_path / "multi_hyp" / "figure4.png").write_bytes(b"png")
    text = summarise_runs(dirs, tmp_path / "out", {"values": {"multi_hyp": 86.5}, "oracle": {"multi_hyp": 68.3}})
    assert "direct_rgb > one_map > ensemble > multi_hyp in mean test MPJPE (the paper's, Tables 2 and 6): holds" in text
    assert "95.0 (86.5)" in text and "75.0 (68.3)" in text
    assert "Table 5" in text and math.isfinite(values["multi_hyp"])
    assert (tmp_path / "out" / "hypotheses.md").is_file() and (tmp_path / "out" / "figure4.png").read_bytes() == b"png"
