"""Bad input never crashes, hangs or scores in silence: a fault-injection suite over every reader
and command.

Each file format the project reads is written good, then broken one way (truncated, random bytes,
empty, NaN where coordinates/scales/cameras/priors are, wrong keys, wrong shapes, pickled objects,
a missing referenced file), and read through the entry point a user would run (``pose3d.data
check``, ``pose3d.evaluate``, ``pose3d.train``, ``pose3d.ppca``, ``pose3d.ablation``); every
command is also run with out-of-range arguments. Every case must end with exit status 2 and one
line on stderr (``error: ...``) naming the file or key, no traceback, no file of an earlier run
changed, and within :data:`DEADLINE_S` seconds (a hang fails the test: :func:`deadline`). The entry
points' ``main()`` run in-process (capsys); :func:`test_real_processes_exit_2_without_a_traceback`
runs a handful as real processes for the exit status and the absence of a traceback.

Adding cases: a new reader adds one ``Format`` to :data:`FORMATS` (how to write a good file into a
dataset folder, which entry point reads it, the name the error must carry) and the faults that
apply to it in :data:`FILE_FAULTS` (``fault -> how to break the file``; generic faults such as
``truncated`` need nothing else); a new command or option adds a row to :data:`ARGUMENT_CASES`
(the ``main``, the arguments, a word the error line must contain).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import scipy.io
import yaml

from pose3d.config import REPO_ROOT

DEADLINE_S = 120  # any case taking longer is a hang (the probe's hang: no output for 300 s)
PROCESS_DEADLINE_S = 240  # a real process also imports torch and Lightning, on a machine that may be busy
RNG = np.random.default_rng(30)


# -- the promise every case checks -----------------------------------------------------------------
@contextlib.contextmanager
def deadline(seconds: int = DEADLINE_S):
    """Fail the test when its block runs longer than ``seconds`` (a hang), instead of waiting forever."""

    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` and the hash of its content."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def call(main: Callable, argv: list[str]) -> int:
    """``main(argv)``'s exit status, also when argparse exits."""
    with deadline():
        try:
            return main(argv)
        except SystemExit as exit_:
            return exit_.code if isinstance(exit_.code, int) else 1


def assert_refused(main: Callable, argv: list[str], capsys, *named: str, keep: Path | None = None) -> str:
    """Run ``main(argv)``: exit 2, one ``error:`` line naming each of ``named``, no traceback, and
    nothing under ``keep`` (an earlier run's files) changed. Returns the line. (``pose3d.data check``
    follows a missing file's line with the picture of the expected layout, which is not counted.)"""
    before = snapshot(keep) if keep is not None else None
    code = call(main, argv)
    err = capsys.readouterr().err
    lines = [line for line in err.split("\nexpected layout:\n", 1)[0].splitlines() if line.strip()]
    assert code == 2, f"exit {code}; stderr: {err}"
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for name in named:
        assert name in lines[0], f"{name!r} not in {lines[0]!r}"
    if keep is not None:  # new files (a run's lock) may appear; no earlier one changes or goes
        after = snapshot(keep)
        assert {name: after.get(name) for name in before} == before, "a file of an earlier run changed"
    return lines[0]


# -- breaking a file ---------------------------------------------------------------------------------
def truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def random_bytes(path: Path) -> None:
    path.write_bytes(RNG.integers(0, 256, max(path.stat().st_size, 512), dtype=np.uint8).tobytes())


def empty(path: Path) -> None:
    path.write_bytes(b"")


GENERIC_FAULTS: dict[str, Callable[[Path], None]] = {"truncated": truncated, "random_bytes": random_bytes, "empty": empty}


# -- the datasets and files, written good ----------------------------------------------------------
def write_frame(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((64, 64, 3), 100, dtype=np.uint8))


def write_h36m_images(root: Path) -> None:
    from tests.fixtures_h36m import write_images_layout

    write_images_layout(root, num_frames=6, subjects=(1, 9), sequences=("Directions",))


