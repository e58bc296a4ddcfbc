"""MPI-INF-3DHP (Mehta et al. 2017): the official test set (evaluation) and training set (3D source).

Layout under ``data.root`` (the folder the download script fills; nothing is converted)::

    mpi_inf_3dhp_test_set/TS1 .. TS6/          (or data.root may be the test-set folder itself)
        annot_data.mat                        annot2, annot3, univ_annot3, valid_frame, activity_annotation
        imageSequence/img_000001.jpg ...      frame t (0-based) is img_{t+1:06d}.jpg
    S1 .. S8/Seq1, Seq2/                      (training set; only needed for the train split)
        annot.mat                             cells annot2, annot3, univ_annot3 (one per camera), frames
        camera.calibration                    per-camera 'intrinsic' 4x4 (Skeletool text format)
        imageFrames/video_<cam>/frame_000001.jpg ...   the frames extracted from imageSequence/video_<cam>.avi

Test set (``annot_data.mat``, MATLAB v7.3 = HDF5 in the release, read with h5py; a v5 copy is
read with scipy.io.loadmat). In MATLAB the arrays are ``annot2`` 2x17x1xT, ``annot3`` and
``univ_annot3`` 3x17x1xT (the release README), ``valid_frame`` and ``activity_annotation`` 1xT.
h5py shows an HDF5 array with its dimensions reversed (``annot2`` is (T, 1, 17, 2) there);
:func:`pose3d.readers.read_mat` transposes it back to MATLAB order, so both readers give MATLAB order and
:func:`joints_over_time` turns it into (T, 17, C). A 17xCx1xT variant is accepted too. The 17
joints are the evaluation's "relevant" set (:data:`pose3d.skeleton.MPI_INF_3DHP_17`), mapped to
the H36M order with :func:`pose3d.skeleton.map_to_h36m`. ``annot3`` is in the camera frame (mm)
and projects onto ``annot2``; ``univ_annot3`` is the same pose rescaled to the "universal"
skeleton height, which the official 3DPCK/AUC use. ``data.test_target=univ_annot3`` (default)
makes the test labels root-relative ``univ_annot3`` placed at the ``annot3`` root (so the root
depth is real); ``annot3`` keeps the metric pose (2D/3D consistent).

Test-set intrinsics. The annotation files carry none. ``data.test_intrinsics=fit`` (default)
estimates ``fx, cx`` and ``fy, cy`` per sequence by linear least squares from ``annot3`` and
``annot2`` (u = fx X/Z + cx, v = fy Y/Z + cy over all valid frames and joints): exact when the
2D labels are pinhole projections (TS1-TS4, 2048x2048), a best pinhole fit where they include
lens distortion (the outdoor TS5-TS6, 1920x1080). ``reference`` uses the values commonly
quoted for the test cameras (:data:`REFERENCE_TEST_INTRINSICS`, not verified against an
official calibration file here).

Groups. ``subject`` is the sequence number (test: TS1..6 -> 1..6; train: S1..8 -> 1..8). The
test set is reported per scene: TS1-2 green screen (GS), TS3-4 no green screen (noGS), TS5-6
outdoor. ``data.action_grouping=scene`` (default) puts that scene in ``action`` (0 GS, 1 noGS,
2 outdoor), so the per-action metrics of a run are the per-scene ones; ``activity`` puts the
per-frame activity label there (0..6, :data:`ACTIVITY_NAMES`, the official per-activity
table). :func:`evaluate` gives 3DPCK@150 mm, AUC and MPJPE overall, per scene and per activity
on the 14 evaluation joints (the official joint groups: head top, neck, shoulders, elbows,
wrists, hips, knees, ankles = :data:`pose3d.skeleton.SUBSET_14`; pelvis, spine and head centre
are left out).

Training set (``S<s>/Seq<q>/annot.mat``, MATLAB v5, scipy; v7.3 copies are read too): each of
``annot2``/``annot3``/``univ_annot3`` is a 14x1 cell, one per camera 0..13, holding a Tx56 /
Tx84 matrix, row t = 28 joints with x, y(, z) interleaved (joint order
:data:`TRAIN_JOINTS_28`; :data:`RELEVANT_17_OF_28` picks the 17 test joints). ``annot3`` is
in that camera's frame. Intrinsics come from ``camera.calibration`` (the 4x4 ``intrinsic``
row-major: fx = m[0], cx = m[2], fy = m[5], cy = m[6]); the camera rotation of the batch
contract (``camera_rotation``) from the top-left 3x3 of its 4x4 ``extrinsic`` (world to camera),
taking the capture studio's y axis as up (:data:`WORLD_UP`; an assumption not checked against
the real files here). The test set ships no extrinsics: its samples have
``has_camera_rotation`` False. The videos must be extracted to JPEG
frames first; frame t (0-based row of the annotation) is ``frame_{t+1:06d}.jpg`` in
``imageFrames/video_<cam>/`` (the layout of the common extraction scripts, e.g. SPIN's) or
``imageSequence/video_<cam>/``; ``data.train_frame_dir`` picks one (``auto``: the first that
exists). ``data.cameras`` (default the 8 chest-height cameras 0, 1, 2, 4, 5, 6, 7, 8) and
``data.train_stride`` (every 10th frame; 25 fps frames are nearly identical) select frames.
Training frames have no activity label: their ``action`` is 0 (only val/test report per group).
The training set has no validation split, and the test set never chooses a checkpoint: by default
the last ``data.val_fraction`` (10 %) of every training sequence (the same cut in all cameras)
is held out for validation (same people, unseen moments, as for Human3.6M);
``data.val_subjects`` holds whole training subjects out instead. ``data.val_fraction=0`` with no
``val_subjects`` validates on the test set (then the best checkpoint is chosen on the test set).
Without a training set (``data.subjects=[]``, evaluation only) validation is the test set.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import List

import numpy as np
import torch
from torch import Tensor

from datamodules.records import (DatasetLayoutError, LazyRecords, PoseRecord, RecordDataConfig, RecordDataModule,
                                 contract_rotation, is_rotation, read_image)
from pose3d.config import ConfigError, bounded, choice
from pose3d.metrics import functional as PF
from pose3d.readers import FileFormatError, read_mat, read_mat_cells, read_text, require_finite
from pose3d.skeleton import NUM_JOINTS, SUBSET_14, map_to_h36m

TEST_DIR = "mpi_inf_3dhp_test_set"
TEST_SEQUENCES = (1, 2, 3, 4, 5, 6)
SCENE_NAMES: tuple[str, ...] = ("GS", "noGS", "outdoor")
SCENE_OF_SEQUENCE = {1: 0, 2: 0, 3: 1, 4: 1, 5: 2, 6: 2}
TEST_IMAGE_SIZE = {1: (2048, 2048), 2: (2048, 2048), 3: (2048, 2048), 4: (2048, 2048),
                   5: (1920, 1080), 6: (1920, 1080)}  # (width, height)
ACTIVITY_NAMES: tuple[str, ...] = (
    "Standing/Walking", "Exercising", "Sitting", "Reaching/Crouching", "On The Floor", "Sports", "Miscellaneous",
)
# fx, fy, cx, cy as commonly quoted for the test cameras (community values, see the module docstring)
REFERENCE_TEST_INTRINSICS = {
    **{k: (1500.172288, 1500.172288, 1017.38733568, 1043.03198208) for k in (1, 2, 3, 4)},
    **{k: (1683.98345952, 1672.59370772, 939.85754016, 560.140743168) for k in (5, 6)},
}

# The 28 joints of the training annotations (mpii_get_joints('all')), and the 17 'relevant' ones.
TRAIN_JOINTS_28: tuple[str, ...] = (
    "spine3", "spine4", "spine2", "spine", "pelvis", "neck", "head", "head_top",
    "left_clavicle", "left_shoulder", "left_elbow", "left_wrist", "left_hand",
    "right_clavicle", "right_shoulder", "right_elbow", "right_wrist", "right_hand",
    "left_hip", "left_knee", "left_ankle", "left_foot", "left_toe",
    "right_hip", "right_knee", "right_ankle", "right_foot", "right_toe",
)
RELEVANT_17_OF_28: tuple[int, ...] = (7, 5, 14, 15, 16, 9, 10, 11, 23, 24, 25, 18, 19, 20, 4, 3, 6)
DEFAULT_CAMERAS = (0, 1, 2, 4, 5, 6, 7, 8)
WORLD_UP = "y"  # the training studio's vertical axis in camera.calibration's world frame
TRAIN_FRAME_DIRS = ("imageFrames", "imageSequence")
EVAL_JOINTS: tuple[int, ...] = SUBSET_14
JOINT_BOX_TO_PERSON = 1.1  # person box side / side of the joints' bounding box (feet, hair)

TEST_ANNOTATION = "a TS<k>/annot_data.mat of the test set: annot2, annot3, univ_annot3, valid_frame, activity_annotation"
TRAIN_ANNOTATION = "an S<s>/Seq<q>/annot.mat of the training set: cell arrays annot2 (T x 56) and annot3 (T x 84) per camera"
CALIBRATION_FILE = "a Skeletool camera.calibration: 'name <camera>' then 'intrinsic' and 'extrinsic' rows of 16 numbers"

LAYOUT_LINE = (f"{TEST_DIR}/TS<k>/annot_data.mat and TS<k>/imageSequence/img_000001.jpg; "
               "training set S<s>/Seq<q>/annot.mat, camera.calibration, imageFrames/video_<cam>/frame_000001.jpg")
LAYOUT_TREE = """\
<data.root>/
  mpi_inf_3dhp_test_set/TS1 .. TS6/annot_data.mat
                                    imageSequence/img_000001.jpg ...
  S1 .. S8/Seq1, Seq2/annot.mat
                      camera.calibration
                      imageFrames/video_0/frame_000001.jpg ...   (or imageSequence/video_0/...)"""


# --------------------------------------------------------------------------- reading MATLAB files

def joints_over_time(array: np.ndarray, coords: int, what: str = "annotation") -> np.ndarray:
    """A MATLAB-order joint array -> (T, 17, coords).

    Accepts C x 17 x 1 x T (the release), 17 x C x 1 x T, and those without the singleton
    person axis (C x 17 x T, 17 x C x T).
    """
    a = np.asarray(array, dtype=np.float64)
    if a.ndim == 4:
        if a.shape[2] != 1:
            raise ValueError(f"{what}: expected one person per frame (C x 17 x 1 x T), got shape {a.shape}")
        a = a[:, :, 0, :]
    if a.ndim != 3:
        raise ValueError(f"{what}: expected a C x 17 x 1 x T array, got shape {a.shape}")
    if a.shape[:2] == (coords, 17):
        return a.transpose(2, 1, 0)
    if a.shape[:2] == (17, coords):
        return a.transpose(2, 0, 1)
    raise ValueError(f"{what}: expected {coords} x 17 x 1 x T (or 17 x {coords} x 1 x T), got shape {a.shape}")


def read_cameras(path: Path) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """``camera.calibration`` (Skeletool text format) -> ({camera: (fx, fy, cx, cy)},
    {camera: world-to-camera rotation (3, 3)}).

    The rotation is the top-left block of the 4x4 ``extrinsic``; a camera whose block is not a
    rotation (a calibration without extrinsics) has none."""
    path = Path(path)
    if not path.is_file():
        raise DatasetLayoutError(f"missing {path}; expected layout: {LAYOUT_LINE}", LAYOUT_TREE)
    cameras: dict[int, np.ndarray] = {}
    rotations: dict[int, np.ndarray] = {}
    current = None
    for number, line in enumerate(read_text(path, CALIBRATION_FILE).splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        try:
            if tokens[0] == "name" and len(tokens) > 1:
                current = int(float(tokens[1]))
            elif tokens[0] == "intrinsic" and current is not None:
                m = np.array([float(t) for t in tokens[1:17]]).reshape(4, 4)
                cameras[current] = require_finite(path, f"intrinsic of camera {current}",
                                                  np.array([m[0, 0], m[1, 1], m[0, 2], m[1, 2]]),
                                                  f"finite numbers in {CALIBRATION_FILE}")
            elif tokens[0] == "extrinsic" and current is not None and len(tokens) >= 17:
                block = np.array([float(t) for t in tokens[1:17]]).reshape(4, 4)[:3, :3]
                if is_rotation(block):
                    rotations[current] = block
        except FileFormatError:
            raise
        except (ValueError, OverflowError):
            raise FileFormatError(path, f"line {number} ({tokens[0]}) does not hold 16 numbers", CALIBRATION_FILE) from None
    if not cameras:
        raise DatasetLayoutError(f"{path} holds no 'name'/'intrinsic' entries; expected a Skeletool camera.calibration")
    return cameras, rotations


# --------------------------------------------------------------------------- geometry helpers

def fit_intrinsics(points_3d: np.ndarray, points_2d: np.ndarray) -> np.ndarray:
    """Least-squares pinhole (fx, fy, cx, cy) with u = fx X/Z + cx, v = fy Y/Z + cy.

    points_3d (..., 3) camera frame, points_2d (..., 2) pixels; non-finite or z <= 0 points are skipped.
    """
    p3 = np.asarray(points_3d, dtype=np.float64).reshape(-1, 3)
    p2 = np.asarray(points_2d, dtype=np.float64).reshape(-1, 2)
    ok = np.isfinite(p3).all(1) & np.isfinite(p2).all(1) & (p3[:, 2] > 1e-6)
    p3, p2 = p3[ok], p2[ok]
    if len(p3) < 2:
        raise ValueError("need at least two valid points to fit intrinsics")
    out = []
    for axis in (0, 1):
        design = np.stack([p3[:, axis] / p3[:, 2], np.ones(len(p3))], 1)
        (f, c), *_ = np.linalg.lstsq(design, p2[:, axis], rcond=None)
        out.append((f, c))
    (fx, cx), (fy, cy) = out
    return np.array([fx, fy, cx, cy])


def person_box(joints_2d: np.ndarray, visible: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Centre (2,) and scale (box side / 200 px) of the square around the labelled joints,
    enlarged by :data:`JOINT_BOX_TO_PERSON`; the crop adds its own margin on top."""
    points = np.asarray(joints_2d, dtype=np.float64)
    if visible is not None and np.any(visible):
        points = points[np.asarray(visible, dtype=bool)]
    low, high = points.min(0), points.max(0)
    side = max(float((high - low).max()), 1.0) * JOINT_BOX_TO_PERSON
    return (low + high) / 2.0, side / 200.0


