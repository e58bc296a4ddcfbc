"""MPI-INF-3DHP: tiny copies of the test-set and training-set layouts written in the published
formats (HDF5 v7.3 and MATLAB v5 .mat files, Skeletool calibration text, JPEG frames)."""
from __future__ import annotations

from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import scipy.io
import torch

from datamodules.batch import check_batch
from datamodules.mpi_inf_3dhp import (
    RELEVANT_17_OF_28,
    SCENE_NAMES,
    MPIInf3DHPDataModule,
    evaluate,
    fit_intrinsics,
    joints_over_time,
    read_test_sequence,
)
from datamodules.records import DatasetLayoutError
from pose3d import camera as cam
from pose3d.config import ConfigError
from pose3d.readers import FileFormatError, read_mat_cells
from pose3d.skeleton import JOINT_INDEX, h36m_to_subset
from tests.helpers import assert_rotations

FRAME = 96  # side of the tiny full frames written by the tests
K_TEST = {1: (120.0, 118.0, 47.0, 49.5), 3: (100.0, 100.0, 48.0, 46.0), 5: (90.0, 91.0, 50.0, 45.0)}
K_TRAIN = (110.0, 111.0, 47.5, 48.5)
T_TEST, T_TRAIN = 5, 12


def poses_h36m(rng: np.random.Generator, frames: int) -> np.ndarray:
    """(T, 17, 3) mm in the camera frame, H36M order: a body-sized cloud 4 m in front of the camera."""
    root = np.array([0.0, 0.0, 4000.0]) + rng.normal(0, 100, (frames, 1, 3))
    return root + rng.normal(0, 300, (frames, 17, 3))


def project(points: np.ndarray, k) -> np.ndarray:
    return cam.project(torch.from_numpy(points), torch.tensor(k, dtype=torch.float64)).numpy()


def to_3dhp(points_h36m: np.ndarray) -> np.ndarray:
    out, mask = h36m_to_subset(points_h36m, "mpi_inf_3dhp")
    assert mask.all()
    return out


def write_frame(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((FRAME, FRAME, 3), 128, dtype=np.uint8))


def write_test_sequence(root: Path, number: int, rng, hdf5: bool = True, valid=None, activity=None) -> dict:
    """TS<number>/annot_data.mat as the release has it: MATLAB annot2 2x17x1xT, annot3 3x17x1xT."""
    k = K_TEST[number]
    annot3_h36m = poses_h36m(rng, T_TEST)
    univ_h36m = annot3_h36m[:, :1] + (annot3_h36m - annot3_h36m[:, :1]) * 0.9
    matlab = {  # MATLAB dimension order
        "annot2": to_3dhp(project(annot3_h36m, k)).transpose(2, 1, 0)[:, :, None, :],
        "annot3": to_3dhp(annot3_h36m).transpose(2, 1, 0)[:, :, None, :],
        "univ_annot3": to_3dhp(univ_h36m).transpose(2, 1, 0)[:, :, None, :],
        "valid_frame": np.asarray(valid if valid is not None else np.ones(T_TEST), dtype=np.float64)[None, :],
        "activity_annotation": np.asarray(activity if activity is not None else np.full(T_TEST, 3), dtype=np.float64)[None, :],
    }
    folder = root / "mpi_inf_3dhp_test_set" / f"TS{number}"
    folder.mkdir(parents=True, exist_ok=True)
    if hdf5:  # MATLAB v7.3: HDF5 datasets hold the arrays with their dimensions reversed
        with h5py.File(folder / "annot_data.mat", "w") as f:
            for key, value in matlab.items():
                f.create_dataset(key, data=value.transpose())
                f[key].attrs["MATLAB_class"] = np.bytes_("double")
    else:
        scipy.io.savemat(folder / "annot_data.mat", matlab)
    for t in range(T_TEST):
        write_frame(folder / "imageSequence" / f"img_{t + 1:06d}.jpg")
    return {"annot3": annot3_h36m, "univ": univ_h36m, "annot2": project(annot3_h36m, k), "k": k}


