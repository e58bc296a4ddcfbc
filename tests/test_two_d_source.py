"""The frozen 2D network of ``model.two_d`` (lightning_modules/blocks/two_d_source.py): loading a
checkpoint and its float32 / bfloat16 forward."""
from __future__ import annotations

import lightning
import pytest
import torch
from omegaconf import OmegaConf

import lightning_modules.blocks.two_d_source as two_d_source
from harness.train import load_config
from lightning_modules.blocks.two_d_source import TwoDSource, TwoDSourceConfig
from lightning_modules.heatmap2d import HeatmapNetwork
from pose3d.config import ConfigError

SIZE = 32


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A Lightning checkpoint of a small stacked hourglass, as ``python -m pose3d.train`` writes one."""
    torch.manual_seed(0)
    network = HeatmapNetwork(model={"name": "heatmap2d", "stacks": 1, "channels": 16, "depth": 2},
                             optim={"name": "adam", "lr": 1e-3},
                             data_info={"num_joints": 17, "image_size": SIZE, "action_names": ()})
    path = tmp_path_factory.mktemp("two_d") / "heatmap2d.ckpt"
    torch.save({"state_dict": network.state_dict(), "hyper_parameters": dict(network.hparams),
                "pytorch-lightning_version": lightning.__version__}, path)
    return str(path)


def source(checkpoint: str, precision: str) -> TwoDSource:
    cfg = OmegaConf.structured(TwoDSourceConfig(checkpoint=checkpoint, precision=precision))
    return TwoDSource(cfg, SIZE)


def test_bfloat16_forward_returns_float32_maps_within_bfloat16_rounding(checkpoint, monkeypatch):
    monkeypatch.setattr(two_d_source, "cpu_has_native_bfloat16", lambda: True)
    batch = {"image": torch.rand(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))}
    exact, rounded = (source(checkpoint, p).maps(batch) for p in ("float32", "bfloat16"))
    assert rounded.dtype == torch.float32 and rounded.shape == exact.shape == (4, 17, SIZE // 4, SIZE // 4)
    assert not torch.equal(rounded, exact)  # the forward did run in bfloat16
    scale = exact.abs().max()
    assert (rounded - exact).abs().max() <= 0.05 * scale  # 8-bit mantissa through a few layers; a bug is O(scale)
    assert not any(p.requires_grad for p in source(checkpoint, "bfloat16").parameters())


def test_bfloat16_on_a_cpu_without_it_warns_and_names_float32(checkpoint, monkeypatch):
    monkeypatch.setattr(two_d_source, "cpu_has_native_bfloat16", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match="expected model.two_d.precision=float32"):
        source(checkpoint, "bfloat16")


@pytest.mark.parametrize("native, accelerator, cuda, expected", [
    (True, "cpu", False, "bfloat16"), (False, "cpu", False, "float32"), (False, "auto", False, "float32"),
    (False, "auto", True, "bfloat16"), (False, "gpu", False, "bfloat16"),
])
def test_auto_precision_is_resolved_into_the_run_config(monkeypatch, native, accelerator, cuda, expected):
    monkeypatch.setattr(two_d_source, "cpu_has_native_bfloat16", lambda: native)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    cfg = load_config(["experiment=tekin_fusion", "preset=quick", f"trainer.accelerator={accelerator}"])
    assert cfg.model.two_d.precision == "auto"  # the quick preset's default
    two_d_source.resolve_auto_precision(cfg)
    assert cfg.model.two_d.precision == expected
    fixed = load_config(["experiment=tekin_fusion", "preset=quick", "model.two_d.precision=float32"])
    two_d_source.resolve_auto_precision(fixed)
    assert fixed.model.two_d.precision == "float32"  # an explicit choice stays


def test_an_unknown_precision_is_a_config_error():
    with pytest.raises(ConfigError, match="model.two_d.precision"):
        load_config(["experiment=tekin_fusion", "model.two_d.precision=float16"])


@pytest.mark.slow
def test_precision_bench_trains_the_smoke_chain_and_reports_both_forwards(tmp_path):
    from harness.bench import bench_two_d_precision

    result = bench_two_d_precision("smoke", batches=2, rounds=1, device="cpu",
                                   overrides=(f"results_dir={tmp_path}", "logger.wandb=false"))
    assert result["test_images"] == 2 * result["batch_size"] and result["map_size"] == result["image_size"] // 4
    assert set(result["error_2d_px"]) == {"float32", "bfloat16"} and all(v > 0 for v in result["error_2d_px"].values())
    assert 0 <= result["joints_moved_px"]["mean"] <= result["joints_moved_px"]["max"]
    assert 0 < result["max_abs_map_difference"] < 1
    for label in ("default_threads", "one_thread"):
        assert result[label]["bfloat16_images_per_s"] > 0 and result[label]["float32_images_per_s"] > 0
