"""Gaussian heatmaps: rendering, the pixel-centre convention and both decoders."""
import math

import pytest
import torch

from pose3d.heatmaps import (
    decode_argmax,
    heatmaps_to_input_coords,
    input_to_heatmap_coords,
    render_heatmaps,
    soft_argmax,
)

IMAGE = (256, 256)
MAP = (64, 64)
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def random_joints(batch, joints, image_size, margin, seed=0):
    """Sub-pixel joints at least ``margin`` input pixels inside the image."""
    g = torch.Generator().manual_seed(seed)
    size = torch.tensor(image_size, dtype=torch.float32)
    return margin + torch.rand(batch, joints, 2, generator=g) * (size - 2 * margin)


def heatmap_error(pred, truth, image_size, heatmap_size):
    """Per-axis error (B, J, 2) in heatmap pixels."""
    return (input_to_heatmap_coords(pred, image_size, heatmap_size)
            - input_to_heatmap_coords(truth, image_size, heatmap_size)).abs()


def test_coordinate_convention_and_inverse():
    centre_of_first_pixel = torch.tensor([[0.0, 0.0]])
    assert torch.allclose(input_to_heatmap_coords(centre_of_first_pixel, IMAGE, MAP), torch.tensor([[-0.375, -0.375]]))
    # the outer edges of both grids coincide
    edges = torch.tensor([[-0.5, 255.5]])
    assert torch.allclose(input_to_heatmap_coords(edges, IMAGE, MAP), torch.tensor([[-0.5, 63.5]]))
    xy = random_joints(3, 17, (256, 192), 0)
    back = heatmaps_to_input_coords(input_to_heatmap_coords(xy, (256, 192), (48, 64)), (256, 192), (48, 64))
    assert torch.allclose(back, xy, atol=1e-4)


def test_peak_at_integer_position():
    # heatmap pixel (10, 20) <-> input (10.5 * 4 - 0.5, 20.5 * 4 - 0.5)
    joints = torch.tensor([[[41.5, 81.5]]])
    hm = render_heatmaps(joints, IMAGE, MAP, sigma=2.0)
    assert hm.shape == (1, 1, 64, 64)
    v, u = divmod(int(hm.flatten().argmax()), 64)
    assert (u, v) == (10, 20)
    assert hm[0, 0, 20, 10].item() == pytest.approx(1.0)
    assert hm[0, 0, 20, 12].item() == pytest.approx(math.exp(-4 / 8))  # exp(-d^2 / (2 sigma^2))
    assert hm[0, 0, 20, 8].item() == pytest.approx(hm[0, 0, 20, 12].item())


def test_peak_at_subpixel_position():
    x_hm, y_hm = 10.3, 20.7
    joints = heatmaps_to_input_coords(torch.tensor([[[x_hm, y_hm]]]), IMAGE, MAP)
    hm = render_heatmaps(joints, IMAGE, MAP, sigma=2.0)[0, 0]
    v, u = divmod(int(hm.flatten().argmax()), 64)
    assert (u, v) == (10, 21)  # the nearest pixel centre
    assert hm.max().item() < 1.0
    # log of a Gaussian is a parabola: a 3-point fit recovers the sub-pixel centre exactly
    def vertex(l_minus, l0, l_plus):
        return (l_minus - l_plus) / (2 * (l_minus - 2 * l0 + l_plus))
    log = hm.double().log()
    assert u + vertex(log[v, u - 1], log[v, u], log[v, u + 1]).item() == pytest.approx(x_hm, abs=1e-4)
    assert v + vertex(log[v - 1, u], log[v, u], log[v + 1, u]).item() == pytest.approx(y_hm, abs=1e-4)


def test_invisible_and_outside_joints_give_zero_maps():
    joints = torch.tensor([[[100.0, 100.0], [120.0, 90.0], [300.0, 50.0], [-3.0, 10.0], [float("nan"), 5.0]]])
    visible = torch.tensor([[True, False, True, True, True]])
    hm = render_heatmaps(joints, IMAGE, MAP, visible=visible)
    assert hm[0, 0].max() == pytest.approx(1.0, abs=0.05)
    for j in range(1, 5):
        assert torch.count_nonzero(hm[0, j]) == 0


@pytest.mark.parametrize("image_size, heatmap_size", [((256, 256), (64, 64)), ((256, 256), (32, 32)),
                                                      ((256, 192), (128, 96)), ((192, 256), (48, 64))])
def test_argmax_round_trip_subpixel(image_size, heatmap_size):
    joints = random_joints(32, 17, image_size, margin=24, seed=1)
    hm = render_heatmaps(joints, image_size, heatmap_size, sigma=2.0)
    assert hm.shape == (32, 17, heatmap_size[1], heatmap_size[0])
    decoded, confidence = decode_argmax(hm, image_size)
    err = heatmap_error(decoded, joints, image_size, heatmap_size)
    assert err.max() <= 0.25 + 1e-4  # per axis
    assert err.norm(dim=-1).mean() < 0.25
    assert torch.all(confidence > 0.75) and torch.all(confidence <= 1.0)
    # plain arg-max (no quarter shift) is worse
    w = heatmap_size[0]
    index = hm.flatten(2).argmax(-1)
    plain = heatmaps_to_input_coords(torch.stack((index % w, index // w), -1).float(), image_size, heatmap_size)
    plain_err = heatmap_error(plain, joints, image_size, heatmap_size)
    assert err.norm(dim=-1).mean() < 0.75 * plain_err.norm(dim=-1).mean()


@pytest.mark.parametrize("heatmap_size", [(64, 64), (32, 32), (128, 128), (64, 48)])
def test_soft_argmax_round_trip(heatmap_size):
    image_size = (256, 256)
    joints = random_joints(16, 17, image_size, margin=40, seed=2)
    hm = render_heatmaps(joints, image_size, heatmap_size, sigma=2.0)
    err = heatmap_error(soft_argmax(hm, image_size), joints, image_size, heatmap_size)
    assert err.norm(dim=-1).max() < 0.1


def test_soft_argmax_is_differentiable():
    joints = random_joints(2, 17, IMAGE, margin=40, seed=3)
    hm = render_heatmaps(joints, IMAGE, MAP).requires_grad_(True)
    soft_argmax(hm, IMAGE).sum().backward()
    assert hm.grad is not None and torch.isfinite(hm.grad).all()
    assert hm.grad.abs().sum() > 0


def test_rendering_is_differentiable_in_joints():
    joints = random_joints(1, 3, IMAGE, margin=40, seed=4).requires_grad_(True)
    soft_argmax(render_heatmaps(joints, IMAGE, MAP), IMAGE).sum().backward()
    assert joints.grad.abs().sum() > 0


@pytest.mark.parametrize("device", DEVICES)
def test_devices_and_dtypes(device):
    joints = random_joints(4, 17, IMAGE, margin=24, seed=5).to(device)
    for dtype in (torch.float32, torch.float64):
        hm = render_heatmaps(joints.to(dtype), IMAGE, MAP, visible=torch.ones(4, 17, dtype=torch.bool, device=device))
        assert hm.device.type == device and hm.dtype == dtype
        decoded, _ = decode_argmax(hm, IMAGE)
        assert heatmap_error(decoded.cpu(), joints.cpu(), IMAGE, MAP).max() <= 0.2501
        assert heatmap_error(soft_argmax(hm, IMAGE).cpu(), joints.cpu(), IMAGE, MAP).max() < 0.1
