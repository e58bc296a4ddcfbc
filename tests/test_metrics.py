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
from pose3d import procrustes
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
    for fn in (F.mpjpe, F.pa_mpjpe, F.n_mpjpe, F.pck3d, F.auc3d,
               F.pck3d_scaled, F.auc3d_scaled, F.pck3d_pa, F.auc3d_pa):
        assert math.isfinite(fn(pred, target, mask=mask))


def rotation_z(angle):
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)


def scaled_two_joints():
    """pred (100,0,0), (0,200,0); target (190,0,0), (0,280,0), in float64 (everything exact).

    Unaligned errors: 90 and 80 mm. Scale: s = <p,t>/<p,p> = (19000 + 56000) / (10000 + 40000)
    = 1.5 -> s p = (150,0,0), (0,300,0); errors 40 and 20 mm.
    """
    pred = torch.tensor([[[100.0, 0.0, 0.0], [0.0, 200.0, 0.0]]], dtype=torch.float64)
    target = torch.tensor([[[190.0, 0.0, 0.0], [0.0, 280.0, 0.0]]], dtype=torch.float64)
    return pred, target


def test_scaled_pck_auc_hand_values():
    pred, target = scaled_two_joints()
    # after scaling: errors 40, 20; both within 150; within 30 only the 20 mm one
    assert close(F.pck3d_scaled(pred, target), 100.0)
    assert close(F.pck3d_scaled(pred, target, threshold=30.0), 50.0)
    assert close(F.pck3d_scaled(pred, target, threshold=40.0), 100.0)  # <= counts
    # AUC: 40 mm is within tau = 40, 45, ..., 150 (23 of 31); 20 mm within 20..150 (27 of 31)
    assert close(F.auc3d_scaled(pred, target), 100.0 * (23 + 27) / 62)
    # unaligned: errors 90, 80 -> within 85 only the 80 one; AUC (13 + 15) / 62
    assert close(F.pck3d(pred, target, threshold=85.0), 50.0)
    assert close(F.auc3d(pred, target), 100.0 * (13 + 15) / 62)


def test_half_size_prediction_is_perfect_after_scaling():
    # a prediction at half the size of the ground truth: s = 2 exactly (powers of two), so the
    # scaled prediction is the ground truth itself: PCK and AUC 100 (AUC's tau = 0 included)
    g = torch.Generator().manual_seed(5)
    target = torch.randint(-400, 400, (4, 17, 3), generator=g).to(torch.float64)
    pred = 0.5 * target
    assert F.pck3d(pred, target) < 100.0 and F.auc3d(pred, target) < 100.0
    assert close(F.pck3d_scaled(pred, target), 100.0)
    assert close(F.auc3d_scaled(pred, target), 100.0)
    # and after Procrustes too (a similarity copy)
    assert close(F.pck3d_pa(pred, target), 100.0)


def test_rotated_ground_truth_is_perfect_after_procrustes():
    g = torch.Generator().manual_seed(6)
    target = torch.randn(3, 17, 3, generator=g, dtype=torch.float64) * 300.0
    pred = 0.8 * target @ rotation_z(1.2).T + torch.tensor([40.0, 0.0, -90.0], dtype=torch.float64)
    assert F.pck3d(pred, target) < 100.0
    assert F.pck3d_scaled(pred, target) < 100.0  # a scale alone cannot undo a rotation
    assert close(F.pck3d_pa(pred, target), 100.0)
    # the residuals are ~1e-13 mm, not exactly 0: every threshold but possibly tau = 0
    assert 100.0 * 30 / 31 - 1e-6 <= F.auc3d_pa(pred, target) <= 100.0
    assert F.pck3d_pa(pred, target, threshold=1e-6) == 100.0


