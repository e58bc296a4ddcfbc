"""The SLURM launcher on a real SLURM cluster: a one-node cluster on this machine
(``slurm/local_cluster.sh up``; ``make slurm-check`` runs these tests, CI with the cluster up).

A job array through sbatch ends at the local runner's metrics; a task requeued with
``scontrol requeue`` and one signalled before its time limit (submitit's ``--signal=USR2@...``)
resume from their ``last.ckpt`` in the same W&B run; two tasks under ``srun`` are one gloo DDP
run with the metrics of one process; ``scancel`` leaves no process of the array behind.
Without a cluster they are skipped (they fail instead when ``POSE3D_SLURM_REQUIRED=1``).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import yaml

from pose3d.config import REPO_ROOT
from tests import test_ddp
from tests.helpers import wait_for

pytestmark = pytest.mark.slurm
LOCAL_CONF = Path(os.environ.get("POSE3D_SLURM_DIR", "/tmp/pose3d-slurm")) / "slurm.conf"
TEST_KEYS = ("test/mpjpe", "test/pa_mpjpe", "test/n_mpjpe", "test/pck3d", "test/auc3d")
LONG = ["data.train_size=128", "trainer.max_epochs=60"]  # 60 epochs of 8 steps: 10 to 50 s on one core


# -- the cluster ----------------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def cluster():
    """SLURM's commands answer (the local cluster's configuration when SLURM_CONF names none)."""
    if "SLURM_CONF" not in os.environ and LOCAL_CONF.is_file():
        os.environ["SLURM_CONF"] = str(LOCAL_CONF)
    answer = "sbatch not found"
    if shutil.which("sbatch"):
        result = subprocess.run(["sinfo", "--noheader", "--format=%T"], capture_output=True, text=True, timeout=30)
        answer = (result.stdout + result.stderr).strip()
        if result.returncode == 0 and re.search(r"^(idle|mixed|allocated)", answer, re.M):
            return
    reason = f"no SLURM cluster answers ({answer or 'no node'}); start one with slurm/local_cluster.sh up"
    if os.environ.get("POSE3D_SLURM_REQUIRED") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def slurm(*args: str) -> str:
    return subprocess.run(list(args), check=True, capture_output=True, text=True, timeout=60).stdout


def queued(job: str) -> list[str]:
    """``<job id> <state>`` of each task of ``job`` still queued, running or completing."""
    return slurm("squeue", "--noheader", "--array", "--jobs", job, "--format=%i %T").split("\n")[:-1]


def wait_until_gone(job: str, seconds: float = 600) -> None:
    wait_for(lambda: not queued(job), seconds, f"SLURM job {job} to end (squeue: {queued(job)})", interval=1)


def env(tmp_path: Path, wandb: str = "disabled") -> dict:
    return {**os.environ, "WANDB_MODE": wandb, "WANDB_DIR": str(tmp_path / "wandb"),
            "WANDB_CACHE_DIR": str(tmp_path / ".wandb-cache")}


def read_test_metrics(run_dir: Path) -> dict:
    return {k: v for k, v in json.loads((run_dir / "metrics.json").read_text()).items() if k in TEST_KEYS}


def assert_same_metrics(got: dict, expected: dict) -> None:
    assert set(got) == set(expected) and got
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-5), key


# -- submitting a grid --------------------------------------------------------------------------
def sweep_file(tmp_path: Path, seeds: list[int]) -> Path:
    path = tmp_path / "base.yaml"
    path.write_text(yaml.safe_dump({
        "method": "grid", "command": ["${env}", "python", "-m", "pose3d.train", "${args_no_hyphens}"],
        "parameters": {"experiment": {"value": "baseline"}, "preset": {"value": "smoke"}, "seed": {"values": seeds}}}))
    return path


def start_submission(tmp_path: Path, seeds: list[int], overrides: list[str], slurm_options: str = "",
                     wandb: str = "disabled") -> subprocess.Popen:
    """``python -m pose3d.ablation run ... --launcher slurm``, started (its tasks may start before it returns)."""
    command = [sys.executable, "-m", "pose3d.ablation", "run", str(sweep_file(tmp_path, seeds)), "--launcher", "slurm",
               *(["--slurm", slurm_options] if slurm_options else []), "--", f"results_dir={tmp_path}", *overrides]
    return subprocess.Popen(command, cwd=REPO_ROOT, env=env(tmp_path, wandb), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def submitted(tmp_path: Path, submission: subprocess.Popen, seeds: list[int]) -> str:
    """The job's id once the submission has ended (``<array>_<task>`` of each grid point; submitit
    submits a single point as a plain job, ``<job>``)."""
    output, _ = submission.communicate(timeout=300)
    assert submission.returncode == 0, output[-3000:]
    record = json.loads((tmp_path / "ablation-base" / "submitted.json").read_text())
    assert [t["task"] for t in record["tasks"]] == ([f"{record['job_array']}_{i}" for i in range(len(seeds))]
                                                    if len(seeds) > 1 else [record["job_array"]])
    return record["job_array"]


def submit(tmp_path: Path, seeds: list[int], overrides: list[str], slurm_options: str = "",
           wandb: str = "disabled") -> str:
    """Submit the grid; returns the job's id (:func:`submitted`)."""
    return submitted(tmp_path, start_submission(tmp_path, seeds, overrides, slurm_options, wandb), seeds)


