"""Crops and augmentation of real-image records keep image, 2D, 3D and camera consistent."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from datamodules.batch import check_batch
from datamodules.crop import CropAugment, CropParams, crop_record
from datamodules.records import (
    DatasetLayoutError,
    LazyRecords,
    PoseRecord,
    RecordDataset,
    cap_records,
    collate_samples,
    evenly_spaced,
)
from datamodules.targets import TargetMaker
from pose3d import camera as cam
from pose3d.skeleton import FLIP_PERMUTATION, JOINT_INDEX

# H36M-like full frame; fx != fy and an off-centre principal point on purpose
K = np.array([1145.0, 1143.8, 512.5, 515.4])
FRAME = (1002, 1000)


def make_record(rng, offset=(600.0, -200.0), depth=5000.0, with_3d=True, image_path="") -> PoseRecord:
    joints = rng.normal(size=(17, 3)) * np.array([250.0, 450.0, 150.0]) + np.array([*offset, depth])
    points = cam.project(torch.tensor(joints), torch.tensor(K)).numpy()
    low, high = points.min(0), points.max(0)
    return PoseRecord(image_path, (low + high) / 2, 1.2 * float((high - low).max()) / 200, points,
                      np.ones(17, dtype=bool), joints if with_3d else None, K.copy() if with_3d else None, 5, 3)


def dot_image(points: np.ndarray, joint: int) -> np.ndarray:
    """A black frame with a bright Gaussian blob (sigma 6 px) at one joint."""
    h, w = FRAME
    v, u = np.mgrid[0:h, 0:w]
    blob = np.exp(-((u - points[joint, 0]) ** 2 + (v - points[joint, 1]) ** 2) / (2 * 6.0**2))
    return np.repeat((blob * 255).astype(np.uint8)[..., None], 3, -1)


def centroid(image: np.ndarray) -> np.ndarray:
    weight = image[..., 0].astype(np.float64)
    weight = np.where(weight > 0.3 * weight.max(), weight, 0.0)
    v, u = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    return np.array([(weight * u).sum(), (weight * v).sum()]) / weight.sum()


def absolute_projection(out: dict) -> np.ndarray:
    return cam.project(torch.tensor(out["joints_3d"]), torch.tensor(out["camera"])).numpy()


def pairwise(points: np.ndarray) -> np.ndarray:
    return np.linalg.norm(points[:, None] - points[None], axis=-1).ravel()


def test_3d_projects_onto_2d_after_any_augmentation():
    rng = np.random.default_rng(0)
    augment = CropAugment(scale_jitter=0.3, rotation_deg=45, flip=True, photometric=False)
    flips = 0
    for k in range(40):
        record = make_record(rng, offset=rng.uniform(-900, 900, size=2))
        params = augment.sample(rng)
        flips += params.flip
        out = crop_record(None, record, 64, augment, rng, params=params)
        assert np.abs(absolute_projection(out) - out["joints_2d"]).max() < 1e-6
        # an in-plane rotation about the optical axis keeps depths and bone lengths
        assert np.allclose(np.sort(out["joints_3d"][:, 2]), np.sort(record.joints_3d[:, 2]))
        assert np.allclose(np.sort(pairwise(out["joints_3d"])), np.sort(pairwise(record.joints_3d)))
    assert 5 < flips < 35


@pytest.mark.parametrize("params", [CropParams(), CropParams(1.2, 0.5, False), CropParams(0.8, -0.6, True)])
def test_image_content_follows_the_labels(params):
    """The warped image puts a joint's blob where joints_2d says, within a pixel (incl. the pre-shrink path)."""
    rng = np.random.default_rng(1)
    record = make_record(rng)
    wrist = JOINT_INDEX["l_wrist"]
    image = dot_image(record.joints_2d, wrist)
    for size in (64, 256):  # 64: shrinks > 2x (INTER_AREA first); 256: direct warp
        out = crop_record(image, record, size, None, params=params)
        label = FLIP_PERMUTATION[wrist] if params.flip else wrist  # a flipped left wrist is a right wrist
        assert out["visible"][label]
        assert np.linalg.norm(centroid(out["image"]) - out["joints_2d"][label]) < 1.0


