"""MPII and LSP: tiny copies of the published layouts (converted json + gt_valid.mat, the official
RELEASE .mat struct, LSP / LSP-extended joints.mat), joint mapping, splits, PCKh and PCK."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io
import torch

from datamodules.batch import check_batch
from datamodules.lsp import LSPDataModule, pck, read_lsp_joints, standard_split, torso_size
from datamodules.mpii import PCKH_JOINTS, MPIIDataModule, head_size_from_box, pckh
from datamodules.records import DatasetLayoutError
from pose3d.skeleton import JOINT_INDEX as J

SIDE = 80  # tiny full frames


def write_image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((SIDE, SIDE, 3), 90, dtype=np.uint8))


def mpii_joints(rng) -> np.ndarray:
    """16 MPII joints (1-based pixels) spread over the tiny frame."""
    return rng.uniform(15, 65, (16, 2)).round(1)


# ----------------------------------------------------------------------------------- MPII json

@pytest.fixture(scope="module")
def mpii_json(tmp_path_factory):
    root = tmp_path_factory.mktemp("mpii_json")
    rng = np.random.default_rng(1)
    entries = {}
    for split, names in (("train", ["001.jpg", "002.jpg"]), ("valid", ["003.jpg", "004.jpg"])):
        entries[split] = []
        for name in names:
            write_image(root / "images" / name)
            vis = [1] * 16
            vis[11] = 0  # r_elbow unlabelled
            entries[split].append({"joints_vis": vis, "joints": mpii_joints(rng).tolist(), "image": name,
                                   "scale": 0.25, "center": [40.0, 35.0]})
    (root / "annot").mkdir()
    for split, items in entries.items():
        (root / "annot" / f"{split}.json").write_text(json.dumps(items))
    # gt_valid.mat as the converted release has it: headboxes_src 2 (corner) x 2 (xy) x N, 1-based
    boxes = np.array([[[30.0, 40.0], [10.0, 12.0]], [[54.0, 58.0], [42.0, 36.0]]])  # [corner, xy, person]
    scipy.io.savemat(root / "annot" / "gt_valid.mat", {
        "headboxes_src": boxes, "jnt_missing": np.zeros((16, 2)),
        "pos_gt_src": np.stack([np.asarray(e["joints"]) for e in entries["valid"]], -1),
        "dataset_joints": np.array([["rank"]], dtype=object),
    })
    return root, entries, boxes


def test_mpii_json_joint_mapping_and_conventions(mpii_json):
    root, entries, _ = mpii_json
    dm = MPIIDataModule({"root": str(root), "image_size": 32, "batch_size": 2})
    record = dm.records("train")[0]
    raw = np.asarray(entries["train"][0]["joints"])
    # MPII 9 head_top -> our head, 8 upper_neck -> neck/nose, 7 thorax -> thorax, 6 pelvis -> pelvis; -1 px
    for mpii, ours in ((9, "head"), (8, "neck"), (7, "thorax"), (6, "pelvis"), (0, "r_ankle"), (13, "l_shoulder")):
        np.testing.assert_allclose(record.joints_2d[J[ours]], raw[mpii] - 1, atol=1e-4)
    assert not record.visible[J["spine"]] and not record.visible[J["r_elbow"]]
    assert record.visible.sum() == 16 - 1  # 16 MPII joints fill 16 slots (not spine), one unlabelled
    np.testing.assert_allclose(record.center, [39.0, 34.0 + 15 * 0.25])
    assert record.image_path == "images/001.jpg"
    # no head box for train.json: the head segment stands in
    assert record.head_size_source == "head_segment"
    assert record.head_size == pytest.approx(np.linalg.norm(raw[9] - raw[8]))


def test_mpii_head_size_from_gt_valid_boxes_and_in_batches(mpii_json):
    root, _, boxes = mpii_json
    dm = MPIIDataModule({"root": str(root), "image_size": 32, "batch_size": 2})
    records = dm.records("test")
    assert [r.head_size_source for r in records] == ["head_box", "head_box"]
    # person 0: (x1, y1) = (30, 10), (x2, y2) = (54, 42); person 1: (40, 12), (58, 36)
    assert records[0].head_size == pytest.approx(0.6 * 40.0)
    assert records[1].head_size == pytest.approx(0.6 * 30.0)
    assert head_size_from_box([1, 1, 4, 5]) == pytest.approx(3.0)
    batch = next(iter(dm.test_dataloader()))
    check_batch(batch)
    assert not batch["has_3d"].any() and batch["has_2d"].all()
    assert torch.all(batch["joints_3d"] == 0)
    assert not batch["has_camera_rotation"].any()  # 2D-only photos: the camera rotation is unknown
    zoom = 32 / (200 * 0.25 * 1.25)  # crop side = 200 * scale * margin
    np.testing.assert_allclose(batch["head_size"].numpy(), [r.head_size * zoom for r in records], rtol=1e-5)
    assert len(dm.records("val")) == 2


def test_pckh_matches_hand_computed_values():
    target = torch.zeros(2, 17, 2)
    pred = target.clone()
    head_size = torch.tensor([10.0, 20.0])
    pred[0, J["l_wrist"]] = torch.tensor([6.0, 0.0])  # > 0.5 * 10: wrong
    pred[1, J["l_wrist"]] = torch.tensor([6.0, 0.0])  # <= 0.5 * 20: right
    pred[0, J["r_knee"]] = torch.tensor([3.0, 4.0])  # 5 <= 5: right
    pred[1, J["pelvis"]] = torch.tensor([99.0, 0.0])  # pelvis is not in the mean
    visible = torch.ones(2, 17, dtype=torch.bool)
    visible[1, J["head"]] = False
    out = pckh(pred, target, head_size, visible)
    assert len(PCKH_JOINTS) == 14
    assert out["pckh"] == pytest.approx(100.0 * (27 - 1) / 27)  # 28 joints, one unlabelled, one wrong
    assert out["pckh/Wrist"] == pytest.approx(75.0) and out["pckh/Knee"] == 100.0
    assert out["pckh/Head"] == 100.0


# ----------------------------------------------------------------------------------- MPII .mat

def _struct_array(items: list[dict]) -> np.ndarray:
    fields = list(dict.fromkeys(k for item in items for k in item))
    out = np.empty((1, len(items)), dtype=[(f, object) for f in fields])
    for n, item in enumerate(items):
        for f in fields:
            out[0, n][f] = item.get(f, np.zeros((0, 0)))
    return out


def _person(rng, with_points=True, visible_flag=1) -> tuple[dict, np.ndarray]:
    joints = mpii_joints(rng)
    points = [{"id": float(j), "x": joints[j, 0], "y": joints[j, 1], "is_visible": visible_flag}
              for j in range(16) if j != 4]  # l_knee not annotated
    rect = {"x1": 20.0, "y1": 10.0, "x2": 32.0, "y2": 26.0, "scale": 0.3,
            "objpos": {"x": 41.0, "y": 36.0}}
    if with_points:
        rect["annopoints"] = {"point": _struct_array(points)}
    return rect, joints


@pytest.fixture(scope="module")
def mpii_mat(tmp_path_factory):
    root = tmp_path_factory.mktemp("mpii_mat")
    rng = np.random.default_rng(2)
    annolist, img_train, single, truth = [], [], np.empty((6, 1), dtype=object), {}
    for i in range(6):
        name = f"{i:09d}.jpg"
        write_image(root / "images" / name)
        if i == 5:  # a test image: no joints
            rect, _ = _person(rng, with_points=False)
            annolist.append({"image": {"name": name}, "annorect": _struct_array([rect])})
            img_train.append(0)
            single[i, 0] = np.zeros((0, 0))
            continue
        rect_a, joints_a = _person(rng, visible_flag="1" if i % 2 else 0)
        rect_b, _ = _person(rng, with_points=False)  # a person without annopoints: skipped
        annolist.append({"image": {"name": name}, "annorect": _struct_array([rect_a, rect_b])})
        img_train.append(1)
        single[i, 0] = np.array([[1.0]])
        truth[name] = joints_a
    release = {"annolist": _struct_array(annolist), "img_train": np.array([img_train], dtype=np.float64),
               "single_person": single, "version": "12"}
    (root / "annot").mkdir()
    scipy.io.savemat(root / "annot" / "mpii_human_pose_v1_u12_1.mat", {"RELEASE": release})
    return root, truth


def test_mpii_release_mat_records_and_holdout(mpii_mat):
    root, truth = mpii_mat
    dm = MPIIDataModule({"root": str(root), "image_size": 32, "batch_size": 2, "holdout_every": 3})
    train, test = dm.records("train"), dm.records("test")
    # 5 training images with one annotated person each; images 0 and 3 are held out
    assert [r.image_path for r in test] == ["images/000000000.jpg", "images/000000003.jpg"]
    assert len(train) == 3 and len(dm.records("val")) == 2
    record = train[0]
    raw = truth["000000001.jpg"]
    np.testing.assert_allclose(record.joints_2d[J["head"]], raw[9] - 1, atol=1e-4)
    assert not record.visible[J["l_knee"]] and record.visible[J["r_knee"]]
    assert record.head_size_source == "head_box"
    assert record.head_size == pytest.approx(0.6 * np.hypot(12, 16))
    np.testing.assert_allclose(record.center, [40.0, 35.0 + 15 * 0.3])
    check_batch(next(iter(dm.train_dataloader())))
    assert "3 people" in dm.check() and "head_box" in dm.check()
    # RELEASE.single_person lists rect 1 of every training image: the same people
    single = MPIIDataModule({"root": str(root), "holdout_every": 3, "single_person_only": True})
    assert [r.image_path for r in single.records("train")] == [r.image_path for r in train]


def test_mpii_missing_annotations_is_one_line(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DatasetLayoutError) as error:
        MPIIDataModule({"root": str(tmp_path)})
    assert "annot/train.json" in str(error.value) and "\n" not in str(error.value)
    (tmp_path / "annot").mkdir()
    (tmp_path / "annot" / "train.json").write_text("[]")
    with pytest.raises(DatasetLayoutError, match="annot/valid.json"):
        MPIIDataModule({"root": str(tmp_path)})


# ----------------------------------------------------------------------------------- LSP

N_LSP = 6


@pytest.fixture(scope="module")
def lsp_layout(tmp_path_factory):
    root = tmp_path_factory.mktemp("lsp")
    rng = np.random.default_rng(3)
    joints = np.zeros((3, 14, N_LSP))
    joints[:2] = rng.uniform(10, 70, (2, 14, N_LSP)).round(1)
    joints[2, 6, :] = 1  # right wrist occluded (LSP: 1 = occluded)
    scipy.io.savemat(root / "joints.mat", {"joints": joints})
    for n in range(N_LSP):
        write_image(root / "images" / f"im{n + 1:04d}.jpg")
    ext = tmp_path_factory.mktemp("lspet")
    ext_joints = np.zeros((14, 3, 2))
    ext_joints[:, :2] = rng.uniform(10, 70, (14, 2, 2)).round(1)
    ext_joints[:, 2] = 1
    ext_joints[13, 2, 0] = 0  # head top of the first extended image not visible
    scipy.io.savemat(ext / "joints.mat", {"joints": ext_joints})
    for n in range(2):
        write_image(ext / "images" / f"im{n + 1:05d}.jpg")
    return root, joints, ext, ext_joints


def test_lsp_split_mapping_and_occlusion_flag(lsp_layout):
    root, joints, _, _ = lsp_layout
    assert standard_split(2000) == (range(0, 1000), range(1000, 2000))
    assert standard_split(10000)[1] == range(1000, 2000)
    dm = LSPDataModule({"root": str(root), "image_size": 32, "batch_size": 3})
    train, test = dm.records("train"), dm.records("test")
    assert [r.image_path for r in train] == ["images/im0001.jpg", "images/im0002.jpg", "images/im0003.jpg"]
    assert [r.image_path for r in test] == ["images/im0004.jpg", "images/im0005.jpg", "images/im0006.jpg"]
    record = test[0]
    raw = joints[:2, :, 3].T  # image 4
    for lsp, ours in ((12, "thorax"), (13, "head"), (0, "r_ankle"), (9, "l_shoulder"), (6, "r_wrist")):
        np.testing.assert_allclose(record.joints_2d[J[ours]], raw[lsp] - 1, atol=1e-4)
    assert record.visible.sum() == 14 and not record.visible[[J["pelvis"], J["spine"], J["neck"]]].any()
    assert record.occluded[J["r_wrist"]] and record.occluded.sum() == 1  # occluded but labelled
    assert record.torso_size == pytest.approx(np.linalg.norm(raw[9] - raw[2]))
    assert "6 images (lsp)" in dm.check()
    batch = next(iter(dm.test_dataloader()))
    check_batch(batch)
    np.testing.assert_allclose(batch["torso_size"].numpy(), torso_size(batch["joints_2d"]).numpy(), rtol=1e-4)


def test_lsp_extended_layout_and_its_visibility(lsp_layout):
    root, _, ext, ext_joints = lsp_layout
    loaded, variant = read_lsp_joints(ext / "joints.mat")
    assert variant == "lspet" and loaded.shape == (2, 14, 3)
    dm = LSPDataModule({"root": str(root), "extended_root": str(ext), "image_size": 32})
    train = dm.records("train")
    assert len(train) == 3 + 2
    assert train[3].image_path.endswith("images/im00001.jpg")
    assert not train[3].visible[J["head"]] and train[4].visible[J["head"]]
    np.testing.assert_allclose(train[4].joints_2d[J["l_ankle"]], ext_joints[5, :2, 1] - 1, atol=1e-4)


def test_lsp_pck_matches_hand_computed_values():
    target = torch.zeros(2, 17, 2)
    target[:, J["l_shoulder"]] = torch.tensor([0.0, 0.0])
    target[:, J["r_hip"]] = torch.tensor([[0.0, 50.0], [0.0, 100.0]])  # torso 50 and 100 px
    pred = target.clone()
    pred[:, J["r_ankle"], 0] += 15.0  # > 10 (wrong) for sample 0, <= 20 (right) for sample 1
    pred[0, J["head"], 1] += 10.0  # exactly 0.2 * 50: right
    out = pck(pred, target)
    assert out["pck"] == pytest.approx(100.0 * 27 / 28)
    assert out["pck/Ankle"] == pytest.approx(75.0) and out["pck/Head"] == 100.0


def test_lsp_missing_file_is_one_line(tmp_path):
    with pytest.raises(DatasetLayoutError) as error:
        LSPDataModule({"root": str(tmp_path)})
    assert "joints.mat" in str(error.value) and "\n" not in str(error.value)
    scipy.io.savemat(tmp_path / "joints.mat", {"joints": np.zeros((3, 14, 2))})
    with pytest.raises(DatasetLayoutError, match="images"):
        LSPDataModule({"root": str(tmp_path)})


def test_corrupt_annotation_files_name_themselves(tmp_path, mpii_json):
    import json as json_module
    import os

    from datamodules.lsp import read_lsp_joints
    from datamodules.mpii import read_json_annotations
    from pose3d.readers import FileFormatError

    junk = tmp_path / "joints.mat"
    junk.write_bytes(os.urandom(2000))
    with pytest.raises(FileFormatError, match=r"joints.mat: not a readable MATLAB file .*expected LSP's joints.mat"):
        read_lsp_joints(junk)
    short = tmp_path / "train.json"
    short.write_text(json_module.dumps([{"image": "a.jpg", "center": [5, 5], "scale": 1.0,
                                         "joints": [[1, 2], [3, 4], [5, 6]], "joints_vis": [1, 1, 1]}]))
    with pytest.raises(DatasetLayoutError, match=r"entry 0 has joints of shape \(3, 2\) and 3 joints_vis, .*expected MPII's 16"):
        read_json_annotations(short)


class _Echo2D:
    """A module whose 2D prediction is the batch's ``pred_2d``: scores what the base logs."""

    @staticmethod
    def build(eval_joints):
        from dataclasses import dataclass

        from lightning_modules.base import PoseModule
        from pose3d.contract import DataInfo

        class Echo2D(PoseModule):
            @dataclass
            class Config:
                pass

            def predict(self, batch):
                return {"joints_2d": batch["pred_2d"]}

        return Echo2D(model={}, optim={}, data_info=DataInfo(eval_joints=eval_joints))


