"""The embedded synthetic dataset: batch contract, determinism, splits, label consistency."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from lightning.fabric.utilities.data import _set_sampler_epoch

from datamodules.augment import flip_horizontal
from datamodules.batch import check_batch
from datamodules.synthetic import SyntheticDataModule
from pose3d import camera as cam
from pose3d.body import TEST_SUBJECTS, TRAIN_SUBJECTS, VAL_SUBJECTS, train_subjects
from pose3d.skeleton import JOINT_INDEX
from tests.helpers import assert_rotations


def make_dm(**overrides) -> SyntheticDataModule:
    cfg = {"image_size": 32, "train_size": 16, "val_size": 8, "test_size": 8, "batch_size": 8}
    cfg.update(overrides)
    return SyntheticDataModule(cfg)


def first_batch(dm: SyntheticDataModule, split: str) -> dict:
    return next(iter(getattr(dm, f"{split}_dataloader")()))


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_batches_follow_the_contract(split):
    batch = first_batch(make_dm(), split)
    check_batch(batch)
    assert batch["image"].shape == (8, 3, 32, 32)
    assert 0.0 <= batch["image"].min() and batch["image"].max() <= 1.0
    assert torch.all(batch["joints_3d"][:, 0] == 0), "root-relative"
    assert batch["has_3d"].all() and batch["has_2d"].all()


def test_split_subjects_and_test_bodies_are_unseen():
    dm = make_dm(train_size=400, val_size=200, test_size=64, train_bodies=30)
    seen = {split: {dm.dataset(split).describe(i).subject for i in range(len(dm.dataset(split)))}
            for split in ("train", "val", "test")}
    assert seen["train"] == set(train_subjects(30)) and set(TRAIN_SUBJECTS) < seen["train"]
    assert seen["val"] == set(VAL_SUBJECTS) and len(VAL_SUBJECTS) == 20
    assert seen["test"] == set(TEST_SUBJECTS)
    assert not (seen["train"] & seen["val"]) and not (seen["train"] | seen["val"]) & seen["test"]


def test_fresh_samples_are_new_every_epoch_and_the_same_in_every_run():
    def epochs(seed: int) -> list[list[int]]:
        torch.manual_seed(seed)  # the run seed, as seed_everything sets it
        loader = make_dm(train_size=32, batch_size=8).train_dataloader()
        out = []
        for epoch in range(2):
            _set_sampler_epoch(loader, epoch)  # as Lightning's fit loop tells the loader each epoch
            out.append(sorted(i for batch in loader.batch_sampler for i in batch))
        return out

    first, second = epochs(0)
    assert first == list(range(32)) and second == list(range(32, 64))  # every epoch its own samples
    assert epochs(0) == [first, second]
    dm = make_dm(train_size=32, batch_size=8)
    assert dm.dataset("train").describe(40).subject in train_subjects(200)  # beyond train_size: a new sample
    repeated = make_dm(train_size=32, batch_size=8, fresh_samples=False)
    with pytest.raises(IndexError):
        repeated.dataset("train").describe(40)


def test_sample_is_a_pure_function_of_seed_split_index():
    a = make_dm().dataset("test")
    b = make_dm().dataset("test")
    single = a[5]
    batched = b.__getitems__([3, 5, 7])[1]
    for key in single:
        assert torch.equal(single[key], batched[key]) or torch.allclose(single[key], batched[key], atol=1e-5), key
    other_seed = make_dm(seed=1).dataset("test")[5]
    assert not torch.allclose(other_seed["joints_3d"], single["joints_3d"])
    val, train = make_dm().dataset("val").describe(5), make_dm().dataset("train").describe(5)
    assert not np.allclose(val.pose, train.pose), "val is its own sample stream"


def test_3d_labels_project_onto_2d_labels():
    batch = first_batch(make_dm(), "test")
    # the root's x, y are not stored; recover it from the root pixel, then compare all joints
    root_cam = cam.backproject(batch["joints_2d"][:, :1], batch["root_depth"][:, None], batch["camera"])
    points = batch["joints_3d"] + root_cam
    assert torch.allclose(cam.project(points, batch["camera"]), batch["joints_2d"], atol=1e-2)


def test_person_is_centred_and_inside_the_crop():
    batch = first_batch(make_dm(test_size=32, batch_size=32), "test")
    uv = batch["joints_2d"]
    assert (uv.min() > -2) and (uv.max() < 34)
    assert batch["visible"].float().mean() > 0.6


def test_wild_training_samples_are_2d_only_but_wild_test_keeps_3d():
    dm = make_dm(train_domain="wild", eval_domain="wild")
    train, test = first_batch(dm, "train"), first_batch(dm, "test")
    assert not train["has_3d"].any() and train["has_2d"].all()
    assert test["has_3d"].all()
    mixed = make_dm(train_domain="mixed", wild_fraction=0.5, train_size=64, batch_size=64)
    has_3d = first_batch(mixed, "train")["has_3d"]
    assert 0 < has_3d.sum() < 64


def test_flip_keeps_3d_projecting_onto_2d_and_swaps_sides():
    batch = first_batch(make_dm(), "test")
    flipped = flip_horizontal(batch, torch.ones(8, dtype=torch.bool))
    root_cam = cam.backproject(flipped["joints_2d"][:, :1], flipped["root_depth"][:, None], flipped["camera"])
    projected = cam.project(flipped["joints_3d"] + root_cam, flipped["camera"])
    assert torch.allclose(projected, flipped["joints_2d"], atol=1e-2)
    l_wrist, r_wrist = JOINT_INDEX["l_wrist"], JOINT_INDEX["r_wrist"]
    assert torch.allclose(flipped["joints_3d"][:, l_wrist, 0], -batch["joints_3d"][:, r_wrist, 0])
    assert torch.equal(flipped["image"], batch["image"].flip(-1))


def test_targets_on_demand():
    dm = make_dm()
    dm.request_targets({"heatmaps": {"size": 16, "sigma": 1.0}, "skeleton_maps": {"size": 16, "stick_width": 2.0}})
    batch = first_batch(dm, "test")
    assert batch["heatmaps"].shape == (8, 17, 16, 16)
    assert batch["skeleton_maps"].shape[0] == 8 and batch["skeleton_maps"].shape[-2:] == (16, 16)
    with pytest.raises(ValueError, match="unknown target"):
        dm.request_targets({"depth_maps": {}})


def test_occluded_joints_are_labelled_and_get_heatmap_targets():
    """As MPII and Human3.6M label occluded joints, every joint inside the crop is labelled
    (``visible``) and has its Gaussian; the depth test's verdict is the extra key ``occluded``."""
    dm = make_dm(test_size=32, batch_size=32)
    dm.request_targets({"heatmaps": {"size": 32, "sigma": 1.0}})
    batch = first_batch(dm, "test")
    occluded, labelled = batch["occluded"], batch["visible"]
    assert occluded.any(), "side views hide some joints"
    assert labelled[occluded].all()
    inside = ((batch["joints_2d"] >= 0) & (batch["joints_2d"] <= 31)).all(-1)
    assert torch.equal(labelled, inside)
    peaks = batch["heatmaps"].flatten(2).amax(-1)
    assert (peaks[occluded] > 0.5).all()