def test_aligned_metrics_ignore_masked_joints():
    # a third joint, masked out, with a wild prediction and a NaN target: the fit and the
    # statistics use the valid joints only, so the values are those of the 2-joint case
    pred, target = scaled_two_joints()
    pred = torch.cat([pred, torch.tensor([[[5000.0, -3000.0, 7.0]]], dtype=torch.float64)], 1)
    target = torch.cat([target, torch.full((1, 1, 3), float("nan"), dtype=torch.float64)], 1)
    mask = torch.tensor([[True, True, False]])
    assert close(F.pck3d_scaled(pred, target, threshold=30.0, mask=mask), 50.0)
    assert close(F.auc3d_scaled(pred, target, mask=mask), 100.0 * 50 / 62)
    # Procrustes: masking equals dropping the joints
    g = torch.Generator().manual_seed(7)
    target = torch.randn(2, 17, 3, generator=g) * 200.0
    pred = target + torch.randn(2, 17, 3, generator=g) * 60.0
    pred[:, 3] = 1e5  # masked below: would wreck the fit
    keep = [j for j in range(17) if j != 3]
    mask = torch.ones(2, 17, dtype=torch.bool)
    mask[:, 3] = False
    for fn in (F.pck3d_pa, F.auc3d_pa, F.pck3d_scaled, F.auc3d_scaled):
        assert close(fn(pred, target, mask=mask), fn(pred[:, keep], target[:, keep]).item())


def test_unknown_alignment_is_refused():
    pred, target = scaled_two_joints()
    with pytest.raises(ValueError, match="unknown alignment 'procrustes'; choose one of: none, scaled, pa"):
        F.pck3d_sum_count(pred, target, alignment="procrustes")
    with pytest.raises(ValueError, match="unknown alignment"):
        PCK3D(alignment="procrustes")


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
    [(MPJPE(), F.mpjpe), (PAMPJPE(), F.pa_mpjpe), (NMPJPE(), F.n_mpjpe), (PCK3D(), F.pck3d), (AUC3D(), F.auc3d),
     (PCK3D(alignment="scaled"), F.pck3d_scaled), (AUC3D(alignment="scaled"), F.auc3d_scaled),
     (PCK3D(alignment="pa"), F.pck3d_pa), (AUC3D(alignment="pa"), F.auc3d_pa)],
    ids=["mpjpe", "pa_mpjpe", "n_mpjpe", "pck3d", "auc3d", "pck3d_scaled", "auc3d_scaled", "pck3d_pa", "auc3d_pa"],
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


SUITE = [("mpjpe", F.mpjpe), ("pa_mpjpe", F.pa_mpjpe), ("n_mpjpe", F.n_mpjpe), ("pck3d", F.pck3d),
         ("auc3d", F.auc3d), ("pck3d_scaled", F.pck3d_scaled), ("auc3d_scaled", F.auc3d_scaled),
         ("pck3d_pa", F.pck3d_pa), ("auc3d_pa", F.auc3d_pa)]


def test_collection_keys_and_values():
    pred, target, mask = two_batches()
    action = torch.tensor([0, 1, 0, 1, 0, 1])
    suite = pose3d_metrics(num_actions=2)
    assert set(suite.keys()) == {name for name, _ in SUITE}
    # first batch entirely masked: all states are equal (zero) after it, which must
    # not make the collection merge the metrics into one compute group
    suite.update(pred[:2], target[:2], torch.zeros(2, 17, dtype=torch.bool), action[:2])
    suite.update(pred, target, mask, action)
    values = suite.compute()
    for name, fn in SUITE:
        assert close(values[name], fn(pred, target, mask=mask).item())
        per_action = suite[name].compute_per_action()
        assert close(per_action[1], fn(pred[1::2], target[1::2], mask=mask[1::2]).item())