def write_h36m_poses(root: Path) -> None:
    from tests.fixtures_h36m import write_poses_layout

    write_poses_layout(root, num_frames=6, subjects=(1, 9), sequences=("Directions",))


def write_mpii(root: Path) -> None:
    entries = [{"image": f"{n}.jpg", "center": [32.0, 32.0], "scale": 0.2, "joints": RNG.uniform(10, 50, (16, 2)).tolist(),
                "joints_vis": [1] * 16} for n in range(2)]
    (root / "annot").mkdir(parents=True)
    for split in ("train", "valid"):
        (root / "annot" / f"{split}.json").write_text(json.dumps(entries))
    for n in range(2):
        write_frame(root / "images" / f"{n}.jpg")


def write_lsp(root: Path) -> None:
    joints = np.zeros((3, 14, 4))
    joints[:2] = RNG.uniform(10, 50, (2, 14, 4))
    root.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(root / "joints.mat", {"joints": joints})
    for n in range(4):
        write_frame(root / "images" / f"im{n + 1:04d}.jpg")


def write_3dhp(root: Path) -> None:
    from tests.test_mpi_inf_3dhp import write_test_sequence, write_train_sequence

    write_test_sequence(root, 1, np.random.default_rng(0), hdf5=True)
    write_train_sequence(root, 1, np.random.default_rng(1))  # a split to train on: data check wants every split


def write_bvh(root: Path) -> None:
    from tests.test_bvh import _write_bvh

    root.mkdir(parents=True, exist_ok=True)
    _write_bvh(root / "walk.bvh", "Xposition Yposition Zposition Zrotation Xrotation Yrotation",
               [[0, 90, 0, 0, 0, 0, 0, 0, 0]] * 3)


@dataclass(frozen=True)
class Format:
    """One file format: a dataset folder holding a good file at ``file``, and the command reading it."""

    write: Callable[[Path], None]  # writes a good copy under the root
    file: str  # the file the faults break, relative to the root
    argv: Callable[[Path], list[str]]  # the command's arguments for the root
    entry: str  # module of the command's main()


FORMATS: dict[str, Format] = {
    "h36m_npz": Format(write_h36m_images, "annotation_body3d/fps10/h36m_train.npz",
                       lambda root: ["check", "human36m", str(root), "data.val_fraction=0.5"], "harness.data"),
    "h36m_cameras_pkl": Format(write_h36m_images, "annotation_body3d/cameras.pkl",
                               lambda root: ["check", "human36m", str(root), "data.val_fraction=0.5"], "harness.data"),
    "h36m_mocap_npz": Format(write_h36m_poses, "data_3d_h36m.npz",
                             lambda root: ["check", "human36m", str(root), "layout=poses", "data.val_fraction=0.5"], "harness.data"),
    "h36m_extrinsics_json": Format(write_h36m_poses, "h36m_cameras_extrinsic_params.json",
                                   lambda root: ["check", "human36m", str(root), "layout=poses", "data.val_fraction=0.5"], "harness.data"),
    "mpii_json": Format(write_mpii, "annot/train.json", lambda root: ["check", "mpii", str(root)], "harness.data"),
    "lsp_mat_v5": Format(write_lsp, "joints.mat", lambda root: ["check", "lsp", str(root)], "harness.data"),
    "3dhp_mat_v73": Format(write_3dhp, "mpi_inf_3dhp_test_set/TS1/annot_data.mat",
                           lambda root: ["check", "mpi_inf_3dhp", str(root), "subjects=[1]", "sequences=[1]", "cameras=[0,2]", "train_stride=5", "test_sequences=[1]"],
                           "harness.data"),
    "frame_jpg": Format(write_mpii, "images/0.jpg", lambda root: ["check", "mpii", str(root)], "harness.data"),
    "bvh": Format(write_bvh, "walk.bvh",
                  lambda root: ["fit", "--source", str(root), "--out", str(root / "prior.npz")], "pose3d.ppca"),
}


