"""The Tekin 2017 LightningModule (Eq. 4 loss, variants, analyses) and the shared heatmap network."""
from __future__ import annotations

import json

import pytest
import torch

from lightning_modules.heatmap2d import HeatmapNetwork
from lightning_modules.tekin_fusion import TrainableFusion
from lightning_modules.tekin_analysis import analyse
from pose3d.config import ConfigError
from tests.helpers import OPTIM, random_batch

INFO = {"num_joints": 17, "image_size": 32, "action_names": ("a", "b")}


def fusion(**model) -> TrainableFusion:
    torch.manual_seed(0)
    cfg = {"conv_widths": [4, 8], "fc_widths": [16], "two_d": {"source": "ground_truth"}, **model}
    return TrainableFusion(model=cfg, optim=OPTIM, data_info=INFO)


def batch(size: int = 4) -> dict[str, torch.Tensor]:
    return random_batch(size, seed=2, two_d_only=1)


def test_eq4_loss_is_squared_error_in_mm2_plus_lambda_over_alpha_squared():
    model = fusion(penalty_lambda=5e3, alpha_init=0.1).eval()  # no dropout: two passes agree
    data = batch()
    loss, logs = model.training_loss(data)
    prediction = model(model.stream_inputs(data))
    squared = (prediction - data["joints_3d"]).pow(2).sum(dim=(1, 2))[:3].mean()  # the 2D-only sample is left out
    assert logs["penalty"].item() == pytest.approx(5e3 / 0.1**2, rel=1e-5)
    assert loss.item() == pytest.approx(squared.item() + 5e5, rel=1e-5)


def test_fixed_variants_have_no_penalty_and_no_fusion_parameters():
    for variant in ("image_only", "cm_only", "early", "late", "fixed"):
        model = fusion(fusion=variant)
        loss, logs = model.training_loss(batch())
        assert logs == {} and torch.isfinite(loss)
        assert not any("alpha" in n or "beta" in n for n, _ in model.named_parameters())
    assert "cms" not in fusion(fusion="image_only").network.streams
    assert "image" not in fusion(fusion="cm_only").network.streams


def test_training_step_moves_alpha_up_and_beta():
    model = fusion(fusion_lr=0.05)
    groups = [{"params": [p for n, p in model.named_parameters() if "weights." not in n]},
              {"params": list(model.network.weights.parameters()), "lr": 0.05}]
    optimizer = torch.optim.Adam(groups, lr=1e-3)
    alpha0, beta0 = model.network.weights.alpha.item(), model.network.weights.beta.item()
    for _ in range(5):
        optimizer.zero_grad()
        model.training_loss(batch())[0].backward()
        optimizer.step()
    assert model.network.weights.alpha.item() > alpha0 + 0.1  # the penalty sharpens the sigmoid
    assert model.network.weights.beta.item() != beta0


def test_bad_fixed_beta_is_a_config_error():
    with pytest.raises(ConfigError, match="model.fixed_beta: 7; expected 0..3"):
        fusion(fusion="fixed", fixed_beta=7)


def test_predicted_source_needs_a_checkpoint():
    with pytest.raises(ConfigError, match="model.two_d.checkpoint"):
        fusion(two_d={"source": "predicted"})


def test_analysis_writes_pruning_and_correlation(tmp_path):
    model = fusion().eval()
    with torch.no_grad():
        model.network.weights.alpha.fill_(80.0)
        model.network.weights.beta.fill_(1.5)
    result = analyse(model, model.stream_inputs(batch(8)), tmp_path)
    pruning = result["pruning"]
    assert pruning["prunable"] and pruning["pruned_parameters"] < pruning["parameters"]
    assert pruning["max_output_difference_mm"] < 1e-2
    assert 0 <= result["feature_correlation"]["mean_r2_across_streams"] <= 1
    assert (tmp_path / "feature_correlation.png").is_file()
    assert json.loads((tmp_path / "fusion_analysis.json").read_text())["beta"] == pytest.approx(1.5)


def test_heatmap_network_learns_a_fixed_batch():
    torch.manual_seed(0)
    model = HeatmapNetwork(model={"stacks": 2, "channels": 16, "depth": 2}, optim=OPTIM, data_info=INFO)
    assert model.required_targets() == {"heatmaps": {"size": 8, "sigma": 1.0}}
    data = batch()
    outputs = model(data["image"])
    assert len(outputs) == 2 and outputs[-1].shape == (4, 17, 8, 8)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(15):
        optimizer.zero_grad()
        loss, _ = model.training_loss(data)
        loss.backward()
        optimizer.step()
        first = loss.item() if first is None else first
    assert loss.item() < 0.5 * first
    assert model.predict(data)["joints_2d"].shape == (4, 17, 2)


