"""The train command end to end on the smoke preset: outputs, resume, protection of earlier results."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from harness.train import main


def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "runs" / "baseline-default-smoke-s0"


def test_smoke_run_writes_config_metrics_and_checkpoints(tmp_path, smoke_args, capsys):
    assert main(["experiment=baseline", *smoke_args]) == 0
    folder = run_dir(tmp_path)
    assert (folder / "config.yaml").is_file()
    assert (folder / "checkpoints" / "last.ckpt").is_file()
    assert (folder / "checkpoints" / "best.ckpt").is_file()
    metrics = json.loads((folder / "metrics.json").read_text())
    for key in ("test/mpjpe", "test/pa_mpjpe", "test/n_mpjpe", "test/pck3d", "test/auc3d"):
        assert key in metrics and metrics[key] == metrics[key]  # present and not NaN
    assert metrics["test/pa_mpjpe"] <= metrics["test/mpjpe"]
    assert set(metrics["per_action"]) <= {"standing", "walking", "sitting", "crouching", "reaching", "bending"}
    assert f"{os.cpu_count()} cores" in metrics["machine"]  # the CPU that fit_seconds was measured on
    assert "test/mpjpe" in capsys.readouterr().out  # the printed table


def test_resume_continues_from_the_last_step(tmp_path, smoke_args):
    assert main(["experiment=baseline", *smoke_args]) == 0
    last = run_dir(tmp_path) / "checkpoints" / "last.ckpt"
    steps_first = torch.load(last, weights_only=False)["global_step"]
    assert steps_first > 0
    assert main(["experiment=baseline", *smoke_args, "ckpt_path=last", "trainer.max_epochs=2"]) == 0
    steps_second = torch.load(last, weights_only=False)["global_step"]
    assert steps_second == 2 * steps_first
    metrics = json.loads((run_dir(tmp_path) / "metrics.json").read_text())
    assert metrics["global_step"] == steps_second


def test_earlier_results_are_never_overwritten_by_accident(tmp_path, smoke_args, capsys):
    assert main(["experiment=baseline", *smoke_args]) == 0
    before = (run_dir(tmp_path) / "metrics.json").read_text()
    capsys.readouterr()
    assert main(["experiment=baseline", *smoke_args]) == 2
    err = capsys.readouterr().err
    assert "already holds" in err and "ckpt_path=last" in err
    assert (run_dir(tmp_path) / "metrics.json").read_text() == before


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path, smoke_args, capsys):
    assert main(["experiment=baseline", *smoke_args, "ckpt_path=last"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_run_folder(tmp_path, smoke_args, capsys, monkeypatch):
    from lightning_modules.baseline import DirectRegression

    monkeypatch.setattr(DirectRegression, "training_loss", lambda self, batch: (torch.tensor(float("nan")), {}))
    assert main(["experiment=baseline", *smoke_args]) == 1
    err = capsys.readouterr().err
    assert "training loss is nan" in err and "expected a finite loss" in err
    assert (run_dir(tmp_path) / "config.yaml").is_file()
