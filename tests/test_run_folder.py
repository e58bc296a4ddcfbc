"""A run folder holds one run's results: one owner, nothing earlier lost, nothing mixed, whole
files on a full disk, exit codes that tell (harness.run_folder, pose3d.results, pose3d.files)."""
from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from harness import ablation
from harness.init_from import checkpoint_of
from harness.train import main
from pose3d.config import REPO_ROOT, ConfigError
from pose3d.results import CONFIG_HASH, config_hash, finished, results_mismatch
from pose3d.summaries import read_finished_run
from tests.test_ablation import fake_train, run_instead, two_variant_sweep
from tests.test_resume import train

NAME = "baseline-default-smoke-s0"
HOLD = """
import sys, time
from pathlib import Path
from harness.run_folder import owned
with owned(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(120)
"""


def err_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def hold(run_dir: Path) -> subprocess.Popen:
    """Another process that owns ``run_dir`` until it is killed."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def finished_run(tmp_path, smoke_args, name: str = NAME) -> Path:
    assert main(["experiment=baseline", *smoke_args, f"name={name}"]) == 0
    return tmp_path / "runs" / name


def test_a_second_run_on_an_owned_folder_refuses_naming_the_holder_until_the_holder_dies(tmp_path, smoke_args, capsys):
    run_dir = tmp_path / "runs" / NAME
    holder = hold(run_dir)
    try:
        assert main(["experiment=baseline", *smoke_args, "seed=0"]) == 2
        line = err_line(capsys)
        assert f"run folder {run_dir} is in use by pid {holder.pid} on host {socket.gethostname()} since " in line
        assert "name=<new name>" in line and not run_dir.exists()
    finally:
        holder.kill()  # SIGKILL: no clean-up, the kernel frees the lock
        holder.wait()
    assert main(["experiment=baseline", *smoke_args]) == 0
    assert finished(run_dir)


def test_the_ablation_runner_skips_a_run_another_runner_holds(tmp_path, monkeypatch, capsys):
    sweep_file = two_variant_sweep(tmp_path)
    calls: list[list[str]] = []
    run_instead(monkeypatch, fake_train(calls))
    holder = hold(tmp_path / "runs" / "tekin_fusion-early-smoke-s0")
    try:
        args = ["run", str(sweep_file), "--preset", "smoke", "--jobs", "1", "--", f"results_dir={tmp_path}"]
        assert ablation.main(args) == 0  # not a failure
        out = capsys.readouterr().out
    finally:
        holder.kill()
        holder.wait()
    assert [c for c in calls if "variant=early" in c] == [] and len(calls) == 1  # only "late" was trained
    assert f"tekin_fusion-early-smoke-s0: held elsewhere (pid {holder.pid} on host" in out
    table = (tmp_path / "ablation-fusion" / "summary.md").read_text()
    assert f"tekin_fusion-early-smoke-s0 (held elsewhere: pid {holder.pid}" in table


def test_overwrite_moves_the_earlier_results_aside_and_a_bad_trainer_setting_changes_nothing(
        tmp_path, smoke_args, monkeypatch, capsys):
    import lightning.pytorch as pl

    run_dir = finished_run(tmp_path, smoke_args)
    before = {name: (run_dir / name).read_bytes() for name in ("config.yaml", "metrics.json", "checkpoints/last.ckpt")}
    capsys.readouterr()
    assert main(["experiment=baseline", *smoke_args, "overwrite=true", "optim.lr=0.01", "trainer.strategy=nonsense"]) == 2
    assert "bad trainer settings: You selected an invalid strategy name" in err_line(capsys)
    assert {name: (run_dir / name).read_bytes() for name in before} == before  # config.yaml not rewritten
    assert sorted(p.name for p in run_dir.parent.iterdir() if not p.name.startswith(".")) == [NAME]

    def killed(*args, **kwargs):
        raise FloatingPointError("killed in the middle of the run")

    monkeypatch.setattr(pl.Trainer, "fit", killed)
    assert main(["experiment=baseline", *smoke_args, "overwrite=true", "optim.lr=0.01"]) == 1
    aside = [p for p in run_dir.parent.iterdir() if p.name.startswith(f"{NAME}.replaced-")]
    assert len(aside) == 1 and {name: (aside[0] / name).read_bytes() for name in before} == before
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["optim"]["lr"] == 0.01
    assert not (run_dir / "metrics.json").exists()  # the old lr's metrics are never beside the new lr's config
    assert not finished(run_dir)


def test_metrics_computed_under_another_config_are_refused_by_every_reader(tmp_path, smoke_args):
    run_dir = finished_run(tmp_path, smoke_args)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    stored = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert metrics[CONFIG_HASH] == config_hash(stored)
    assert finished(run_dir) and read_finished_run(run_dir) is not None
    assert checkpoint_of(str(run_dir)) == Path(metrics["checkpoint"])
    stored["optim"]["lr"] = 0.5  # the config of another run beside these metrics
    (run_dir / "config.yaml").write_text(yaml.safe_dump(stored))
    assert results_mismatch(run_dir) == "its metrics.json was computed under other settings than its config.yaml"
    assert not finished(run_dir) and read_finished_run(run_dir) is None
    with pytest.raises(ConfigError, match="computed under other settings"):
        checkpoint_of(str(run_dir))
    run = ablation.PlannedRun({"variant": "default", "seed": 0}, NAME, run_dir)
    assert not run.done and "computed under other settings than its config.yaml: not counted" in ablation.missing_reason(run)
    # switches that cannot change a result are not part of the hash
    stored["optim"]["lr"] = 0.001
    stored["trainer"]["enable_progress_bar"] = True
    stored["threads"] = 7
    (run_dir / "config.yaml").write_text(yaml.safe_dump(stored))
    assert finished(run_dir)


def test_test_only_keeps_the_earlier_metrics_beside_the_new_ones(tmp_path, smoke_args):
    run_dir = finished_run(tmp_path, smoke_args)
    earlier = (run_dir / "metrics.json").read_text()
    assert main(["experiment=baseline", *smoke_args, "ckpt_path=last", "test_only=true"]) == 0
    kept = list(run_dir.glob("metrics.before-*.json"))
    assert len(kept) == 1 and kept[0].read_text() == earlier
    assert finished(run_dir)


def test_a_checkpoint_of_another_run_with_other_settings_is_refused_like_a_resume(tmp_path, smoke_args, capsys):
    other = finished_run(tmp_path, smoke_args, "other")
    target = finished_run(tmp_path, smoke_args, "target")
    before = (target / "metrics.json").read_text()
    capsys.readouterr()
    assert main(["experiment=baseline", *smoke_args, "name=target", "seed=3", "optim.lr=0.01",
                 f"ckpt_path={other / 'checkpoints' / 'last.ckpt'}"]) == 2
    line = err_line(capsys)
    assert f"{other} was run with other settings (optim.lr: 0.001 -> 0.01; seed: 0 -> 3)" in line and "init_from=" in line
    assert (target / "metrics.json").read_text() == before


def test_a_full_disk_is_one_line_and_the_last_good_checkpoint_stays_whole(tmp_path, smoke_args, monkeypatch, capsys):
    from pose3d import files

    real = files._write_file
    writes: list[str] = []

    def disk_fills_on_the_second_last_ckpt(path: Path, data) -> None:
        writes.append(path.name)
        if path.name.startswith(".last.") and writes.count(path.name) == 2:
            Path(path).write_bytes(bytes(data)[: len(data) // 2])  # half written, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path, data)

    monkeypatch.setattr(files, "_write_file", disk_fills_on_the_second_last_ckpt)
    assert main(["experiment=baseline", *smoke_args, "trainer.max_epochs=2"]) == 2
    line = err_line(capsys)
    last = tmp_path / "runs" / NAME / "checkpoints" / "last.ckpt"
    assert line.startswith(f"error: no space left on the device for {last}: it needs ") and " MB free" in line
    checkpoint = torch.load(last, weights_only=False)  # whole: the first epoch's
    assert checkpoint["epoch"] == 0 and checkpoint["global_step"] > 0
    assert not list(last.parent.glob(".*tmp*"))  # no half file left behind


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_run_stopped_by_a_signal_exits_non_zero_and_keeps_its_last_checkpoint(tmp_path, signum, code):
    stopped = train(tmp_path, "stopped", kill_at=8, signum=signum)  # 6 steps an epoch: in the middle of the second
    assert stopped.returncode == code, stopped.stderr[-2000:]
    assert f"stopped by {signal.Signals(signum).name}" in stopped.stderr
    run_dir = tmp_path / "runs" / "stopped"
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["epoch"] == 0  # the first epoch's
    assert not (run_dir / "metrics.json").exists()


def read_only_path() -> str:
    return "/proc/pose3d-results"  # not writable, even by root


@pytest.mark.parametrize("command", ["run", "summary"])
def test_ablation_on_an_unwritable_results_folder_is_one_line(tmp_path, command, capsys):
    sweep_file = two_variant_sweep(tmp_path)
    assert ablation.main([command, str(sweep_file), "--preset", "smoke", "--", f"results_dir={read_only_path()}"]) == 2
    line = err_line(capsys)
    assert line.startswith(f"error: cannot write to {read_only_path()}/ablation-fusion (") and "expected a writable" in line


def test_ppca_fit_to_an_unwritable_path_is_one_line(capsys):
    from pose3d import ppca

    assert ppca.main(["fit", "--source", "synthetic", "--count", "200", "--out", f"{read_only_path()}/prior.npz"]) == 2
    line = err_line(capsys)
    assert line.startswith(f"error: cannot write to {read_only_path()} (") and "expected a writable folder for --out" in line