def _to_h36m(points: np.ndarray) -> np.ndarray:
    mapped, _ = map_to_h36m(points, "mpi_inf_3dhp")
    return mapped


# --------------------------------------------------------------------------- evaluation

def scene_of_subject(subject) -> np.ndarray:
    """Test sequence number(s) 1..6 -> scene id(s) 0 GS, 1 noGS, 2 outdoor."""
    return (np.asarray(subject, dtype=np.int64) - 1) // 2


def evaluate(pred: Tensor, target: Tensor, subject: Tensor, activity: Tensor | None = None,
             joints: Sequence[int] = EVAL_JOINTS) -> dict[str, float]:
    """The MPI-INF-3DHP test metrics of root-relative poses.

    pred, target: (N, 17, 3) mm, root-relative (H36M order); subject: (N,) test sequence 1..6;
    activity: optional (N,) activity ids 0..6. Returns ``pck3d`` (3DPCK@150 mm, %), ``auc3d``
    (mean 3DPCK over 0..150 mm in 5 mm steps, %) and ``mpjpe`` (mm) over ``joints`` (default
    the 14 evaluation joints), ``pck3d_scaled`` / ``auc3d_scaled`` (after the least-squares
    global scale) and ``pck3d_pa`` / ``auc3d_pa`` (after Procrustes), then the same per scene (``pck3d/GS`` ...) and per activity
    (``pck3d/Sitting`` ...) where present.
    """
    pred, target = torch.as_tensor(pred, dtype=torch.float64), torch.as_tensor(target, dtype=torch.float64)
    mask = torch.zeros(pred.shape[:2], dtype=torch.bool)
    mask[:, list(joints)] = True
    scenes = torch.as_tensor(scene_of_subject(torch.as_tensor(subject).numpy()))

    def metrics(select: Tensor, suffix: str) -> dict[str, float]:
        p, t, m = pred[select], target[select], mask[select]
        return {
            f"pck3d{suffix}": float(PF.pck3d(p, t, 150.0, m)),
            f"auc3d{suffix}": float(PF.auc3d(p, t, m)),
            f"mpjpe{suffix}": float(PF.mpjpe(p, t, m)),
            f"pck3d_scaled{suffix}": float(PF.pck3d_scaled(p, t, 150.0, m)),
            f"auc3d_scaled{suffix}": float(PF.auc3d_scaled(p, t, m)),
            f"pck3d_pa{suffix}": float(PF.pck3d_pa(p, t, 150.0, m)),
            f"auc3d_pa{suffix}": float(PF.auc3d_pa(p, t, m)),
        }

    out = metrics(torch.ones(len(pred), dtype=torch.bool), "")
    for scene, name in enumerate(SCENE_NAMES):
        select = scenes == scene
        if select.any():
            out.update(metrics(select, f"/{name}"))
    if activity is not None:
        activity = torch.as_tensor(activity)
        for a, name in enumerate(ACTIVITY_NAMES):
            select = activity == a
            if select.any():
                out.update(metrics(select, f"/{name}"))
    return out


