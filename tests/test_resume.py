"""Exact resume: a run killed in the middle of an epoch (SIGKILL, no clean-up) and resumed
with ``ckpt_path=last`` ends at the metrics of the same run never stopped, because the
training loader's checkpointed state carries all the randomness of the next epoch."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from datamodules.loaders import ResumableLoader, global_rng_state, set_global_rng_state
from pose3d.config import REPO_ROOT

# runs harness.train with a callback that sends the process a signal (SIGKILL: no clean-up) at a given global step
KILLER = """
import os, signal, sys
import lightning.pytorch as pl
import harness.train as train

kill_at, signum = int(os.environ["KILL_AT_STEP"]), int(os.environ["KILL_SIGNAL"])

class Kill(pl.Callback):
    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == kill_at:
            os.kill(os.getpid(), signum)

build = train.build_trainer
def with_kill(*args, **kwargs):
    trainer = build(*args, **kwargs)
    trainer.callbacks.append(Kill())
    return trainer
train.build_trainer = with_kill
sys.exit(train.main(sys.argv[1:]))
"""


def train(tmp_path, name, *extra, kill_at=None, workers=0, signum=signal.SIGKILL):
    args = ["experiment=baseline", "preset=smoke", "trainer.max_epochs=3", "data.train_size=96", "seed=5",
            f"results_dir={tmp_path}", f"name={name}", "threads=1", f"data.num_workers={workers}", *extra]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    if kill_at is None:
        command = [sys.executable, "-m", "pose3d.train", *args]
    else:
        command = [sys.executable, "-c", KILLER, *args]
        env["KILL_AT_STEP"], env["KILL_SIGNAL"] = str(kill_at), str(int(signum))
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_a_run_killed_mid_epoch_and_resumed_ends_where_the_uninterrupted_run_ends(tmp_path, workers):
    """With loader workers too: each worker's random state in each epoch follows from the checkpoint."""
    whole = train(tmp_path, "whole", workers=workers)
    assert whole.returncode == 0, whole.stderr[-2000:]
    killed = train(tmp_path, "cut", kill_at=8, workers=workers)  # 6 steps an epoch: killed in the middle of the second
    assert killed.returncode == -9
    run_dir = tmp_path / "runs" / "cut"
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and not (run_dir / "metrics.json").exists()
    resumed = train(tmp_path, "cut", "ckpt_path=last", workers=workers)
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    expected = json.loads((tmp_path / "runs" / "whole" / "metrics.json").read_text())
    got = json.loads((run_dir / "metrics.json").read_text())
    assert got["global_step"] == expected["global_step"] == 18
    tests = sorted(k for k in expected if k.startswith("test/"))
    assert tests and all(got[k] == pytest.approx(expected[k], rel=1e-5, abs=1e-6) for k in tests)
    whole_weights = torch.load(tmp_path / "runs" / "whole" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    cut_weights = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert all(torch.allclose(whole_weights[k].float(), cut_weights[k].float(), atol=1e-6) for k in whole_weights)


def test_datamodule_state_puts_back_the_generators_the_dataset_and_the_epoch_after_building_the_loader():
    from datamodules.synthetic import SyntheticDataModule

    def module():
        return SyntheticDataModule({"train_size": 32, "batch_size": 8, "image_size": 32})

    first = module()
    torch.manual_seed(3)
    first.train_dataloader()
    first.dataset("train").photometric(torch.rand(2, 3, 32, 32))  # advance albumentations' generators
    saved = first.state_dict()
    expected_rand, expected_aug = torch.rand(3), first.dataset("train").photometric(torch.full((1, 3, 32, 32), 0.5))

    again = module()
    torch.manual_seed(99)  # whatever a new process drew meanwhile
    again.load_state_dict({**saved, "next_epoch": 2})
    loader = again.train_dataloader()  # builds the dataset (drawing a seed), then restores
    assert torch.equal(torch.rand(3), expected_rand)
    assert torch.equal(again.dataset("train").photometric(torch.full((1, 3, 32, 32), 0.5)), expected_aug)
    assert isinstance(loader, ResumableLoader) and loader.first_epoch == 2


def test_resumable_loader_sets_the_samplers_epoch_before_its_first_iterator():
    class Sampler(torch.utils.data.Sampler):
        epoch = 0

        def __iter__(self):
            return iter(torch.randperm(8, generator=torch.Generator().manual_seed(self.epoch)).tolist())

        def __len__(self):
            return 8

        def set_epoch(self, epoch):
            self.epoch = epoch

    sampler = Sampler()
    loader = ResumableLoader(list(range(8)), batch_size=8, sampler=sampler, first_epoch=3)
    assert next(iter(loader)).tolist() == torch.randperm(8, generator=torch.Generator().manual_seed(3)).tolist()
    sampler.set_epoch(4)  # later epochs: Lightning's set_epoch wins
    next(iter(loader))
    assert sampler.epoch == 4


def test_global_generator_states_survive_a_weights_only_checkpoint(tmp_path):
    import random

    import numpy as np

    state = global_rng_state()
    torch.save(state, tmp_path / "rng.pt")
    expected = (torch.rand(2), np.random.rand(2), random.random())
    set_global_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert torch.equal(torch.rand(2), expected[0]) and np.array_equal(np.random.rand(2), expected[1])
    assert random.random() == expected[2]
