"""`make gpu-check`: a message and exit 0 without CUDA; the measuring code itself runs on the CPU."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from pose3d.config import REPO_ROOT

needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the check would measure")


@needs_no_cuda
def test_without_cuda_the_check_says_so_writes_nothing_and_exits_0(tmp_path):
    out = tmp_path / "gpu.json"
    result = subprocess.run([sys.executable, "-m", "harness.gpu_check", "--out", str(out)],
                            capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    assert "gpu-check: no CUDA device on this machine" in result.stdout and not out.exists()


@needs_no_cuda
def test_make_gpu_check_exits_0_with_the_message():
    if subprocess.run(["make", "-q", "install"], cwd=REPO_ROOT).returncode != 0:
        pytest.skip("the venv is not installed from the current pyproject/Makefile: make would install first")
    result = subprocess.run(["make", "--no-print-directory", "gpu-check"], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    assert "no CUDA device" in result.stdout


@pytest.mark.slow
def test_the_measurements_run_on_the_cpu_and_write_the_report(tmp_path):
    out = tmp_path / "gpu.json"
    args = ["--device", "cpu", "--preset", "smoke", "--experiments", "baseline,tekin_fusion", "--steps", "1",
            "--warmup", "1", "--workers", "0", "--loader-batches", "1", "--out", str(out)]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    result = subprocess.run([sys.executable, "-m", "harness.gpu_check", *args], capture_output=True, text=True,
                            cwd=REPO_ROOT, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert set(report["experiments"]) == {"baseline", "tekin_fusion"}
    for name, entry in report["experiments"].items():
        assert set(entry["modes"]) == {"fp32", "bf16_channels_last"}, name
        assert entry["step_images_per_s"] > 0 and entry["pipeline_cpu_workers"]["images_per_s"] > 0
        assert entry["limited_by"] in ("loader", "compute") and entry["best_mode"] in entry["modes"]
        assert entry["pipeline_gpu_render"]["render_device"] == "cpu" and entry["pipeline_gpu_render"]["images_per_s"] > 0
        assert entry["limited_by_with_gpu_render"] in ("loader", "compute")
    assert "gpu-check: tekin_fusion: fp32" in result.stdout  # its 2D network: an untrained stand-in checkpoint


def test_the_agents_sbatch_template_is_valid_bash_and_runs_one_agent_per_gpu():
    template = REPO_ROOT / "slurm" / "wandb_agents.sbatch"
    assert subprocess.run(["bash", "-n", str(template)]).returncode == 0
    text = template.read_text()
    assert "source .venv/bin/activate" in text  # ${interpreter} is the literal `python`
    assert 'CUDA_VISIBLE_DEVICES="$gpu" wandb agent --forward-signals --count "$COUNT" "$SWEEP"' in text
