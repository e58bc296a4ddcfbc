"""Person-centred crops of real images that keep image, 2D and 3D labels and camera consistent.

:func:`crop_record` cuts a square crop around a :class:`~datamodules.records.PoseRecord`'s
``center``/``scale`` (box side ``200 * scale * margin`` full-image pixels, resized to
``image_size``) and, in training, applies :class:`CropAugment`: scale jitter, an in-plane
rotation, a horizontal flip with left/right swap, and colour jitter (albumentations).

Geometry (exact for a pinhole camera, whatever the principal point)
-------------------------------------------------------------------
Let ``K`` be the full image's intrinsics and ``X`` a joint in the camera frame, so that its
pixel is ``p = K X / z``. An in-plane rotation by ``a`` about the optical axis, ``X' = Rz(a) X``,
keeps ``z`` and rotates the normalised image point ``(x/z, y/z)`` by the same 2D rotation. The
crop is therefore defined *as* a virtual camera ``K'`` looking at the rotated points:

    crop pixel = K' Rz(a) K^-1 p        (an affine map of the full image: cv2.warpAffine)

with ``fx' = s fx``, ``fy' = s fy`` (``s = image_size / box side``) and the crop principal
point ``(cx', cy')`` chosen so that the person centre lands on the crop centre. Rotating about
the optical axis rather than about the person centre only changes a translation, which
``(cx', cy')`` absorbs, so no perspective warp is needed and ``project(X', K')`` equals the
warped 2D labels to floating-point precision (the crop's principal point is simply off-centre
when the person is off-centre or the crop is rotated). If the 2D labels include lens
distortion (Human3.6M's ``D2_Positions`` do) the pinhole projection of the 3D labels differs
from them by that distortion, a few pixels in the full frame.

A flip mirrors the crop: ``u' = S - 1 - u`` (pixel centres at integer coordinates, as in
:func:`pose3d.camera.project` and :func:`datamodules.augment.flip_horizontal`), ``x' = -x``,
``cx' = S - 1 - cx'`` and left/right joints swap, so 3D still projects onto 2D.

Joints whose crop pixel falls outside ``[0, S - 1]`` become not ``visible``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from datamodules.augment import MIRROR_SIGNS
from pose3d.skeleton import FLIP_PERMUTATION, NUM_JOINTS

if TYPE_CHECKING:
    from datamodules.records import PoseRecord

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

DEFAULT_MARGIN = 1.25  # box side = 200 * scale * margin (the MPII/mmpose top-down padding)
PIXEL_STD = 200.0  # the MPII/H36M 'scale' unit: scale = box side / 200 px
NOMINAL_PERSON_HEIGHT_MM = 1700.0  # root depth guess for 2D-only records (see crop_record)
ROTATION_PROBABILITY = 0.6  # share of training crops that get rotated (as in mmpose)
_FLIP = list(FLIP_PERMUTATION)


@dataclass(frozen=True)
class CropParams:
    """One draw of the geometric augmentation."""

    scale: float = 1.0  # multiplies the box side (> 1 zooms out)
    angle: float = 0.0  # in-plane rotation, radians, about the optical axis
    flip: bool = False


class CropAugment:
    """Training augmentation of a crop: geometry is drawn here and applied by :func:`crop_record`
    with one exact affine warp; colour jitter, noise and blur use albumentations.

    * ``scale_jitter``: the box side is multiplied by ``clip(1 + N(0, 1) * j, 1 - j, 1 + j)``;
    * ``rotation_deg``: with probability 0.6 an angle uniform in ``[-r, r]`` degrees;
    * ``flip``: mirror with probability 0.5 (left/right joints swap);
    * ``photometric``: colour jitter (brightness/contrast/saturation 0.3), Gaussian noise, blur.
    """

    def __init__(self, scale_jitter: float = 0.25, rotation_deg: float = 30.0, flip: bool = True,
                 photometric: bool = True, seed: int | None = None):
        self.scale_jitter = float(scale_jitter)
        self.rotation_deg = float(rotation_deg)
        self.flip = bool(flip)
        self.photometric = bool(photometric)
        self.rng = np.random.default_rng(seed)
        self._pipeline = None

    def sample(self, rng: np.random.Generator | None = None) -> CropParams:
        rng = self.rng if rng is None else rng
        j = self.scale_jitter
        scale = float(np.clip(1.0 + rng.standard_normal() * j, 1.0 - j, 1.0 + j)) if j > 0 else 1.0
        angle = 0.0
        if self.rotation_deg > 0 and rng.random() < ROTATION_PROBABILITY:
            angle = float(np.deg2rad(rng.uniform(-self.rotation_deg, self.rotation_deg)))
        flip = bool(self.flip and rng.random() < 0.5)
        return CropParams(scale, angle, flip)

    def colour(self, image: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Colour-augmented copy of an (H, W, 3) uint8 or float image (unchanged if photometric is off)."""
        if not self.photometric:
            return image
        if self._pipeline is None:
            import albumentations as A

            self._pipeline = A.Compose([
                A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.0, p=0.8),
                A.GaussNoise(std_range=(0.01, 0.04), p=0.3),
                A.GaussianBlur(blur_limit=(3, 3), p=0.15),
            ])
        rng = self.rng if rng is None else rng
        self._pipeline.set_random_seed(int(rng.integers(2**31 - 1)))
        return self._pipeline(image=image)["image"]


