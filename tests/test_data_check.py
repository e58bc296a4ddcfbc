"""``python -m pose3d.data check DATASET PATH``: a report, or the missing file and the expected layout (exit 2)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from pose3d.config import REPO_ROOT
from harness.data import main
from tests.fixtures_h36m import write_images_layout, write_poses_layout


@pytest.fixture(scope="module")
def images_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("check_images")
    write_images_layout(root, num_frames=12)
    return root


def test_report_of_a_good_copy(images_root, capsys):
    """12 frames a sequence: too short for the default validation (the last 10 %), so S8 validates."""
    assert main(["check", "human36m", str(images_root), "data.val_subjects=[8]"]) == 0
    out = capsys.readouterr().out
    for expected in ("images layout", "S1 S5 S6 S7 S8", "S9 S11", "54138969", "Protocol #1", "train:",
                     "val: 36 frames (subjects S8", "test:", "sampled train frames decode"):
        assert expected in out


def test_report_of_the_pose_layout_with_options(tmp_path, capsys):
    write_poses_layout(tmp_path, num_frames=8, subjects=(1, 9, 11))
    assert main(["check", "human36m", str(tmp_path), "layout=poses", "protocol=2", "val_subjects=[9]"]) == 0
    out = capsys.readouterr().out
    assert "poses layout" in out and "Protocol #2" in out and "images: none" in out
    assert "val: 24 frames (subjects S9, every 5th frame) -- held-out training subjects" in out


def test_the_keys_are_named_as_a_training_run_names_them(tmp_path, capsys):
    """``data.val_subjects=[9]``, as ``python -m pose3d.train`` takes it; the bare form says the same."""
    write_poses_layout(tmp_path, num_frames=8, subjects=(1, 9, 11))
    assert main(["check", "human36m", str(tmp_path), "data.layout=poses", "data.protocol=2", "data.val_subjects=[9]"]) == 0
    prefixed = capsys.readouterr().out
    assert main(["check", "human36m", str(tmp_path), "layout=poses", "protocol=2", "val_subjects=[9]"]) == 0
    assert capsys.readouterr().out == prefixed and "subjects S9, every 5th frame" in prefixed
    assert main(["check", "human36m", str(tmp_path), "data.layout=videos"]) == 2
    assert "bad value for data.layout: 'videos'; choose one of: images, poses" in capsys.readouterr().err
    assert main(["check", "human36m", str(tmp_path), f"data.root={tmp_path}"]) == 2
    assert "give the dataset folder as PATH, not data.root=" in capsys.readouterr().err
    assert main(["check", "human36m", str(tmp_path), "data.name=mpii"]) == 2
    assert "data.name=mpii differs from DATASET human36m" in capsys.readouterr().err


def test_an_empty_split_is_an_error_after_the_report(tmp_path, capsys):
    """8 frames a sequence: the last 10 % of each (the default validation) holds no 5th frame."""
    write_poses_layout(tmp_path, num_frames=8, subjects=(1, 9, 11))
    assert main(["check", "human36m", str(tmp_path), "data.layout=poses"]) == 2
    captured = capsys.readouterr()
    assert "  val: 0 frames (subjects S1 S5 S6 S7 S8, every 5th frame)" in captured.out  # what was found
    assert captured.err.count("\n") == 1
    assert captured.err.startswith(f"error: the val split of {tmp_path} is empty (0 frames); expected frames in every "
                                   "split a run reads")
    assert main(["check", "human36m", str(tmp_path), "data.layout=poses", "data.actions=[Eating]"]) == 2
    assert f"error: the train split of {tmp_path} has no record of data.actions=['Eating']" in capsys.readouterr().err


def test_help_names_the_arguments_and_where_the_keys_are(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m pose3d.data check DATASET PATH [data.key=value ...]")
    for dataset, source in (("human36m", "datamodules/human36m.py"), ("mpii", "datamodules/mpii.py"),
                            ("lsp", "datamodules/lsp.py"), ("mpi_inf_3dhp", "datamodules/mpi_inf_3dhp.py")):
        assert f"  {dataset} " in out and source in out
    assert "synthetic" not in out and "--keys" in out


def test_missing_file_names_it_and_shows_the_layout(images_root, tmp_path, capsys):
    import shutil

    root = tmp_path / "broken"
    shutil.copytree(images_root / "annotation_body3d", root / "annotation_body3d")
    (root / "annotation_body3d/cameras.pkl").unlink()
    assert main(["check", "human36m", str(root)]) == 2
    err = capsys.readouterr().err
    first, rest = err.split("\n", 1)
    assert first.startswith("error: missing ") and "cameras.pkl" in first
    assert "expected layout:" in rest and "h36m_train.npz" in rest


def test_missing_images_are_reported(images_root, tmp_path, capsys):
    import shutil

    root = tmp_path / "no_images"
    shutil.copytree(images_root / "annotation_body3d", root / "annotation_body3d")
    (root / "images").mkdir()
    assert main(["check", "human36m", str(root)]) == 2
    assert "missing image" in capsys.readouterr().err


def test_unknown_dataset_and_bad_arguments(tmp_path, capsys):
    assert main(["check", "imagenet", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown dataset 'imagenet'; choose one of: " in err and "human36m" in err and "synthetic" not in err
    assert main(["check", "human36m", str(tmp_path), "layout=videos"]) == 2
    assert "images, poses" in capsys.readouterr().err
    assert main(["check", "human36m", str(tmp_path), "nonsense=1"]) == 2
    assert "nonsense" in capsys.readouterr().err
    assert main(["check"]) == 2
    assert "usage" in capsys.readouterr().err


def test_module_entry_point():
    """``python -m pose3d.data`` without arguments prints the usage and the datasets (and imports no DataModule)."""
    result = subprocess.run([sys.executable, "-m", "pose3d.data"], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: python -m pose3d.data check DATASET PATH") and "human36m" in result.stderr