# --------------------------------------------------------------------------- records

@dataclass
class TestSequence:
    """One test sequence's annotations (T frames, H36M joint order)."""

    number: int
    annot2: np.ndarray  # (T, 17, 2) pixels
    annot3: np.ndarray  # (T, 17, 3) mm camera frame
    univ_annot3: np.ndarray  # (T, 17, 3) mm, universal skeleton scale
    valid: np.ndarray  # (T,) bool
    activity: np.ndarray  # (T,) int, 0-based (0..6)


def read_test_sequence(path: Path, number: int) -> TestSequence:
    """``TS<number>/annot_data.mat`` in H36M order (see the module docstring for the shapes)."""
    keys = ("annot2", "annot3", "univ_annot3", "valid_frame", "activity_annotation")
    raw = read_mat(path, TEST_ANNOTATION, keys, finite=keys)
    try:
        annot2 = joints_over_time(raw["annot2"], 2, f"{path}: annot2")
        annot3 = joints_over_time(raw["annot3"], 3, f"{path}: annot3")
        univ = joints_over_time(raw["univ_annot3"], 3, f"{path}: univ_annot3")
    except ValueError as error:
        raise DatasetLayoutError(str(error)) from None
    valid = np.asarray(raw["valid_frame"]).reshape(-1) > 0
    activity = np.asarray(raw["activity_annotation"]).reshape(-1).astype(np.int64) - 1
    frames = len(annot2)
    if not (len(annot3) == len(univ) == len(valid) == len(activity) == frames):
        raise DatasetLayoutError(
            f"{path}: frame counts differ (annot2 {frames}, annot3 {len(annot3)}, univ_annot3 {len(univ)}, "
            f"valid_frame {len(valid)}, activity_annotation {len(activity)}); expected one T for all"
        )
    return TestSequence(number, _to_h36m(annot2), _to_h36m(annot3), _to_h36m(univ), valid,
                        np.clip(activity, 0, len(ACTIVITY_NAMES) - 1))