def nan_in_npz(key: str, index=(0,)) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        with np.load(path) as data:
            arrays = {k: data[k].copy() for k in data.files}
        arrays[key] = arrays[key].astype(np.float64)
        arrays[key][index] = np.nan
        np.savez(path, **arrays)
    return apply


def edit_npz(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        with np.load(path, allow_pickle=True) as data:
            arrays = {k: data[k] for k in data.files}
        change(arrays)
        with open(path, "wb") as handle:
            np.savez(handle, **arrays)
    return apply


def edit_pickled_npz(key: str, change: Callable[[dict], None]) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        with np.load(path, allow_pickle=True) as data:
            value = data[key].item()
        change(value)
        np.savez(path, **{key: np.array(value, dtype=object)})
    return apply


def edit_json(change: Callable[[object], None]) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        value = json.loads(path.read_text())
        change(value)
        path.write_text(json.dumps(value))  # NaN is written as the bare NaN Python's json reads back
    return apply


def edit_mat(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        content = {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
        change(content)
        scipy.io.savemat(path, content)
    return apply


def edit_hdf5(change: Callable[[h5py.File], None]) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        with h5py.File(path, "r+") as handle:
            change(handle)
    return apply


def _nan_3d(value: dict) -> None:
    first = next(iter(value))
    action = next(iter(value[first]))
    value[first][action][2, 5, 1] = np.nan


def _set(key: str, new) -> Callable[[dict], None]:
    def change(arrays: dict) -> None:
        arrays[key] = new(arrays[key]) if callable(new) else new
    return change


def _pkl_nan(path: Path) -> None:
    cameras = pickle.loads(path.read_bytes())
    first = next(iter(cameras))
    cameras[first]["R"] = np.full((3, 3), np.nan)
    path.write_bytes(pickle.dumps(cameras))


def _hdf5_nan(handle) -> None:
    data = handle["annot3"][()]
    data[0, 0, 0, 0] = np.nan
    handle["annot3"][...] = data


def _bvh_text(old: str, new: str) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new, 1))
    return apply


# fault -> (how to break the file, the words the error line must contain besides the file's name)
FILE_FAULTS: dict[str, dict[str, tuple[Callable[[Path], None], tuple[str, ...]]]] = {
    "h36m_npz": {
        "nan": (nan_in_npz("S", (1, 4, 2)), ("'S'", "NaN")),
        "wrong_keys": (edit_npz(lambda a: a.pop("scale")), ("'scale'",)),
        "wrong_shapes": (edit_npz(_set("part", lambda v: v[:, :, :2])), ("'part'", "shape")),
        "zero_scale": (edit_npz(_set("scale", lambda v: v * 0)), ("'scale'",)),
        "pickled_objects": (edit_npz(_set("center", lambda v: np.array([{"x": 1}] * len(v), dtype=object))),
                            ("pickled",)),
    },
    "h36m_cameras_pkl": {"nan": (_pkl_nan, ("'R'", "NaN"))},
    "h36m_mocap_npz": {
        "nan": (edit_pickled_npz("positions_3d", _nan_3d), ("positions_3d", "NaN")),
        "wrong_keys": (edit_npz(lambda a: a.update(poses=a.pop("positions_3d"))), ("positions_3d",)),
    },
    "h36m_extrinsics_json": {
        "nan": (edit_json(lambda v: v["S1"][0].update(translation=[float("nan")] * 3)), ("translation", "NaN")),
        "wrong_keys": (edit_json(lambda v: v["S1"][0].pop("orientation")), ("orientation",)),
    },
    "mpii_json": {
        "nan": (edit_json(lambda v: v[0].update(center=[float("nan"), 1.0])), ("center", "NaN")),
        "wrong_keys": (edit_json(lambda v: v[0].pop("joints")), ("joints",)),
        "wrong_shapes": (edit_json(lambda v: v[0].update(joints=[[1, 2]] * 3)), ("shape",)),
    },
    "lsp_mat_v5": {
        "nan": (edit_mat(lambda c: c["joints"].__setitem__((0, 3, 1), np.nan)), ("'joints'", "NaN")),
        "wrong_keys": (edit_mat(lambda c: c.update(points=c.pop("joints"))), ("'joints'",)),
        "wrong_shapes": (edit_mat(_set("joints", lambda v: v[:2])), ("'joints'",)),
    },
    "3dhp_mat_v73": {
        "nan": (edit_hdf5(_hdf5_nan), ("'annot3'", "NaN")),
        "wrong_keys": (edit_hdf5(lambda h: h.__delitem__("valid_frame")), ("'valid_frame'",)),
    },
    "frame_jpg": {"truncated_jpeg": (truncated, ("JPEG",)), "not_an_image": (random_bytes, ("decode",)),
                  "missing": (lambda p: p.unlink(), ("missing image",))},
    "bvh": {
        "nan": (_bvh_text("0 90 0", "0 nan 0"), ("MOTION", "NaN")),
        "negative_channels": (_bvh_text("CHANNELS 3", "CHANNELS -2"), ("CHANNELS",)),
        "unbalanced": (_bvh_text("HIERARCHY\n", "HIERARCHY\n}\n"), ("HIERARCHY",)),
    },
}
GENERIC_FAILS = {"frame_jpg"}  # formats whose generic faults are listed above instead


def _cases():
    for name in FORMATS:
        faults = {} if name in GENERIC_FAILS else {fault: (apply, ()) for fault, apply in GENERIC_FAULTS.items()}
        faults.update(FILE_FAULTS.get(name, {}))
        for fault, (apply, words) in faults.items():
            yield pytest.param(name, apply, words, id=f"{name}-{fault}")


@pytest.fixture(scope="module")
def good_copies(tmp_path_factory) -> dict[str, Path]:
    """One good folder per writer, written once; each case breaks a copy."""
    out: dict[str, Path] = {}
    for name, fmt in FORMATS.items():
        key = fmt.write.__name__
        if key not in out:
            out[key] = tmp_path_factory.mktemp(key) / "root"
            fmt.write(out[key])
    return out


def _main(module: str) -> Callable:
    import importlib

    return importlib.import_module(module).main


def test_good_copies_pass(good_copies, capsys):
    """The files the faults break are good as written: each command accepts them (exit 0)."""
    for name, fmt in FORMATS.items():
        if fmt.entry == "harness.data":
            assert call(_main(fmt.entry), fmt.argv(good_copies[fmt.write.__name__])) == 0, (name, capsys.readouterr().err)


@pytest.mark.parametrize("name, apply, words", _cases())
def test_a_broken_file_is_one_line_naming_it(name, apply, words, good_copies, tmp_path, capsys):
    fmt = FORMATS[name]
    root = tmp_path / "root"
    shutil.copytree(good_copies[fmt.write.__name__], root)
    apply(root / fmt.file)
    assert_refused(_main(fmt.entry), fmt.argv(root), capsys, Path(fmt.file).name, *words)


# -- pose priors: the reader, every command that reads one, and the hang ----------------------------
def write_prior(path: Path, **change) -> Path:
    from pose3d.ppca import PosePrior

    basis = np.zeros((1, 2, 17, 3))
    basis[0, 0, 1, 0] = basis[0, 1, 2, 1] = 1.0
    means = RNG.normal(0, 200, (1, 17, 3))
    means -= means[:, :1]
    fields = dict(means=means, basis=basis, variances=np.ones((1, 2)) * 100.0, noise=np.ones(1) * 10.0,
                  weights=np.ones(1), unit_mm=np.float64(1000.0), log_likelihood=np.zeros(1))
    PosePrior(**{k: v for k, v in fields.items()}).save(path)
    if change:
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
        arrays.update(change)
        arrays = {k: v for k, v in arrays.items() if v is not None}
        with open(path, "wb") as handle:
            np.savez(handle, **arrays)
    return path


PRIOR_FAULTS = {
    "truncated": (truncated, ()), "random_bytes": (random_bytes, ("zip",)), "empty": (empty, ("empty",)),
    "missing": (lambda p: p.unlink(), ("does not exist",)),
}
PRIOR_VALUES = {
    "nan_means": ({"means": np.full((1, 17, 3), np.nan)}, ("'means'", "NaN")),
    "nan_variances": ({"variances": np.array([[np.nan, 1.0]])}, ("'variances'", "NaN")),
    "negative_variances": ({"variances": np.array([[-1.0, 1.0]])}, ("'variances'",)),
    "zero_noise": ({"noise": np.zeros(1)}, ("'noise'",)),
    "missing_key": ({"basis": None}, ("'basis'",)),
    "wrong_shape": ({"basis": np.zeros((1, 10, 17, 2))}, ("'basis'", "shape")),
    "object_array": ({"weights": np.array([{"w": 1}], dtype=object)}, ("pickled",)),
}


@pytest.mark.parametrize("fault", list(PRIOR_FAULTS))
def test_a_broken_prior_file_stops_evaluate(fault, tmp_path, capsys):
    from harness import evaluate

    path = write_prior(tmp_path / "prior.npz")
    apply, words = PRIOR_FAULTS[fault]
    apply(path)
    assert_refused(evaluate.main, [str(path), "data.test_size=4"], capsys, "prior.npz", *words)


@pytest.mark.parametrize("fault", list(PRIOR_VALUES))
def test_a_prior_of_bad_values_stops_evaluate(fault, tmp_path, capsys):
    from harness import evaluate

    change, words = PRIOR_VALUES[fault]
    path = write_prior(tmp_path / "prior.npz", **change)
    assert_refused(evaluate.main, [str(path), "data.test_size=4"], capsys, "prior.npz", *words)


RELEASE_FAULTS = {
    "nan": ({"mu": np.full((1, 51), np.nan)}, ("'mu'", "NaN")),
    "wrong_keys": ({"e": None}, ("'e'",)),
    "wrong_shape": ({"mu": np.zeros((1, 50))}, ("'mu'", "shape")),  # the probe's "cannot reshape array"
    "sigma_of_other_size": ({"sigma": np.ones((1, 9))}, ("'sigma'",)),
    "zero_sigma": ({"sigma": np.zeros((1, 3))}, ("'variances'",)),
}


@pytest.mark.parametrize("fault", [*RELEASE_FAULTS, "truncated", "random_bytes"])
def test_a_broken_release_prior_is_one_line(fault, tmp_path):
    from pose3d.ppca import load_tome_release
    from pose3d.readers import FileFormatError

    content = {"mu": RNG.normal(0, 100, (1, 51)), "e": RNG.normal(0, 1, (1, 2, 51)), "sigma": np.ones((1, 3))}
    path = tmp_path / "prob_model_params.mat"
    scipy.io.savemat(path, content)
    load_tome_release(path)  # the good file loads
    words: tuple[str, ...] = ()
    if fault in RELEASE_FAULTS:
        change, words = RELEASE_FAULTS[fault]
        content.update(change)
        scipy.io.savemat(path, {k: v for k, v in content.items() if v is not None})
    else:
        GENERIC_FAULTS[fault](path)
    with deadline(), pytest.raises(FileFormatError) as error:
        load_tome_release(path)
    assert "\n" not in str(error.value) and "prob_model_params.mat" in str(error.value)
    assert all(word in str(error.value) for word in words), str(error.value)


def test_a_lifting_run_with_a_nan_prior_stops_at_once(tmp_path, smoke_args, capsys):
    """The probe's hang: ``model.prior`` holding NaN made the lifting's factorisation search run
    forever; now the prior is refused before any model is built, and the search is bounded."""
    from harness.train import main

    path = write_prior(tmp_path / "nan.npz", variances=np.array([[np.nan, 1.0]]))
    assert_refused(main, ["experiment=tome_lifting", f"model.prior={path}", *smoke_args], capsys, "nan.npz", "NaN",
                   keep=tmp_path)


def test_the_factorisation_search_is_bounded():
    import torch

    from pose3d.lifting import _cholesky

    with deadline(10):
        with pytest.raises(ValueError, match="NaN or infinity"):
            _cholesky(torch.full((2, 3, 3), float("nan"), dtype=torch.float64))
        with pytest.raises(ValueError, match="not positive definite"):
            _cholesky(-torch.eye(3, dtype=torch.float64).expand(2, 3, 3))


# -- images: the reader --------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".jpg", ".png"])
@pytest.mark.parametrize("fault", ["truncated", "random_bytes", "empty"])
def test_a_broken_image_is_one_line(fault, suffix, tmp_path):
    from pose3d.readers import FileFormatError, read_image

    path = tmp_path / f"frame{suffix}"
    cv2.imwrite(str(path), RNG.integers(0, 255, (48, 48, 3), dtype=np.uint8))
    assert read_image(path).shape == (48, 48, 3)
    GENERIC_FAULTS[fault](path)
    with pytest.raises(FileFormatError, match=rf"frame\{suffix}: [^\n]*; expected a JPEG or PNG image"):
        read_image(path)


# -- sweep files ---------------------------------------------------------------------------------------
SWEEP_FAULTS = {
    "random_bytes": (lambda c: None, random_bytes, ("binary",)),
    "invalid_yaml": (lambda c: None, lambda p: p.write_text("method: [grid\n"), ("YAML",)),
    "other_command": (lambda c: c.update(command=["bash", "-c", "touch oops"]), None, ("bash -c",)),
    "other_program": (lambda c: (c.pop("command"), c.update(program="evil.py")), None, ("evil.py",)),
    "env_python_script": (lambda c: c.update(command=["/usr/bin/env", "python", "evil.py", "${args_no_hyphens}"]),
                          None, ("evil.py",)),
}


@pytest.mark.parametrize("fault", list(SWEEP_FAULTS))
def test_a_sweep_file_runs_what_it_says_or_nothing(fault, tmp_path, capsys):
    from harness import ablation

    config = yaml.safe_load((REPO_ROOT / "ablations" / "fusion.yaml").read_text())
    change, breaker, words = SWEEP_FAULTS[fault]
    change(config)
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(config))
    if breaker:
        breaker(path)
    for action in ("plan", "run"):
        assert_refused(ablation.main, [action, str(path), "--", f"results_dir={tmp_path}"], capsys, "grid.yaml", *words,
                       keep=tmp_path)
    assert not (tmp_path / "oops").exists()


