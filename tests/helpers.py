"""Small shared builders for method tests (not fixtures: plain functions with explicit sizes)."""
from __future__ import annotations

import time

import pytest
import torch

from pose3d.heatmaps import render_heatmaps

OPTIM = {"name": "adam", "lr": 1e-3, "weight_decay": 0.0, "momentum": 0.9, "scheduler": "none", "step_size": 1, "gamma": 0.1}


def random_batch(size: int, image_size: int = 32, heatmap_size: int = 8, seed: int = 0, two_d_only: int = 0) -> dict:
    """A batch of the contract with random labels (the last ``two_d_only`` samples without 3D)
    and Gaussian heatmaps of its 2D joints."""
    generator = torch.Generator().manual_seed(seed)
    joints_2d = torch.rand(size, 17, 2, generator=generator) * (image_size - 8) + 4
    return {
        "image": torch.rand(size, 3, image_size, image_size, generator=generator),
        "joints_2d": joints_2d,
        "joints_3d": torch.randn(size, 17, 3, generator=generator) * 200,
        "has_3d": torch.arange(size) < size - two_d_only,
        "has_2d": torch.ones(size, dtype=torch.bool),
        "visible": torch.ones(size, 17, dtype=torch.bool),
        "action": torch.zeros(size, dtype=torch.long),
        "heatmaps": render_heatmaps(joints_2d, (image_size, image_size), (heatmap_size, heatmap_size), sigma=1.0),
    }


def fit_losses(model, batch: dict, steps: int, lr: float = 1e-3) -> list[float]:
    """The training losses of ``steps`` Adam steps of ``model.training_loss`` on one fixed batch."""
    import torch

    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss, _ = model.training_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def assert_rotations(rotation: torch.Tensor, atol: float = 1e-5) -> None:
    """Every (3, 3) of ``rotation`` (B, 3, 3) is orthonormal with determinant +1."""
    rotation = rotation.double()
    assert torch.allclose(rotation @ rotation.mT, torch.eye(3, dtype=torch.float64).expand_as(rotation), atol=atol)
    assert torch.allclose(torch.linalg.det(rotation), torch.ones(len(rotation), dtype=torch.float64), atol=atol)


def wait_for(condition, seconds: float, what: str, interval: float = 0.1, explain=None):
    """``condition()``'s first true value, polled every ``interval`` s; the test fails after
    ``seconds``, with ``explain()``'s text (what the waited-on process says of itself) when given."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {seconds:.0f} s waiting for {what}" + (f"\n{explain()}" if explain else ""))
