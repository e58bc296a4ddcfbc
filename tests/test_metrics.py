import math

import pytest
import torch

from pose3d.metrics import (
    AUC3D,
    MPJPE,
    NMPJPE,
    PAMPJPE,
    PCK3D,
    PCP,
    PCKh,
    PixelError,
    pose3d_metrics,
)
from pose3d.metrics import functional as F
from pose3d.skeleton import H36M_BONES


def offsets_to_pose(offsets):
    """target at the origin, pred = target + the given per-joint offsets; one sample."""
    pred = torch.tensor([offsets], dtype=torch.float32)
    return pred, torch.zeros_like(pred)


def errors_pose(errors):
    """(1, J, 3) pred/target whose joint errors are exactly ``errors`` (offsets along x)."""
    return offsets_to_pose([[e, 0.0, 0.0] for e in errors])


def close(value, expected, tol=1e-4):
    return math.isclose(float(value), expected, abs_tol=tol)


# ------------------------------------------------------------------- functional

def test_mpjpe_hand_values():
    # joint 0 off by (3,4,0): sqrt(9+16) = 5; joint 1 off by (5,12,0): sqrt(25+144) = 13
    assert close(F.mpjpe(*offsets_to_pose([[3.0, 4.0, 0.0], [3.0, 4.0, 0.0]])), 5.0)
    pred, target = offsets_to_pose([[3.0, 4.0, 0.0], [5.0, 12.0, 0.0]])
    assert close(F.mpjpe(pred, target), 9.0)  # (5 + 13) / 2
    # masking joint 1 out leaves 5; masking everything gives NaN (nothing to average)
    assert close(F.mpjpe(pred, target, torch.tensor([[True, False]])), 5.0)
    assert math.isnan(F.mpjpe(pred, target, torch.zeros(1, 2, dtype=torch.bool)))


def test_pixel_error_hand_values():
    # 2D offsets (3,4) and (6,8): errors 5 and 10 px, mean 7.5
    pred = torch.tensor([[[3.0, 4.0], [6.0, 8.0]]])
    assert close(F.pixel_error(pred, torch.zeros_like(pred)), 7.5)


def test_pck3d_hand_values():
    pred, target = errors_pose([100.0, 200.0])
    assert close(F.pck3d(pred, target), 50.0)  # 1 of 2 joints within 150 mm
    assert close(F.pck3d(pred, target, threshold=250.0), 100.0)
    pred, target = errors_pose([150.0])
    assert close(F.pck3d(pred, target), 100.0)  # the threshold itself counts (<=)


def test_auc3d_hand_values():
    # error 12 mm is <= tau for tau in 15, 20, ..., 150: 28 of the 31 thresholds;
    # error 200 mm is within none. AUC = (28 + 0) / (2 * 31) * 100 = 45.16129...
    pred, target = errors_pose([12.0, 200.0])
    assert close(F.auc3d(pred, target), 2800.0 / 62.0)
    # a perfect prediction is within every threshold, 0 included
    assert close(F.auc3d(target, target), 100.0)
    # equals the mean of pck3d over the 31 thresholds
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(3, 17, 3, generator=g) * 60.0
    mean_pck = torch.stack([F.pck3d(pred, torch.zeros_like(pred), 5.0 * k) for k in range(31)]).mean()
    assert close(F.auc3d(pred, torch.zeros_like(pred)), mean_pck.item())


def test_pa_mpjpe_of_similar_copy_is_zero():
    g = torch.Generator().manual_seed(1)
    target = torch.randn(3, 17, 3, generator=g) * 200.0
    angle = 0.7  # rotation about z, det +1
    rot = torch.tensor([[math.cos(angle), -math.sin(angle), 0.0], [math.sin(angle), math.cos(angle), 0.0], [0, 0, 1]])
    pred = 1.3 * target @ rot.T + torch.tensor([50.0, -20.0, 300.0])
    assert F.mpjpe(pred, target) > 100.0
    assert F.pa_mpjpe(pred, target) < 1e-2


