"""The Human3.6M stand-in (python -m pose3d.h36m_standin) and the h36m_poses commands of
docs/human36m.md, run on a tiny copy of it."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from datamodules.human36m import FRAMES_50HZ, Human36MDataModule
from harness.h36m_standin import main as standin, subject_frames
from pose3d import camera as cam
from pose3d import ppca

SCALE = 0.004  # of the real frame counts: about 8,500 frames per camera


@pytest.fixture(scope="module")
def standin_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("standin") / "h36m"
    assert standin([str(root), "--scale", str(SCALE)]) == 0
    return root


def test_the_standin_has_the_real_files_layout_frame_counts_and_scale(standin_root):
    assert sum(subject_frames().values()) == sum(FRAMES_50HZ.values()) == 389_938 + 135_836  # train + test subjects
    dm = Human36MDataModule({"root": str(standin_root), "layout": "poses", "image_size": 32})
    frames = {}
    for subject, _, world, _ in dm._pose_sequences():
        frames[subject] = frames.get(subject, 0) + len(world)
    assert frames == {s: round(n * SCALE) for s, n in subject_frames().items()}
    assert len({a for _, a, _, _ in dm._pose_sequences()}) == 30  # 15 actions x 2 trials
    records = dm.all_records("test")
    sample = [records[i] for i in range(0, len(records), 37)]
    poses = np.stack([r.joints_3d for r in sample])
    assert 230 < ppca.mean_bone_length(poses) < 290  # an adult's bones, in mm
    assert 3500 < np.median(poses[:, 0, 2]) < 6500  # people 3.5-6.5 m in front of the cameras
    worst = max(float(np.abs(cam.project(torch.tensor(r.joints_3d), torch.tensor(r.intrinsics)).numpy()
                             - r.joints_2d).max()) for r in sample)
    assert worst < 1e-2  # the 2D file is the projection of the 3D through the cameras
    assert all(0 < r.joints_2d.min() and r.joints_2d.max() < 1000 for r in sample)  # inside the 1000 px frames


def test_the_h36m_poses_commands_run_on_a_tiny_copy(standin_root, tmp_path, smoke_args):
    """docs/human36m.md's commands, a few batches each: DeepSkeleton and Tekin train and test, Tome's
    prior is fitted on the training subjects and lifts the test subjects' 2D."""
    from harness.evaluate import main as evaluate
    from harness.train import main as train

    common = ["preset=h36m_poses", f"data.root={standin_root}", *smoke_args[1:], "trainer.limit_train_batches=2",
              "data.val_size=16", "data.test_size=32", "data.batch_size=8"]
    for experiment, variant in (("deepskeleton", "gt_maps_multi"), ("tekin_fusion", "trainable_gt_cm")):
        assert train([f"experiment={experiment}", f"variant={variant}", *common]) == 0, experiment
        metrics = json.loads((tmp_path / "runs" / f"{experiment}-{variant}-h36m_poses-human36m-s0" / "metrics.json").read_text())
        assert metrics["test/mpjpe"] > 0 and "test/mpjpe_action_avg" in metrics
    prior = tmp_path / "prior.npz"
    assert ppca.main(["fit", "--source", str(standin_root / "data_3d_h36m.npz"), "--components", "1", "--basis", "8",
                      "--stride", "5", "--out", str(prior)]) == 0
    out = tmp_path / "tome.json"
    assert evaluate([str(prior), "data.name=human36m", "data.layout=poses", f"data.root={standin_root}",
                     "data.test_size=64", "lifting.extrinsics=with", f"out={out}"]) == 0
    result = json.loads(out.read_text())["evaluations"]
    assert set(result) == {"protocol1", "protocol2"} and result["protocol1"]["metrics"]["test/pa_mpjpe"] < 150
