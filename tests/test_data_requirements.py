"""What a run's data must give, checked before anything trains: a method that learns 3D from
labels refuses 2D-only training data, and a split the run reads must not be empty."""
from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from datamodules import DATAMODULES
from harness.data_requirements import check_data
from harness.train import load_config, main
from lightning_modules import MODELS
from pose3d.config import ConfigError
from tests.fixtures_h36m import write_poses_layout
from tests.test_mpii_lsp import lsp_layout  # noqa: F401  (the tiny LSP layout, a fixture)


def datamodule(args: list[str]):
    cfg = load_config(args)
    return cfg, DATAMODULES.load(cfg.data.name)(OmegaConf.to_container(cfg.data))


def nothing_trained(results) -> bool:
    return not list(results.rglob("*.ckpt")) and not list(results.rglob("metrics.json"))


def test_the_methods_that_learn_3d_from_labels():
    """2D networks and Tome's lifting (its 3D comes from the pose prior, Sec. 4) train on 2D labels alone."""
    assert {name: MODELS.load(name).needs_3d for name in MODELS} == {
        "baseline": True, "heatmap2d": False, "tekin_fusion": True, "tome_lifting": False, "park_multiroot": True,
        "habibie_projection": True, "habibie_2d_pretrain": False, "deepskeleton": True}


def test_which_training_data_has_3d_labels(lsp_layout):
    base = ["experiment=baseline", "preset=smoke", "data.image_size=32"]
    lsp = ["data.name=lsp", f"data.root={lsp_layout[0]}"]
    mixed = ["data.name=mixed", "data.sources.three_d={name: synthetic}",
             f"data.sources.two_d={{name: lsp, root: {lsp_layout[0]}}}"]
    assert datamodule(base)[1].train_has_3d
    assert not datamodule([*base, "data.train_domain=wild"])[1].train_has_3d
    assert datamodule([*base, "data.train_domain=mixed"])[1].train_has_3d
    assert not datamodule([*base, *lsp])[1].train_has_3d
    assert datamodule([*base, *mixed])[1].train_has_3d
    assert not datamodule([*base, *mixed, "data.ratio_3d=0.0"])[1].train_has_3d  # batches draw no 3D sample
    assert not datamodule([*base, *mixed, "data.ratio_3d=0.01"])[1].train_has_3d  # round(0.01 * 16) = 0 of them


def test_a_3d_method_on_2d_only_data_is_refused_before_training(lsp_layout, smoke_args, tmp_path, capsys):
    args = ["experiment=baseline", *smoke_args, "data.name=lsp", f"data.root={lsp_layout[0]}", "data.image_size=32"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("error: experiment=baseline (model.name=baseline) learns 3D from 3D labels, but the training "
                          "split of data.name=lsp has none;")
    assert "data.name=mixed, which gives both" in err
    assert nothing_trained(tmp_path)
    # a 2D network on the same data is fine
    cfg, dm = datamodule(["experiment=heatmap2d", *args[1:]])
    check_data(MODELS.load(cfg.model.name), dm, cfg)


def test_the_refusal_comes_before_a_prerequisite_is_trained(smoke_args, tmp_path, capsys):
    """Tekin's fusion on the synthetic wild domain (2D only) would first train its heatmap network."""
    assert main(["experiment=tekin_fusion", *smoke_args, "data.train_domain=wild"]) == 2
    assert "the training split of data.name=synthetic has none" in capsys.readouterr().err
    assert nothing_trained(tmp_path)


@pytest.fixture
def short_sequences(tmp_path):
    """Human3.6M poses of 8 frames a sequence: the default validation (the last 10 % of each) is empty."""
    root = tmp_path / "h36m"
    write_poses_layout(root, num_frames=8, subjects=(1, 9, 11))
    return ["data.name=human36m", f"data.root={root}", "data.layout=poses", "data.image_size=32"]


def test_an_empty_split_stops_the_run_before_training(short_sequences, smoke_args, tmp_path, capsys):
    assert main(["experiment=baseline", *smoke_args, *short_sequences]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: the val split of {tmp_path / 'h36m'} is empty (0 frames)")
    assert nothing_trained(tmp_path)


def test_only_the_splits_a_run_reads_must_have_samples(short_sequences):
    base = ["experiment=baseline", "preset=smoke", *short_sequences]
    method = MODELS.load("baseline")
    cfg, dm = datamodule(base)
    with pytest.raises(ConfigError, match="the val split of .* is empty"):
        check_data(method, dm, cfg)
    cfg, dm = datamodule([*base, "trainer.limit_val_batches=0"])  # no validation
    check_data(method, dm, cfg)
    cfg, dm = datamodule([*base, "test_only=true"])  # the test split only
    check_data(method, dm, cfg)
    cfg, dm = datamodule([*base, "data.actions=[Eating]"])  # a filter that leaves nothing to train on
    with pytest.raises(ConfigError, match=r"the train split of .* has no record of data.actions=\['Eating'\]"):
        check_data(method, dm, cfg)