@dataclass
class TrainSequence:
    """One training sequence's annotations for the chosen cameras (H36M joint order)."""

    subject: int
    sequence: int
    annot2: dict[int, np.ndarray]  # camera -> (T, 17, 2)
    annot3: dict[int, np.ndarray]  # camera -> (T, 17, 3) mm, that camera's frame
    intrinsics: dict[int, np.ndarray]  # camera -> (4,)
    rotations: dict[int, np.ndarray]  # camera -> (3, 3) batch-contract camera_rotation, where the calibration has one


def read_train_sequence(folder: Path, subject: int, sequence: int, cameras: Sequence[int]) -> TrainSequence:
    """``S<s>/Seq<q>/annot.mat`` and ``camera.calibration`` for ``cameras`` (see the module docstring)."""
    annot_path = folder / "annot.mat"
    cells = read_mat_cells(annot_path, ("annot2", "annot3"), TRAIN_ANNOTATION)
    cells2, cells3 = cells["annot2"], cells["annot3"]
    calibration, extrinsics = read_cameras(folder / "camera.calibration")
    relevant = list(RELEVANT_17_OF_28)
    annot2, annot3, intrinsics = {}, {}, {}
    for cam in cameras:
        if cam >= len(cells2) or cam >= len(cells3) or cam not in calibration:
            raise DatasetLayoutError(
                f"{annot_path} or camera.calibration has no camera {cam} (annot2 has {len(cells2)} cameras, "
                f"calibration {sorted(calibration)}); expected data.cameras among them"
            )
        a2 = np.asarray(cells2[cam], dtype=np.float64)
        a3 = np.asarray(cells3[cam], dtype=np.float64)
        if a2.ndim != 2 or a2.shape[1] != 56 or a3.ndim != 2 or a3.shape[1] != 84 or len(a2) != len(a3):
            raise DatasetLayoutError(
                f"{annot_path}: camera {cam} annot2/annot3 are {a2.shape}/{a3.shape}; expected T x 56 and T x 84"
            )
        for key, array in (("annot2", a2), ("annot3", a3)):
            require_finite(annot_path, f"{key}{{{cam + 1}}}", array, f"finite joint coordinates in {TRAIN_ANNOTATION}")
        annot2[cam] = _to_h36m(a2.reshape(-1, 28, 2)[:, relevant])
        annot3[cam] = _to_h36m(a3.reshape(-1, 28, 3)[:, relevant])
        intrinsics[cam] = calibration[cam]
    rotations = {cam: contract_rotation(extrinsics[cam], WORLD_UP) for cam in cameras if cam in extrinsics}
    return TrainSequence(subject, sequence, annot2, annot3, intrinsics, rotations)