def _matrix(intrinsics: np.ndarray) -> np.ndarray:
    fx, fy, cx, cy = intrinsics
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def rotation_z(angle: float) -> np.ndarray:
    """(3, 3) rotation about the camera z (optical) axis; same convention as
    ``pose3d.camera.rotation_about_axis(angle, "z")``."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def nominal_intrinsics(record: "PoseRecord", image_shape: tuple[int, ...] | None) -> np.ndarray:
    """A stand-in camera for records without calibration: focal length = the larger image side
    (about 53 degrees field of view), principal point at the image centre (or, without an
    image, at the person centre)."""
    if image_shape is not None:
        h, w = image_shape[:2]
        return np.array([max(h, w), max(h, w), (w - 1) / 2, (h - 1) / 2], dtype=np.float64)
    return np.array([1000.0, 1000.0, *np.asarray(record.center, dtype=np.float64)])


def crop_geometry(intrinsics: np.ndarray, center: np.ndarray, box_side: float, angle: float,
                  image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The (2, 3) affine full image -> crop and the crop intrinsics (4,), before any flip.

    ``crop = K' Rz(angle) K^-1 full`` with ``K' = (s fx, s fy, cx', cy')``, ``s = image_size /
    box_side`` and ``(cx', cy')`` putting ``center`` at the crop centre ``(S - 1) / 2``.
    """
    K = _matrix(np.asarray(intrinsics, dtype=np.float64))
    s = image_size / float(box_side)
    fx, fy = s * K[0, 0], s * K[1, 1]
    linear = np.diag([fx, fy, 1.0]) @ rotation_z(angle) @ np.linalg.inv(K)
    mid = (image_size - 1) / 2.0
    at_centre = linear @ np.array([center[0], center[1], 1.0])
    cx, cy = mid - at_centre[0], mid - at_centre[1]
    affine = linear[:2].copy()
    affine[:, 2] += (cx, cy)
    return affine, np.array([fx, fy, cx, cy])


def _warp(image: np.ndarray, affine: np.ndarray, size: int) -> np.ndarray:
    """cv2.warpAffine with pre-shrinking (INTER_AREA) when the crop scales down by more than 2x,
    so that small network inputs do not alias."""
    import cv2

    shrink = float(np.sqrt(abs(np.linalg.det(affine[:, :2]))))
    if shrink < 0.5:
        factor = 2.0 * shrink
        h, w = image.shape[:2]
        small_w, small_h = max(1, round(w * factor)), max(1, round(h * factor))
        image = cv2.resize(image, (small_w, small_h), interpolation=cv2.INTER_AREA)
        # pixel-centre convention: p_small = (p + 0.5) * f - 0.5, with the actual per-axis factors
        fx_, fy_ = small_w / w, small_h / h
        to_small = np.array([[fx_, 0.0, 0.5 * fx_ - 0.5], [0.0, fy_, 0.5 * fy_ - 0.5], [0.0, 0.0, 1.0]])
        affine = np.vstack([affine, [0.0, 0.0, 1.0]]) @ np.linalg.inv(to_small)
        affine = affine[:2]
    return cv2.warpAffine(image, affine, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=0)


