"""Files from elsewhere run no code: every entry point that reads a checkpoint or a pickle refuses a
crafted file (one line, exit 2, and the file's payload never runs), and still reads the project's
own checkpoints and the published cameras.pkl layout."""
from __future__ import annotations

import json
import os
import pathlib
import pickle
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from harness import compare
from harness import data as data_check
from harness.checkpoint_io import SafeCheckpointIO
from harness.train import build_trainer, load_config, main
from pose3d.config import REPO_ROOT, ConfigError, available_experiments
from pose3d.h36m_mocap import PoseFileError, read_positions_3d
from pose3d.safe_load import NpzContentError, UnsafeFileError, load_checkpoint, read_npz_object, read_pickle
from tests.fixtures_h36m import write_poses_layout
from tests.test_compare import fake_run


class TouchesMarker:
    """Unpickling this creates ``marker``: what a crafted file could do instead."""

    def __init__(self, marker):
        self.marker = pathlib.Path(marker)

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


class RunsShell:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def crafted_checkpoint(path, marker, payload=TouchesMarker, **save) -> pathlib.Path:
    """A checkpoint that looks like ours (a baseline's hyper-parameters) and carries a payload."""
    torch.save({"state_dict": {}, "hyper_parameters": {"model": {"name": "baseline"}}, "epoch": 0,
                "payload": payload(marker)}, path, **save)
    return path


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def assert_refused(line: str, path, marker) -> None:
    assert f"refused to load {path}: it would run " in line and "pathlib.Path" in line, line
    assert not pathlib.Path(marker).exists()


@pytest.fixture(scope="module")
def own_run(tmp_path_factory):
    """A baseline run trained at the smoke preset: its folder (config, metrics, best and last checkpoints)."""
    root = tmp_path_factory.mktemp("own")
    assert main(["experiment=baseline", "preset=smoke", f"results_dir={root}", "logger.wandb=false",
                 "trainer.enable_progress_bar=false", "name=own"]) == 0
    return root / "runs" / "own"


@pytest.fixture
def copied_run(own_run, tmp_path):
    """A copy of the smoke run under this test's own results folder."""
    shutil.copytree(own_run, tmp_path / "runs" / "own")
    return tmp_path / "runs" / "own"


# -- the loaders themselves ---------------------------------------------------------------------
@pytest.mark.parametrize("payload, legacy, runs", [
    (TouchesMarker, False, "builtins.getattr, pathlib.Path, pathlib.PosixPath"),
    (RunsShell, False, "posix.system"),
    (TouchesMarker, True, "getattr"),  # torch's legacy (not zip) format: the first global, as torch names it
    (RunsShell, True, "posix.system"),
])
def test_a_checkpoint_that_would_run_code_is_refused_naming_the_file_and_what_it_runs(tmp_path, payload, legacy, runs):
    marker = tmp_path / "marker"
    path = crafted_checkpoint(tmp_path / "crafted.ckpt", marker, payload, _use_new_zipfile_serialization=not legacy)
    for mmap in (False, True):
        with pytest.raises(UnsafeFileError) as error:
            load_checkpoint(path, mmap=mmap)
        assert str(error.value) == (f"refused to load {path}: it would run {runs}; "
                                    "only tensors, arrays, numbers, strings, lists and dicts are read from a file")
    assert isinstance(error.value, ConfigError) and not marker.exists()
    torch.load(path, weights_only=False)  # the payload is real: an unrestricted load runs it
    assert marker.exists()


def test_the_trainer_reads_checkpoints_through_the_safe_loader_even_when_torch_is_told_otherwise(
        own_run, tmp_path, monkeypatch):
    """Lightning's own reader leaves ``weights_only`` unset, which this variable turns into False."""
    from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "marker"
    path = crafted_checkpoint(tmp_path / "crafted.ckpt", marker)
    cfg = load_config(["experiment=baseline", "preset=smoke", "logger.wandb=false", f"results_dir={tmp_path}"])
    io = build_trainer(cfg, tmp_path / "run").strategy.checkpoint_io
    assert isinstance(io, SafeCheckpointIO)
    with pytest.raises(UnsafeFileError):
        io.load_checkpoint(path)
    assert not marker.exists()
    own = io.load_checkpoint(own_run / "checkpoints" / "last.ckpt")
    assert own["global_step"] > 0 and own["state_dict"]
    with pytest.warns(UserWarning, match="TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"):
        TorchCheckpointIO().load_checkpoint(path)  # what the trainer did before
    assert marker.exists()


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_the_published_cameras_pkl_layout_reads_as_data_in_every_pickle_protocol(tmp_path, protocol):
    cameras = {("S1", "54138969"): {"R": np.eye(3), "T": np.arange(3.0).reshape(3, 1), "f": np.full((2, 1), 1145.0),
                                    "c": np.array([[512.5], [515.4]]), "k": np.zeros((3, 1)), "w": 1000, "h": 1002,
                                    "name": "camera1", "id": "54138969", "scale": np.float32(0.5), "n": np.int64(7)}}
    path = tmp_path / "cameras.pkl"
    path.write_bytes(pickle.dumps(cameras, protocol=protocol))
    read = read_pickle(path)
    entry = read[("S1", "54138969")]
    assert list(read) == [("S1", "54138969")] and entry["w"] == 1000 and entry["name"] == "camera1"
    assert np.array_equal(entry["T"], cameras[("S1", "54138969")]["T"]) and entry["T"].shape == (3, 1)
    assert entry["scale"] == np.float32(0.5) and entry["scale"].dtype == np.float32 and entry["n"] == 7


