"""``python -m harness.dry_run``: every experiment x preset builds and takes one training and one
validation step (the slow test runs all of them, the fast ones one case and the argument checks)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pose3d.config import REPO_ROOT, available_experiments


def dry_run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled"}
    return subprocess.run([sys.executable, "-m", "harness.dry_run", *args], capture_output=True, text=True,
                          cwd=REPO_ROOT, env=env)


def test_one_case_writes_its_parameters_and_memory(tmp_path):
    out = tmp_path / "dry_run.json"
    result = dry_run("--experiments", "baseline", "--presets", "smoke", "--threads", "1", "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    entry = report["cases"]["baseline/smoke/synthetic"]
    assert report["failed"] == [] and report["batch_size"] == 2 and report["paper"] == {}
    assert entry["image_size"] == 32 and entry["parameters"] == entry["trainable_parameters"] > 0
    assert entry["train_step_peak_mb"] > 0 and entry["train_step_peak_mb_per_image"] == pytest.approx(
        entry["train_step_peak_mb"] / 2, abs=0.1)
    # Adam: the gradients and two moments, each the size of the parameters
    assert entry["grad_and_optimizer_state_mb"] == pytest.approx(3 * entry["parameter_mb"], abs=0.2)
    assert entry["memory_method"].startswith("VmHWM") and entry["loss"] > 0
    assert "dry-run: baseline/smoke/synthetic: 0.08 M parameters" in result.stdout


def test_unknown_names_and_a_missing_human36m_copy_exit_2(tmp_path):
    result = dry_run("--presets", "fast", "--out", str(tmp_path / "x.json"))
    assert result.returncode == 2 and "unknown preset 'fast'; expected some of smoke, quick, paper" in result.stderr
    result = dry_run("--human36m-root", str(tmp_path / "absent"), "--out", str(tmp_path / "x.json"))
    assert result.returncode == 2 and "is not a folder" in result.stderr and not (tmp_path / "x.json").exists()


@pytest.mark.slow
def test_every_experiment_and_preset_builds_and_steps(tmp_path):
    """The check that would have caught the paper presets that could not run (Habibie's stage 1)."""
    from tests.fixtures_h36m import write_images_layout, write_poses_layout

    root = tmp_path / "h36m"
    write_images_layout(root, image_fps=(10, 50))  # DeepSkeleton's paper preset tests every 64th frame
    write_poses_layout(root)  # the mocap file Tome's paper preset fits its prior on
    out = tmp_path / "dry_run.json"
    result = dry_run("--human36m-root", str(root), "--out", str(out))
    report = json.loads(out.read_text())
    assert result.returncode == 0, f"failed: {report['failed']}\n{result.stdout[-3000:]}"
    expected = {f"{e}/{p}/synthetic" for e in available_experiments() for p in ("smoke", "quick", "paper")}
    expected |= {f"{e}/paper/human36m" for e in available_experiments()}
    assert set(report["cases"]) == expected
    assert set(report["paper"]) == set(available_experiments())
    for name, entry in report["paper"].items():
        assert entry["parameters"] > 0 and entry["train_step_peak_mb_per_image"] > 0, name