# --------------------------------------------------------------------------- the DataModule

@dataclass
class MPIInf3DHPConfig(RecordDataConfig):
    name: str = "mpi_inf_3dhp"
    test_sequences: List[int] = field(default_factory=lambda: list(TEST_SEQUENCES))
    test_target: str = choice("univ_annot3", ("univ_annot3", "annot3"))
    test_intrinsics: str = choice("fit", ("fit", "reference"))
    test_stride: int = 1
    action_grouping: str = choice("scene", ("scene", "activity"))
    subjects: List[int] = field(default_factory=lambda: [1, 2, 3, 4, 5, 6, 7, 8])  # [] = no training set
    sequences: List[int] = field(default_factory=lambda: [1, 2])
    cameras: List[int] = field(default_factory=lambda: list(DEFAULT_CAMERAS))
    val_subjects: List[int] = field(default_factory=list)  # [] = hold out the end of every training sequence
    val_fraction: float = bounded(0.1, 0, 1)  # that share of every sequence; 0 (and no val_subjects): the test set
    train_stride: int = 10
    train_frame_dir: str = choice("auto", ("auto", *TRAIN_FRAME_DIRS))

    def __post_init__(self) -> None:
        for key in ("test_stride", "train_stride"):
            if getattr(self, key) < 1:
                raise ConfigError(f"bad value for data.{key}: {getattr(self, key)}; expected an integer >= 1")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"bad value for data.val_fraction: {self.val_fraction}; expected 0 <= x < 1")
        bad = sorted(set(self.test_sequences) - set(TEST_SEQUENCES))
        if bad:
            raise ConfigError(f"bad value for data.test_sequences: {bad}; choose among 1..6")