def test_a_pickle_naming_anything_but_data_is_refused(tmp_path):
    marker = tmp_path / "marker"
    for name, value, runs in (("set.pkl", {1, 2}, "__builtin__.set"),  # protocol 2 calls set() to build one
                              ("payload.pkl", [1, {"x": TouchesMarker(marker)}], "__builtin__.getattr")):
        (tmp_path / name).write_bytes(pickle.dumps(value, protocol=2))
        with pytest.raises(UnsafeFileError, match=re.escape(f"{tmp_path / name}: it would run {runs};")):
            read_pickle(tmp_path / name)
    (tmp_path / "touch.pkl").write_bytes(pickle.dumps(TouchesMarker(marker)))
    with pytest.raises(UnsafeFileError, match="touch.pkl: it would run pathlib.Path.touch;"):
        read_pickle(tmp_path / "touch.pkl")
    assert not marker.exists()


def test_npz_object_arrays_read_as_data_and_a_payload_is_refused(tmp_path):
    marker = tmp_path / "marker"
    np.savez(tmp_path / "good.npz", table={"S1": [np.ones(2), ("a", 3)]}, plain=np.zeros(3))
    value = read_npz_object(tmp_path / "good.npz", "table")
    assert list(value) == ["S1"] and np.array_equal(value["S1"][0], np.ones(2)) and value["S1"][1] == ("a", 3)
    with pytest.raises(NpzContentError, match=r"'plain' is a float64 array of shape \(3,\), not a pickled object"):
        read_npz_object(tmp_path / "good.npz", "plain")
    with pytest.raises(NpzContentError, match=r"has no 'other' \(it holds table, plain\)"):
        read_npz_object(tmp_path / "good.npz", "other")
    np.savez(tmp_path / "bad.npz", table={"S1": TouchesMarker(marker)})
    with pytest.raises(UnsafeFileError, match=r"bad.npz \('table'\): it would run pathlib.Path.touch;"):
        read_npz_object(tmp_path / "bad.npz", "table")
    assert not marker.exists()


# -- the entry points -------------------------------------------------------------------------------
def test_resume_and_test_only_refuse_a_crafted_checkpoint(copied_run, tmp_path, capsys):
    """(Resuming from the run's own checkpoint: tests/test_train.py, through the same reader.)"""
    args = ["experiment=baseline", "preset=smoke", f"results_dir={tmp_path}", "logger.wandb=false",
            "trainer.enable_progress_bar=false", "name=own"]
    last = copied_run / "checkpoints" / "last.ckpt"
    marker = tmp_path / "marker"
    crafted_checkpoint(last, marker)
    capsys.readouterr()
    assert main([*args, "ckpt_path=last"]) == 2
    assert_refused(error_line(capsys), last, marker)
    crafted = crafted_checkpoint(tmp_path / "crafted.ckpt", marker)
    assert main([*args[:-1], "name=other", f"ckpt_path={crafted}", "test_only=true"]) == 2
    assert_refused(error_line(capsys), crafted, marker)


def test_init_from_refuses_a_crafted_checkpoint_and_fine_tunes_from_its_own(own_run, tmp_path, capsys):
    args = ["experiment=baseline", "preset=smoke", f"results_dir={tmp_path}", "logger.wandb=false",
            "trainer.enable_progress_bar=false", "trainer.max_epochs=1"]
    marker = tmp_path / "marker"
    crafted = crafted_checkpoint(tmp_path / "crafted.ckpt", marker)
    capsys.readouterr()
    assert main([*args, f"init_from={crafted}"]) == 2
    assert_refused(error_line(capsys), crafted, marker)
    assert main([*args, f"init_from={own_run}", "name=tuned"]) == 0
    assert re.search(r"init_from \S+best.ckpt: loaded (\d+) of \1 tensors", capsys.readouterr().out)


def test_a_crafted_2d_network_checkpoint_is_refused(tmp_path, capsys):
    marker = tmp_path / "marker"
    crafted = crafted_checkpoint(tmp_path / "heatmap2d.ckpt", marker)
    capsys.readouterr()
    assert main(["experiment=tekin_fusion", "preset=smoke", f"results_dir={tmp_path}", "logger.wandb=false",
                 f"model.two_d.checkpoint={crafted}"]) == 2
    assert_refused(error_line(capsys), crafted, marker)


