"""Mixed 3D + 2D batches: composition and has_3d masks, epochs and DDP ranks, config validation."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io
import torch
from lightning.fabric.utilities.data import _set_sampler_epoch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from datamodules.loaders import EpochSampler

from datamodules.batch import BATCH_KEYS, check_batch
from datamodules.mixed import MixedBatchSampler, MixedConfig, MixedDataModule, MixedDataset
from datamodules.targets import TargetMaker
from pose3d.config import ConfigError


@pytest.fixture(scope="module")
def lsp_root(tmp_path_factory) -> Path:
    """A tiny LSP copy: joints.mat 3x14x6 and images/im0001.jpg ... (3 train, 3 test images)."""
    root = tmp_path_factory.mktemp("lsp_mixed")
    rng = np.random.default_rng(0)
    joints = np.zeros((3, 14, 6))
    joints[:2] = rng.uniform(10, 50, (2, 14, 6))
    scipy.io.savemat(root / "joints.mat", {"joints": joints})
    (root / "images").mkdir()
    for n in range(6):
        cv2.imwrite(str(root / "images" / f"im{n + 1:04d}.jpg"), np.full((60, 60, 3), 70, dtype=np.uint8))
    return root


def mixed_cfg(lsp_root: Path, **overrides) -> dict:
    cfg = {
        "sources": {
            "three_d": {"name": "synthetic", "train_size": 10, "val_size": 4, "test_size": 4},
            "two_d": {"name": "lsp", "root": str(lsp_root), "rotation_deg": 0.0},
        },
        "ratio_3d": 0.25, "image_size": 32, "batch_size": 8, "train_size": 24,
    }
    cfg.update(overrides)
    return cfg


def test_batches_hold_the_configured_share_of_3d_samples(lsp_root):
    dm = MixedDataModule(mixed_cfg(lsp_root))
    loader = dm.train_dataloader()
    assert len(loader) == 24 // 8
    batch = next(iter(loader))
    check_batch(batch)
    assert batch["has_3d"].tolist() == [True] * 2 + [False] * 6  # round(0.25 * 8) 3D samples first
    assert batch["has_2d"].all()
    assert torch.all(batch["joints_3d"][2:] == 0) and torch.any(batch["joints_3d"][:2] != 0)
    assert "torso_size" not in batch  # only the LSP source makes it
    assert batch["image"].shape == (8, 3, 32, 32)


class KeysPart(Dataset):
    """A stand-in source whose samples carry exactly ``keys``."""

    def __init__(self, keys):
        self.keys = set(keys)

    def __len__(self) -> int:
        return 4

    def __getitems__(self, indices):
        return [{key: torch.zeros(1) for key in self.keys} for _ in indices]


NAMES = ["data.sources.three_d (synthetic)", "data.sources.two_d (lsp)"]


def test_a_key_one_source_lacks_is_dropped_only_when_nobody_needs_it():
    contract = set(BATCH_KEYS)
    extra = MixedDataset([KeysPart(contract | {"head_size"}), KeysPart(contract | {"torso_size"})], NAMES)
    assert set(extra.__getitems__([0, 5])[0]) == contract  # not requested, not in the contract: dropped
    requested = TargetMaker(32)
    requested.request({"heatmaps": {"size": 8}})
    missing_target = MixedDataset([KeysPart(contract | {"heatmaps"}), KeysPart(contract)], NAMES, requested)
    with pytest.raises(ConfigError) as error:
        missing_target.__getitems__([0, 5])
    assert "\n" not in str(error.value)
    assert "'heatmaps' is made by data.sources.three_d (synthetic) but not by data.sources.two_d (lsp)" in str(error.value)
    missing_contract = MixedDataset([KeysPart(contract), KeysPart(contract - {"camera"})], NAMES)
    with pytest.raises(ConfigError, match="'camera' is made by data.sources.three_d .* but not by data.sources.two_d"):
        missing_contract.__getitems__([1, 6])


def test_requested_targets_reach_both_sources_and_a_lacking_one_stops(lsp_root):
    dm = MixedDataModule(mixed_cfg(lsp_root))
    dm.request_targets({"heatmaps": {"size": 8}})
    batch = next(iter(dm.train_dataloader()))
    assert batch["heatmaps"].shape == (8, 17, 8, 8)
    dm = MixedDataModule(mixed_cfg(lsp_root))
    dm.request_targets({"heatmaps": {"size": 8}})
    dm.sources["two_d"].targets.spec = {}  # a source that ignores the request
    with pytest.raises(ConfigError, match=r"'heatmaps' is made by data.sources.three_d \(synthetic\) but not by "
                                          r"data.sources.two_d \(lsp\)"):
        next(iter(dm.train_dataloader()))


def test_round_and_extreme_ratios():
    def first(ratio: float, batch_size: int = 7) -> list[int]:
        sampler = MixedBatchSampler(range(10), batch_size, True, sizes=(5, 5), ratio_3d=ratio, num_batches=2)
        return next(iter(sampler))

    assert sum(i < 5 for i in first(0.5)) == 4  # round(3.5) = 4 (round half to even)
    assert sum(i < 5 for i in first(0.3)) == 2
    assert all(i >= 5 for i in first(0.0)) and all(i < 5 for i in first(1.0))
    with pytest.raises(ConfigError, match="2D source"):
        MixedBatchSampler(range(3), 4, True, sizes=(3, 0), ratio_3d=0.5)


def test_sources_are_cycled_and_reshuffled_per_epoch_and_rank():
    sampler = MixedBatchSampler(EpochSampler(range(13)), 4, True, sizes=(3, 10), ratio_3d=0.5, num_batches=6, seed=1)
    batches = list(sampler)
    assert len(batches) == 6 and all(len(b) == 4 for b in batches)
    three_d = [i for b in batches for i in b[:2]]
    assert sorted(three_d[:3]) == [0, 1, 2] and sorted(three_d[3:6]) == [0, 1, 2]  # one pass, then again
    two_d = [i for b in batches for i in b[2:]]
    assert sorted(two_d[:10]) == list(range(3, 13))
    loader = DataLoader(range(13), batch_sampler=sampler)
    _set_sampler_epoch(loader, 1)  # how Lightning tells a loader the epoch: to its batch sampler's sampler
    assert sampler.epoch == 1 and list(sampler) != batches
    ranks = [MixedBatchSampler(DistributedSampler(range(13), num_replicas=2, rank=r), 4, True, sizes=(3, 10),
                               ratio_3d=0.5, num_batches=6, seed=1) for r in (0, 1)]
    assert [len(s) for s in ranks] == [3, 3]
    assert list(ranks[0]) != list(ranks[1])


def test_evaluation_runs_on_the_named_source(lsp_root):
    dm = MixedDataModule(mixed_cfg(lsp_root, eval_source="two_d", test_size=2))
    batch = next(iter(dm.test_dataloader()))
    assert len(batch["image"]) == 2 and not batch["has_3d"].any() and "torso_size" in batch
    assert dm.info.image_size == 32
    dm = MixedDataModule(mixed_cfg(lsp_root))
    batch = next(iter(dm.val_dataloader()))
    assert batch["has_3d"].all() and len(batch["image"]) == 4
    assert dm.info.action_names == dm.sources["three_d"].info.action_names


@pytest.mark.parametrize("change, expected", [
    (lambda c: c["sources"]["two_d"].update(bogus=1), "unknown config key 'bogus' (data.sources.two_d)"),
    (lambda c: c["sources"].update(four_d={"name": "lsp"}), "data.sources.four_d"),
    (lambda c: c["sources"]["three_d"].update(name="h37m"), "data.sources.three_d.name: 'h37m'"),
    (lambda c: c["sources"].pop("two_d"), "data.sources.two_d must be a data config"),
    (lambda c: c["sources"]["three_d"].update(train_domain="moon"), "data.sources.three_d.train_domain"),
    (lambda c: c["sources"]["two_d"].update(image_size=64), "data.sources.two_d.image_size=64"),
    (lambda c: c.update(ratio_3d=1.5), "data.ratio_3d"),
])
def test_bad_configs_give_one_line_errors(lsp_root, change, expected):
    cfg = mixed_cfg(lsp_root)
    change(cfg)
    with pytest.raises(ConfigError) as error:
        MixedConfig(**cfg)
    assert expected in str(error.value) and "\n" not in str(error.value)


def test_missing_source_files_are_layout_errors(tmp_path, lsp_root):
    from datamodules.records import DatasetLayoutError

    cfg = mixed_cfg(lsp_root)
    cfg["sources"]["two_d"]["root"] = str(tmp_path)
    with pytest.raises(DatasetLayoutError, match="joints.mat"):
        MixedDataModule(cfg)
    # a training frame of the 2D source is missing: setup("fit") names it before training starts
    scipy.io.savemat(tmp_path / "joints.mat", {"joints": np.zeros((3, 14, 4)) + 20.0})
    (tmp_path / "images").mkdir()
    dm = MixedDataModule(cfg)
    with pytest.raises(DatasetLayoutError, match="im0001.jpg"):
        dm.setup("fit")