def write_train_sequence(root: Path, subject: int, rng, cameras=(0, 2), stride: int = 5) -> dict:
    """S<s>/Seq1: annot.mat (v5, 14x1 cells of Tx56 / Tx84, 28 joints), camera.calibration, frames."""
    folder = root / f"S{subject}" / "Seq1"
    folder.mkdir(parents=True)
    cells2 = np.empty((14, 1), dtype=object)
    cells3 = np.empty((14, 1), dtype=object)
    truth = {}
    for c in range(14):
        pose = poses_h36m(rng, T_TRAIN)
        all28 = rng.normal(0, 300, (T_TRAIN, 28, 3)) + np.array([0, 0, 4000.0])
        all28[:, list(RELEVANT_17_OF_28)] = to_3dhp(pose)
        cells3[c, 0] = all28.reshape(T_TRAIN, 84)
        cells2[c, 0] = project(all28, K_TRAIN).reshape(T_TRAIN, 56)
        truth[c] = pose
    scipy.io.savemat(folder / "annot.mat", {
        "annot2": cells2, "annot3": cells3, "univ_annot3": cells3,
        "frames": np.arange(T_TRAIN, dtype=np.float64)[:, None], "cameras": np.arange(14.0)[None],
    })
    fx, fy, cx, cy = K_TRAIN
    lines = ["Skeletool Camera Calibration File V1.0"]
    for c in range(14):
        intrinsic = [fx, 0, cx, 0, 0, fy, cy, 0, 0, 0, 1, 0, 0, 0, 0, 1]
        lines += [f"name          {c}", "  sensor      10 10", "  size        2048 2048", "  animated    0",
                  "  intrinsic   " + " ".join(f"{v:g}" for v in intrinsic) + " ",
                  "  extrinsic   1 0 0 0 0 1 0 0 0 0 1 0 0 0 0 1 ", "  radial      0"]
    (folder / "camera.calibration").write_text("\n".join(lines) + "\n")
    for c in cameras:
        for t in range(0, T_TRAIN, stride):
            write_frame(folder / "imageFrames" / f"video_{c}" / f"frame_{t + 1:06d}.jpg")
    return truth


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    root = tmp_path_factory.mktemp("3dhp")
    rng = np.random.default_rng(0)
    valid = np.array([1, 1, 0, 1, 1])
    truth = {
        1: write_test_sequence(root, 1, rng, hdf5=True, valid=valid, activity=[1, 1, 3, 3, 7]),
        3: write_test_sequence(root, 3, rng, hdf5=False),
        5: write_test_sequence(root, 5, rng, hdf5=True),
    }
    train_truth = write_train_sequence(root, 1, rng)
    return root, truth, train_truth


def make_dm(root: Path, **overrides) -> MPIInf3DHPDataModule:
    cfg = {"root": str(root), "image_size": 32, "batch_size": 4, "test_sequences": [1, 3, 5], "subjects": [1],
           "sequences": [1], "cameras": [0, 2], "train_stride": 5, "test_target": "annot3"}
    cfg.update(overrides)
    return MPIInf3DHPDataModule(cfg)


def test_joint_array_layouts_matlab_and_transposed():
    t = np.arange(2 * 17 * 4, dtype=float).reshape(2, 17, 1, 4)  # MATLAB 2 x 17 x 1 x T
    expected = t[:, :, 0, :].transpose(2, 1, 0)
    assert np.array_equal(joints_over_time(t, 2), expected)
    assert np.array_equal(joints_over_time(t.transpose(1, 0, 2, 3), 2), expected)  # 17 x 2 x 1 x T
    assert np.array_equal(joints_over_time(t[:, :, 0], 2), expected)
    with pytest.raises(ValueError, match="expected 3 x 17"):
        joints_over_time(t, 3)


def test_hdf5_and_v5_files_read_into_h36m_order(layout):
    root, truth, _ = layout
    for number in (1, 3):  # TS1 is HDF5 (v7.3), TS3 MATLAB v5
        seq = read_test_sequence(root / "mpi_inf_3dhp_test_set" / f"TS{number}" / "annot_data.mat", number)
        assert seq.annot3.shape == (T_TEST, 17, 3) and seq.annot2.shape == (T_TEST, 17, 2)
        np.testing.assert_allclose(seq.annot3, truth[number]["annot3"], atol=1e-9)
        np.testing.assert_allclose(seq.univ_annot3, truth[number]["univ"], atol=1e-9)
        np.testing.assert_allclose(seq.annot2, truth[number]["annot2"], atol=1e-9)
    seq = read_test_sequence(root / "mpi_inf_3dhp_test_set" / "TS1" / "annot_data.mat", 1)
    assert seq.valid.tolist() == [True, True, False, True, True]
    assert seq.activity.tolist() == [0, 0, 2, 2, 6]  # 1-based in the file


