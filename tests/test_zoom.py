"""pose3d.zoom: the image and its coordinates zoom about the same centre."""
from __future__ import annotations

import pytest
import torch

from pose3d.zoom import zoom_coords, zoom_images


def centroid(image: torch.Tensor) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(image.shape[-2]), torch.arange(image.shape[-1]), indexing="ij")
    mass = image.sum()
    return torch.stack([(image * xs).sum() / mass, (image * ys).sum() / mass])


@pytest.mark.parametrize("scale", [1.25, 1.5, 2.0])
def test_a_dot_lands_where_its_coordinates_go(scale):
    size = 40
    image = torch.zeros(1, 1, size, size)
    image[0, 0, 6:10, 27:31] = 1.0  # a 4 x 4 block centred at (28.5, 7.5)
    zoomed = zoom_images(image, scale)
    expected = zoom_coords(torch.tensor([28.5, 7.5]), size, scale)
    torch.testing.assert_close(centroid(zoomed[0, 0]), expected, atol=0.05, rtol=0)


def test_centre_is_fixed_border_is_zero_and_scale_one_is_identity():
    assert torch.equal(zoom_coords(torch.tensor([15.5, 15.5]), 32, 1.5), torch.tensor([15.5, 15.5]))
    image = torch.rand(2, 3, 32, 32)
    assert zoom_images(image, 1.0) is image
    zoomed = zoom_images(image, 2.0)
    assert zoomed[..., :7, :].abs().max() == 0 and zoomed[..., :, -7:].abs().max() == 0
    assert zoomed[..., 12:20, 12:20].abs().min() > 0
