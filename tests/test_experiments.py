"""CI smoke-trains every experiment (the `smoke` preset: a few batches, well under a minute)."""
from __future__ import annotations

import json

import pytest

from pose3d.config import available_experiments
from pose3d.train import main


@pytest.mark.parametrize("experiment", available_experiments())
def test_every_experiment_smoke_trains(experiment, tmp_path, smoke_args):
    assert main([f"experiment={experiment}", *smoke_args]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test/mpjpe"] > 0
