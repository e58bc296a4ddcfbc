"""The one reader of VideoPose3D's Human3.6M pose files, and its two users (PPCA fitting, the
Human3.6M pose-only layout)."""
from __future__ import annotations

import zipfile

import numpy as np
import pytest

from pose3d import ppca
from pose3d.h36m_mocap import PoseFileError, read_positions_2d, read_positions_3d
from pose3d.skeleton import H36M_32_TO_17

RAN = []  # filled by mark() when a pickle manages to call it


def mark(what: str) -> None:
    RAN.append(what)


class Payload:
    """An object whose unpickling calls a function: what a crafted file could do."""

    def __reduce__(self):
        return mark, ("unpickled",)


def write(path, **arrays):
    np.savez_compressed(path, **arrays)
    return path


def positions(rng, joints=32):
    return {"S1": {"Walking": rng.normal(size=(5, joints, 3)).astype(np.float32)},
            "S5": {"Sitting 1": rng.normal(size=(3, joints, 3)).astype(np.float32)}}


def one_line(error) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_reads_and_reduces_32_joints_to_17(tmp_path):
    data = positions(np.random.default_rng(0))
    out = read_positions_3d(write(tmp_path / "data_3d_h36m.npz", positions_3d=data))
    assert sorted(out) == ["S1", "S5"] and list(out["S5"]) == ["Sitting 1"]
    np.testing.assert_array_equal(out["S1"]["Walking"], data["S1"]["Walking"][:, list(H36M_32_TO_17)])
    only = read_positions_3d(tmp_path / "data_3d_h36m.npz", subjects=["S5"])
    assert list(only) == ["S5"]
    with pytest.raises(PoseFileError, match="has no subject S9; it has S1, S5"):
        read_positions_3d(tmp_path / "data_3d_h36m.npz", subjects=["S9"])
    already = positions(np.random.default_rng(1), joints=17)
    out = read_positions_3d(write(tmp_path / "17.npz", positions_3d=already))
    np.testing.assert_array_equal(out["S1"]["Walking"], already["S1"]["Walking"])


def test_reads_2d_views(tmp_path):
    views = [np.full((4, 32, 2), float(k), dtype=np.float32) for k in range(4)]
    out = read_positions_2d(write(tmp_path / "d2.npz", positions_2d={"S1": {"Walking": views}}, metadata={"x": 1}))
    assert [v.shape for v in out["S1"]["Walking"]] == [(4, 17, 2)] * 4 and out["S1"]["Walking"][3][0, 0, 0] == 3.0


@pytest.mark.parametrize("make, expected", [
    (lambda p: p, "no such file"),
    (lambda p: p.write_text("not a zip") or p, "cannot read"),
    (lambda p: write(p, poses=np.zeros((2, 17, 3))), "expected positions_3d (VideoPose3D's dictionary); found poses"),
    (lambda p: write(p, **{f"S{s}/{a}": np.zeros((2, 17, 3)) for s in (1, 5) for a in ("Directions", "Eating")}),
     "found 4 keys like S1/Directions, S1/Eating, S5/Directions"),
    (lambda p: write(p, positions_3d=np.zeros((2, 17, 3))), "'positions_3d' is a float64 array of shape (2, 17, 3)"),
    (lambda p: write(p, positions_3d={"S1": {"Walking": np.zeros((4, 20, 3))}}),
     "positions_3d['S1']['Walking'] is float64 (4, 20, 3); expected (T, 17 or 32, 3)"),
    (lambda p: write(p, positions_3d={}), "positions_3d is empty"),
    (lambda p: write(p, positions_3d=[1, 2]), "is a int64 array"),
])
def test_bad_files_are_one_line_errors_naming_the_file(tmp_path, make, expected):
    path = tmp_path / "data_3d_h36m.npz"
    make(path)
    with pytest.raises(PoseFileError) as error:
        read_positions_3d(path)
    message = one_line(error)
    assert str(path) in message and expected in message


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    path = write(tmp_path / "data_3d_h36m.npz", positions_3d={"S1": {"Walking": Payload()}})
    with pytest.raises(PoseFileError) as error:
        read_positions_3d(path)
    assert "it would run tests.test_h36m_mocap.mark;" in one_line(error)
    assert RAN == []
    with zipfile.ZipFile(path) as archive:  # the payload is there: np.load(allow_pickle=True) would run it
        assert archive.namelist() == ["positions_3d.npy"]
    np.load(path, allow_pickle=True)["positions_3d"]
    assert RAN == ["unpickled"]
    RAN.clear()


def test_ppca_and_human36m_share_the_reader(tmp_path):
    from datamodules.human36m import Human36MDataModule
    from datamodules.records import DatasetLayoutError
    from tests.fixtures_h36m import write_poses_layout

    path = write(tmp_path / "bad.npz", positions_3d={"S1": {"Walking": np.zeros((4, 20, 3))}})
    with pytest.raises(ppca.SourceError, match=r"bad.npz: positions_3d\['S1'\]\['Walking'\] is float64 \(4, 20, 3\)"):
        ppca.load_source(str(path))
    write_poses_layout(tmp_path / "h36m", num_frames=6, subjects=(1, 9))
    (tmp_path / "h36m" / "data_3d_h36m.npz").write_bytes(path.read_bytes())
    dm = Human36MDataModule({"root": str(tmp_path / "h36m"), "layout": "poses", "image_size": 32})
    with pytest.raises(DatasetLayoutError) as error:
        dm.all_records("train")
    assert "data_3d_h36m.npz: positions_3d['S1']['Walking'] is float64 (4, 20, 3)" in one_line(error)
