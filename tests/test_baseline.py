"""The direct-regression baseline: shapes, root-relative output, gradients, a falling loss."""
from __future__ import annotations

import pytest
import torch

from datamodules.synthetic import SyntheticDataModule
from lightning_modules.baseline import DirectRegression
from lightning_modules.blocks.backbones import build_backbone
from tests.helpers import fit_losses


def small_model(**model) -> DirectRegression:
    cfg = {"name": "baseline", "width": 8, "hidden": 64, **model}
    return DirectRegression(cfg, {"name": "adam", "lr": 3e-3}, {"num_joints": 17, "image_size": 32})


def test_output_is_root_relative_mm():
    joints = small_model()(torch.rand(2, 3, 32, 32))
    assert joints.shape == (2, 17, 3)
    assert torch.all(joints[:, 0] == 0)


def test_2d_only_samples_do_not_contribute_to_the_loss():
    model = small_model()
    batch = {"image": torch.rand(2, 3, 32, 32), "joints_3d": torch.randn(2, 17, 3) * 100,
             "has_3d": torch.tensor([False, False])}
    loss, _ = model.training_loss(batch)
    assert loss.item() == 0.0
    loss.backward()  # still differentiable, zero gradient


def test_resnet_backbones_shapes():
    for name, channels in (("resnet18", 512), ("resnet50", 2048)):
        features = build_backbone(name)(torch.rand(1, 3, 64, 64))
        assert features.shape == (1, channels, 2, 2)


def test_loss_falls_on_a_small_fixed_set():
    torch.manual_seed(0)
    dm = SyntheticDataModule({"image_size": 32, "train_size": 32, "batch_size": 32, "photometric": False, "flip": False})
    batch = next(iter(dm.train_dataloader()))
    losses = fit_losses(small_model(), batch, steps=40, lr=3e-3)
    assert losses[-1] < 0.5 * losses[0], losses[::8]


def test_the_shared_suite_scores_each_test_domain_on_its_own():
    """With ``DataInfo.domains`` (synthetic ``eval_domain=both``) every method's 3D metrics are
    also computed per ``domain`` id of the batch (``test/wild/mpjpe``, ...)."""
    from tests.helpers import OPTIM, random_batch

    torch.manual_seed(0)
    model = DirectRegression({"width": 4, "hidden": 16}, OPTIM, {"image_size": 32, "domains": ["studio", "wild"]}).eval()
    batch = random_batch(4)
    batch["domain"] = torch.tensor([0, 1, 0, 1])
    with torch.no_grad():
        prediction = model._update_metrics(batch, "test")
    wild = (prediction["joints_3d"][1::2] - batch["joints_3d"][1::2]).norm(dim=-1).mean()
    computed = model.domain_metrics["test"]["wild"].compute()
    assert computed["mpjpe"].item() == pytest.approx(wild.item(), rel=1e-4)
    assert {"pck3d_scaled", "auc3d_pa", "n_mpjpe"} <= set(computed)
    assert SyntheticDataModule({"eval_domain": "both"}).info.domains == ("studio", "wild")
    assert SyntheticDataModule({}).info.domains == ()


def test_the_shared_suite_scores_only_the_protocols_joints():
    """With ``DataInfo.eval_joints`` (Human3.6M Protocols #2 and #3, MPI-INF-3DHP: the 14-joint set)
    every method's 3D metrics are means over those joints only; the others weigh nothing."""
    from pose3d.skeleton import SUBSET_14
    from tests.helpers import OPTIM, random_batch

    torch.manual_seed(0)
    model = DirectRegression({"width": 4, "hidden": 16}, OPTIM, {"image_size": 32, "eval_joints": list(SUBSET_14)}).eval()
    batch = random_batch(4)
    with torch.no_grad():
        prediction = model._update_metrics(batch, "test")
    errors = (prediction["joints_3d"] - batch["joints_3d"]).norm(dim=-1)  # (B, 17) mm
    mpjpe = model.test_metrics.compute()["mpjpe"].item()
    assert mpjpe == pytest.approx(errors[:, list(SUBSET_14)].mean().item(), rel=1e-5)
    assert mpjpe != pytest.approx(errors.mean().item(), rel=1e-3)  # all 17 joints would give another mean