def test_sbatch_that_cannot_reach_a_cluster_is_one_line(tmp_path, monkeypatch, capsys):
    from harness import ablation

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "sbatch").write_text("#!/bin/sh\necho 'sbatch: error: resolve_ctls_from_dns_srv: Unknown host' >&2\n"
                                    "echo 'sbatch: error: Batch job submission failed: Unable to contact slurm controller' >&2\n"
                                    "exit 1\n")
    for tool in ("srun", "sbatch"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({"method": "grid", "command": ["${env}", "python", "-m", "pose3d.train", "${args_no_hyphens}"],
                                    "parameters": {"experiment": {"value": "baseline"}, "preset": {"value": "smoke"},
                                                   "seed": {"values": [0]}}}))
    assert_refused(ablation.main, ["run", str(path), "--launcher", "slurm", "--", f"results_dir={tmp_path / 'results'}"],
                   capsys, "sbatch", "Unable to contact slurm controller")


# -- every command with out-of-range arguments -------------------------------------------------------
@pytest.fixture
def earlier_run(tmp_path) -> Path:
    """A results folder holding an earlier run's files, which no refused command may touch."""
    results = tmp_path / "results"
    run = results / "runs" / "baseline-default-smoke-s0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "metrics.json").write_text('{"test/mpjpe": 100.0}\n')
    (run / "config.yaml").write_text("experiment: baseline\n")
    (run / "checkpoints" / "last.ckpt").write_bytes(b"earlier")
    (results / "bench").mkdir()
    (results / "bench" / "render.json").write_text("{}\n")
    (results / "prior.npz").write_bytes(b"earlier prior")
    return results


