"""The intra-op thread count of a block of work (pose3d.threads) and the lifting's choice of it."""
from __future__ import annotations

import pytest
import torch

import pose3d.lifting
from pose3d.threads import intra_op_threads
from tests.test_lifting import model_poses, project, toy_prior


def test_the_count_is_set_inside_and_restored_after_even_on_error():
    before = torch.get_num_threads()
    with intra_op_threads(before + 1):
        assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError, match="inside"):
        with intra_op_threads(before + 1):
            raise RuntimeError("inside")
    assert torch.get_num_threads() == before
    with intra_op_threads(None):
        assert torch.get_num_threads() == before


def test_a_count_below_one_is_refused():
    with pytest.raises(ValueError, match="at least 1, got 0"):
        with intra_op_threads(0):
            pass


def test_small_batches_lift_with_one_thread_and_large_with_the_default(monkeypatch):
    prior = toy_prior()
    joints_2d, _ = project(model_poses(prior, 8), torch.rand(8, dtype=torch.float64) * 6)
    lifter = pose3d.lifting.Lifter(prior, dtype=torch.float64)
    seen = []
    lift = lifter._lift
    monkeypatch.setattr(lifter, "_lift", lambda *args: seen.append(torch.get_num_threads()) or lift(*args))
    with intra_op_threads(2):
        small = lifter(joints_2d)  # 8 poses < SINGLE_THREAD_BELOW
        monkeypatch.setattr(pose3d.lifting, "SINGLE_THREAD_BELOW", 8)
        large = lifter(joints_2d)
        assert torch.get_num_threads() == 2
    assert seen == [1, 2]
    assert torch.equal(small.joints_3d, large.joints_3d)