def scored_batch(reference_key: str, reference: float) -> dict:
    """Two samples, every joint labelled; sample 0's pelvis and left wrist 100 px off."""
    target = torch.rand(2, 17, 2) * 60
    pred = target.clone()
    pred[0, J["pelvis"]] += 100.0
    pred[0, J["l_wrist"]] += 100.0
    return {"joints_2d": target, "pred_2d": pred, "has_2d": torch.ones(2, dtype=torch.bool),
            "visible": torch.ones(2, 17, dtype=torch.bool), reference_key: torch.full((2,), reference)}


def test_the_logged_mpii_pckh_scores_the_official_14_joints():
    module = _Echo2D.build(PCKH_JOINTS)
    module._update_metrics(scored_batch("head_size", 20.0), "test")
    # the pelvis is not in the official table; the left wrist is one miss of 2 x 14
    assert len(PCKH_JOINTS) == 14 and J["pelvis"] not in PCKH_JOINTS and J["thorax"] not in PCKH_JOINTS
    assert float(module.test_pckh.compute()) == pytest.approx(100.0 * 27 / 28)
    assert not module.test_pck_torso.update_called


def test_lsp_batches_log_pck_of_the_torso_not_pckh():
    from pose3d.skeleton import SUBSET_14

    module = _Echo2D.build(SUBSET_14)
    module._update_metrics(scored_batch("torso_size", 50.0), "test")  # threshold 0.2 x 50 = 10 px
    assert float(module.test_pck_torso.compute()) == pytest.approx(100.0 * 27 / 28)
    assert not module.test_pckh.update_called
