"""Launchers: a grid through submitit (its local executor here, a SLURM array with a stand-in
sbatch), preempted tasks that requeue and resume with their W&B run id, the progress line."""
from __future__ import annotations

import io
import json
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from harness import ablation, launch, progress, wandb_id
from tests.helpers import wait_for

COMMAND = ["${env}", "python", "-m", "pose3d.train", "${args_no_hyphens}"]


def sweep_file(tmp_path: Path, seeds: list[int], axis: str = "base") -> Path:
    path = tmp_path / f"{axis}.yaml"
    path.write_text(yaml.safe_dump({
        "method": "grid", "metric": {"name": "val/mpjpe", "goal": "minimize"}, "command": COMMAND,
        "parameters": {"experiment": {"value": "baseline"}, "preset": {"value": "smoke"}, "seed": {"values": seeds}},
    }))
    return path


# -- the W&B run id of a run folder ----------------------------------------------------------
def test_the_wandb_id_is_stored_and_reused_on_resume_only(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_RUN_ID", raising=False)
    first = wandb_id.run_id(tmp_path / "run", resuming=False)
    assert re.fullmatch(r"[a-z0-9]{8}", first) and (tmp_path / "run" / "wandb_id").read_text().strip() == first
    assert wandb_id.run_id(tmp_path / "run", resuming=True) == first  # ckpt_path=last: the same W&B run
    again = wandb_id.run_id(tmp_path / "run", resuming=False)  # a fresh start (overwrite=true): a new run
    assert again != first and (tmp_path / "run" / "wandb_id").read_text().strip() == again
    monkeypatch.setenv("WANDB_RUN_ID", "agent123")  # what `wandb agent` assigns
    assert wandb_id.run_id(tmp_path / "other", resuming=False) == "agent123"


# -- SLURM: one job array, with a stand-in sbatch -------------------------------------------------
def fake_slurm(tmp_path: Path, monkeypatch, job: int) -> None:
    """Stand-ins for srun (submitit looks for it) and sbatch (keeps the script, prints a job id)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "sbatch").write_text(f"#!/bin/sh\ncp \"$1\" {tmp_path}/submitted.sh\necho 'Submitted batch job {job}'\n")
    for tool in ("srun", "sbatch"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_slurm_launcher_submits_one_job_array_with_requeue(tmp_path, monkeypatch, capsys):
    fake_slurm(tmp_path, monkeypatch, 4242)
    path = sweep_file(tmp_path, [0, 1, 2])
    args = ["run", str(path), "--launcher", "slurm", "--slurm", "partition=gpu gpus_per_node=1 timeout_min=600",
            "--", f"results_dir={tmp_path}", "logger.wandb=false"]
    assert ablation.main(args) == 0
    script = (tmp_path / "submitted.sh").read_text()
    for flag in ("--array=0-2%3", "--partition=gpu", "--gpus-per-node=1", "--ntasks-per-node=1", "--time=600",
                 "--signal=USR2@90", "--requeue", "--job-name=ablation-base"):
        assert f"#SBATCH {flag}" in script, flag
    assert "srun --unbuffered" in script and "submitit.core._submit" in script
    record = json.loads((tmp_path / "ablation-base" / "submitted.json").read_text())
    assert record["job_array"] == "4242" and [t["run"] for t in record["tasks"]] == [
        f"baseline-default-smoke-s{s}" for s in range(3)]
    out = capsys.readouterr().out
    assert "submitted 3 as SLURM job array 4242" in out and "python -m pose3d.ablation summary" in out


def test_several_gpus_per_grid_point_are_one_ddp_run_under_srun(tmp_path, monkeypatch):
    fake_slurm(tmp_path, monkeypatch, 7)
    path = sweep_file(tmp_path, [0])
    args = ["run", str(path), "--launcher", "slurm", "--slurm", "nodes=2 gpus_per_node=4", "--", f"results_dir={tmp_path}"]
    assert ablation.main(args) == 0
    script = (tmp_path / "submitted.sh").read_text()
    assert "#SBATCH --nodes=2" in script and "#SBATCH --ntasks-per-node=4" in script
    import submitit

    pickled = next((tmp_path / "ablation-base" / "submitit").rglob("*_submitted.pkl"))
    task = submitit.core.utils.DelayedSubmission.load(pickled).function
    assert isinstance(task, launch.GridTask)
    assert task.command[:4] == ["/usr/bin/env", "python", "-m", "pose3d.train"]
    assert task.command[-4:-1] == ["trainer.devices=4", "trainer.num_nodes=2", "trainer.strategy=ddp"]


@pytest.mark.parametrize("options, expected", [
    ("partition", "bad SLURM option 'partition': expected key=value"),
    ("frobnicate=3", "bad SLURM options (Unknown argument 'frobnicate'"),
])
def test_bad_slurm_options_are_one_line(options, expected, tmp_path, monkeypatch, capsys):
    fake_slurm(tmp_path, monkeypatch, 1)
    path = sweep_file(tmp_path, [0])
    assert ablation.main(["run", str(path), "--launcher", "slurm", "--slurm", options, "--", f"results_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err


@pytest.mark.parametrize("env, threads", [
    ({"SLURM_CPUS_PER_TASK": "4", "SLURM_CPUS_ON_NODE": "16", "SLURM_NTASKS_PER_NODE": "2"}, 4),  # --cpus-per-task
    ({"SLURM_CPUS_ON_NODE": "16", "SLURM_NTASKS_PER_NODE": "4"}, 4),  # the job's CPUs on the node, shared
    ({"SLURM_CPUS_ON_NODE": "1", "SLURM_NTASKS_PER_NODE": "1"}, 1),  # an array task of one CPU
    ({"SLURM_CPUS_ON_NODE": "2", "SLURM_NTASKS_PER_NODE": "4"}, 1),
    ({}, None),  # not under SLURM: torch's own default
])
def test_a_slurm_task_runs_as_many_threads_as_slurm_gave_it_cpus(env, threads):
    assert launch.slurm_threads(env) == threads


def test_without_sbatch_the_slurm_launcher_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))  # no sbatch there
    path = sweep_file(tmp_path, [0])
    assert ablation.main(["run", str(path), "--launcher", "slurm", "--", f"results_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "srun not found; expected a SLURM login node" in err[0]


# -- submitit's local executor: the same tasks, run here ------------------------------------------
@pytest.mark.slow
def test_a_grid_runs_through_submitits_local_executor(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    path = sweep_file(tmp_path, [0, 1])
    assert ablation.main(["run", str(path), "--launcher", "submitit-local", "--", f"results_dir={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert "[1/2] baseline-default-smoke-s0: test MPJPE" in out and "[2/2] baseline-default-smoke-s1: test MPJPE" in out
    assert "2 of 2 runs finished" in out
    assert len(list((tmp_path / "ablation-base" / "submitit").glob("*_result.pkl"))) == 2


@pytest.mark.slow
def test_a_preempted_task_is_requeued_and_resumes_from_last_ckpt_with_its_wandb_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "offline")  # writes W&B's files locally, never the network
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / ".wandb-cache"))
    path = sweep_file(tmp_path, [0])
    overrides = [f"results_dir={tmp_path}", "data.train_size=128", "trainer.max_epochs=12"]
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(code=ablation.main(
        ["run", str(path), "--launcher", "submitit-local", "--", *overrides])))
    thread.start()
    run_dir = tmp_path / "runs" / "baseline-default-smoke-s0"
    log = tmp_path / "ablation-base" / "logs" / "baseline-default-smoke-s0.log"
    wait_for(lambda: (run_dir / "checkpoints" / "last.ckpt").is_file(), 240, "the first last.ckpt")
    stored = (run_dir / "wandb_id").read_text().strip()
    pid = int(re.search(r"# attempt 1 \(task pid (\d+)", log.read_text()).group(1))
    os.kill(pid, signal.SIGUSR2)  # what SLURM sends before a time limit or on preemption
    thread.join(timeout=400)
    assert not thread.is_alive() and result["code"] == 0
    text = log.read_text()
    attempts = re.findall(r"# attempt (\d+) .*: (.*)", text)
    assert [a for a, _ in attempts] == ["1", "2"], text[-2000:]
    assert "ckpt_path=last" not in attempts[0][1] and attempts[1][1].endswith("ckpt_path=last")
    assert sorted(p.name for p in (run_dir / "csv").iterdir()) == ["version_0", "version_1"]  # resumed, not restarted
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["global_step"] == 12 * 8  # all 12 epochs of 128 / 16, once
    assert (run_dir / "wandb_id").read_text().strip() == stored
    offline_runs = sorted(p.name for p in (run_dir / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 2 and all(name.endswith(f"-{stored}") for name in offline_runs)
    assert "test MPJPE" in capsys.readouterr().out


# -- the progress line ------------------------------------------------------------------------
def write_csv(run_dir: Path, rows: list[str], version: int = 0) -> None:
    folder = run_dir / "csv" / f"version_{version}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.csv").write_text("epoch,step,train/loss\n" + "\n".join(rows) + "\n")


def test_the_live_line_shows_epoch_step_elapsed_and_an_estimate(tmp_path):
    run_dir = tmp_path / "runs" / "fusion-late-smoke-s0"
    log = tmp_path / "late.log"
    log.write_text("")
    line = progress.Progress(total=4, stream=io.StringIO(), live=False)
    line.run_started(2, run_dir.name, run_dir, log, total_steps=100, max_epochs=10)
    run = line.active[2]
    run.started -= 30
    assert line.describe(run).startswith("[2/4] fusion-late-smoke-s0: starting, 30s")
    log.write_text("training prerequisite run heatmap2d-smoke-0123abcd (experiment heatmap2d) first\n")
    write_csv(tmp_path / "runs" / "heatmap2d-smoke-0123abcd", ["1,7,0.5"])
    assert "training prerequisite heatmap2d-smoke-0123abcd first (epoch 2, step 7)" in line.describe(run)
    write_csv(run_dir, ["0,10,0.3"])
    now = time.monotonic()
    assert line.describe(run, now) == "[2/4] fusion-late-smoke-s0: epoch 1/10, step 10/100, 30s"
    write_csv(run_dir, ["0,10,0.3", "2,30,0.2"], version=1)  # a resume adds a version
    text = line.describe(run, now + 20)  # 20 steps in 20 s: 70 to go
    assert text.startswith("[2/4] fusion-late-smoke-s0: epoch 3/10, step 30/100, 50s, ~1m10s left")
    assert "(ablation ~" in text  # two runs still wait after it


def test_no_live_line_off_a_terminal_only_one_line_per_run(tmp_path):
    stream = io.StringIO()
    line = progress.Progress(total=1, stream=stream, interval=0.01)  # a StringIO is no terminal
    line.start()
    line.run_started(1, "a", tmp_path, tmp_path / "a.log")
    time.sleep(0.05)
    line.run_finished(1, "[1/1] a: test MPJPE 1.0 mm (1 s)")
    line.close()
    assert stream.getvalue() == "[1/1] a: test MPJPE 1.0 mm (1 s)\n"


def test_on_a_terminal_the_line_is_redrawn_and_cleared(tmp_path):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    write_csv(tmp_path, ["0,3,0.1"])
    line = progress.Progress(total=1, stream=stream, interval=0.01)
    line.start()
    line.run_started(1, "a", tmp_path, tmp_path / "a.log", total_steps=10, max_epochs=1)
    time.sleep(0.1)
    line.run_finished(1, "[1/1] a: test MPJPE 1.0 mm (1 s)")
    line.close()
    text = stream.getvalue()
    assert "\r\033[K[1/1] a: epoch 1/1, step 3/10" in text and text.endswith("[1/1] a: test MPJPE 1.0 mm (1 s)\n")
