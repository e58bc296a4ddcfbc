"""The DataModule <-> method contract: DataInfo, merging target requests, the target-kind registry."""
from __future__ import annotations

import pytest
import torch

from datamodules.targets import TargetMaker
from pose3d.config import ConfigError
from pose3d.contract import TARGET_KINDS, DataInfo, get_target_kind, merge_target_requests, target_kind
from pose3d.skeleton_maps import render_skeleton_maps, stack_skeleton_maps
from tests.helpers import random_batch


def make_batch(size: int, image_size: int) -> dict:
    """Labels of the contract that targets are rendered from (no targets yet)."""
    batch = random_batch(size, image_size)
    del batch["heatmaps"]
    batch["root_depth"] = torch.full((size,), 4000.0)
    return batch


def test_data_info_round_trips_through_a_plain_dict():
    info = DataInfo(image_size=32, action_names=("walking", "sitting"), eval_joints=(1, 2, 3))
    plain = info.as_dict()
    assert plain == {"num_joints": 17, "image_size": 32, "action_names": ["walking", "sitting"], "eval_joints": [1, 2, 3],
                     "test_subjects": [], "domains": []}
    assert DataInfo.from_any(plain) == info and DataInfo.from_any(info) is info
    assert DataInfo.from_any({"num_joints": 17, "image_size": 64, "action_names": ()}).eval_joints is None  # older checkpoints
    with pytest.raises(ValueError, match=r"unknown DataInfo field\(s\) \['joints'\]"):
        DataInfo.from_any({"joints": 17})
    with pytest.raises(ValueError, match="outside 0..16"):
        DataInfo(eval_joints=(0, 17))


def test_requests_merge_and_the_kind_defaults_to_the_key():
    merged = merge_target_requests({"heatmaps": {"size": 16}}, {"skeleton_maps": {"size": 56, "stick_width": [5, 10]}},
                                   {"heatmaps": {"size": 16, "sigma": 1.0}})  # the same spec, written out
    assert merged == {
        "heatmaps": {"kind": "heatmaps", "size": 16, "sigma": 1.0},
        "skeleton_maps": {"kind": "skeleton_maps", "size": 56, "stick_width": (5, 10), "crop_scale": 1.0},
    }


def test_two_sizes_of_one_kind_are_both_made():
    maker = TargetMaker(32)
    maker.request({"heatmaps": {"size": 8}})
    maker.request({"heatmaps_16": {"kind": "heatmaps", "size": 16}})  # a second request adds, never replaces
    batch = maker(make_batch(3, 32))
    assert batch["heatmaps"].shape == (3, 17, 8, 8) and batch["heatmaps_16"].shape == (3, 17, 16, 16)


def test_conflicting_specs_are_one_line_errors_naming_key_and_specs():
    with pytest.raises(ConfigError) as error:
        merge_target_requests({"heatmaps": {"size": 16}}, {"heatmaps": {"size": 64, "sigma": 2.0}})
    message = str(error.value)
    assert "\n" not in message and "'heatmaps'" in message
    assert "'size': 16, 'sigma': 1.0" in message and "'size': 64, 'sigma': 2.0" in message


def test_unknown_kinds_and_fields_name_what_is_known():
    with pytest.raises(ConfigError, match="unknown target kind 'depth_maps'; known kinds: heatmaps, skeleton_maps"):
        merge_target_requests({"depth_maps": {"size": 8}})
    with pytest.raises(ConfigError, match="unknown target kind 'depth'"):
        TargetMaker(32).request({"maps": {"kind": "depth", "size": 8}})
    with pytest.raises(ConfigError, match=r"target 'heatmaps' \(kind heatmaps\) lacks \['size'\]"):
        merge_target_requests({"heatmaps": {"sigma": 2.0}})
    with pytest.raises(ConfigError, match=r"unknown field\(s\) \['sigam'\]; expected fields: size, sigma"):
        merge_target_requests({"heatmaps": {"size": 8, "sigam": 2.0}})
    with pytest.raises(ConfigError, match="'image' is a batch-contract key"):
        TargetMaker(32).request({"image": {"kind": "heatmaps", "size": 8}})


def test_a_registered_kind_is_rendered_without_changing_the_target_maker(monkeypatch):
    monkeypatch.setattr("pose3d.contract.TARGET_KINDS", dict(TARGET_KINDS))
    get_target_kind("heatmaps")  # the built-ins are in the copy

    @target_kind("joint_depths", required=(), defaults={"scale": 1.0})
    def joint_depths(batch, image_size, spec):
        return batch["joints_3d"][..., 2] * spec["scale"]

    maker = TargetMaker(32)
    maker.request({"depths": {"kind": "joint_depths", "scale": 2.0}})
    batch = make_batch(2, 32)
    assert torch.equal(maker(dict(batch))["depths"], batch["joints_3d"][..., 2] * 2.0)
    with pytest.raises(ValueError, match="registered twice"):
        target_kind("joint_depths")(joint_depths)


def test_skeleton_maps_stack_one_six_channel_map_per_stick_width():
    maker = TargetMaker(32)
    maker.request({"skeleton_maps": {"size": 16, "stick_width": [2.0, 4.0]}, "one": {"kind": "skeleton_maps", "size": 16}})
    batch = make_batch(2, 32)
    out = maker(dict(batch))
    assert out["skeleton_maps"].shape == (2, 2, 6, 16, 16) and out["one"].shape == (2, 6, 16, 16)
    depth = batch["joints_3d"][..., 2] + batch["root_depth"][:, None]
    for k, width in enumerate((2.0, 4.0)):
        single = stack_skeleton_maps(render_skeleton_maps(batch["joints_2d"], depth, (32, 32), (16, 16), width))
        assert torch.equal(out["skeleton_maps"][:, k], single)
    assert torch.equal(out["skeleton_maps"][:, 1], out["one"])  # the default width is 4
