"""CI smoke-trains every experiment (the `smoke` preset: a few batches, well under a minute)."""
from __future__ import annotations

import json
import math

import pytest

from pose3d.config import available_experiments
from harness.train import main


@pytest.mark.parametrize("experiment", available_experiments())
def test_every_experiment_smoke_trains(experiment, tmp_path, smoke_args):
    assert main([f"experiment={experiment}", *smoke_args]) == 0
    run = next(p for p in (tmp_path / "runs").iterdir() if p.name.startswith(f"{experiment}-"))
    metrics = json.loads((run / "metrics.json").read_text())
    tests = {k: v for k, v in metrics.items() if k.startswith("test/")}
    assert tests and all(math.isfinite(v) for v in tests.values())
    assert metrics.get("test/mpjpe", 1.0) > 0 and metrics.get("test/pixel_error", 1.0) > 0


@pytest.fixture(scope="module")
def human36m_root(tmp_path_factory):
    from tests.fixtures_h36m import write_images_layout

    root = tmp_path_factory.mktemp("h36m")
    write_images_layout(root)
    return root


@pytest.mark.parametrize("experiment", available_experiments())
def test_every_experiment_smoke_trains_on_human36m(experiment, tmp_path, smoke_args, human36m_root):
    """The same experiments on a tiny copy of the Human3.6M image layout (real field names and shapes)."""
    data = ["data.name=human36m", f"data.root={human36m_root}", "data.image_size=32",
            "data.train_size=32", "data.val_size=16", "data.test_size=16"]
    assert main([f"experiment={experiment}", *smoke_args, *data]) == 0
    run = next(p for p in (tmp_path / "runs").iterdir() if p.name.startswith(f"{experiment}-"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert all(math.isfinite(v) for k, v in metrics.items() if k.startswith("test/"))
