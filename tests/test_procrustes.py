import math

import torch

from pose3d.metrics.functional import pa_mpjpe
from pose3d.procrustes import nearest_rotation, procrustes_align, procrustes_transform


def assert_close(actual, expected, atol=1e-6, rtol=1e-5):
    # torch.allclose: torch.testing.assert_close costs ~0.6 s of lazy imports on first use
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert torch.allclose(actual, expected.to(actual.dtype), rtol=rtol, atol=atol), (actual, expected)


def random_rotation(batch: int, generator: torch.Generator) -> torch.Tensor:
    """Random proper rotations: QR of a Gaussian matrix, columns flipped so det = +1."""
    q, r = torch.linalg.qr(torch.randn(batch, 3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]
    return q * torch.sign(torch.linalg.det(q))[:, None, None]


def test_recovers_a_hand_made_2d_similarity():
    # pred (0,0), (1,0), (0,1); target = 2 * Rot(90 deg) x + (5, 5):
    # Rot(90) = [[0,-1],[1,0]] maps (1,0)->(0,1), (0,1)->(-1,0), so the target is
    # (5,5), (5,7), (3,5)
    pred = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
    target = torch.tensor([[[5.0, 5.0], [5.0, 7.0], [3.0, 5.0]]])
    rot, scale, trans = procrustes_transform(pred, target)
    assert_close(rot[0], torch.tensor([[0.0, -1.0], [1.0, 0.0]]), atol=1e-5, rtol=0)
    assert_close(scale, torch.tensor([2.0]))
    assert_close(trans, torch.tensor([[5.0, 5.0]]), atol=1e-5, rtol=0)
    assert_close(procrustes_align(pred, target), target, atol=1e-5, rtol=0)


def test_recovers_a_random_3d_similarity():
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(4, 17, 3, generator=g, dtype=torch.float64) * 300.0
    rot = random_rotation(4, g)
    trans = torch.tensor([10.0, -20.0, 4000.0], dtype=torch.float64)
    target = 1.7 * pred @ rot.transpose(-1, -2) + trans  # rows: y = 1.7 R x + t
    fit = procrustes_transform(pred, target)
    assert_close(fit.rotation, rot)
    assert_close(fit.scale, torch.full((4,), 1.7, dtype=torch.float64))
    assert_close(fit.translation, trans.expand(4, 3))
    assert_close(fit.apply(pred), target)


def test_never_returns_a_reflection():
    g = torch.Generator().manual_seed(1)
    pred = torch.randn(8, 17, 3, generator=g)
    mirrored = pred * torch.tensor([-1.0, 1.0, 1.0])  # x -> -x, a reflection
    rot = procrustes_transform(pred, mirrored).rotation
    assert_close(torch.linalg.det(rot), torch.ones(8))
    assert_close(rot @ rot.transpose(-1, -2), torch.eye(3).expand(8, 3, 3), atol=1e-5, rtol=0)
    # the best *rotation* cannot reproduce a mirror image
    assert (procrustes_align(pred, mirrored) - mirrored).abs().max() > 0.1


def test_mask_only_valid_joints_define_the_fit():
    g = torch.Generator().manual_seed(2)
    pred = torch.randn(2, 17, 3, generator=g, dtype=torch.float64)
    target = 0.5 * pred @ random_rotation(2, g).transpose(-1, -2) + 3.0
    mask = torch.ones(2, 17, dtype=torch.bool)
    mask[:, 10:] = False
    target[:, 10:] = float("nan")  # garbage on the masked-out joints must not leak in
    aligned = procrustes_align(pred, target, mask)
    assert_close(aligned[:, :10], target[:, :10])
    assert torch.isfinite(aligned).all()


def test_too_few_joints_fall_back_to_translation():
    # sample 0: two valid joints -> identity, scale 1, t = mean(target) - mean(pred)
    #   pred (0,0,0), (2,0,0) mean (1,0,0); target (1,1,1), (1,3,1) mean (1,2,1); t = (0,2,1)
    # sample 1: no valid joint -> identity, scale 1, t = 0
    pred = torch.zeros(2, 4, 3)
    pred[0, 1] = torch.tensor([2.0, 0.0, 0.0])
    target = torch.zeros(2, 4, 3)
    target[0, 0] = torch.tensor([1.0, 1.0, 1.0])
    target[0, 1] = torch.tensor([1.0, 3.0, 1.0])
    mask = torch.zeros(2, 4, dtype=torch.bool)
    mask[0, :2] = True
    rot, scale, trans = procrustes_transform(pred, target, mask)
    assert_close(rot, torch.eye(3).expand(2, 3, 3))
    assert_close(scale, torch.ones(2))
    assert_close(trans, torch.tensor([[0.0, 2.0, 1.0], [0.0, 0.0, 0.0]]))


def test_gradcheck_pa_mpjpe():
    g = torch.Generator().manual_seed(3)
    pred = torch.randn(2, 5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randn(2, 5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, True, True, True, False], [True] * 5])
    assert torch.autograd.gradcheck(lambda p, t: pa_mpjpe(p, t, mask), (pred, target))


def test_gradcheck_nearest_rotation():
    m = torch.randn(3, 3, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(nearest_rotation, (m,))


def test_degenerate_inputs_give_finite_gradients():
    # collapsed prediction (all zeros) and collinear points: repeated zero singular
    # values, where torch.linalg.svd's own backward would give NaN
    g = torch.Generator().manual_seed(5)
    target = torch.randn(2, 17, 3, generator=g)
    line = torch.linspace(0.0, 1.0, 17)[:, None] * torch.tensor([1.0, 2.0, 3.0])
    for pred in (torch.zeros(2, 17, 3), line.expand(2, 17, 3).clone()):
        pred.requires_grad_(True)
        value = pa_mpjpe(pred, target)
        value.backward()
        assert math.isfinite(value.item())
        assert torch.isfinite(pred.grad).all()
