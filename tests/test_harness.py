"""The harness's shared mechanisms: declared prerequisites (key, lock, record), init_from, lazy registries."""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from harness import prerequisites as prereq
from harness.init_from import load_matching
from harness.train import load_config, main
from lightning_modules.base import split_pretrained
from lightning_modules.baseline import DirectRegression
from pose3d.config import REPO_ROOT
from pose3d.prerequisites import FittedArtifact, TrainedRun
from tests.helpers import OPTIM

INFO = {"num_joints": 17, "image_size": 32, "action_names": ()}


# -- fitted artifacts: one build under a lock shared by concurrent processes ----------------
def _slow_build(counter: str):
    def build(path: Path) -> None:
        with open(counter, "a") as handle:
            handle.write("built\n")
        time.sleep(1.0)  # long enough for the other process to arrive and wait
        path.write_text("artifact")

    return build


def _race(results_dir: str, counter: str, out: str) -> None:
    cfg = load_config(["experiment=baseline", f"results_dir={results_dir}"])
    declaration = FittedArtifact(name="prior", into="model.name", recipe={"k": 1}, build=_slow_build(counter), suffix=".txt")
    path, key = prereq.ensure_fitted_artifact(declaration, cfg)
    Path(out).write_text(json.dumps([path, key, Path(path).read_text()]))


def test_two_processes_racing_for_one_prerequisite_build_it_once(tmp_path):
    context = multiprocessing.get_context("fork")
    counter = tmp_path / "builds.txt"
    workers = [context.Process(target=_race, args=(str(tmp_path), str(counter), str(tmp_path / f"out{k}.json"))) for k in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert counter.read_text() == "built\n"  # one process built it, the other waited
    first, second = (json.loads((tmp_path / f"out{k}.json").read_text()) for k in range(2))
    assert first == second and first[2] == "artifact"
    assert not list((tmp_path / "artifacts").glob(".*tmp*"))  # no half-written file left


def _hold_lock_forever(lock_file: str, ready: str) -> None:
    with prereq.exclusive(Path(lock_file)):
        Path(ready).write_text("holding")
        time.sleep(600)


def test_a_lock_left_by_a_killed_holder_does_not_block(tmp_path):
    lock_file, ready = tmp_path / ".x.lock", tmp_path / "ready"
    holder = multiprocessing.get_context("fork").Process(target=_hold_lock_forever, args=(str(lock_file), str(ready)))
    holder.start()
    deadline = time.time() + 30
    while not ready.exists() and time.time() < deadline:
        time.sleep(0.05)
    os.kill(holder.pid, signal.SIGKILL)
    holder.join()
    started = time.time()
    with prereq.exclusive(lock_file):
        pass
    assert time.time() - started < 5


# -- trained runs: the cache key ------------------------------------------------------------
def heatmap_key(consumer_args: list[str]) -> str:
    consumer = load_config(["experiment=tekin_fusion", "preset=smoke", *consumer_args])
    return prereq.trained_run_key(prereq.trained_run_config(TrainedRun("heatmap2d", into="model.two_d.checkpoint"), consumer))


def test_cache_key_follows_what_determines_the_prerequisite(tmp_path, monkeypatch):
    base = heatmap_key([])
    assert heatmap_key(["seed=3"]) == base  # the consumer's seed does not matter
    assert heatmap_key(["variant=late"]) == base  # nor its own model settings
    assert heatmap_key(["results_dir=/elsewhere", "trainer.enable_progress_bar=false"]) == base
    assert heatmap_key(["data.image_size=48"]) != base  # the data it trains on does
    assert heatmap_key(["data.hue_jitter=0.1"]) != base

    experiments = tmp_path / "experiments"
    shutil.copytree(REPO_ROOT / "experiments", experiments)
    monkeypatch.setattr("pose3d.config.EXPERIMENTS_DIR", experiments)
    monkeypatch.setattr(prereq, "EXPERIMENTS_DIR", experiments)
    assert heatmap_key([]) == base
    heatmap = experiments / "heatmap2d.yaml"
    heatmap.write_text(heatmap.read_text() + "\n# a changed experiment file\n")
    assert heatmap_key([]) != base  # and so does its experiment file


def test_a_run_records_its_prerequisite_and_later_seeds_reuse_it(tmp_path, smoke_args, capsys):
    assert main(["experiment=tekin_fusion", "variant=cm_only", *smoke_args]) == 0
    assert "training prerequisite run heatmap2d-smoke-" in capsys.readouterr().out
    config = yaml.safe_load((tmp_path / "runs" / "tekin_fusion-cm_only-smoke-s0" / "config.yaml").read_text())
    [record] = config["prerequisites"]
    assert record["kind"] == "trained_run" and record["into"] == "model.two_d.checkpoint"
    assert config["model"]["two_d"]["checkpoint"] == record["path"] and Path(record["path"]).is_file()
    assert record["path"].startswith(str(tmp_path / "runs" / f"heatmap2d-smoke-{record['key']}"))

    assert main(["experiment=tekin_fusion", "variant=cm_only", "seed=1", *smoke_args]) == 0
    assert "training prerequisite" not in capsys.readouterr().out
    again = yaml.safe_load((tmp_path / "runs" / "tekin_fusion-cm_only-smoke-s1" / "config.yaml").read_text())
    assert again["prerequisites"] == config["prerequisites"]
    assert len([p for p in (tmp_path / "runs").iterdir() if p.name.startswith("heatmap2d-")]) == 1


def test_prerequisites_alone_builds_every_runs_prerequisite_and_trains_no_run(tmp_path, smoke_args, capsys):
    runs = [["experiment=tekin_fusion", f"variant={v}", *smoke_args] for v in ("cm_only", "image_only", "late")]
    assert prereq.main([json.dumps(runs)]) == 0
    assert capsys.readouterr().out.count("training prerequisite run heatmap2d-smoke-") == 1  # shared by cm_only, late
    built = [p.name for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    assert len(built) == 1 and built[0].startswith("heatmap2d-smoke-")  # no tekin_fusion run started
    assert (tmp_path / "runs" / built[0] / "metrics.json").is_file()


def test_prerequisites_alone_rejects_a_bad_argument_in_one_line(capsys):
    assert prereq.main(["experiment=tekin_fusion"]) == 2
    assert "expected one argument: a JSON list" in capsys.readouterr().err


# -- fine-tuning ------------------------------------------------------------------------------
def regression(hidden: int, seed: int) -> DirectRegression:
    torch.manual_seed(seed)
    return DirectRegression(model={"backbone": "small", "width": 8, "hidden": hidden}, optim=OPTIM, data_info=INFO)


def test_init_from_loads_matching_weights_and_reports_the_rest(tmp_path, capsys):
    source = regression(hidden=32, seed=1)
    torch.save({"state_dict": source.state_dict()}, tmp_path / "source.ckpt")
    target = regression(hidden=64, seed=2)  # same backbone, a head of another width
    head_before = target.head.state_dict()
    loaded, left = load_matching(target, str(tmp_path / "source.ckpt"))
    assert {k for k in target.state_dict() if k.startswith("backbone.")} <= set(loaded)
    shapes = {k: v.shape for k, v in source.state_dict().items()}
    assert left and all(k.startswith("head.") and shapes[k] != v.shape for k, v in target.state_dict().items() if k in left)
    for name, value in target.backbone.state_dict().items():
        assert torch.equal(value, source.backbone.state_dict()[name])
    for name in left:
        assert torch.equal(target.state_dict()[name], head_before[name[len("head."):]])  # left at its initialisation
    line = capsys.readouterr().out.strip()
    assert f"loaded {len(loaded)} of {len(loaded) + len(left)} tensors" in line and "left at initialisation: head." in line
    assert target.pretrained_names == {n for n, _ in target.named_parameters() if n in loaded}


def test_init_from_a_run_folder_and_a_missing_source(tmp_path, capsys):
    from pose3d.config import ConfigError

    run = tmp_path / "runs" / "x" / "checkpoints"
    run.mkdir(parents=True)
    torch.save({"state_dict": regression(32, 1).state_dict()}, run / "best.ckpt")
    loaded, left = load_matching(regression(32, 2), str(run.parent))
    assert loaded and not left
    with pytest.raises(ConfigError, match="does not exist; expected a run folder or a .ckpt file"):
        load_matching(regression(32, 2), str(tmp_path / "nowhere"))
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="is not a Lightning checkpoint"):
        load_matching(regression(32, 2), str(tmp_path / "junk.ckpt"))


def test_pretrained_parameters_get_their_own_learning_rate():
    model = regression(32, 0)
    model.pretrained_names = {n for n, _ in model.named_parameters() if n.startswith("backbone.")}
    groups = split_pretrained(model.parameter_groups(), model.named_parameters(), model.pretrained_names, 0.01, 1e-3)
    assert len(groups) == 2 and "lr" not in groups[0] and groups[1]["lr"] == pytest.approx(1e-5)
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in model.backbone.parameters()}
    unchanged = split_pretrained(model.parameter_groups(), model.named_parameters(), set(), 0.01, 1e-3)
    assert len(unchanged) == 1 and len(unchanged[0]["params"]) == len(list(model.parameters()))


