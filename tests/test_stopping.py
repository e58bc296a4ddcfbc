"""SIGINT/SIGTERM to a runner of training runs: passed on to every run in flight, no new run,
exit 130/143, no child left behind; the same command again resumes the stopped runs."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import yaml

from harness.stopping import RunGroup, Stopped
from pose3d.config import REPO_ROOT
from tests.helpers import wait_for

# a child that stops on SIGTERM but leaves a grandchild behind in its process group
LEAVES_ONE_BEHIND = [sys.executable, "-c", "import signal, subprocess, sys, time\n"
                     "signal.signal(signal.SIGTERM, lambda *_: sys.exit(7))\n"
                     "subprocess.Popen(['sleep', '120'])\n"
                     "time.sleep(120)\n"]


def _alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    return [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_sigterm_reaches_every_child_starts_none_and_leaves_none_behind():
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers need the main thread")
    codes: dict[int, int | None] = {}
    with RunGroup(grace_s=30) as group:
        workers = [threading.Thread(target=lambda i=i: codes.update({i: group.call(LEAVES_ONE_BEHIND)})) for i in range(2)]
        for worker in workers:
            worker.start()
        me = psutil.Process()
        children = wait_for(lambda: len(c := me.children(recursive=True)) == 4 and c, 20, "2 children and 2 grandchildren")
        os.kill(os.getpid(), signal.SIGTERM)  # to the runner alone
        for worker in workers:
            worker.join(timeout=20)
        assert group.stopping and group.signum == signal.SIGTERM
        assert group.call(["sleep", "60"]) is None  # nothing new starts
    assert codes == {0: 7, 1: 7}  # each child got SIGTERM once and stopped
    psutil.wait_procs(children, timeout=5)
    assert _alive(children) == []  # the grandchildren went with their groups
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the runner's own handling is put back


def test_a_child_that_ignores_the_signal_is_killed_after_the_grace_period(tmp_path):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers need the main thread")
    stubborn = [sys.executable, "-c", "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                "print('ready', flush=True)\ntime.sleep(120)"]
    codes = []
    with RunGroup(grace_s=1) as group, open(tmp_path / "out", "w") as out:
        worker = threading.Thread(target=lambda: codes.append(group.call(stubborn, stdout=out)))
        worker.start()
        wait_for(lambda: (tmp_path / "out").read_text() == "ready\n", 20, "the child to ignore SIGINT")
        started = time.monotonic()
        os.kill(os.getpid(), signal.SIGINT)
        worker.join(timeout=20)
    assert codes == [-signal.SIGKILL] and time.monotonic() - started < 10


def test_the_stop_line_says_what_stopped_and_how_to_resume():
    stop = Stopped(signal.SIGINT, ["a-s0", "b-s0"], ["c-s0"])
    assert stop.exit_code == 130 and Stopped(signal.SIGTERM).exit_code == 143
    assert stop.line("python -m pose3d.ablation run x.yaml") == (
        "stopped by SIGINT; interrupted a-s0, b-s0 (a run resumes from its last.ckpt); not started c-s0; "
        "to resume, run the same command again: python -m pose3d.ablation run x.yaml")


# -- the local ablation runner and `make compare`, two runs in parallel, get SIGTERM ---------------
def two_seed_sweep(tmp_path: Path) -> Path:
    sweep = tmp_path / "base.yaml"
    sweep.write_text(yaml.safe_dump({
        "method": "grid", "command": ["${env}", "python", "-m", "pose3d.train", "${args_no_hyphens}"],
        "parameters": {"experiment": {"value": "baseline"}, "preset": {"value": "smoke"}, "seed": {"values": [0, 1]}}}))
    return sweep


def start(module: str, arguments: list[str], results: Path) -> subprocess.Popen:
    """``python -m <module> <arguments> --jobs 2 -- ...``: two runs of 20 epochs at a time."""
    command = [sys.executable, "-m", module, *arguments, "--jobs", "2", "--",
               f"results_dir={results}", "data.train_size=128", "trainer.max_epochs=20"]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    return subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop_with_sigterm(runner: subprocess.Popen, runs: list[Path]) -> str:
    """SIGTERM to the runner alone once both runs have a last.ckpt; its last line on stderr."""
    wait_for(lambda: all((run / "checkpoints" / "last.ckpt").is_file() for run in runs) or runner.poll() is not None,
             600, "a last.ckpt in both runs")  # a loaded 2-core machine takes minutes
    assert runner.poll() is None, runner.communicate()
    processes = psutil.Process(runner.pid).children(recursive=True)
    assert sum("pose3d.train" in " ".join(p.cmdline()) for p in processes) == 2
    runner.send_signal(signal.SIGTERM)  # the runner alone, as `timeout` or a parent script sends it
    out, err = runner.communicate(timeout=120)
    assert runner.returncode == 143, err[-3000:]
    psutil.wait_procs(processes, timeout=5)
    assert _alive(processes) == []  # no run, and nothing a run started, outlives the runner
    for run in runs:
        assert (run / "checkpoints" / "last.ckpt").is_file() and not (run / "metrics.json").exists()
    return err.strip().splitlines()[-1]


@pytest.mark.slow
def test_sigterm_to_the_runner_stops_both_runs_and_the_same_command_resumes_them(tmp_path):
    arguments = ["run", str(two_seed_sweep(tmp_path))]
    runs = [tmp_path / "runs" / f"baseline-default-smoke-s{seed}" for seed in (0, 1)]
    line = stop_with_sigterm(start("pose3d.ablation", arguments, tmp_path), runs)
    assert line.startswith("stopped by SIGTERM; interrupted baseline-default-smoke-s") and \
        "to resume, run the same command again: python -m pose3d.ablation run" in line
    summary = (tmp_path / "ablation-base" / "summary.md").read_text()
    for run in runs:
        assert f"{run.name} (running or interrupted: has a last.ckpt)" in summary

    again = start("pose3d.ablation", arguments, tmp_path)  # the same command
    out, err = again.communicate(timeout=400)
    assert again.returncode == 0, err[-3000:]
    assert "0 of 2 runs already done; running 2" in out and "2 of 2 runs finished" in out
    for run in runs:
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["global_step"] == 20 * 8  # 20 epochs of 128 / 16 steps, each once
        assert sorted(p.name for p in (run / "csv").iterdir()) == ["version_0", "version_1"]  # resumed, not restarted


@pytest.mark.slow
def test_sigterm_to_compare_stops_its_runs_the_same_way(tmp_path):
    runs = [tmp_path / "compare" / "runs" / f"baseline-default-smoke-s{seed}" for seed in (0, 1)]
    runner = start("pose3d.compare", ["run", "--sweep-file", str(two_seed_sweep(tmp_path)), "--no-cost"], tmp_path)
    line = stop_with_sigterm(runner, runs)
    assert line.startswith("stopped by SIGTERM; interrupted baseline-default-smoke-s") and \
        "to resume, run the same command again: python -m pose3d.compare run --sweep-file" in line
    summary = (tmp_path / "compare" / "summary.md").read_text()
    assert all(f"{run.name} (running or interrupted: has a last.ckpt)" in summary for run in runs)