def test_collection_aligns_each_batch_once_per_protocol(monkeypatch):
    calls = {"pa": 0, "scaled": 0}

    def counting(name, fn):
        def wrapped(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(F, "procrustes_align", counting("pa", procrustes.procrustes_align))
    monkeypatch.setattr(F, "scale_to", counting("scaled", F.scale_to))
    pred, target, mask = two_batches()
    suite = pose3d_metrics().clone(prefix="val/")
    suite.update(pred, target, mask)
    assert calls == {"pa": 1, "scaled": 1}  # pa_mpjpe + pck3d_pa + auc3d_pa; n_mpjpe + 2 scaled
    assert close(suite.compute()["val/pck3d_pa"], F.pck3d_pa(pred, target, mask=mask).item())


def test_aligned_per_action_breakdown():
    # sample 0 (action 0): the 2-joint scaled case, errors 40, 20 after scaling
    # sample 1 (action 1): pred (100,0,0), (0,200,0), target along z: <p,t> = 0 -> s = 0,
    #   scaled pred at the origin, errors 100 and 200 mm -> PCK 50, AUC (11 + 0) / 62
    pred, target = scaled_two_joints()
    pred = torch.cat([pred, pred])
    target = torch.cat([target, torch.tensor([[[0.0, 0.0, 100.0], [0.0, 0.0, 200.0]]], dtype=torch.float64)])
    suite = pose3d_metrics(num_actions=3)
    suite.update(pred[:1], target[:1], None, torch.tensor([0]))
    suite.update(pred[1:], target[1:], None, torch.tensor([1]))
    assert suite["pck3d_scaled"].compute_per_action() == {0: pytest.approx(100.0), 1: pytest.approx(50.0)}
    assert close(suite["pck3d_scaled"].compute(), 75.0)
    per_action = suite["auc3d_scaled"].compute_per_action()
    assert close(per_action[0], 100.0 * 50 / 62) and close(per_action[1], 100.0 * 11 / 62)
    assert close(suite["auc3d_scaled"].compute(), 100.0 * 61 / 124)
    # unaligned for comparison: sample 1's errors are 141.4 and 282.8 mm -> PCK 50
    assert close(suite["pck3d"].compute_per_action()[1], 50.0)


def test_bone_scaled_alignment_matches_the_skeleton_sizes():
    """The second reading of "globally scaled": the prediction's summed bone length made the ground
    truth's; the least-squares scale (``scaled``, N-MPJPE) is never worse."""
    generator = torch.Generator().manual_seed(0)
    target = torch.randn(2, 17, 3, generator=generator) * 200
    halved = 0.5 * target
    torch.testing.assert_close(F.align(halved, target, alignment="bone_scaled"), target)
    # only the arm: bones 14->15, 15->16 (r_shoulder, r_elbow, r_wrist) valid
    target = torch.zeros(1, 17, 3)
    target[0, 14], target[0, 15], target[0, 16] = torch.tensor([0.0, 0, 0]), torch.tensor([300.0, 0, 0]), torch.tensor([300.0, 400, 0])
    pred = torch.zeros(1, 17, 3)
    pred[0, 15], pred[0, 16] = torch.tensor([100.0, 0, 0]), torch.tensor([100.0, 250, 0])  # 100 + 250 vs 300 + 400: s = 2
    mask = torch.zeros(1, 17, dtype=torch.bool)
    mask[0, 14:] = True
    torch.testing.assert_close(F.scale_to_bone_lengths(pred, target, mask)[0, 16], torch.tensor([200.0, 500, 0]))
    noisy = target + torch.randn(1, 17, 3, generator=generator) * 30
    least_squares = F.aligned_errors(noisy, target, mask, "scaled")[mask].mean()
    assert least_squares <= F.aligned_errors(noisy, target, mask, "bone_scaled")[mask].mean() + 1e-4
    assert torch.equal(F.scale_to_bone_lengths(torch.zeros(1, 17, 3), target), torch.zeros(1, 17, 3))
    with pytest.raises(ValueError, match="17 Human3.6M joints"):
        F.scale_to_bone_lengths(torch.ones(1, 14, 3), torch.ones(1, 14, 3))


def test_action_averages_weigh_every_action_the_same():
    """Human3.6M's "Avg": action 0 has errors 10 and 20 (mean 15), action 2 one error of 60: the
    pooled MPJPE is 30, the action average (15 + 60) / 2 = 37.5; actions never seen are left out."""
    from pose3d.metrics import action_averages, pose3d_metrics

    suite = pose3d_metrics(num_actions=3)
    target = torch.zeros(3, 17, 3)
    pred = target.clone()
    pred[..., 0] = torch.tensor([10.0, 20.0, 60.0])[:, None]  # every joint off by that much along x
    suite.update(pred, target, torch.ones(3, 17, dtype=torch.bool), torch.tensor([0, 0, 2]))
    averages = action_averages(suite)
    assert float(suite["mpjpe"].compute()) == pytest.approx(30.0)
    assert averages["mpjpe_action_avg"] == pytest.approx(37.5)
    assert set(averages) == {"mpjpe_action_avg", "pa_mpjpe_action_avg", "n_mpjpe_action_avg"}
    assert action_averages(pose3d_metrics()) == {}  # no actions: nothing to average