def _blocked(results: Path) -> str:
    """A path no command can write: a folder under a regular file (root may write anywhere else)."""
    return str(results / "runs" / "baseline-default-smoke-s0" / "metrics.json" / "out")


# (module, arguments (``{results}`` and ``{blocked}`` filled in), words the error line must contain)
ARGUMENT_CASES: list[tuple[str, list[str], tuple[str, ...]]] = [
    ("harness.bench", ["render", "--batches", "0", "--out", "{results}/bench"], ("--batches", ">= 1")),
    ("harness.bench", ["lifting", "--batch-size", "0", "--out", "{results}/bench"], ("--batch-size",)),
    ("harness.bench", ["two_d_precision", "--preset", "huge"], ("--preset", "huge")),
    ("harness.bench", ["render", "--device", "cuda", "--out", "{results}/bench"], ("--device", "CUDA")),
    ("harness.bench", ["steps", "--experiments", "nope", "--out", "{results}/bench"], ("nope",)),
    ("harness.bench", ["render", "--rounds", "-1", "--out", "{results}/bench"], ("--rounds",)),
    ("harness.bench", ["render", "--out", "{blocked}"], ("metrics.json",)),
    ("pose3d.ppca", ["fit", "--source", "synthetic", "--components", "0", "--out", "{results}/prior.npz"], ("--components",)),
    ("pose3d.ppca", ["fit", "--source", "synthetic", "--holdout", "1.5", "--out", "{results}/prior.npz"], ("--holdout",)),
    ("pose3d.ppca", ["fit", "--source", "synthetic", "--basis", "60", "--out", "{results}/prior.npz"], ("--basis",)),
    ("pose3d.ppca", ["fit", "--source", "synthetic", "--seed", "-1", "--out", "{results}/prior.npz"], ("--seed",)),
    ("pose3d.ppca", ["fit", "--source", "synthetic", "--subjects", "S9", "--out", "{results}/prior.npz"], ("--subjects",)),
    ("pose3d.ppca", ["fit", "--source", "synthetic", "--out", "{blocked}/prior.npz"], ("metrics.json",)),
    ("pose3d.ppca", ["fit", "--source", "nowhere", "--out", "{results}/prior.npz"], ("nowhere",)),
    ("harness.evaluate", ["{prior}", "data.test_size=0"], ("data.test_size",)),
    ("harness.evaluate", ["{prior}", "lifting.rotations=0"], ("lifting.rotations",)),
    ("harness.evaluate", ["{prior}", "out={blocked}/lift.json"], ("metrics.json",)),
    ("harness.gpu_check", ["--device", "cpu", "--experiments", "nope", "--out", "{results}/gpu.json"], ("nope",)),
    ("harness.gpu_check", ["--device", "cpu", "--steps", "0", "--out", "{results}/gpu.json"], ("--steps",)),
    ("harness.gpu_check", ["--device", "cpu", "--preset", "huge", "--out", "{results}/gpu.json"], ("--preset",)),
    ("harness.gpu_check", ["--device", "cpu", "--modes", "fp8", "--out", "{results}/gpu.json"], ("--modes", "fp8")),
    ("harness.gpu_check", ["--device", "cpu", "--out", "{blocked}/gpu.json"], ("metrics.json",)),
    ("harness.ablation", ["plan", "ablations/fusion.yaml", "--seeds", "0"], ("--seeds",)),
    ("harness.ablation", ["plan", "ablations/fusion.yaml", "--preset", "huge"], ("--preset",)),
    ("harness.ablation", ["run", "ablations/fusion.yaml", "--devices", "first", "--", "results_dir={results}"], ("--devices",)),
    ("harness.ablation", ["run", "ablations/fusion.yaml", "--jobs", "0", "--", "results_dir={results}"], ("--jobs",)),
    ("harness.ablation", ["plan", "ablations/nope.yaml"], ("nope.yaml",)),
    ("harness.compare", ["summary", "--seeds", "-2", "--", "results_dir={results}"], ("--seeds",)),
    ("harness.compare", ["summary", "--preset", "huge", "--", "results_dir={results}"], ("--preset",)),
    ("harness.report", ["--results", "{results}/nowhere"], ("does not exist",)),
    ("harness.report", ["--results", "{results}", "{results}/absent.md"], ("absent.md", "markdown")),
    ("harness.data", ["check", "imagenet", "{results}"], ("imagenet",)),
    ("harness.data", ["check", "lsp", "{results}/none"], ("data.root",)),
    ("harness.data", ["check", "human36m", "{results}", "val_fraction=2"], ("val_fraction",)),
    ("harness.data", ["check", "lsp", "{results}", "image_size=0"], ("image_size",)),
]
TRAIN_CASES: list[tuple[list[str], tuple[str, ...]]] = [
    (["data.image_size=0"], ("data.image_size",)),
    (["data.image_size=-1"], ("data.image_size",)),
    (["data.image_size=7"], ("data.image_size", "multiple of 16")),
    (["seed=-1"], ("seed",)),
    (["seed=99999999999"], ("seed", "4294967295")),
    (["optim.lr=.nan"], ("optim.lr", "nan", "> 0")),
    (["optim.lr=.inf"], ("optim.lr", "inf", "> 0")),
    (["trainer.strategy=nonsense"], ("trainer.strategy", "ddp")),
    (["trainer.accelerator=gpu"], ("trainer.accelerator", "cpu")),
    (["data.wild_fraction=2"], ("data.wild_fraction",)),
    (["data.distance_min_mm=-100"], ("data.distance_min_mm",)),
    (["data.distance_min_mm=7000"], ("data.distance_min_mm", "data.distance_max_mm")),
    (["experiment=../experiments/baseline"], ("unknown experiment",)),
    ([f"name={'x' * 300}"], ("characters",)),
    (["experiment=tome_lifting", "data.image_size=66"], ("data.image_size", "multiple of 4")),
]