def test_bvh_pose_source(shared_data):
    dm = make_dm(pose_source=f"bvh:{shared_data / 'cmu_bvh' / 'cmu_original'}")
    batch = first_batch(dm, "train")
    check_batch(batch)
    assert dm.info.action_names == ("131",)


def test_missing_bvh_path_is_a_one_line_error(tmp_path):
    from pose3d.config import ConfigError

    with pytest.raises(ConfigError, match="no .bvh file found"):
        make_dm(pose_source=f"bvh:{tmp_path / 'nowhere'}")


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_action_filter_keeps_only_those_actions_in_every_split(split):
    from pose3d.pose_sampler import ACTIVITIES

    dm = make_dm(actions=["sitting", "walking"], train_size=48, val_size=48, test_size=48)
    dataset = dm.dataset(split)
    actions = {dataset.describe(i).action for i in range(48)}
    assert actions == {ACTIVITIES.index("sitting"), ACTIVITIES.index("walking")}
    assert dm.info.action_names == ACTIVITIES  # ids stay those of the full list
    again = make_dm(actions=["walking", "sitting"], train_size=48, val_size=48, test_size=48).dataset(split)
    assert np.array_equal(again.describe(7).pose, dataset.describe(7).pose)  # a pure function of (seed, split, index)


def test_unfiltered_samples_are_unchanged():
    """``actions: []`` (the default) and every action listed draw exactly what the unfiltered data did."""
    from datamodules.synthetic import SPLIT_IDS
    from pose3d.pose_sampler import ACTIVITIES

    default, every = make_dm().dataset("train"), make_dm(actions=list(ACTIVITIES)).dataset("train")
    for i in range(16):
        rng = np.random.default_rng((0, SPLIT_IDS["train"], i))  # the draws of describe(): subject, then action
        rng.integers(len(TRAIN_SUBJECTS))
        assert default.describe(i).action == int(rng.integers(len(ACTIVITIES)))
        a, b = default.describe(i), every.describe(i)
        assert a.action == b.action and np.array_equal(a.pose, b.pose) and np.array_equal(a.root, b.root)