def reference_run(tmp_path: Path, overrides: list[str]) -> Path:
    """The same grid point run here, never stopped, on one thread (as each SLURM task of one CPU)."""
    command = [sys.executable, "-m", "pose3d.train", "experiment=baseline", "preset=smoke", "seed=0",
               f"results_dir={tmp_path / 'reference'}", *overrides]
    done = subprocess.run(command, cwd=REPO_ROOT, env={**env(tmp_path), "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return tmp_path / "reference" / "runs" / "baseline-default-smoke-s0"


def job_state(job: str, *logs: Path) -> str:
    """What SLURM says of the job and the ends of its logs: the message of a check that timed out."""
    shown = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True, timeout=60)
    tails = [f"--- {log}:\n{log.read_text()[-1500:] if log.is_file() else '(absent)'}" for log in logs]
    return "\n".join([shown.stdout.strip() or shown.stderr.strip(), *tails])


def attempts(log: Path) -> list[tuple[str, str]]:
    """(attempt number, command) of each start of a grid point's task, from its log's headers."""
    return re.findall(r"^# attempt (\d+) \(task pid \d+, job \d+\): (.*)$", log.read_text(), re.M)


# -- the checks ---------------------------------------------------------------------------------
def test_the_ppca_ablation_as_a_job_array_ends_at_the_local_runners_metrics(tmp_path):
    make = ["make", "--no-print-directory", "ablation-ppca", "PRESET=smoke"]
    local = subprocess.run(make + [f"ARGS=results_dir={tmp_path / 'local'}"], cwd=REPO_ROOT, env=env(tmp_path),
                           capture_output=True, text=True, timeout=900)
    assert local.returncode == 0, local.stderr[-2000:]
    submitted = subprocess.run(make + ["LAUNCHER=slurm", f"ARGS=results_dir={tmp_path / 'slurm'}"], cwd=REPO_ROOT,
                               env=env(tmp_path), capture_output=True, text=True, timeout=300)
    assert submitted.returncode == 0, submitted.stderr[-2000:]
    array = re.search(r"submitted 4 as SLURM job array (\d+)", submitted.stdout).group(1)
    wait_until_gone(array, 900)

    record = json.loads((tmp_path / "slurm" / "ablation-ppca" / "submitted.json").read_text())
    assert [t["task"] for t in record["tasks"]] == [f"{array}_{i}" for i in range(4)]
    for task in record["tasks"]:
        run = task["run"]
        [(number, _)] = attempts(tmp_path / "slurm" / "ablation-ppca" / "logs" / f"{run}.log")
        assert number == "1"
        assert_same_metrics(read_test_metrics(tmp_path / "slurm" / "runs" / run), read_test_metrics(tmp_path / "local" / "runs" / run))
        submitit_out = (tmp_path / "slurm" / "ablation-ppca" / "submitit" / task["task"] / f"{task['task']}_0_log.out")
        assert "Job completed successfully" in submitit_out.read_text()
    summary = subprocess.run(["make", "--no-print-directory", "summary-ppca", "PRESET=smoke",
                              f"ARGS=results_dir={tmp_path / 'slurm'}"], cwd=REPO_ROOT, env=env(tmp_path),
                             capture_output=True, text=True, timeout=300)
    assert summary.returncode == 0 and "4 of 4 runs finished" in summary.stdout, summary.stderr[-2000:]


def test_a_task_requeued_by_scontrol_resumes_from_last_ckpt_with_its_wandb_run(tmp_path):
    expected = read_test_metrics(reference_run(tmp_path, LONG))
    submission = start_submission(tmp_path, [0], LONG, wandb="offline")
    run_dir = tmp_path / "runs" / "baseline-default-smoke-s0"
    log = tmp_path / "ablation-base" / "logs" / "baseline-default-smoke-s0.log"
    wait_for(lambda: (run_dir / "checkpoints" / "last.ckpt").is_file(), 300, "the first last.ckpt")
    job = submitted(tmp_path, submission, [0])
    assert not (run_dir / "metrics.json").exists()  # still training
    stored = (run_dir / "wandb_id").read_text().strip()
    slurm("scontrol", "requeue", job)  # SIGTERM to the task's processes; back to the queue
    wait_for(lambda: len(attempts(log)) == 2, 300, "the requeued task to start again")
    wait_until_gone(job)

    [(_, first), (_, second)] = attempts(log)
    assert "ckpt_path=last" not in first and second.endswith("ckpt_path=last")
    assert "Restoring states from the checkpoint path at" in log.read_text()
    assert "stopped by SIGTERM (cancelled or requeued)" in (
        tmp_path / "ablation-base" / "submitit" / job / f"{job}_0_log.out").read_text()
    assert sorted(p.name for p in (run_dir / "csv").iterdir()) == ["version_0", "version_1"]  # resumed, not restarted
    assert json.loads((run_dir / "metrics.json").read_text())["global_step"] == 60 * 8
    assert_same_metrics(read_test_metrics(run_dir), expected)  # the uninterrupted run's
    assert (run_dir / "wandb_id").read_text().strip() == stored
    offline_runs = sorted(p.name for p in (run_dir / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 2 and all(name.endswith(f"-{stored}") for name in offline_runs)


def test_the_signal_before_the_time_limit_makes_the_task_checkpoint_and_requeue_itself(tmp_path):
    # a 2-minute limit and USR2 30 s before it: slurmctld, which looks every 30 s, sends the signal once the time
    # left is under the delay plus 30 s, so 60-90 s after the start (with a 1-minute limit it can come in the
    # first second, before the task has set its handler); the run is longer than the limit
    job = submit(tmp_path, [0], ["data.train_size=128", "trainer.max_epochs=2000"], "timeout_min=2 signal_delay_s=30")
    log = tmp_path / "ablation-base" / "logs" / "baseline-default-smoke-s0.log"
    submitit_log = tmp_path / "ablation-base" / "submitit" / job / f"{job}_0_log.out"
    try:
        # the signal, then the requeued job waits out cred_expire and the next scheduling pass
        wait_for(lambda: log.is_file() and len(attempts(log)) == 2, 420, "the task to requeue itself and start again",
                 explain=lambda: job_state(job, submitit_log, log))
        wait_for(lambda: "Restoring states from the checkpoint path at" in log.read_text(), 120, "the resume")
    finally:
        subprocess.run(["scancel", job], timeout=60)
    text = submitit_log.read_text()
    assert "Caught signal SIGUSR2" in text and "this job is timed-out" in text
    assert "preempted or out of time: stopping the run; it resumes from last.ckpt" in text
    assert f"Requeued job {job} (19 remaining timeouts)" in text
    [(_, first), (_, second)] = attempts(log)
    assert "ckpt_path=last" not in first and second.endswith("ckpt_path=last")
    wait_until_gone(job)


def test_two_tasks_under_srun_are_one_gloo_ddp_run_with_the_metrics_of_one_process(tmp_path):
    single = test_ddp.train(tmp_path, "name=one")
    assert single.returncode == 0, single.stderr[-2000:]
    checkpoint = tmp_path / "runs" / "one" / "checkpoints" / "best.ckpt"
    evaluate = ["test_only=true", f"ckpt_path={checkpoint}", "trainer.devices=2", "trainer.strategy=ddp"]
    two = test_ddp.train(tmp_path, "name=two", *evaluate)  # the DDP test's two processes, started by Lightning
    assert two.returncode == 0, two.stderr[-2000:]
    command = ["srun", "--nodes=1", "--ntasks-per-node=2", "--cpus-per-task=1", "--job-name=pose3d-ddp", sys.executable,
               "-m", "pose3d.train", "experiment=baseline", "preset=smoke", f"results_dir={tmp_path}", "name=srun",
               "trainer.accelerator=cpu", *evaluate]
    srun = subprocess.run(command, cwd=REPO_ROOT, env={**env(tmp_path), "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=600)
    assert srun.returncode == 0, srun.stderr[-3000:]
    output = srun.stdout + srun.stderr
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in output and "GLOBAL_RANK: 1, MEMBER: 2/2" in output
    assert "distributed_backend=gloo" in output
    one, by_srun = (json.loads((tmp_path / "runs" / n / "metrics.json").read_text()) for n in ("one", "srun"))
    assert_same_metrics(read_test_metrics(tmp_path / "runs" / "srun"), read_test_metrics(tmp_path / "runs" / "two"))
    assert_same_metrics(read_test_metrics(tmp_path / "runs" / "srun"), read_test_metrics(tmp_path / "runs" / "one"))
    for action, values in one["per_action"].items():
        assert by_srun["per_action"][action]["mpjpe"] == pytest.approx(values["mpjpe"], rel=1e-5)


def array_processes(array: str) -> list[psutil.Process]:
    """Every process on this machine that belongs to a task of the job array (by its environment)."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("SLURM_ARRAY_JOB_ID") == array and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return found


def test_scancel_of_the_array_leaves_no_process_of_it_running(tmp_path):
    array = submit(tmp_path, [0, 1], ["data.train_size=128", "trainer.max_epochs=400"])
    runs = [tmp_path / "runs" / f"baseline-default-smoke-s{seed}" for seed in (0, 1)]
    try:
        wait_for(lambda: all((run / "checkpoints" / "last.ckpt").is_file() for run in runs), 300, "both runs training")
        processes = array_processes(array)
        commands = [" ".join(p.cmdline()) for p in processes]
        assert sum("pose3d.train" in c for c in commands) == 2 and sum("submitit.core._submit" in c for c in commands) >= 2
    finally:
        slurm("scancel", array)
    wait_until_gone(array, 120)
    psutil.wait_procs(processes, timeout=10)
    assert [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE] == []
    assert array_processes(array) == []
    for run in runs:  # each stopped with its last.ckpt, ready to resume
        assert (run / "checkpoints" / "last.ckpt").is_file() and not (run / "metrics.json").exists()