def test_flip_mirrors_and_swaps_left_right():
    rng = np.random.default_rng(2)
    record = make_record(rng)
    plain = crop_record(None, record, 64, None, params=CropParams())
    flipped = crop_record(None, record, 64, None, params=CropParams(flip=True))
    perm = list(FLIP_PERMUTATION)
    assert np.allclose(flipped["joints_2d"][:, 0], 63 - plain["joints_2d"][perm, 0])
    assert np.allclose(flipped["joints_3d"], plain["joints_3d"][perm] * np.array([-1, 1, 1]))
    assert np.isclose(flipped["camera"][2], 63 - plain["camera"][2])


def test_joints_leaving_the_crop_are_not_visible():
    rng = np.random.default_rng(3)
    record = make_record(rng)
    record.joints_2d = record.joints_2d.copy()
    record.joints_2d[16] = record.center + 5000.0  # far outside
    record.visible = record.visible.copy()
    record.visible[3] = False  # unlabelled in the source
    out = crop_record(None, record, 32, None)
    assert not out["visible"][16] and not out["visible"][3]
    assert out["visible"][[0, 1, 2, 4]].all()


def test_2d_only_record_gets_a_nominal_camera_and_zero_3d():
    rng = np.random.default_rng(4)
    record = make_record(rng, with_3d=False)
    out = crop_record(np.zeros((*FRAME, 3), np.uint8), record, 32, CropAugment(photometric=True), rng)
    assert np.all(out["joints_3d"] == 0)
    assert out["camera"][0] > 0 and out["root_depth"] > 0
    assert out["image"].shape == (32, 32, 3)


def test_record_dataset_batches_follow_the_contract(tmp_path):
    import cv2

    rng = np.random.default_rng(5)
    records = []
    for k in range(3):
        record = make_record(rng, image_path=f"frames/{k}.jpg", with_3d=k != 2)
        (tmp_path / "frames").mkdir(exist_ok=True)
        cv2.imwrite(str(tmp_path / record.image_path), dot_image(record.joints_2d, 0))
        records.append(record)
    targets = TargetMaker(32)
    targets.request({"heatmaps": {"size": 8, "sigma": 1.0}, "skeleton_maps": {"size": 16}})
    dataset = RecordDataset(records, tmp_path, 32, CropAugment(), targets)
    items = dataset.__getitems__([0, 1, 2])
    batch = torch.utils.data.default_collate(items)
    check_batch(batch)
    assert batch["image"].shape == (3, 3, 32, 32) and 0 <= batch["image"].min() and batch["image"].max() <= 1
    assert batch["has_3d"].tolist() == [True, True, False]
    assert batch["heatmaps"].shape == (3, 17, 8, 8) and batch["skeleton_maps"].shape == (3, 6, 16, 16)
    assert torch.all(batch["joints_3d"][:, 0] == 0)  # root-relative
    # the root's absolute position is recoverable from its 2D, root_depth and the camera
    root = cam.backproject(batch["joints_2d"][:, :1], batch["root_depth"][:, None], batch["camera"])
    projected = cam.project(batch["joints_3d"][:2] + root[:2], batch["camera"][:2])
    assert (projected - batch["joints_2d"][:2]).abs().max() < 0.05

    records[1].image_path = "frames/missing.jpg"
    with pytest.raises(DatasetLayoutError, match="missing.jpg"):
        dataset[1]


def test_caps_are_evenly_spaced_views():
    assert evenly_spaced(10, None).tolist() == list(range(10))
    assert evenly_spaced(10, 0).tolist() == list(range(10))
    assert evenly_spaced(101, 3).tolist() == [0, 50, 100]
    lazy = LazyRecords(101, lambda i: i)
    capped = cap_records(lazy, 3)
    assert len(capped) == 3 and [capped[i] for i in range(3)] == [0, 50, 100]
    assert collate_samples  # exported for datasets that build samples themselves
