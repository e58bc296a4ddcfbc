"""Shared fixtures: tests never touch the network and write only under pytest's tmp_path."""
from __future__ import annotations

import os
from pathlib import Path

import lightning.pytorch  # noqa: F401  (imported before any test captures stderr: its log handler keeps the real one)
import pytest
import torch

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent (a fresh clone has no ../shared)")
    return SHARED_DATA


@pytest.fixture
def smoke_args(tmp_path):
    """Command-line overrides for a tiny, quiet run under tmp_path."""
    return [
        "preset=smoke",
        f"results_dir={tmp_path}",
        "logger.wandb=false",
        "trainer.enable_progress_bar=false",
    ]