def test_n_mpjpe_hand_values():
    # pred (1,0,0), (0,1,0); target (2,0,0), (0,4,0):
    # s = <p,t>/<p,p> = (2 + 4) / 2 = 3 -> s p = (3,0,0), (0,3,0); errors 1 and 1 -> 1
    pred = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    target = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 4.0, 0.0]]])
    assert close(F.n_mpjpe(pred, target), 1.0)
    # a scaled copy has zero error; the scale is per sample
    g = torch.Generator().manual_seed(2)
    target = torch.randn(2, 17, 3, generator=g) * 200.0
    pred = target * torch.tensor([0.5, 2.0])[:, None, None]
    assert close(F.n_mpjpe(pred, target), 0.0, tol=1e-3)


def test_pckh_hand_values():
    # sample 0: head 20 px -> threshold 0.5 * 20 = 10 px; errors 5, 10, 15 -> 2 of 3 in
    # sample 1: head 40 px -> threshold 20 px; errors 5, 10, 15 -> 3 of 3 in
    # overall 5 of 6 = 83.33 %
    pred = torch.tensor([[[5.0, 0.0], [10.0, 0.0], [0.0, 15.0]]]).repeat(2, 1, 1)
    target = torch.zeros_like(pred)
    assert close(F.pckh(pred[:1], target[:1], torch.tensor([20.0])), 200.0 / 3.0)
    assert close(F.pckh(pred, target, torch.tensor([20.0, 40.0])), 500.0 / 6.0)
    assert close(F.pckh(pred, target, torch.tensor([20.0, 40.0]), alpha=0.25), 300.0 / 6.0)  # 5; 5, 10


def test_pcp_one_bone_in_one_out():
    # target j0 (0,0), j1 (0,10), j2 (0,30); bones (1,0) length 10, (2,1) length 20
    # limits 0.5 * 10 = 5 and 0.5 * 20 = 10; pred errors j0 0, j1 4, j2 12
    # bone (1,0): 0 <= 5 and 4 <= 5 -> correct; bone (2,1): 12 > 10 -> wrong; PCP 50 %
    bones = [(1, 0), (2, 1)]
    target = torch.tensor([[[0.0, 0.0], [0.0, 10.0], [0.0, 30.0]]])
    pred = target + torch.tensor([[[0.0, 0.0], [4.0, 0.0], [12.0, 0.0]]])
    assert close(F.pcp(pred, target, bones), 50.0)
    # masking j0 drops bone (1,0): only the wrong bone is left -> 0 %
    assert close(F.pcp(pred, target, bones, mask=torch.tensor([[False, True, True]])), 0.0)
    # the same in 3D (z = 0 appended)
    pad = torch.zeros(1, 3, 1)
    assert close(F.pcp(torch.cat([pred, pad], -1), torch.cat([target, pad], -1), bones), 50.0)


def test_masked_joints_may_hold_garbage():
    pred, target = offsets_to_pose([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0]])
    target[0, 1] = float("nan")
    mask = torch.tensor([[True, False]])
    for fn in (F.mpjpe, F.pa_mpjpe, F.n_mpjpe, F.pck3d, F.auc3d):
        assert math.isfinite(fn(pred, target, mask=mask))


def test_gradients_are_finite():
    g = torch.Generator().manual_seed(3)
    pred = torch.randn(2, 17, 3, generator=g, requires_grad=True)
    target = torch.randn(2, 17, 3, generator=g)
    mask = torch.ones(2, 17, dtype=torch.bool)
    mask[1] = False  # a 2D-only sample
    (F.mpjpe(pred, target, mask) + F.pa_mpjpe(pred, target, mask) + F.n_mpjpe(pred, target, mask)).backward()
    assert torch.isfinite(pred.grad).all() and pred.grad[0].abs().sum() > 0


# ---------------------------------------------------------------------- classes

def two_batches():
    g = torch.Generator().manual_seed(4)
    pred = torch.randn(6, 17, 3, generator=g) * 100.0
    target = torch.randn(6, 17, 3, generator=g) * 100.0
    mask = torch.rand(6, 17, generator=g) > 0.2
    mask[2] = False  # a sample with no 3D at all contributes nothing
    return pred, target, mask