def test_cells_of_v73_and_v5_files(tmp_path):
    cells = [np.arange(6.0).reshape(3, 2) + 10 * c for c in range(3)]  # MATLAB T x 2 per camera
    with h5py.File(tmp_path / "v73.mat", "w") as f:  # a 3x1 cell: references to arrays stored transposed
        refs = f.create_group("#refs#")
        data = [refs.create_dataset(f"c{c}", data=cell.T).ref for c, cell in enumerate(cells)]
        f.create_dataset("annot2", data=np.array([data], dtype=h5py.ref_dtype))
    v5 = np.empty((3, 1), dtype=object)
    for c, cell in enumerate(cells):
        v5[c, 0] = cell
    scipy.io.savemat(tmp_path / "v5.mat", {"annot2": v5})
    for name in ("v73.mat", "v5.mat"):
        read = read_mat_cells(tmp_path / name, ["annot2"], "an annot.mat")["annot2"]
        assert len(read) == 3 and all(np.array_equal(a, b) for a, b in zip(read, cells)), name
    with pytest.raises(FileFormatError, match=r"v5.mat: no variable 'annot3' \(it holds annot2\); expected an annot.mat"):
        read_mat_cells(tmp_path / "v5.mat", ["annot3"], "an annot.mat")


def test_3dhp_head_joints_map_to_ours():
    # 3DHP order: 0 head_top, 1 neck (base), 16 head (centre); ours: head 10, thorax 8, neck/nose 9
    points = np.zeros((17, 3))
    points[0], points[1], points[16], points[14] = 1.0, 2.0, 3.0, 4.0
    from pose3d.skeleton import map_to_h36m

    mapped, mask = map_to_h36m(points, "mpi_inf_3dhp")
    assert mask.all()
    assert mapped[JOINT_INDEX["head"], 0] == 1 and mapped[JOINT_INDEX["thorax"], 0] == 2
    assert mapped[JOINT_INDEX["neck"], 0] == 3 and mapped[JOINT_INDEX["pelvis"], 0] == 4


def test_fitted_intrinsics_and_3d_projects_onto_2d(layout):
    root, truth, _ = layout
    dm = make_dm(root)
    records = dm.records("test")
    assert len(records) == 4 + T_TEST + T_TEST  # TS1 has one invalid frame
    for record in records:
        k = K_TEST[record.subject]
        np.testing.assert_allclose(record.intrinsics, k, rtol=1e-6)
        np.testing.assert_allclose(project(record.joints_3d.astype(np.float64), record.intrinsics),
                                   record.joints_2d, atol=1e-3)
    np.testing.assert_allclose(fit_intrinsics(truth[5]["annot3"], truth[5]["annot2"]), K_TEST[5], rtol=1e-9)
    # after the crop: camera, 2D and root-relative 3D + root depth stay consistent
    batch = next(iter(dm.test_dataloader()))
    check_batch(batch)
    absolute = batch["joints_3d"].double() + (
        cam.backproject(batch["joints_2d"][:, :1].double(), batch["root_depth"][:, None].double(), batch["camera"].double())
    )
    np.testing.assert_allclose(cam.project(absolute, batch["camera"].double()), batch["joints_2d"].double(), atol=1e-2)


def test_univ_target_is_rescaled_pose_at_the_metric_root(layout):
    root, truth, _ = layout
    record = make_dm(root, test_target="univ_annot3", test_sequences=[3]).records("test")[0]
    np.testing.assert_allclose(record.joints_3d, truth[3]["univ"][0], atol=1e-3)
    np.testing.assert_allclose(record.joints_3d[0], truth[3]["annot3"][0, 0], atol=1e-3)


def test_scene_and_activity_grouping(layout):
    root, _, _ = layout
    dm = make_dm(root)
    assert dm.info.action_names == SCENE_NAMES
    pairs = {(r.subject, r.action) for r in dm.records("test")}
    assert pairs == {(1, 0), (3, 1), (5, 2)}  # GS, noGS, outdoor
    dm = make_dm(root, action_grouping="activity", test_sequences=[1])
    assert [r.action for r in dm.records("test")] == [0, 0, 2, 6]  # frame 3 is invalid
    assert dm.info.action_names[2] == "Sitting"


def test_evaluate_matches_hand_computed_values():
    target = torch.zeros(4, 17, 3)
    pred = target.clone()
    pred[:2, :, 0] = 100.0  # TS1 (GS): every joint 100 mm off
    pred[2:, :, 1] = 200.0  # TS5 (outdoor): every joint 200 mm off
    pred[2:, 0] = 0.0  # the pelvis is not an evaluation joint
    out = evaluate(pred, target, subject=torch.tensor([1, 2, 5, 6]), activity=torch.tensor([0, 0, 0, 2]))
    assert out["pck3d/GS"] == pytest.approx(100.0) and out["mpjpe/GS"] == pytest.approx(100.0)
    assert out["auc3d/GS"] == pytest.approx(100.0 * 11 / 31)  # thresholds 100..150 of 0..150
    assert out["pck3d/outdoor"] == 0.0 and out["auc3d/outdoor"] == 0.0 and out["mpjpe/outdoor"] == pytest.approx(200.0)
    assert out["pck3d"] == pytest.approx(50.0) and out["mpjpe"] == pytest.approx(150.0)
    assert "pck3d/noGS" not in out
    assert out["mpjpe/Standing/Walking"] == pytest.approx((100 * 2 + 200) / 3)
    assert out["mpjpe/Sitting"] == pytest.approx(200.0)