class MPIInf3DHPDataModule(RecordDataModule):
    """Train on S1-S8 (chosen cameras), test on TS1-TS6 (valid frames); see the module docstring."""

    eval_joints = EVAL_JOINTS  # scored by the metric suite, as the official evaluation

    Config = MPIInf3DHPConfig
    dataset_name = "MPI-INF-3DHP"
    person_box_padding = JOINT_BOX_TO_PERSON  # person_box pads the joints' box
    focal_per_frame_side = REFERENCE_TEST_INTRINSICS[1][0] / TEST_IMAGE_SIZE[1][0]  # the studio cameras, 2048 px
    layout_line = LAYOUT_LINE
    layout_tree = LAYOUT_TREE

    def __init__(self, cfg: dict):
        self._test_cache: dict[int, TestSequence] = {}
        self._frame_dir: str | None = None
        super().__init__(cfg)

    @property
    def action_names(self) -> tuple[str, ...]:
        """The test set's scenes or activities (``data.action_grouping``); training frames are action 0."""
        return SCENE_NAMES if self.cfg.action_grouping == "scene" else ACTIVITY_NAMES

    # -- layout ------------------------------------------------------------------------
    @property
    def test_root(self) -> Path:
        nested = self.root / TEST_DIR
        if nested.is_dir() or not (self.root / "TS1").is_dir():
            return nested
        return self.root  # data.root is the test-set folder itself

    def test_annotation(self, number: int) -> Path:
        path = self.test_root / f"TS{number}" / "annot_data.mat"
        if not path.is_file():
            raise self.layout_error(f"missing {path}")
        return path

    def test_frame(self, number: int, frame: int) -> str:
        """Image path (relative to data.root) of 0-based ``frame`` of TS<number>."""
        path = self.test_root / f"TS{number}" / "imageSequence" / f"img_{frame + 1:06d}.jpg"
        return str(path.relative_to(self.root))

    def train_subjects(self, split: str) -> list[int]:
        """Training-set subjects of the train split (``subjects`` less ``val_subjects``) or of val."""
        if split == "val":
            return list(self.cfg.val_subjects)
        return [s for s in self.cfg.subjects if s not in set(self.cfg.val_subjects)]

    def _all_train_subjects(self) -> list[int]:
        return list(dict.fromkeys([*self.cfg.subjects, *self.cfg.val_subjects]))

    def train_folder(self, subject: int, sequence: int) -> Path:
        return self.root / f"S{subject}" / f"Seq{sequence}"

    def frame_dir(self) -> str:
        """The folder name holding the extracted training frames (``data.train_frame_dir``)."""
        if self._frame_dir is None:
            if self.cfg.train_frame_dir != "auto":
                self._frame_dir = self.cfg.train_frame_dir
            else:
                subject, sequence, cam = self._all_train_subjects()[0], self.cfg.sequences[0], self.cfg.cameras[0]
                folder = self.train_folder(subject, sequence)
                found = [d for d in TRAIN_FRAME_DIRS if (folder / d / f"video_{cam}").is_dir()]
                if not found:
                    raise self.layout_error(
                        f"missing {folder / TRAIN_FRAME_DIRS[0] / f'video_{cam}'} (nor {TRAIN_FRAME_DIRS[1]}/video_{cam}): "
                        "extract the frames of imageSequence/video_<cam>.avi to frame_000001.jpg ..."
                    )
                self._frame_dir = found[0]
        return self._frame_dir

    def check_layout(self) -> None:
        for number in self.cfg.test_sequences:
            self.test_annotation(number)
        for subject in self._all_train_subjects():
            for sequence in self.cfg.sequences:
                for name in ("annot.mat", "camera.calibration"):
                    path = self.train_folder(subject, sequence) / name
                    if not path.is_file():
                        raise self.layout_error(f"missing {path} (training set; data.subjects=[] uses the test set only)")
        if self._all_train_subjects():
            if not self.cfg.sequences or not self.cfg.cameras:
                raise ConfigError("data.sequences and data.cameras must not be empty when training subjects are set")
            self.frame_dir()

    def check(self) -> str:
        self.check_layout()
        lines = [f"MPI-INF-3DHP at {self.root}", f"test set: {self.test_root}"]
        for number in self.cfg.test_sequences:
            seq = self.test_sequence(number)
            first = int(np.flatnonzero(seq.valid)[0]) if seq.valid.any() else 0
            read_image(self.require(self.test_frame(number, first)))
            fx, fy, cx, cy = self.test_intrinsics(seq)
            lines.append(
                f"  TS{number} ({SCENE_NAMES[SCENE_OF_SEQUENCE[number]]}): {len(seq.valid)} frames, "
                f"{int(seq.valid.sum())} valid; intrinsics ({self.cfg.test_intrinsics}) "
                f"fx {fx:.1f} fy {fy:.1f} cx {cx:.1f} cy {cy:.1f}"
            )
        for subject in self._all_train_subjects():
            for sequence in self.cfg.sequences:
                train = read_train_sequence(self.train_folder(subject, sequence), subject, sequence, self.cfg.cameras)
                cam = self.cfg.cameras[0]
                read_image(self.require(self.train_frame(subject, sequence, cam, 0)))
                lines.append(f"  S{subject}/Seq{sequence}: {len(train.annot2[cam])} frames x {len(self.cfg.cameras)} cameras")
        if not self._all_train_subjects():
            lines.append("  training set: not used (data.subjects=[])")
        lines.append(f"  {self.images_line('test')}")
        return "\n".join(lines)

    # -- records -----------------------------------------------------------------------
    def test_sequence(self, number: int) -> TestSequence:
        if number not in self._test_cache:
            self._test_cache[number] = read_test_sequence(self.test_annotation(number), number)
        return self._test_cache[number]

    def test_intrinsics(self, seq: TestSequence) -> np.ndarray:
        if self.cfg.test_intrinsics == "reference":
            return np.array(REFERENCE_TEST_INTRINSICS[seq.number], dtype=np.float64)
        valid = seq.valid if seq.valid.any() else np.ones_like(seq.valid)
        return fit_intrinsics(seq.annot3[valid], seq.annot2[valid])

    def test_records(self) -> list[PoseRecord]:
        records = []
        for number in self.cfg.test_sequences:
            seq = self.test_sequence(number)
            intrinsics = self.test_intrinsics(seq)
            frames = np.flatnonzero(seq.valid)[:: self.cfg.test_stride]
            for t in frames:
                joints_2d = seq.annot2[t]
                joints_3d = seq.annot3[t]
                if self.cfg.test_target == "univ_annot3":
                    joints_3d = seq.univ_annot3[t] - seq.univ_annot3[t, :1] + seq.annot3[t, :1]
                center, scale = person_box(joints_2d)
                action = SCENE_OF_SEQUENCE[number] if self.cfg.action_grouping == "scene" else int(seq.activity[t])
                records.append(PoseRecord(
                    image_path=self.test_frame(number, int(t)), center=center, scale=scale,
                    joints_2d=joints_2d.astype(np.float32), visible=np.ones(NUM_JOINTS, dtype=bool),
                    joints_3d=joints_3d.astype(np.float32), intrinsics=intrinsics, subject=number, action=action,
                ))
        return records

    def train_frame(self, subject: int, sequence: int, camera: int, frame: int) -> str:
        folder = self.train_folder(subject, sequence) / self.frame_dir() / f"video_{camera}"
        return str((folder / f"frame_{frame + 1:06d}.jpg").relative_to(self.root))

    def train_records(self, subjects: Sequence[int], part: str = "all") -> Sequence[PoseRecord]:
        """Records made on access (:class:`LazyRecords`): a full training set is ~10^5 frames.
        ``part``: ``all`` frames of each sequence, the ``head`` before the validation cut
        (``data.val_fraction``), or the ``tail`` from it on."""
        blocks = []  # (sequence annotations, camera, frame indices)
        for subject in subjects:
            for sequence in self.cfg.sequences:
                seq = read_train_sequence(self.train_folder(subject, sequence), subject, sequence, self.cfg.cameras)
                for cam in self.cfg.cameras:
                    count = len(seq.annot2[cam])
                    frames = np.arange(0, count, self.cfg.train_stride)
                    cut = int(np.floor(count * (1.0 - self.cfg.val_fraction)))
                    if part != "all":
                        frames = frames[frames < cut] if part == "head" else frames[frames >= cut]
                    blocks.append((seq, cam, frames))
        starts = np.cumsum([0] + [len(f) for _, _, f in blocks])

        def make(index: int) -> PoseRecord:
            block = int(np.searchsorted(starts, index, side="right") - 1)
            seq, cam, frames = blocks[block]
            t = int(frames[index - starts[block]])
            joints_2d = seq.annot2[cam][t]
            center, scale = person_box(joints_2d)
            return PoseRecord(
                image_path=self.train_frame(seq.subject, seq.sequence, cam, t), center=center, scale=scale,
                joints_2d=joints_2d.astype(np.float32), visible=np.ones(NUM_JOINTS, dtype=bool),
                joints_3d=seq.annot3[cam][t].astype(np.float32), intrinsics=seq.intrinsics[cam],
                rotation=seq.rotations.get(cam), subject=seq.subject, action=0,
            )

        return LazyRecords(int(starts[-1]), make, actions=np.zeros(int(starts[-1]), dtype=np.int64))

    def held_out_tails(self) -> bool:
        """Whether validation is the end of every training sequence (module docstring)."""
        return not self.cfg.val_subjects and self.cfg.val_fraction > 0 and bool(self.cfg.subjects)

    def load_records(self, split: str) -> Sequence[PoseRecord]:
        if split == "val":
            if self.cfg.val_subjects:
                return self.train_records(self.train_subjects("val"))
            if self.held_out_tails():
                return self.train_records(self.train_subjects("train"), part="tail")
        if split in ("test", "val"):
            return self.test_records()
        subjects = self.train_subjects("train")
        if not subjects:
            raise ConfigError("data.subjects (less data.val_subjects) is empty, so there is no training split")
        return self.train_records(subjects, part="head" if self.held_out_tails() else "all")