@pytest.mark.parametrize(
    ("metric", "fn"),
    [(MPJPE(), F.mpjpe), (PAMPJPE(), F.pa_mpjpe), (NMPJPE(), F.n_mpjpe), (PCK3D(), F.pck3d), (AUC3D(), F.auc3d)],
)
def test_class_over_two_updates_equals_functional_on_concatenation(metric, fn):
    pred, target, mask = two_batches()
    metric.update(pred[:4], target[:4], mask[:4])
    metric.update(pred[4:], target[4:], mask[4:])
    assert close(metric.compute(), fn(pred, target, mask=mask).item())


def test_2d_classes_match_functional():
    pred, target, mask = two_batches()
    pred2d, target2d = pred[..., :2], target[..., :2]
    head = torch.linspace(50.0, 300.0, 6)
    pixel, pckh, pcp = PixelError(), PCKh(alpha=0.5), PCP(alpha=0.5)
    for part in (slice(0, 3), slice(3, 6)):
        pixel.update(pred2d[part], target2d[part], mask[part])
        pckh.update(pred2d[part], target2d[part], head[part], mask[part])
        pcp.update(pred[part], target[part], mask[part])  # default bones: H36M_BONES
    assert close(pixel.compute(), F.pixel_error(pred2d, target2d, mask).item())
    assert close(pckh.compute(), F.pckh(pred2d, target2d, head, 0.5, mask).item())
    assert close(pcp.compute(), F.pcp(pred, target, H36M_BONES, 0.5, mask).item())


def test_per_action_breakdown():
    # one joint per sample; update 1: actions 0, 2 with errors 5, 13; update 2: action 2, error 1
    # action 0: 5; action 2: (13 + 1) / 2 = 7; action 1 never seen; overall (5 + 13 + 1) / 3
    metric = MPJPE(num_actions=3)
    pred = torch.tensor([[[3.0, 4.0, 0.0]], [[5.0, 12.0, 0.0]]])
    metric.update(pred, torch.zeros_like(pred), action=torch.tensor([0, 2]))
    metric.update(torch.tensor([[[1.0, 0.0, 0.0]]]), torch.zeros(1, 1, 3), action=torch.tensor([2]))
    per_action = metric.compute_per_action()
    assert per_action.keys() == {0, 2}
    assert close(per_action[0], 5.0) and close(per_action[2], 7.0)
    assert close(metric.compute(), 19.0 / 3.0)


def test_fully_masked_samples_add_nothing_and_empty_is_nan():
    metric = MPJPE(num_actions=2)
    pred, target = offsets_to_pose([[3.0, 4.0, 0.0]])
    metric.update(pred, target, torch.zeros(1, 1, dtype=torch.bool), torch.tensor([1]))
    assert math.isnan(metric.compute())
    assert metric.compute_per_action() == {}  # action 1 had no valid joint
    metric.update(pred, target, torch.ones(1, 1, dtype=torch.bool), torch.tensor([0]))
    assert close(metric.compute(), 5.0)
    assert metric.compute_per_action() == {0: pytest.approx(5.0)}


def test_collection_keys_and_values():
    pred, target, mask = two_batches()
    action = torch.tensor([0, 1, 0, 1, 0, 1])
    suite = pose3d_metrics(num_actions=2)
    assert set(suite.keys()) == {"mpjpe", "pa_mpjpe", "n_mpjpe", "pck3d", "auc3d"}
    # first batch entirely masked: all states are equal (zero) after it, which must
    # not make the collection merge the metrics into one compute group
    suite.update(pred[:2], target[:2], torch.zeros(2, 17, dtype=torch.bool), action[:2])
    suite.update(pred, target, mask, action)
    values = suite.compute()
    for name, fn in [("mpjpe", F.mpjpe), ("pa_mpjpe", F.pa_mpjpe), ("n_mpjpe", F.n_mpjpe),
                     ("pck3d", F.pck3d), ("auc3d", F.auc3d)]:
        assert close(values[name], fn(pred, target, mask=mask).item())
        per_action = suite[name].compute_per_action()
        assert close(per_action[1], fn(pred[1::2], target[1::2], mask=mask[1::2]).item())