def _fill(args: list[str], results: Path, prior: str) -> list[str]:
    return [a.format(results=results, blocked=_blocked(results), prior=prior) for a in args]


@pytest.mark.parametrize("module, args, words", ARGUMENT_CASES,
                         ids=[f"{m.split('.')[-1]}-{'-'.join(a[:3])}" for m, a, _ in ARGUMENT_CASES])
def test_a_command_with_an_out_of_range_argument_is_one_line(module, args, words, earlier_run, tmp_path, capsys,
                                                           monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same answer on a GPU machine
    monkeypatch.chdir(REPO_ROOT)
    prior = str(write_prior(tmp_path / "good_prior.npz"))
    assert_refused(_main(module), _fill(args, earlier_run, prior), capsys, *words, keep=earlier_run)


@pytest.mark.parametrize("args, words", TRAIN_CASES, ids=[" ".join(a)[:40] for a, _ in TRAIN_CASES])
def test_a_training_run_with_an_out_of_range_value_is_one_line(args, words, earlier_run, smoke_args, capsys, monkeypatch):
    import torch

    from harness.train import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    common = [a for a in smoke_args if not a.startswith("results_dir=")] + [f"results_dir={earlier_run}"]
    assert_refused(main, [*args, *common], capsys, *words, keep=earlier_run)


# -- a handful as real processes: the exit status and no traceback ----------------------------------
PROCESS_CASES = [
    ["pose3d.train", "data.image_size=0", "preset=smoke", "logger.wandb=false"],
    ["pose3d.bench", "render", "--batches", "0"],
    ["pose3d.ppca", "fit", "--source", "synthetic", "--components", "0", "--out", "x.npz"],
]


@pytest.mark.parametrize("argv", PROCESS_CASES, ids=[a[0] for a in PROCESS_CASES])
def test_real_processes_exit_2_without_a_traceback(argv, tmp_path):
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run([sys.executable, "-m", *argv], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=PROCESS_DEADLINE_S)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written
