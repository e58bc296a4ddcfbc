"""The capsule renderer (pose3d.render) and the scene randomisation (pose3d.scene)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pose3d.body import NUM_PARTS, PART_COLOUR_SLOT, PARTS, make_subject
from pose3d.camera import project
from pose3d.render import CAPSULE_FIELDS, render_people
from pose3d.scene import (DOMAINS, apply_colour_shift, make_background, render_scene, sample_scene,
                          stack_scenes)

SIZE = (64, 64)
PART = {name: p for p, (name, *_) in enumerate(PARTS)}
R_WRIST, L_WRIST, HEAD = 16, 13, 10


def t_pose(depth: float = 4000.0) -> np.ndarray:
    """A T-pose facing the camera (its left on +x), pelvis on the optical axis at ``depth``."""
    j = np.array([
        [0, 0, 0], [-130, 0, 0], [-130, 440, 0], [-130, 890, 0], [130, 0, 0], [130, 440, 0],
        [130, 890, 0], [0, -230, 0], [0, -480, 0], [0, -600, 0], [0, -715, 0],
        [150, -480, 0], [430, -480, 0], [680, -480, 0], [-150, -480, 0], [-430, -480, 0], [-680, -480, 0],
    ], dtype=np.float32)
    j[:, 2] += depth
    return j


def render(joints: np.ndarray, extra: np.ndarray | None = None, intrinsics=(110.0, 110.0, 32.0, 32.0),
           colours: np.ndarray | None = None, **kwargs):
    """Render one person (subject 1) against a black background."""
    body = make_subject(1)
    if colours is None:
        colours = body.colours[PART_COLOUR_SLOT]
    extra_t = None if extra is None else torch.tensor(extra, dtype=torch.float32)[None]
    return render_people(
        torch.tensor(joints)[None], torch.tensor([intrinsics]), torch.tensor(body.part_radii)[None],
        torch.tensor(colours, dtype=torch.float32)[None], SIZE, light_dir=torch.tensor([[0.0, -0.5, -1.0]]),
        ambient=torch.tensor([0.3]), background=torch.zeros(1, 3, SIZE[1], SIZE[0]),
        extra_capsules=extra_t, **kwargs,
    )


def pixel_of(joints: np.ndarray, j: int, intrinsics=(110.0, 110.0, 32.0, 32.0)) -> tuple[int, int]:
    u, v = project(torch.tensor(joints[j:j + 1]), torch.tensor(intrinsics))[0].round().long().tolist()
    return v, u


def test_depth_order_of_overlapping_parts():
    joints = t_pose()
    colours = np.tile([[1.0, 0.0, 0.0]], (NUM_PARTS, 1))
    colours[PART["r_hand"]] = [0.0, 0.0, 1.0]
    # right wrist over the chest: 300 mm in front of it, then 300 mm behind it
    joints[R_WRIST] = [0.0, -350.0, 3700.0]
    v, u = pixel_of(joints, R_WRIST)
    out = render(joints, colours=colours)
    assert out.part_index[0, v, u] == PART["r_hand"]
    assert out.image[0, 2, v, u] > 0 and out.image[0, 0, v, u] == 0
    joints[R_WRIST, 2] = 4300.0
    v, u = pixel_of(joints, R_WRIST)
    out = render(joints, colours=colours)
    assert out.part_index[0, v, u] in (PART["upper_torso"], PART["lower_torso"])
    assert out.image[0, 0, v, u] > 0 and out.image[0, 2, v, u] == 0


def test_wrist_behind_torso_is_invisible_and_the_one_in_front_visible():
    joints = t_pose()
    joints[R_WRIST] = [0.0, -350.0, 4300.0]   # behind the chest
    joints[L_WRIST] = [60.0, -300.0, 3700.0]  # in front of it
    visible = render(joints).visible[0]
    assert not visible[R_WRIST]
    assert visible[L_WRIST]
    assert visible[[0, 1, 4, 8, 10, 11, 14]].all()  # hips and shoulders seen through their skin


def test_plain_t_pose_is_fully_visible():
    assert render(t_pose()).visible.all()


def test_joint_outside_the_image_is_invisible():
    # shift the principal point so the left arm leaves the crop on the right
    intrinsics = (110.0, 110.0, 50.0, 32.0)
    joints = t_pose()
    u_wrist = project(torch.tensor(joints[L_WRIST:L_WRIST + 1]), torch.tensor(intrinsics))[0, 0]
    assert u_wrist > SIZE[0]
    visible = render(joints, intrinsics=intrinsics).visible[0]
    assert not visible[L_WRIST]
    assert visible[R_WRIST] and visible[0]


def test_occluder_in_front_hides_joints():
    joints = t_pose()
    head = joints[HEAD] * 3000.0 / joints[HEAD, 2]  # on the head's ray, 1 m nearer the camera
    occluder = np.zeros((2, CAPSULE_FIELDS), dtype=np.float32)  # the second row is padding
    occluder[0] = [head[0] - 150, head[1], 3000, head[0] + 150, head[1], 3000, 40, 0.2, 0.9, 0.2]
    out = render(joints, extra=occluder)
    v, u = pixel_of(joints, HEAD)
    assert out.part_index[0, v, u] == NUM_PARTS
    assert out.depth[0, v, u] < 3000
    assert not out.visible[0, HEAD]
    assert out.visible[0, [0, L_WRIST, R_WRIST, 3, 6]].all()
    # padding rows and an empty occluder table change nothing
    plain = render(joints)
    none = render(joints, extra=np.zeros((0, CAPSULE_FIELDS), dtype=np.float32))
    assert torch.equal(plain.image, none.image) and torch.equal(plain.part_index, none.part_index)


def test_background_and_foreground_buffers():
    out = render(t_pose())
    background = out.part_index[0] == -1
    assert background[0, 0] and background[-1, -1]
    assert torch.isinf(out.depth[0][background]).all()
    assert (out.image[0][:, background] == 0).all()
    front = out.depth[0][~background]
    assert front.isfinite().all() and (front > 3800).all() and (front < 4100).all()
    assert out.part_index.dtype == torch.long and out.visible.dtype == torch.bool


def test_sphere_geometry():
    """A lone sphere: front depth z - r at its centre pixel, silhouette radius f r / sqrt(z^2 - r^2)."""
    far_away = t_pose(depth=-5000.0)  # the person is behind the camera: not drawn
    sphere = np.array([[0, 0, 2000, 0, 0, 2000, 400, 1, 1, 1]], dtype=np.float32)
    out = render(far_away, extra=sphere, intrinsics=(40.0, 40.0, 32.0, 32.0))
    assert out.depth[0, 32, 32] == pytest.approx(1600.0, abs=0.01)
    assert not out.visible.any()
    hit = out.part_index[0] == NUM_PARTS
    assert set(out.part_index[0].unique().tolist()) == {-1, NUM_PARTS}
    expected_area = np.pi * (40.0 * 400 / np.sqrt(2000**2 - 400**2)) ** 2
    assert hit.sum().item() == pytest.approx(expected_area, rel=0.05)
    # Lambertian: the centre faces the camera, lit from (0, -0.5, -1): shade 0.3 + 0.7 * 2/sqrt(5)
    assert out.image[0, 0, 32, 32].item() == pytest.approx(0.3 + 0.7 * 1 / np.sqrt(1.25), abs=0.02)


def test_tile_size_never_changes_the_result():
    joints = t_pose()
    joints[R_WRIST] = [0.0, -350.0, 3700.0]
    reference = render(joints, tile=64)  # a single tile: no culling at all
    for tile in (3, 4, 8, 16):
        out = render(joints, tile=tile)
        assert torch.equal(out.part_index, reference.part_index)
        assert torch.equal(out.depth, reference.depth)
        assert torch.equal(out.image, reference.image)


def _scene_batch(seed: int, count: int, size=SIZE):
    """``count`` people (jittered T-poses, yaw-rotated) with their scenes, half studio, half wild."""
    rng = np.random.default_rng(seed)
    body = make_subject(5)
    joints, intrinsics, scenes = [], [], []
    for i in range(count):
        yaw = rng.uniform(-np.pi, np.pi)
        rot = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
        pose = (t_pose(0.0) + rng.normal(0.0, 40.0, size=(17, 3))) @ rot.T
        pose += [rng.uniform(-300, 300), rng.uniform(-200, 200), rng.uniform(3000, 6000)]
        f = size[0] * pose[0, 2] / 2000.0 * rng.uniform(0.9, 1.1)
        joints.append(pose.astype(np.float32))
        intrinsics.append([f, f, size[0] / 2 - f * pose[0, 0] / pose[0, 2], size[1] / 2 - f * pose[0, 1] / pose[0, 2]])
        scenes.append(sample_scene(rng, DOMAINS[i % 2], size, root_cam=pose[0], scale_mm=1800.0))
    radii = torch.tensor(np.tile(body.part_radii, (count, 1)))
    colours = torch.tensor(np.tile(body.colours[PART_COLOUR_SLOT], (count, 1, 1)))
    return torch.tensor(np.stack(joints)), torch.tensor(intrinsics, dtype=torch.float32), radii, colours, scenes


def test_scenes_are_deterministic():
    a, b = _scene_batch(7, 6)[-1], _scene_batch(7, 6)[-1]
    for sa, sb in zip(a, b):
        for name in sa.__dataclass_fields__:
            np.testing.assert_array_equal(getattr(sa, name), getattr(sb, name))


def test_sample_renders_the_same_alone_and_in_a_batch():
    joints, intrinsics, radii, colours, scenes = _scene_batch(3, 64)
    batch = render_scene(joints, intrinsics, radii, colours, stack_scenes(scenes), SIZE)
    assert batch.image.shape == (64, 3, SIZE[1], SIZE[0])
    assert batch.image.min() >= 0 and batch.image.max() <= 1
    for i in (0, 1, 17, 63):
        alone = render_scene(joints[i:i + 1], intrinsics[i:i + 1], radii[i:i + 1], colours[i:i + 1],
                             stack_scenes([scenes[i]]), SIZE)
        torch.testing.assert_close(alone.image[0], batch.image[i], rtol=0, atol=1e-6)
        assert torch.equal(alone.depth[0], batch.depth[i])
        assert torch.equal(alone.part_index[0], batch.part_index[i])
        assert torch.equal(alone.visible[0], batch.visible[i])


def test_wild_differs_from_studio():
    rng = np.random.default_rng(0)
    root = np.array([0.0, 0.0, 4000.0])
    studio = stack_scenes([sample_scene(rng, "studio", SIZE, root_cam=root) for _ in range(32)])
    wild = stack_scenes([sample_scene(rng, "wild", SIZE, root_cam=root) for _ in range(32)])
    # clutter: wild backgrounds vary far more within an image
    assert make_background(wild, SIZE).std(dim=(2, 3)).mean() > 3 * make_background(studio, SIZE).std(dim=(2, 3)).mean()
    # occluders only in the wild, 0-2 of them, between the camera and the person
    assert (studio.occluders[..., 6] == 0).all()
    count = (wild.occluders[..., 6] > 0).sum(1)
    assert count.min() == 0 and count.max() == 2
    used = wild.occluders[..., 6] > 0
    assert (wild.occluders[..., 2][used] < root[2]).all() and (wild.occluders[..., 5][used] < root[2]).all()
    # the post-render colour change is mild in the studio and strong in the wild
    grey = torch.full((32, 3, 4, 4), 0.5)
    assert (apply_colour_shift(grey, studio) - grey).abs().max() < 0.1
    assert (apply_colour_shift(grey, wild) - grey).abs().max() > 0.1


def test_unknown_domain_is_a_one_line_error():
    with pytest.raises(ValueError, match="studio, wild") as error:
        sample_scene(np.random.default_rng(0), "beach", SIZE)
    assert "\n" not in str(error.value) and "beach" in str(error.value)


def test_every_foreground_pixel_is_shaded():
    """No holes or NaNs along silhouettes: a white person on black shows no black pixel."""
    joints, intrinsics, radii, _, scenes = _scene_batch(11, 16, size=(128, 128))
    white = torch.ones(16, radii.shape[1], 3)
    out = render_people(joints, intrinsics, radii, white, (128, 128), light_dir=torch.tensor([[0.0, 0.0, -1.0]]).repeat(16, 1),
                        ambient=torch.full((16,), 0.5), background=torch.zeros(16, 3, 128, 128))
    assert torch.isfinite(out.image).all()
    foreground = out.part_index >= 0
    assert foreground.any() and (out.image.amin(1)[foreground] >= 0.5).all()
    assert (out.image[:, 0][~foreground] == 0).all()
