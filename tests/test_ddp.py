"""Lightning DDP on CPU: two processes give the same test metrics as one (torchmetrics sync)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def train(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "pose3d.train", "experiment=baseline", "preset=smoke",
               f"results_dir={tmp_path}", "trainer.accelerator=cpu", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.slow
def test_two_processes_report_the_metrics_of_one(tmp_path):
    single = train(tmp_path, "name=one")
    assert single.returncode == 0, single.stderr[-2000:]
    checkpoint = tmp_path / "runs" / "one" / "checkpoints" / "best.ckpt"
    # evaluate the same checkpoint on 2 processes; test_size 32 splits evenly, so no padding
    double = train(tmp_path, "name=two", "test_only=true", f"ckpt_path={checkpoint}",
                   "trainer.devices=2", "trainer.strategy=ddp")
    assert double.returncode == 0, double.stderr[-2000:]
    one = json.loads((tmp_path / "runs" / "one" / "metrics.json").read_text())
    two = json.loads((tmp_path / "runs" / "two" / "metrics.json").read_text())
    for key in ("test/mpjpe", "test/pa_mpjpe", "test/pck3d", "test/auc3d"):
        assert two[key] == pytest.approx(one[key], rel=1e-5), key
    for action, values in one["per_action"].items():
        assert two["per_action"][action]["mpjpe"] == pytest.approx(values["mpjpe"], rel=1e-5)