def crop_record(image: np.ndarray | None, record: "PoseRecord", image_size: int, augment: CropAugment | None,
                rng: np.random.Generator | None = None, margin: float = DEFAULT_MARGIN,
                params: CropParams | None = None) -> dict[str, np.ndarray]:
    """The person-centred crop of ``record`` (see the module docstring for the geometry).

    ``image``: the full frame (H, W, 3), uint8 or float; ``None`` for pose-only records (the crop
    is black). ``augment`` draws the geometry with ``rng`` (or ``params`` fixes it) and jitters
    colours; ``None`` gives the plain centred crop.

    Returns float64 arrays except ``image`` (the input dtype):

    * ``image`` (S, S, 3);
    * ``joints_2d`` (17, 2) crop pixels;
    * ``joints_3d`` (17, 3) mm, camera frame of the crop's virtual camera, absolute
      (zeros when the record has no 3D);
    * ``camera`` (4,) crop intrinsics: ``project(joints_3d, camera) == joints_2d`` for calibrated
      records without lens distortion; for records without ``intrinsics`` the crop of a
      :func:`nominal_intrinsics` camera;
    * ``camera_rotation`` (3, 3) the crop camera's world-to-camera rotation (the record's, turned
      with the in-plane rotation; a flip mirrors camera and world across their x axes, which
      keeps it a rotation and the vertical where it was); the identity when unknown, with
      ``has_camera_rotation`` () bool;
    * ``visible`` (17,) bool: the record's visibility and inside the crop;
    * ``root_depth`` () mm: the root's depth, or for records without 3D a nominal guess
      (``focal * 1700 mm / (200 * scale)``) used only to order skeleton-map strokes;
    * ``affine`` (2, 3): full image -> crop pixels (after the flip, if any).
    """
    rng = np.random.default_rng() if rng is None else rng
    if params is None:
        params = augment.sample(rng) if augment is not None else CropParams()
    has_intrinsics = record.intrinsics is not None
    intrinsics = (np.asarray(record.intrinsics, dtype=np.float64) if has_intrinsics
                  else nominal_intrinsics(record, None if image is None else image.shape))
    center = np.asarray(record.center, dtype=np.float64)
    box_side = PIXEL_STD * float(record.scale) * margin * params.scale
    if not box_side > 0:
        raise ValueError(f"{record.image_path}: person scale must be positive, got {record.scale}")
    affine, camera = crop_geometry(intrinsics, center, box_side, params.angle, image_size)

    joints_2d = np.asarray(record.joints_2d, dtype=np.float64) @ affine[:, :2].T + affine[:, 2]
    if record.joints_3d is not None:
        joints_3d = np.asarray(record.joints_3d, dtype=np.float64) @ rotation_z(params.angle).T
        root_depth = float(joints_3d[0, 2])
    else:
        joints_3d = np.zeros((NUM_JOINTS, 3))
        root_depth = float(intrinsics[:2].mean() * NOMINAL_PERSON_HEIGHT_MM / (PIXEL_STD * float(record.scale)))
    visible = np.asarray(record.visible, dtype=bool).copy()
    has_rotation = record.rotation is not None
    rotation = rotation_z(params.angle) @ np.asarray(record.rotation, dtype=np.float64) if has_rotation else np.eye(3)

    if image is None:
        crop = np.zeros((image_size, image_size, 3), dtype=np.uint8)
    else:
        crop = _warp(image, affine, image_size)

    if params.flip:
        last = image_size - 1
        crop = crop[:, ::-1].copy()
        joints_2d = np.stack([last - joints_2d[:, 0], joints_2d[:, 1]], -1)[_FLIP]
        joints_3d = (joints_3d * np.array([-1.0, 1.0, 1.0]))[_FLIP]
        visible = visible[_FLIP]
        camera = camera.copy()
        camera[2] = last - camera[2]
        if has_rotation:
            rotation = rotation * MIRROR_SIGNS
        affine = np.array([[-1.0, 0.0, last], [0.0, 1.0, 0.0]]) @ np.vstack([affine, [0.0, 0.0, 1.0]])

    if augment is not None and image is not None:
        crop = augment.colour(crop, rng)

    inside = np.all((joints_2d >= 0) & (joints_2d <= image_size - 1), axis=-1)
    return {
        "image": crop,
        "joints_2d": joints_2d,
        "joints_3d": joints_3d,
        "camera": camera,
        "camera_rotation": rotation,
        "has_camera_rotation": np.bool_(has_rotation),
        "visible": visible & inside & np.isfinite(joints_2d).all(-1),
        "root_depth": np.float64(root_depth),
        "affine": affine,
    }