def test_unknown_action_is_a_one_line_error_naming_the_valid_ones(shared_data):
    from pose3d.config import ConfigError

    with pytest.raises(ConfigError) as error:
        make_dm(actions=["dancing"])
    assert str(error.value) == ("bad value for data.actions: 'dancing'; valid action names: "
                                "standing, walking, sitting, crouching, reaching, bending")
    with pytest.raises(ConfigError, match="'walking'; valid action names: 131"):
        make_dm(pose_source=f"bvh:{shared_data / 'cmu_bvh' / 'cmu_original'}", actions=["walking"])
    from datamodules.base import action_ids

    with pytest.raises(ConfigError, match="valid action names: none \\(this dataset has no action labels\\)"):
        action_ids(["walking"], ())  # MPII, LSP


def test_action_filter_on_mocap_categories(shared_data):
    folder = shared_data / "cmu_bvh" / "iclone_cc"
    dm = make_dm(pose_source=f"bvh:{folder}")
    names = dm.info.action_names
    if len(names) < 2:
        pytest.skip(f"{folder} has one category only")
    kept = make_dm(pose_source=f"bvh:{folder}", actions=[names[-1]]).dataset("train")
    assert {kept.describe(i).action for i in range(16)} == {len(names) - 1}


@pytest.mark.parametrize("device, expected", [
    ("gpu", "bad value for data.render_device: 'gpu'; expected cpu, cuda or cuda:N"),
    ("cuda:99", "data.render_device=cuda:99: no such CUDA device on this machine; expected cpu"),
])
def test_render_device_is_checked_before_anything_renders(device, expected):
    from datamodules.synthetic import SyntheticDataModule
    from pose3d.config import ConfigError

    with pytest.raises(ConfigError, match=re.escape(expected)):
        SyntheticDataModule({"render_device": device})


def test_render_device_cpu_renders_what_the_default_renders():
    from datamodules.synthetic import SyntheticDataModule

    default = SyntheticDataModule({"test_size": 4, "image_size": 32}).dataset("test")[1]
    explicit = SyntheticDataModule({"test_size": 4, "image_size": 32, "render_device": "cpu"}).dataset("test")[1]
    assert all(torch.equal(default[k], explicit[k]) for k in default)


@pytest.mark.parametrize("split", ["train", "test"])
def test_camera_rotation_is_a_rotation_that_maps_the_vertical_as_sampled(split):
    """camera_rotation (world y down -> camera) is R_x(pitch) R_y(yaw): orthonormal, det 1, and the
    world's down seen from the camera is (0, cos pitch, sin pitch), a training flip included."""
    dm = make_dm()
    dm.setup("fit" if split == "train" else "test")
    dataset = getattr(dm, f"{split}_dataloader")().dataset
    samples = dataset.__getitems__(list(range(8)))  # in index order (the training loader shuffles)
    batch = {key: torch.stack([sample[key] for sample in samples]) for key in samples[0]}
    rotation = batch["camera_rotation"].double()
    assert batch["has_camera_rotation"].all()
    assert_rotations(rotation)
    pitch = torch.tensor([dataset.describe(i).pitch for i in range(len(rotation))], dtype=torch.float64)
    down = torch.stack((torch.zeros_like(pitch), torch.cos(pitch), torch.sin(pitch)), -1)
    assert torch.allclose(rotation[..., 1], down, atol=1e-5)
    if split == "test":  # the 3D labels are the world pose seen through it
        spec = dataset.describe(0)
        world = torch.as_tensor(spec.pose, dtype=torch.float64) @ cam.rotation_about_axis(torch.tensor(spec.yaw, dtype=torch.float64), "y").mT
        expected = (world - world[:1]) @ cam.rotation_about_axis(pitch[0], "x").mT
        assert torch.allclose(batch["joints_3d"][0].double(), expected, atol=1e-2)
