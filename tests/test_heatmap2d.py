"""The shared heatmap network's pre-training chain (Tekin et al. 2017 Sec. 3.2: an MPII-trained
hourglass fine-tuned on the target data)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from harness.prerequisites import trained_run_config
from harness.train import load_config, main
from lightning_modules.heatmap2d import HeatmapNetwork
from pose3d.config import ConfigError


def config(data: str = "synthetic", **model):
    return OmegaConf.create({"init_from": None, "data": {"name": data},
                             "model": {**HeatmapNetwork.Config().__dict__, **model}})


def test_pre_training_is_declared_on_the_data_s_2d_only_part():
    assert HeatmapNetwork.prerequisites(config()) == []  # off by default
    [run] = HeatmapNetwork.prerequisites(config(pretrain_2d="always", channels=48))
    assert run.experiment == "heatmap2d" and run.into == "init_from" and run.same_data
    assert run.data_overrides == {"train_domain": "wild"}
    assert "model.pretrain_2d=never" in run.overrides and "model.channels=48" in run.overrides
    assert HeatmapNetwork.prerequisites(config("mixed", pretrain_2d="always"))[0].data_overrides == {"ratio_3d": 0.0}
    cfg = config(pretrain_2d="always")
    cfg.init_from = "/a/run"  # already initialised: nothing to pre-train
    assert HeatmapNetwork.prerequisites(cfg) == []


def test_real_data_names_its_2d_data_or_gets_a_clear_error():
    with pytest.raises(ConfigError, match="model.pretrain_overrides"):
        HeatmapNetwork.prerequisites(config("human36m", pretrain_2d="always"))
    assert HeatmapNetwork.prerequisites(config("human36m", pretrain_2d="auto")) == []  # the paper preset: scratch
    assert len(HeatmapNetwork.prerequisites(config(pretrain_2d="auto"))) == 1
    [run] = HeatmapNetwork.prerequisites(config("human36m", pretrain_2d="always",
                                                pretrain_overrides=["data.name=mpii", "data.root=/data/mpii"]))
    assert not run.same_data and run.overrides[-2:] == ("data.name=mpii", "data.root=/data/mpii")


def test_the_pre_training_run_sees_the_wild_domain_and_does_not_recurse():
    consumer = load_config(["experiment=heatmap2d", "preset=smoke", "model.pretrain_2d=always"])
    [run] = HeatmapNetwork.prerequisites(consumer)
    cfg = trained_run_config(run, consumer)
    assert cfg.data.train_domain == "wild" and cfg.data.image_size == consumer.data.image_size
    assert cfg.model.pretrain_2d == "never" and HeatmapNetwork.prerequisites(cfg) == []


def test_a_pre_trained_run_starts_from_the_2d_only_run(tmp_path, smoke_args, capsys):
    assert main(["experiment=heatmap2d", "model.pretrain_2d=always", "trainer.max_epochs=1", *smoke_args]) == 0
    assert "training prerequisite run heatmap2d-smoke-" in capsys.readouterr().out
    config = yaml.safe_load((tmp_path / "runs" / "heatmap2d-default-smoke-s0" / "config.yaml").read_text())
    [record] = config["prerequisites"]
    assert record["into"] == "init_from" and config["init_from"] == record["path"] and Path(record["path"]).is_file()
    first = yaml.safe_load((Path(record["path"]).parents[1] / "config.yaml").read_text())
    assert first["data"]["train_domain"] == "wild" and first["model"]["pretrain_2d"] == "never"


@pytest.mark.slow
def test_each_run_of_the_chain_logs_to_its_own_wandb_run(tmp_path, smoke_args):
    # in a child process: W&B's service and its WANDB_SERVICE variable must not outlive the test
    import os
    import subprocess
    import sys

    from pose3d.config import REPO_ROOT

    args = [a for a in smoke_args if a != "logger.wandb=false"] + ["logger.wandb=true"]
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"} | {"WANDB_MODE": "offline"}
    command = [sys.executable, "-m", "pose3d.train", "experiment=heatmap2d", "model.pretrain_2d=always",
               "trainer.max_epochs=1", *args]
    done = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    runs = sorted(p for p in (tmp_path / "runs").iterdir() if p.is_dir())
    assert len(runs) == 2  # the pre-training and the fine-tuning
    ids = [[r.name for r in run.glob("wandb/offline-run-*")] for run in runs]
    assert all(len(i) == 1 for i in ids) and ids[0] != ids[1]  # the fine-tuning did not log into the first run


def test_channels_last_computes_the_same_maps_and_gradients():
    import torch

    info = {"num_joints": 16, "image_size": 32, "action_names": ()}
    optim = {"name": "adam", "lr": 1e-3}
    small = {"stacks": 2, "channels": 16, "depth": 2}
    torch.manual_seed(0)
    plain = HeatmapNetwork(model={**small, "channels_last": False}, optim=optim, data_info=info)
    fast = HeatmapNetwork(model={**small, "channels_last": True}, optim=optim, data_info=info)
    fast.load_state_dict(plain.state_dict())
    assert next(fast.network.parameters()).dim() == 4 and fast.network.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    image = torch.randn(3, 3, 32, 32)
    outputs = [network(image) for network in (plain, fast)]
    for a, b in zip(*outputs):
        assert b.is_contiguous() and torch.allclose(a, b, atol=1e-4)  # float rounding, amplified by batch-3 BN
    for network, maps in zip((plain, fast), outputs):
        sum(m.square().sum() for m in maps).backward()
    grad = {name: p.grad for name, p in plain.named_parameters()}
    for name, p in fast.named_parameters():
        assert (p.grad - grad[name]).norm() <= 1e-3 * grad[name].norm() + 1e-2, name  # rounding; a bug is O(1)


def test_the_hourglass_reads_sizes_that_halve_to_an_odd_map():
    """224 px (DeepSkeleton's paper crops) with depth 4: 56 -> 28 -> 14 -> 7 -> 3; each level comes
    back to its skip's size, so the maps are a quarter of the input."""
    import torch

    from lightning_modules.blocks.hourglass import StackedHourglass

    network = StackedHourglass(17, stacks=1, channels=8, depth=4)
    assert network(torch.rand(1, 3, 224, 224))[-1].shape == (1, 17, 56, 56)
