"""Human3.6M DataModule on tiny copies of both published layouts (tests/fixtures_h36m.py)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from datamodules import DATAMODULES
from datamodules.batch import check_batch
from datamodules.human36m import ACTIONS, CAMERA_IDS, FRONTAL_CAMERA, Human36MDataModule, parse_action, trial_numbers
from datamodules.records import DatasetLayoutError
from pose3d import camera as cam
from pose3d.skeleton import JOINT_INDEX, SUBSET_14
from tests.fixtures_h36m import write_images_layout, write_poses_layout
from tests.helpers import assert_rotations

FRAMES = 70  # per sequence at 50 fps: every 64th frame gives frames 0 and 64


@pytest.fixture(scope="module")
def images_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("h36m_images")
    write_images_layout(root, num_frames=FRAMES)
    return root


@pytest.fixture(scope="module")
def poses_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("h36m_poses")
    write_poses_layout(root, num_frames=FRAMES)
    return root


def module(root, **cfg) -> Human36MDataModule:
    return Human36MDataModule({"root": str(root), "image_size": 32, **cfg})


def frames_of(records) -> list[int]:
    return [int(r.image_path.rsplit("_", 1)[-1].split(".")[0]) - 1 for r in records]


def reprojection_error(records) -> float:
    worst = 0.0
    for r in records:
        p = cam.project(torch.tensor(r.joints_3d), torch.tensor(r.intrinsics)).numpy()
        worst = max(worst, float(np.abs(p - r.joints_2d).max()))
    return worst


def test_registered_and_action_names():
    assert DATAMODULES.load("human36m") is Human36MDataModule
    assert len(ACTIONS) == 15
    assert parse_action("Directions 1") == (0, 1)
    assert parse_action("TakingPhoto_1") == (ACTIONS.index("Photo"), 1)
    assert parse_action("WalkingDog") == (ACTIONS.index("WalkDog"), 0)
    assert parse_action("SittingDown 2") == (ACTIONS.index("SittingDown"), 2)
    with pytest.raises(DatasetLayoutError, match="_ALL"):
        parse_action("_ALL")
    trials = trial_numbers([(1, "Directions 1"), (1, "Directions"), (1, "Sitting 2"), (1, "Sitting 1"), (5, "Eating 2")])
    assert trials == {(1, "Directions"): 1, (1, "Directions 1"): 2, (1, "Sitting 1"): 1, (1, "Sitting 2"): 2,
                      (5, "Eating 2"): 1}


def test_images_layout_3d_projects_onto_2d(images_root):
    dm = module(images_root)
    records = dm.all_records("train")
    first = records[0]
    assert first.joints_3d.shape == (17, 3) and first.joints_2d.shape == (17, 2) and first.visible.all()
    assert 3000 < first.joints_3d[0, 2] < 6000  # metres in the file -> mm
    assert reprojection_error([records[i] for i in range(0, len(records), 7)]) < 1.0
    assert first.action == ACTIONS.index("Directions")
    assert (images_root / first.image_path).is_file()


@pytest.mark.parametrize("cameras", ["json", "pkl"])
@pytest.mark.parametrize("joints_2d", [17, 32])
def test_poses_layout_world_to_camera_and_joint_mapping(tmp_path, cameras, joints_2d):
    write_poses_layout(tmp_path, num_frames=12, subjects=(1, 9, 11), cameras=cameras, joints_2d=joints_2d)
    dm = module(tmp_path, layout="poses")
    records = dm.all_records("test")
    assert len(records) == 2 * 3 * 4 * 3  # S9, S11 x 3 sequences x 4 cameras x frames 0, 5, 10
    assert reprojection_error(records) < 1.0  # world metres -> camera mm with the extrinsics, onto the 2D file
    assert all(r.image_path == "" for r in records)
    # the 32 -> 17 mapping picks the joints the fixture put there (the other 15 are zeros)
    assert all(np.abs(r.joints_2d).min() > 1.0 for r in records)
    batch = torch.utils.data.default_collate(dm.dataset("test").__getitems__([0, 1, 2]))
    check_batch(batch)
    assert batch["image"].abs().sum() == 0  # pose-only layout: black images
    assert batch["has_3d"].all() and batch["visible"].any()


def test_protocol_1_splits(images_root):
    dm = module(images_root, protocol=1)
    train, val, test = (dm.all_records(s) for s in ("train", "val", "test"))
    assert {r.subject for r in train} == {1, 5, 6, 7, 8} == {r.subject for r in val}
    assert {r.subject for r in test} == {9, 11}
    assert set(frames_of(test)) == set(range(0, FRAMES, 5))
    assert {r.image_path.split(".")[1][:8] for r in test} == set(CAMERA_IDS)
    assert not set(r.image_path for r in train) & set(r.image_path for r in val)
    assert min(frames_of(val)) > max(frames_of(train)) - 5  # val = the end of each sequence
    assert len(val) / (len(train) + len(val)) == pytest.approx(0.1, abs=0.05)
    assert dm.protocol_info["eval_joints"] == tuple(range(17)) and dm.protocol_info["metric"] == "mpjpe"
    assert {r.action for r in test} == {ACTIONS.index("Directions"), ACTIONS.index("Walking")}


def test_protocol_2_splits(images_root):
    dm = module(images_root, protocol=2)
    train, test = dm.all_records("train"), dm.all_records("test")
    assert {r.subject for r in train} == {1, 5, 6, 7, 8, 9}
    assert {r.subject for r in test} == {11}
    assert sorted(set(frames_of(test))) == [0, 64]  # every 64th frame of the 50 fps video (read from fps50)
    assert len(test) == 3 * 4 * 2
    assert dm.protocol_info["eval_joints"] == SUBSET_14 and dm.protocol_info["metric"] == "pa_mpjpe"


def test_protocol_3_splits(images_root):
    dm = module(images_root, protocol=3)
    test = dm.all_records("test")
    assert {r.subject for r in test} == {9, 11}
    assert {r.image_path.split(".")[1][:8] for r in test} == {FRONTAL_CAMERA}
    # trial 1 only: "Directions" (not "Directions 1") and "Walking 1" (that action's only trial)
    assert {r.image_path.split("/")[2].split(".")[0].split("_", 1)[1] for r in test} == {"Directions", "Walking_1"}
    assert sorted(set(frames_of(test))) == list(range(FRAMES))  # all frames
    assert len(test) == 2 * 2 * FRAMES
    assert dm.protocol_info["eval_joints"] == SUBSET_14
    # overrides: another camera, both trials
    other = module(images_root, protocol=3, cameras=[CAMERA_IDS[0]], trial=0)
    assert len(other.all_records("test")) == 2 * 3 * FRAMES


def test_held_out_subject_validation_and_size_caps(images_root):
    dm = module(images_root, val_subjects=[8], train_size=20, val_size=7, test_size=0)
    assert {r.subject for r in dm.all_records("train")} == {1, 5, 6, 7}
    assert {r.subject for r in dm.all_records("val")} == {8}
    assert len(dm.records("train")) == 20 and len(dm.records("val")) == 7
    assert len(dm.records("test")) == len(dm.all_records("test"))
    assert "S9, S11" in dm.test_subjects_label and "Protocol #1" in dm.test_subjects_label
    with pytest.raises(DatasetLayoutError, match="never uses test subjects"):
        module(images_root, val_subjects=[9])


def test_batches_crop_and_augment_consistently(images_root):
    """Training batches: contract, 3D onto 2D, and the joint dots of the fixture frames under the 2D labels."""
    dm = module(images_root, image_size=64, photometric=False, train_size=64)
    dm.request_targets({"heatmaps": {"size": 16}})
    torch.manual_seed(0)
    batch = torch.utils.data.default_collate(dm.dataset("train").__getitems__(list(range(0, 64, 4))))
    check_batch(batch)
    assert batch["heatmaps"].shape == (16, 17, 16, 16)
    root = cam.backproject(batch["joints_2d"][:, :1], batch["root_depth"][:, None], batch["camera"])
    projected = cam.project(batch["joints_3d"] + root, batch["camera"])
    assert (projected - batch["joints_2d"]).abs().max() < 0.05
    image = batch["image"].mean(1)  # (B, S, S)
    background = float(image.median())
    hits = total = 0
    for b in range(len(image)):
        for j in np.flatnonzero(batch["visible"][b].numpy()):
            u, v = batch["joints_2d"][b, j].round().long().tolist()
            window = image[b, max(0, v - 1) : v + 2, max(0, u - 1) : u + 2]
            hits += bool(window.max() > background + 0.25)
            total += 1
    assert total > 100 and hits / total > 0.95


def test_missing_files_give_one_line_errors(tmp_path, images_root):
    with pytest.raises(DatasetLayoutError, match="data.root is not set"):
        Human36MDataModule({})
    root = tmp_path / "copy"
    shutil.copytree(images_root / "annotation_body3d", root / "annotation_body3d")
    (root / "images").mkdir()
    for fps in (10, 50):
        (root / f"annotation_body3d/fps{fps}/h36m_test.npz").unlink()
    with pytest.raises(DatasetLayoutError) as error:
        module(root)
    message = str(error.value)
    assert "\n" not in message and "fps10/h36m_test.npz" in message and "preprocess_h36m.py" in message
    assert "annotation_body3d" in error.value.hint
    # Protocol #2 needs every frame: with only fps10 present the error says so
    shutil.rmtree(root / "annotation_body3d/fps50")
    shutil.copy(images_root / "annotation_body3d/fps10/h36m_test.npz", root / "annotation_body3d/fps10/h36m_test.npz")
    module(root)  # Protocol #1 is fine with fps10
    with pytest.raises(DatasetLayoutError, match="fps50/h36m_test.npz.*every 64th frame"):
        module(root, protocol=2)
    # a missing frame names its path when the batch is made
    dm = module(root)
    with pytest.raises(DatasetLayoutError, match=r"images/S1/S1_Directions\..*\.jpg"):
        dm.dataset("train")[0]


def test_poses_layout_requires_camera_extrinsics(tmp_path):
    write_poses_layout(tmp_path, num_frames=6, subjects=(1, 9))
    (tmp_path / "h36m_cameras_extrinsic_params.json").unlink()
    with pytest.raises(DatasetLayoutError, match="missing camera extrinsics"):
        module(tmp_path, layout="poses")
    with pytest.raises(DatasetLayoutError, match="data_2d_h36m_cpn.npz"):
        module(tmp_path, layout="poses", source_2d="cpn", cameras_file="x.json")
    (tmp_path / "h36m_cameras_extrinsic_params.json").write_text(json.dumps({"S1": [{"orientation": [1, 0, 0, 0]}]}))
    dm = module(tmp_path, layout="poses")
    with pytest.raises(DatasetLayoutError, match="translation"):
        dm.all_records("train")


def test_smoke_train_on_the_fixture(images_root, tmp_path):
    from harness.train import main

    args = ["experiment=baseline", "preset=smoke", "data.name=human36m", f"data.root={images_root}",
            f"results_dir={tmp_path}", "overwrite=true", "logger.wandb=false", "trainer.enable_progress_bar=false",
            "data.image_size=32", "data.train_size=32", "data.val_size=16", "data.test_size=16"]
    assert main(args) == 0
    (run,) = (tmp_path / "runs").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test/mpjpe"] > 0
    assert set(metrics["per_action"]) <= set(ACTIONS)
    # a wrong path stops the run with exit 2 before training
    assert main([*args[:3], f"data.root={tmp_path / 'nowhere'}", *args[4:]]) == 2
    # so do missing frames (the fixture has no images for fps50, which Protocol #2's test split reads)
    assert main([*args, "data.protocol=2", "name=p2"]) == 2
    assert not (tmp_path / "runs" / "p2" / "checkpoints").exists()


def test_action_filter_keeps_those_actions_in_every_split(poses_root, images_root):
    from datamodules.records import records_of_actions
    from pose3d.config import ConfigError

    walking = ACTIONS.index("Walking")
    dm = module(poses_root, layout="poses", actions=["Walking"], test_size=5)
    for split in ("train", "val", "test"):
        assert len(dm.records(split)) > 0 and {r.action for r in dm.records(split)} == {walking}
    assert len(dm.records("test")) == 5  # the cap applies after the filter
    assert dm.info.action_names == ACTIONS  # ids stay those of the full list
    everything = module(poses_root, layout="poses")
    assert {r.action for r in everything.records("test")} == {ACTIONS.index("Directions"), walking}
    assert len(everything.records("train")) == len(everything.all_records("train"))
    # the action ids LazyRecords carry up front agree with the records' own
    records = module(images_root).all_records("train")
    fast, slow = records_of_actions(records, (walking,)), records_of_actions(list(records), (walking,))
    assert len(fast) == len(slow) > 0 and [r.image_path for r in fast] == [r.image_path for r in slow]
    with pytest.raises(ConfigError) as error:
        module(poses_root, layout="poses", actions=["Dancing"])
    assert str(error.value).startswith("bad value for data.actions: 'Dancing'; valid action names: Directions, Discussion")
    assert "\n" not in str(error.value)


def test_the_protocols_test_subjects_reach_data_info(tmp_path):
    from datamodules.human36m import Human36MDataModule
    from tests.fixtures_h36m import write_poses_layout

    write_poses_layout(tmp_path / "h36m", num_frames=6, subjects=(1, 9, 11))
    for protocol, expected in ((1, ("S9", "S11")), (2, ("S11",))):
        dm = Human36MDataModule({"root": str(tmp_path / "h36m"), "layout": "poses", "image_size": 32, "protocol": protocol})
        assert dm.info.test_subjects == expected


@pytest.mark.parametrize("layout", ["poses", "images"])
def test_camera_rotation_turns_the_camera_frame_into_an_upright_world(layout, poses_root, images_root):
    """Human3.6M's extrinsics give camera_rotation (world y down): a rotation under which the
    camera-frame 3D is the world pose, standing upright (head above the pelvis: smaller y)."""
    root = poses_root if layout == "poses" else images_root
    dm = module(root, layout=layout, batch_size=8, flip=False, rotation_deg=0.0)
    batch = next(iter(dm.test_dataloader()))
    rotation = batch["camera_rotation"].double()
    assert batch["has_camera_rotation"].all()
    assert_rotations(rotation)
    world = batch["joints_3d"].double() @ rotation  # R^T x per joint
    head, pelvis = JOINT_INDEX["head"], 0
    assert bool((world[:, head, 1] - world[:, pelvis, 1] < -300).all())


def _poses_of(records) -> np.ndarray:
    return np.stack([np.concatenate([r.joints_3d.ravel(), r.joints_2d.ravel(), [r.subject, r.action]]) for r in records])


def test_a_10_hz_and_a_50_hz_copy_select_the_same_frames(poses_root, tmp_path, monkeypatch):
    from datamodules import human36m
    from tests.fixtures_h36m import subsample_poses_layout

    ten = subsample_poses_layout(poses_root, tmp_path / "fps10", 5)
    fifty = module(poses_root, layout="poses")
    declared = module(ten, layout="poses", fps=10)
    assert declared.pose_fps == (10, "declared by data.fps")
    for split in ("train", "val", "test"):
        a, b = fifty.all_records(split), declared.all_records(split)
        assert len(a) == len(b) > 0
        np.testing.assert_allclose(_poses_of(a), _poses_of(b), atol=1e-3)
    # read from the frame counts: the fixture's 3 x 70 frames per subject stand in for the documented counts
    monkeypatch.setattr(human36m, "FRAMES_50HZ", {(1,): 3 * FRAMES, (5,): 3 * FRAMES, (9, 11): 6 * FRAMES})
    read = module(ten, layout="poses")
    assert read.pose_fps[0] == 10 and "read from the frame counts (0.20 x" in read.pose_fps[1]
    assert len(read.all_records("test")) == len(fifty.all_records("test"))
    assert module(poses_root, layout="poses").pose_fps[0] == 50
    assert "frame rate: 10 Hz, read from the frame counts" in read.check()
    # a selection the 10 Hz file cannot give is an error naming the rates, not a silent subset
    with pytest.raises(DatasetLayoutError, match="every 64th frame of the 50 Hz video, but the pose files hold 10 Hz"):
        module(ten, layout="poses", protocol=2).all_records("test")
    monkeypatch.setattr(human36m, "FRAMES_50HZ", {(1,): 7 * FRAMES})  # counts that fit no frame rate
    assert module(ten, layout="poses").pose_fps[0] == 50 and "declare data.fps" in module(ten, layout="poses").pose_fps[1]


def test_test_subjects_choose_a_subset_and_never_a_training_subject(poses_root):
    dm = module(poses_root, layout="poses", test_subjects=[9])
    assert {r.subject for r in dm.all_records("test")} == {9}
    assert dm.info.test_subjects == ("S9",) and dm.protocol_info["test_subjects"] == (9,)
    assert "S9 (Human3.6M" in dm.test_subjects_label
    with pytest.raises(DatasetLayoutError, match=r"data.test_subjects: \[1\] are training subjects of Protocol #1"):
        module(poses_root, layout="poses", test_subjects=[1, 9])


def test_a_missing_2d_source_names_the_sources_the_root_has(poses_root):
    with pytest.raises(DatasetLayoutError, match=r"data.source_2d=cpn_ft_h36m_dbb\); this root has data.source_2d=gt"):
        module(poses_root, layout="poses", source_2d="cpn_ft_h36m_dbb")