def test_compare_summary_refuses_a_crafted_checkpoint(tmp_path, capsys):
    sweep = tmp_path / "compare.yaml"
    config = yaml.safe_load(compare.COMPARE_FILE.read_text())
    config["parameters"]["experiment"]["values"] = ["baseline"]
    sweep.write_text(yaml.safe_dump(config))
    fake_run(tmp_path / "compare", "baseline", 0, 100.0)
    run_dir = next((tmp_path / "compare" / "runs").iterdir())
    marker = tmp_path / "marker"
    (run_dir / "checkpoints").mkdir()
    crafted = crafted_checkpoint(run_dir / "checkpoints" / "best.ckpt", marker)
    capsys.readouterr()
    assert compare.main(["summary", "--sweep-file", str(sweep), "--preset", "smoke", "--seeds", "1", "--",
                         f"results_dir={tmp_path}"]) == 2
    assert_refused(error_line(capsys), crafted, marker)
    assert json.loads((run_dir / "metrics.json").read_text())["test/mpjpe"] == 100.0  # nothing lost


@pytest.fixture
def poses_root(tmp_path):
    root = tmp_path / "h36m"
    write_poses_layout(root, num_frames=6, subjects=(1, 9), cameras="pkl")
    return root


def test_the_published_cameras_pkl_loads_and_a_crafted_one_is_refused(poses_root, tmp_path, capsys):
    assert data_check.main(["check", "human36m", str(poses_root), "layout=poses", "val_fraction=0.5"]) == 0  # 1 val frame
    capsys.readouterr()
    path = poses_root / "annotation_body3d" / "cameras.pkl"
    cameras = read_pickle(path)
    marker = tmp_path / "marker"
    cameras[("S1", "54138969")]["note"] = TouchesMarker(marker)
    path.write_bytes(pickle.dumps(cameras))
    assert data_check.main(["check", "human36m", str(poses_root), "layout=poses"]) == 2
    assert_refused(error_line(capsys), path, marker)


def test_a_crafted_pose_npz_is_refused(poses_root, tmp_path, capsys):
    marker = tmp_path / "marker"
    path = poses_root / "data_3d_h36m.npz"
    np.savez(path, positions_3d={"S1": {"Walking": TouchesMarker(marker)}})
    assert data_check.main(["check", "human36m", str(poses_root), "layout=poses"]) == 2
    line = capsys.readouterr().err.splitlines()[0]  # then the layout the data check expects
    assert_refused(line, f"{path} ('positions_3d')", marker)
    with pytest.raises(PoseFileError, match="refused to load"):
        read_positions_3d(path)
    assert not marker.exists()


@pytest.mark.slow
def test_python_m_pose3d_train_refuses_a_crafted_resume_with_exit_2_and_one_line(copied_run, tmp_path):
    marker = tmp_path / "marker"
    last = crafted_checkpoint(copied_run / "checkpoints" / "last.ckpt", marker, RunsShell)
    result = subprocess.run([sys.executable, "-m", "pose3d.train", "experiment=baseline", "preset=smoke",
                             f"results_dir={tmp_path}", "logger.wandb=false", "name=own", "ckpt_path=last"],
                            cwd=REPO_ROOT, env={**os.environ, "WANDB_MODE": "disabled"}, capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.strip() == (
        f"error: refused to load {last}: it would run posix.system; "
        "only tensors, arrays, numbers, strings, lists and dicts are read from a file")
    assert not marker.exists()


# -- no other reader ----------------------------------------------------------------------------------
def test_no_unsafe_reader_outside_the_safe_load_module():
    """No unpickling, no numpy pickles, no unrestricted torch.load, and no torch.load at all but the one."""
    unsafe = re.compile(r"pickle\.load|allow_pickle\s*=\s*True|weights_only\s*=\s*False|torch\.load\(")
    assert len(unsafe.findall((REPO_ROOT / "pose3d" / "safe_load.py").read_text())) >= 3  # the pattern finds them
    packages = ("pose3d", "harness", "datamodules", "lightning_modules")
    found = [f"{path.relative_to(REPO_ROOT)}:{number}" for package in packages
             for path in sorted((REPO_ROOT / package).rglob("*.py")) if path != REPO_ROOT / "pose3d" / "safe_load.py"
             for number, line in enumerate(path.read_text().splitlines(), 1) if unsafe.search(line)]
    assert found == []


@pytest.mark.slow
@pytest.mark.parametrize("experiment", available_experiments())
def test_every_experiment_resumes_and_fine_tunes_from_its_own_checkpoints(experiment, tmp_path):
    args = [f"experiment={experiment}", "preset=smoke", f"results_dir={tmp_path}", "logger.wandb=false",
            "trainer.enable_progress_bar=false"]
    assert main([*args, "name=first"]) == 0
    last = tmp_path / "runs" / "first" / "checkpoints" / "last.ckpt"
    steps, epochs = load_checkpoint(last)["global_step"], load_config(args).trainer.max_epochs
    assert main([*args, "name=first", "ckpt_path=last", f"trainer.max_epochs={epochs + 1}"]) == 0
    assert load_checkpoint(last)["global_step"] > steps
    assert main([*args, "name=tuned", f"init_from={tmp_path / 'runs' / 'first'}"]) == 0
