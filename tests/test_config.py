"""The command line's contract: unknown keys and bad values exit 2 with one line naming them."""
from __future__ import annotations

import pytest

from pose3d.config import ConfigError, run_name
from harness.train import load_config, main


def test_layers_apply_in_order():
    cfg = load_config(["experiment=baseline", "preset=smoke", "optim.lr=0.5"])
    assert cfg.data.image_size == 32  # experiment preset block beats the experiment body (64)
    assert cfg.data.train_size == 64  # global smoke preset
    assert cfg.optim.lr == 0.5  # command line last
    assert cfg.model.backbone == "small"
    assert run_name(cfg) == "baseline-default-smoke-s0"


@pytest.mark.parametrize(
    "arg, expected",
    [
        ("trainer.max_epoch=3", "unknown config key 'trainer.max_epoch'"),
        ("model.backbon=small", "unknown config key 'model.backbon'"),
        ("model.backbone=vgg", "bad value for model.backbone: 'vgg'; choose one of: small, resnet18, resnet50"),
        ("trainer.max_epochs=many", "bad value for trainer.max_epochs"),
        ("logger=none", "bad value for logger (command line): logger is a section of settings; expected logger.<key>=<value>"),
        ("preset=huge", "bad value for preset: 'huge'; choose one of: smoke, quick, paper"),
        ("experiment=nope", "unknown experiment 'nope'; choose one of: baseline"),
        ("data.train_domain=moon", "choose one of: studio, wild, mixed"),
        ("seed", "bad argument 'seed': expected key=value"),
    ],
)
def test_bad_config_exits_2_with_one_line(arg, expected, capsys):
    args = ["experiment=baseline", arg] if not arg.startswith("experiment") else [arg]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err
    assert len(err.splitlines()) == 1
    assert "Traceback" not in err


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError, match=r"valid keys under 'trainer': max_epochs, max_steps"):
        load_config(["experiment=baseline", "trainer.epochs=2"])


def test_bad_config_from_the_command_line_process(tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "pose3d.train", "experiment=baseline", "trainer.foo=1"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "unknown config key 'trainer.foo'" in result.stderr


def test_a_preset_block_for_one_data_module(tmp_path, monkeypatch):
    """``presets.<preset>.for_data.<data.name>``: settings only that DataModule has, applied after
    the preset and before the variant and the command line (DeepSkeleton's paper test frames)."""
    import pose3d.config as config
    from harness.train import load_config

    paper = ["experiment=deepskeleton", "preset=paper"]
    synthetic = load_config(paper)
    assert (synthetic.data.crop_scale_jitter, synthetic.data.flip, synthetic.data.batch_size) == (0.0, False, 12)
    human36m = load_config([*paper, "data.name=human36m", "data.root=/data/h36m"])
    assert (human36m.data.test_every, human36m.data.rotation_deg, human36m.data.scale_jitter) == (64, 0.0, 0.0)
    assert load_config([*paper, "data.name=human36m", "data.test_every=5"]).data.test_every == 5
    assert load_config(["experiment=deepskeleton", "preset=quick"]).data.crop_scale_jitter == 0.1
    (tmp_path / "odd.yaml").write_text("model: {name: baseline}\npresets:\n  smoke:\n    for_data: {imagenet: {data: {}}}\n")
    monkeypatch.setattr(config, "EXPERIMENTS_DIR", tmp_path)
    with pytest.raises(ConfigError, match="for_data names 'imagenet'; expected data names: .*human36m"):
        load_config(["experiment=odd", "preset=smoke"])