def test_paper_preset_builds_the_authors_layer_shapes():
    """Tekin et al.'s released code: conv 9x9/36, 5x5/72, 5x5/72 with 2x2 max-pools, fc 2048, 2048,
    512, 512, 51 per data stream (L = 8), a fusion stream of twice the width, 128 px inputs."""
    from harness.train import load_config
    from lightning_modules.blocks.fusion import FusionNetwork, SigmoidFusionWeights, count_parameters

    m = load_config(["experiment=tekin_fusion", "preset=paper"]).model
    assert (m.beta_init, m.fusion_lr, m.two_d.source) == (4.6, None, "predicted")
    with torch.device("meta"):
        network = FusionNetwork({"image": 3, "cms": 17}, list(m.conv_widths), list(m.fc_widths), 128, 51,
                                SigmoidFusionWeights(8, 0.1, 4.6), list(m.dropout), list(m.conv_kernels))
    image = network.streams["image"]
    convs = [layer[0] for layer in image[:3]]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(3, 36, (9, 9)), (36, 72, (5, 5)), (72, 72, (5, 5))]
    assert all(isinstance(layer[1], torch.nn.MaxPool2d) for layer in image[:3])
    linears = [layer[1] for layer in image[3:]]
    assert [(l.in_features, l.out_features) for l in linears] == [(72 * 16 * 16, 2048), (2048, 2048), (2048, 512), (512, 512), (512, 51)]
    assert [layer[3].p for layer in image[3:]] == [0.5, 0.5, 0.0, 0.0, 0.0]
    assert network.num_layers == 8
    fusion_widths = [network.fusion[str(l)][0].out_channels for l in (1, 2, 3)]
    assert fusion_widths == [72, 144, 144]  # twice one stream's 36, 72, 72
    assert [network.fusion[str(l)][1].out_features for l in range(4, 10)] == [4096, 4096, 1024, 1024, 102, 51]
    # by hand: image stream 43,488,371 (fc1 18432 x 2048 alone 37.75M), CM stream 43,529,195 (17 input
    # channels), fusion stream 174,029,683 (its fc1 36864 x 4096: 151.0M), alpha and beta 2
    assert count_parameters(network) == 43_488_371 + 43_529_195 + 174_029_683 + 2


def test_paper_preset_reads_64_px_confidence_maps_of_a_pretrained_hourglass():
    """The hourglass reads the 256 px crop (64 x 64 maps, after pre-training on 2D-only data);
    the streams read 128 px: the image resized, the maps upsampled."""
    from harness.prerequisites import trained_run_config
    from harness.train import load_config
    from lightning_modules.heatmap2d import HeatmapNetwork
    from lightning_modules.tekin_fusion import TrainableFusion

    cfg = load_config(["experiment=tekin_fusion", "preset=paper"])
    assert cfg.data.image_size == 256 and cfg.model.input_size == 128 and cfg.data.batch_size == 128
    [two_d] = TrainableFusion.prerequisites(cfg)
    heatmap_cfg = trained_run_config(two_d, cfg)
    assert heatmap_cfg.data.image_size == 256 and heatmap_cfg.model.pretrain_2d == "auto"
    with torch.device("meta"):
        heatmap = HeatmapNetwork(dict(heatmap_cfg.model), dict(heatmap_cfg.optim), {"num_joints": 17, "image_size": 256})
    assert heatmap.heatmap_size == 64 and heatmap.cfg.stacks == 8
    [pretrain] = HeatmapNetwork.prerequisites(heatmap_cfg)  # the synthetic data: its wild domain's 2D
    assert pretrain.data_overrides == {"train_domain": "wild"}
    model = TrainableFusion({**dict(cfg.model), "conv_widths": [4, 4, 4], "fc_widths": [8, 8, 8, 8, 51],
                             "two_d": {"source": "ground_truth"}},
                            dict(cfg.optim), {"num_joints": 17, "image_size": 256})
    batch = {"image": torch.rand(2, 3, 256, 256)}
    inputs = model.stream_inputs(batch, maps=torch.rand(2, 17, 64, 64))
    assert inputs["image"].shape == (2, 3, 128, 128) and inputs["cms"].shape == (2, 17, 128, 128)