def test_training_set_cameras_stride_and_calibration(layout):
    root, _, train_truth = layout
    dm = make_dm(root, val_fraction=0)  # every training frame trains
    records = dm.records("train")
    assert len(records) == 2 * len(range(0, T_TRAIN, 5))  # 2 cameras, every 5th frame
    first, last = records[0], records[len(records) - 1]
    assert first.image_path == "S1/Seq1/imageFrames/video_0/frame_000001.jpg"
    assert last.image_path == "S1/Seq1/imageFrames/video_2/frame_000011.jpg"
    np.testing.assert_allclose(first.intrinsics, K_TRAIN)
    np.testing.assert_allclose(last.joints_3d, train_truth[2][10], atol=1e-3)
    np.testing.assert_allclose(project(last.joints_3d.astype(np.float64), last.intrinsics), last.joints_2d, atol=1e-3)
    batch = next(iter(dm.train_dataloader()))
    check_batch(batch)
    assert batch["has_3d"].all() and batch["image"].shape == (4, 3, 32, 32)
    # the identity extrinsic of a y-up studio: the camera's down is the world's -y, so R = diag(1, -1, -1);
    # the training crops' in-plane rotation turns it about the optical axis (z) and keeps it a rotation
    np.testing.assert_allclose(first.rotation, np.diag([1.0, -1.0, -1.0]))
    assert batch["has_camera_rotation"].all()
    rotation = batch["camera_rotation"].double()
    assert_rotations(rotation)
    assert torch.allclose(rotation[:, 2], torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64), atol=1e-5)
    # the test set ships no extrinsics
    test_batch = next(iter(dm.test_dataloader()))
    assert not test_batch["has_camera_rotation"].any()
    assert torch.equal(test_batch["camera_rotation"], torch.eye(3).expand(len(test_batch["image"]), 3, 3))
    # with nothing held out, validation is the test set (an explicit choice: val_fraction=0)
    assert len(dm.records("val")) == len(dm.records("test"))


def test_validation_is_the_end_of_every_training_sequence_never_the_test_set(layout):
    root, _, _ = layout
    dm = make_dm(root)  # default val_fraction 0.1: of 12 frames, 0..9 train and 10..11 validate
    train = [dm.records("train")[i].image_path for i in range(len(dm.records("train")))]
    val = [dm.records("val")[i].image_path for i in range(len(dm.records("val")))]
    assert train == [f"S1/Seq1/imageFrames/video_{c}/frame_{t:06d}.jpg" for c in (0, 2) for t in (1, 6)]
    assert val == [f"S1/Seq1/imageFrames/video_{c}/frame_000011.jpg" for c in (0, 2)]
    with pytest.raises(ConfigError, match="val_fraction"):
        make_dm(root, val_fraction=1.0)


def test_missing_files_name_themselves_in_one_line(layout, tmp_path):
    root, _, _ = layout
    with pytest.raises(DatasetLayoutError) as error:
        make_dm(root, test_sequences=[1, 2])
    message = str(error.value)
    assert "TS2/annot_data.mat" in message and "\n" not in message and "expected layout" in message
    with pytest.raises(DatasetLayoutError, match=r"S2/Seq1/annot.mat"):
        make_dm(root, subjects=[2])
    with pytest.raises(DatasetLayoutError, match=r"video_0"):
        bare = tmp_path / "bare"
        (bare / "mpi_inf_3dhp_test_set" / "TS1").mkdir(parents=True)
        (bare / "mpi_inf_3dhp_test_set" / "TS1" / "annot_data.mat").write_bytes(b"")
        (bare / "S1" / "Seq1").mkdir(parents=True)
        for name in ("annot.mat", "camera.calibration"):
            (bare / "S1" / "Seq1" / name).write_text("")
        make_dm(bare, test_sequences=[1])
    report = make_dm(root).check()
    assert "TS5 (outdoor)" in report and "S1/Seq1" in report
    test_only = make_dm(root, subjects=[])  # the test set alone is enough for evaluation
    assert len(test_only.records("test")) == 14 and "not used" in test_only.check()
    with pytest.raises(ConfigError, match="no training split"):
        test_only.records("train")
