"""Per-sample scene randomisation for the synthetic dataset: light, background, occluders, colour.

A scene is drawn on the CPU with a numpy ``Generator`` into a :class:`SceneParams` of
small fixed-size arrays, so sample ``i`` is a pure function of its generator state and
scenes stack into a :class:`SceneBatch` of tensors without ragged shapes. Everything
that turns parameters into pixels (:func:`make_background`, :func:`apply_colour_shift`,
:func:`render_scene`) is vectorised over the batch and elementwise per sample, so a
scene renders identically alone or inside any batch.

Domains
-------
``studio``  a capture studio: plain or smooth-gradient grey-ish backdrop, light from the
            front and above, no occluders, a barely visible colour / exposure change.
``wild``    clutter: a gradient plus up to :data:`MAX_BLOBS` random ellipses / rectangles
            and up to :data:`MAX_WAVES` sinusoid textures of random colours; 0-2 occluder
            capsules between the camera and the person; light from anywhere in front;
            a strong colour cast, brightness and contrast change after rendering.

Background geometry is in normalised image coordinates (``(0, 0)`` top-left, ``(1, 1)``
bottom-right), so one scene looks the same at any resolution.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import Tensor

from pose3d.render import CAPSULE_FIELDS, RenderOutput, render_people

DOMAINS: tuple[str, ...] = ("studio", "wild")
MAX_BLOBS = 6
MAX_WAVES = 3
MAX_OCCLUDERS = 2
DEFAULT_ROOT_CAM = (0.0, 0.0, 4500.0)


@dataclass(frozen=True)
class SceneParams:
    """One sample's scene (numpy float32 arrays; unused slots have zero weight/radius).

    light_dir (3,)         unit vector from the surface towards the light, camera frame
    ambient ()             ambient light fraction in [0, 1]
    bg_colours (2,3)       backdrop colours at the two ends of the gradient
    bg_gradient (3,)       gradient ``(gx, gy, offset)``: weight of colour 1 is
                           ``clip(gx * x + gy * y + offset, 0, 1)`` in normalised coordinates
    blob_centre (NB,2)     blob centres (normalised)
    blob_size (NB,2)       blob half-widths / radii (normalised)
    blob_angle (NB,)       blob rotation in radians
    blob_rect (NB,)        1 for a rectangle, 0 for an ellipse
    blob_colour (NB,3)     blob colours
    blob_alpha (NB,)       opacity; 0 switches a slot off
    wave_freq (NW,2)       sinusoid frequency in cycles per image along x and y
    wave_phase (NW,)       phase in radians
    wave_colour (NW,3)     signed amplitude per channel; 0 switches a slot off
    occluders (K,10)       capsules in the :data:`pose3d.render.CAPSULE_FIELDS` layout
                           (start xyz, end xyz, radius, rgb), radius 0 for empty slots
    colour_gain (3,)       per-channel gain applied after rendering
    brightness ()          offset added after rendering
    contrast ()            contrast around mid-grey after rendering
    """

    light_dir: np.ndarray
    ambient: np.ndarray
    bg_colours: np.ndarray
    bg_gradient: np.ndarray
    blob_centre: np.ndarray
    blob_size: np.ndarray
    blob_angle: np.ndarray
    blob_rect: np.ndarray
    blob_colour: np.ndarray
    blob_alpha: np.ndarray
    wave_freq: np.ndarray
    wave_phase: np.ndarray
    wave_colour: np.ndarray
    occluders: np.ndarray
    colour_gain: np.ndarray
    brightness: np.ndarray
    contrast: np.ndarray


@dataclass(frozen=True)
class SceneBatch:
    """:class:`SceneParams` stacked along a new batch dimension, as float32 tensors."""

    light_dir: Tensor
    ambient: Tensor
    bg_colours: Tensor
    bg_gradient: Tensor
    blob_centre: Tensor
    blob_size: Tensor
    blob_angle: Tensor
    blob_rect: Tensor
    blob_colour: Tensor
    blob_alpha: Tensor
    wave_freq: Tensor
    wave_phase: Tensor
    wave_colour: Tensor
    occluders: Tensor
    colour_gain: Tensor
    brightness: Tensor
    contrast: Tensor

    def to(self, device: torch.device | str) -> "SceneBatch":
        """The same batch on ``device``."""
        return SceneBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def __len__(self) -> int:
        return self.ambient.shape[0]


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _f32(**arrays) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()}


def _studio(rng: np.random.Generator) -> dict[str, np.ndarray]:
    grey = rng.uniform(0.35, 0.75)
    tint = rng.normal(0.0, 0.02, size=3)
    base = np.clip(grey + tint, 0.0, 1.0)
    far = np.clip(base * rng.uniform(0.75, 1.1), 0.0, 1.0)
    plain = rng.random() < 0.4
    angle = rng.uniform(0.0, 2 * np.pi)
    gradient = (0.0, 0.0, 0.0) if plain else (np.cos(angle), np.sin(angle), 0.5 - 0.5 * (np.cos(angle) + np.sin(angle)))
    return _f32(
        light_dir=_unit(np.array([0.0, -0.6, -1.0]) + rng.normal(0.0, 0.15, size=3)),
        ambient=rng.uniform(0.35, 0.5),
        bg_colours=np.stack([base, far]),
        bg_gradient=gradient,
        blob_centre=np.zeros((MAX_BLOBS, 2)), blob_size=np.zeros((MAX_BLOBS, 2)),
        blob_angle=np.zeros(MAX_BLOBS), blob_rect=np.zeros(MAX_BLOBS),
        blob_colour=np.zeros((MAX_BLOBS, 3)), blob_alpha=np.zeros(MAX_BLOBS),
        wave_freq=np.zeros((MAX_WAVES, 2)), wave_phase=np.zeros(MAX_WAVES),
        wave_colour=np.zeros((MAX_WAVES, 3)),
        occluders=np.zeros((MAX_OCCLUDERS, CAPSULE_FIELDS)),
        colour_gain=1.0 + rng.normal(0.0, 0.02, size=3),
        brightness=rng.normal(0.0, 0.015),
        contrast=1.0 + rng.normal(0.0, 0.03),
    )


def _occluder(rng: np.random.Generator, root_cam: np.ndarray, scale_mm: float) -> np.ndarray:
    """A capsule between the camera and the person, projecting over part of the body.

    Its centre lies on the ray through a point within half a body size of the root, at
    300-1200 mm in front of the root's depth (the body is at most ~300 mm thick in front of
    the root) and at least 500 mm from the camera; its length and radius are drawn in
    body-size units at the root's depth and rescaled to its own depth so that it covers
    a comparable share of the person whatever its distance.
    """
    target = root_cam + np.array([*rng.uniform(-0.45, 0.45, size=2) * scale_mm, 0.0])
    depth = max(root_cam[2] - rng.uniform(300.0, 1200.0), 500.0)
    shrink = depth / root_cam[2]
    centre = target * (depth / target[2])
    in_plane = rng.uniform(0.0, np.pi)
    direction = _unit(np.array([np.cos(in_plane), np.sin(in_plane), rng.normal(0.0, 0.15)]))
    half_length = 0.5 * rng.uniform(0.25, 0.8) * scale_mm * shrink
    radius = rng.uniform(0.03, 0.08) * scale_mm * shrink
    colour = rng.uniform(0.05, 0.95, size=3)
    return np.concatenate([centre - half_length * direction, centre + half_length * direction, [radius], colour])


def _wild(rng: np.random.Generator, image_size: tuple[int, int], root_cam: np.ndarray, scale_mm: float
          ) -> dict[str, np.ndarray]:
    angle = rng.uniform(0.0, 2 * np.pi)
    strength = rng.uniform(0.0, 1.5)
    gx, gy = strength * np.cos(angle), strength * np.sin(angle)
    n_blobs = rng.integers(2, MAX_BLOBS + 1)
    n_waves = rng.integers(0, MAX_WAVES + 1)
    max_freq = max(1.0, min(image_size) / 6.0)  # at least ~6 pixels a period: no aliasing
    freq = rng.uniform(1.0, max_freq, size=(MAX_WAVES, 2)) * rng.choice([-1.0, 1.0], size=(MAX_WAVES, 2))
    freq *= rng.random((MAX_WAVES, 2)) < 0.7  # some stripes run along one axis only
    occluders = np.zeros((MAX_OCCLUDERS, CAPSULE_FIELDS))
    for k in range(rng.integers(0, MAX_OCCLUDERS + 1)):
        occluders[k] = _occluder(rng, root_cam, scale_mm)
    light = _unit(np.array([rng.uniform(-1.0, 1.0), rng.uniform(-1.0, 0.6), -rng.uniform(0.2, 1.0)]))
    return _f32(
        light_dir=light,
        ambient=rng.uniform(0.15, 0.6),
        bg_colours=rng.uniform(0.0, 1.0, size=(2, 3)),
        bg_gradient=(gx, gy, 0.5 - 0.5 * (gx + gy)),
        blob_centre=rng.uniform(-0.1, 1.1, size=(MAX_BLOBS, 2)),
        blob_size=rng.uniform(0.04, 0.35, size=(MAX_BLOBS, 2)),
        blob_angle=rng.uniform(0.0, np.pi, size=MAX_BLOBS),
        blob_rect=rng.random(MAX_BLOBS) < 0.5,
        blob_colour=rng.uniform(0.0, 1.0, size=(MAX_BLOBS, 3)),
        blob_alpha=np.where(np.arange(MAX_BLOBS) < n_blobs, rng.uniform(0.5, 1.0, size=MAX_BLOBS), 0.0),
        wave_freq=freq,
        wave_phase=rng.uniform(0.0, 2 * np.pi, size=MAX_WAVES),
        wave_colour=rng.uniform(-0.1, 0.1, size=(MAX_WAVES, 3)) * (np.arange(MAX_WAVES) < n_waves)[:, None],
        occluders=occluders,
        colour_gain=rng.uniform(0.75, 1.25, size=3),
        brightness=rng.uniform(-0.15, 0.15),
        contrast=rng.uniform(0.6, 1.4),
    )


def sample_scene(
    rng: np.random.Generator,
    domain: str,
    image_size: tuple[int, int],
    root_cam: np.ndarray | tuple[float, float, float] | None = None,
    scale_mm: float = 1800.0,
) -> SceneParams:
    """Draw one scene of ``domain`` (``"studio"`` or ``"wild"``) for a crop of ``image_size = (W, H)``.

    ``root_cam`` is the person's root (pelvis) in the camera frame in mm and ``scale_mm``
    the person's size (about the height); the wild domain uses them to put occluders
    between the camera and the body. ``root_cam=None`` means :data:`DEFAULT_ROOT_CAM`.
    The result depends only on the generator's state and the arguments.
    """
    if domain not in DOMAINS:
        raise ValueError(f"unknown scene domain {domain!r}; valid choices: {', '.join(DOMAINS)}")
    root = np.asarray(DEFAULT_ROOT_CAM if root_cam is None else root_cam, dtype=np.float64)
    params = _studio(rng) if domain == "studio" else _wild(rng, image_size, root, float(scale_mm))
    return SceneParams(**params)


def stack_scenes(scenes: list[SceneParams], device: torch.device | str | None = None) -> SceneBatch:
    """Stack scenes into a :class:`SceneBatch` (float32 tensors on ``device``)."""
    if not scenes:
        raise ValueError("stack_scenes needs at least one scene")
    return SceneBatch(**{
        f.name: torch.from_numpy(np.stack([getattr(s, f.name) for s in scenes])).to(device or "cpu")
        for f in fields(SceneParams)
    })


def make_background(scenes: SceneBatch, image_size: tuple[int, int]) -> Tensor:
    """Backgrounds (B,3,H,W) in [0, 1], evaluated at pixel centres.

    A gradient between the two backdrop colours, then the blobs painted in slot order
    (antialiased over about one pixel), then the sinusoid textures added. Each blob and
    wave slot is evaluated only for the samples that use it, and every pixel value is an
    elementwise function of its own sample's parameters.
    """
    width, height = int(image_size[0]), int(image_size[1])
    device = scenes.ambient.device
    x = ((torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width)[None, None, :]
    y = ((torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height)[None, :, None]

    gx, gy, offset = (g[:, None, None] for g in scenes.bg_gradient.unbind(-1))
    weight = (gx * x + (gy * y + offset)).clamp(0.0, 1.0)[:, None]              # (B,1,H,W)
    size = (-1, 3, height, width)
    near, far = scenes.bg_colours[:, 0, :, None, None], scenes.bg_colours[:, 1, :, None, None]
    image = torch.lerp(near.expand(size), far.expand(size), weight)

    for k in range(scenes.blob_alpha.shape[1]):
        if not bool((scenes.blob_alpha[:, k] > 0).any()):
            continue  # no sample of the batch has a k-th blob (always so in the studio)
        for is_rect in (False, True):
            rows = ((scenes.blob_alpha[:, k] > 0) & ((scenes.blob_rect[:, k] > 0.5) == is_rect)).nonzero()[:, 0]
            if rows.numel():
                cover = _blob_cover(scenes, rows, k, is_rect, x, y, soft=1.0 / max(width, height))
                alpha = scenes.blob_alpha[rows, k, None, None, None] * cover[:, None]
                colour = scenes.blob_colour[rows, k, :, None, None].expand(size)
                _update_rows(image, rows, lambda part: part.lerp_(colour, alpha))

    for k in range(scenes.wave_phase.shape[1]):
        if not bool((scenes.wave_colour[:, k] != 0).any()):
            continue
        rows = (scenes.wave_colour[:, k] != 0).any(-1).nonzero()[:, 0]
        if rows.numel():
            fx, fy = (f[rows, None, None] for f in scenes.wave_freq[:, k].unbind(-1))
            phase = scenes.wave_phase[rows, k, None, None]
            wave = torch.sin((2.0 * np.pi) * fx * x + phase + (2.0 * np.pi) * fy * y)
            amplitude = scenes.wave_colour[rows, k, :, None, None]
            _update_rows(image, rows, lambda part: part.addcmul_(amplitude, wave[:, None]))
    return image.clamp_(0.0, 1.0)


def _update_rows(image: Tensor, rows: Tensor, update) -> None:
    """Apply the in-place ``update`` to ``image[rows]`` (skipping the gather when all rows take part)."""
    if rows.numel() == image.shape[0]:
        update(image)
    else:
        image[rows] = update(image[rows])


def _blob_cover(scenes: SceneBatch, rows: Tensor, k: int, is_rect: bool, x: Tensor, y: Tensor,
                soft: float) -> Tensor:
    """Antialiased coverage (n,H,W) of blob slot ``k`` for samples ``rows``.

    In blob coordinates ``(p, q)`` (rotated, scaled by the half-sizes) the blob is
    ``max(|p|, |q|) <= 1`` (rectangle) or ``p^2 + q^2 <= 1`` (ellipse); the distance to its
    edge is approximated to first order by ``(max(|p|,|q|) - 1) * min_size`` and
    ``(p^2 + q^2 - 1) / 2 * min_size``, ramped from 1 to 0 over ``soft``.
    """
    cx, cy = (c[rows, None, None] for c in scenes.blob_centre[:, k].unbind(-1))
    sx, sy = (c[rows, None, None].clamp_min(1e-3) for c in scenes.blob_size[:, k].unbind(-1))
    angle = scenes.blob_angle[rows, k, None, None]
    cos, sin = torch.cos(angle), torch.sin(angle)
    dx, dy = x - cx, y - cy                                  # (n,1,W), (n,H,1)
    p = (cos / sx) * dx + (sin / sx) * dy
    q = (cos / sy) * dy - (sin / sy) * dx
    if is_rect:
        level = torch.maximum(p.abs(), q.abs())
        gain = torch.minimum(sx, sy) / soft
    else:
        level = p * p + q * q
        gain = torch.minimum(sx, sy) / (2.0 * soft)
    return (0.5 - (level - 1.0) * gain).clamp_(0.0, 1.0)


def apply_colour_shift(images: Tensor, scenes: SceneBatch) -> Tensor:
    """Colour cast, contrast (around mid-grey) and brightness of rendered images (B,3,H,W).

    ``((image * gain - 0.5) * contrast + 0.5 + brightness)`` clipped to [0, 1], computed as
    one affine map per sample and channel.
    """
    contrast = scenes.contrast[:, None, None, None]
    scale = scenes.colour_gain[:, :, None, None] * contrast
    shift = (0.5 - 0.5 * contrast) + scenes.brightness[:, None, None, None]
    return (images * scale).add_(shift).clamp_(0.0, 1.0)


def render_scene(
    joints_cam: Tensor,
    intrinsics: Tensor,
    part_radii: Tensor,
    part_colours: Tensor,
    scenes: SceneBatch,
    image_size: tuple[int, int],
    accessories: Tensor | None = None,
) -> RenderOutput:
    """Background, people, occluders and colour shift in one call (the DataModule's path).

    Arguments are those of :func:`pose3d.render.render_people`; ``scenes`` supplies light,
    background, occluders and colour shift; ``accessories`` (B, K, CAPSULE_FIELDS) are extra
    capsules of the people themselves (:func:`pose3d.body.accessory_capsules`: feet, nose,
    hair). ``visible`` accounts for the occluders.
    """
    scenes = scenes.to(joints_cam.device)
    extra = scenes.occluders if accessories is None else torch.cat((accessories.to(scenes.occluders), scenes.occluders), 1)
    out = render_people(
        joints_cam, intrinsics, part_radii, part_colours, image_size,
        light_dir=scenes.light_dir, ambient=scenes.ambient,
        background=make_background(scenes, image_size), extra_capsules=extra,
    )
    out.image = apply_colour_shift(out.image, scenes)
    return out