def test_init_from_on_the_command_line_fine_tunes_a_finished_run(tmp_path, smoke_args, capsys):
    assert main(["experiment=baseline", *smoke_args]) == 0
    source = tmp_path / "runs" / "baseline-default-smoke-s0"
    capsys.readouterr()
    assert main(["experiment=baseline", "name=finetuned", f"init_from={source}", "optim.pretrained_lr_scale=0.1", *smoke_args]) == 0
    assert "left at initialisation" not in (out := capsys.readouterr().out) and "init_from" in out
    assert (tmp_path / "runs" / "finetuned" / "metrics.json").is_file()


# -- layering -----------------------------------------------------------------------------------
def test_building_the_baseline_config_imports_no_other_method_or_dataset():
    code = ("import sys; from harness.train import load_config; load_config(['experiment=baseline']); "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith(('lightning_modules', 'datamodules')))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    loaded = result.stdout.split()
    for module in ("lightning_modules.tekin_fusion", "lightning_modules.tome_lifting",
                   "datamodules.human36m", "datamodules.mpi_inf_3dhp"):
        assert module not in loaded
    assert "lightning_modules.baseline" in loaded and "datamodules.synthetic" in loaded


def test_the_core_imports_no_datamodule_method_or_entry_point():
    modules = sorted(p.stem for p in (REPO_ROOT / "pose3d").glob("*.py") if p.stem != "__init__")
    code = (f"import importlib, sys; [importlib.import_module('pose3d.' + m) for m in {modules!r}]; "
            "import pose3d.metrics; "
            "print(' '.join(m for m in sys.modules if m.split('.')[0] in ('datamodules', 'lightning_modules', 'harness')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == []
