"""Human3.6M from the user's own copy, in one of two published layouts (``data.layout``).

``images`` -- the OpenMMLab converter layout (mmpose ``tools/dataset_converters/preprocess_h36m.py``)::

    <root>/annotation_body3d/cameras.pkl                 {('S1', '54138969'): {R, T, c, f, k, p, w, h, ...}}
    <root>/annotation_body3d/fps10/h36m_train.npz        every 5th frame (S1, S5, S6, S7, S8)
    <root>/annotation_body3d/fps10/h36m_test.npz         (S9, S11)
    <root>/annotation_body3d/fps50/h36m_{train,test}.npz all frames (needed by Protocols #2 and #3)
    <root>/images/S1/S1_Directions_1.54138969/S1_Directions_1.54138969_000001.jpg

  Each npz holds ``imgname`` (N,), ``center`` (N, 2) px, ``scale`` (N,) = 1.2 x the keypoint box
  side / 200, ``part`` (N, 17, 3) px + visibility, ``S`` (N, 17, 4) camera-frame metres +
  visibility, joints already in our H36M-17 order. ``cameras.pkl``: ``R`` (3, 3) camera-to-world,
  ``T`` (3, 1) camera centre in world metres (``X_cam = R^T (X_world - T)``), ``f``, ``c`` (2, 1)
  px, distortion ``k`` (3, 1), ``p`` (2, 1). The 2D labels are the dataset's own
  ``D2_Positions``, which include lens distortion: the pinhole projection of the 3D labels
  differs from them by a few pixels (``datamodules.crop``).

``poses`` -- the VideoPose3D pose-only layout (``data/prepare_data_h36m.py``)::

    <root>/data_3d_h36m.npz                 positions_3d[subject][action]: (T, 32, 3) world metres
    <root>/data_2d_h36m_<source>.npz        positions_2d[subject][action][camera]: (T, 17 or 32, 2) px
    <root>/annotation_body3d/cameras.pkl    camera extrinsics (as above), or
    <root>/h36m_cameras_extrinsic_params.json   VideoPose3D's extrinsics: {"S1": [{"orientation":
                                            [w, x, y, z] camera-to-world, "translation": [mm]} x 4]}

  Dump the JSON from a VideoPose3D checkout with
  ``python -c "import json; from common.h36m_dataset import h36m_cameras_extrinsic_params as p;
  json.dump(p, open('h36m_cameras_extrinsic_params.json', 'w'))"``. The per-subject extrinsics
  are not embedded here (only the four cameras' published intrinsics are, in
  :data:`CAMERA_INTRINSICS`), so this layout requires one of the two camera files. There are no
  frames: ``image`` is black and the layout serves lifting methods (2D -> 3D), which read
  ``joints_2d``/``camera``; both files are read by :mod:`pose3d.h36m_mocap` (32-joint arrays
  reduced to 17 joints, the pickled dictionaries read as data only, as is cameras.pkl: :mod:`pose3d.safe_load`).
  ``data.source_2d`` picks the 2D file by name (``gt``: projected ground truth, with distortion;
  ``cpn_ft_h36m_dbb``, ``detectron_ft_h36m``... detections; a missing one names those the root
  has). VideoPose3D writes every frame (50 Hz); a copy at another rate (e.g. every 5th frame,
  10 Hz) is read as such: ``data.fps`` declares the rate, and by default it is read from the
  3D file's frames per subject against the documented 50 Hz counts (:data:`FRAMES_50HZ`; 50
  when they match no rate; ``python -m pose3d.data check`` says which). Row ``r`` of a file at
  ``fps`` is frame ``r * 50 / fps`` of the 50 Hz video, so every selection below is made in
  frames of the original video and a 10 Hz and a 50 Hz copy give the same frames (a selection
  the file cannot give, such as every 64th frame of a 10 Hz copy, is a one-line error).

Protocols (``data.protocol``; Tome et al. 2017, Sec. 5):

* #1: train S1, S5, S6, S7, S8; test S9, S11; all 4 cameras, all trials, every 5th frame
  (10 fps); MPJPE over 17 joints, per action.
* #2: train adds S9; test S11, every 64th frame, all cameras and trials; PA-MPJPE over the 14
  joints of :data:`pose3d.skeleton.SUBSET_14`.
* #3: subjects as #1; test only the frontal camera (``60457274``, "cam 3" of Bogo et al.,
  as in SPIN's and HMR's evaluation code) and trial 1, all frames; PA-MPJPE over 14 joints.

A frame is identified by its index in the original 50 fps video; ``data.train_every`` /
``data.test_every`` keep the frames whose index is a multiple (0 = the protocol's default:
train 5, test 5/64/1). The ``images`` layout reads ``fps10`` when that suffices (every
multiple of 5) and ``fps50`` otherwise. ``data.cameras`` and ``data.trial`` override the
protocol's test cameras and trial, ``data.test_subjects`` its test subjects (a subset such as
``[9]``, or others it does not train on). Trials: within a subject and action, sequence names sort by
their numeric suffix (no suffix first): "Directions" is trial 1, "Directions 1" trial 2;
"Sitting 1" trial 1, "Sitting 2" trial 2.

Validation: Human3.6M has no validation split, and the test subjects are never used to choose
anything. By default the last ``data.val_fraction`` (10 %) of every training sequence (cut at
the same frame in all cameras) is held out of training and used for validation -- same people,
unseen moments, so val is optimistic; ``data.val_subjects=[8]`` instead holds out whole
training subjects (new people, less training data).

What a protocol evaluates is in :attr:`Human36MDataModule.protocol_info` (``eval_joints``,
``metric``).

The module's ``eval_joints`` reach ``DataInfo.eval_joints`` through ``info``, and
:class:`lightning_modules.base.PoseModule` scores only those joints, so for Protocols #2/#3
``test/pa_mpjpe`` is the protocol's number.
"""
from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from datamodules.records import (
    DatasetLayoutError,
    LazyRecords,
    PoseRecord,
    contract_rotation,
    RecordDataConfig,
    RecordDataModule,
    evenly_spaced,
)
from pose3d.config import choice
from pose3d.h36m_mocap import PoseFileError, read_positions_2d, read_positions_3d
from pose3d.safe_load import UnsafeFileError, read_pickle
from pose3d.skeleton import NUM_JOINTS, SUBSET_14

ACTIONS: tuple[str, ...] = (
    "Directions", "Discussion", "Eating", "Greeting", "Phoning", "Photo", "Posing", "Purchases",
    "Sitting", "SittingDown", "Smoking", "Waiting", "WalkDog", "Walking", "WalkTogether",
)
ACTION_ALIASES = {"TakingPhoto": "Photo", "WalkingDog": "WalkDog"}

CAMERA_IDS: tuple[str, ...] = ("54138969", "55011271", "58860488", "60457274")
FRONTAL_CAMERA = "60457274"

# Published intrinsics of the four cameras (Human3.6M metadata, as listed in VideoPose3D's
# h36m_cameras_intrinsic_params): focal length and principal point in pixels, frame size.
CAMERA_INTRINSICS: dict[str, dict] = {
    "54138969": {"f": (1145.0494384765625, 1143.7811279296875), "c": (512.54150390625, 515.4514770507812), "w": 1000, "h": 1002},
    "55011271": {"f": (1149.6756591796875, 1147.5916748046875), "c": (508.8486328125, 508.0649108886719), "w": 1000, "h": 1000},
    "58860488": {"f": (1149.1407470703125, 1148.7989501953125), "c": (519.8158569335938, 501.40264892578125), "w": 1000, "h": 1000},
    "60457274": {"f": (1145.5113525390625, 1144.77392578125), "c": (514.9682006835938, 501.88201904296875), "w": 1000, "h": 1002},
}

# Frames per camera of the 50 Hz Human3.6M pose sequences (VideoPose3D's data_3d_h36m.npz holds
# them at this rate), from the published counts of all four cameras' frames: S1 248,376; S1+S5
# 644,692; S1+S5+S6 894,556; S1, S5-S8 1,559,752; S9+S11 543,344. Where only a sum is published
# the subjects share one entry. The poses layout reads its files' frame rate from these.
FRAMES_50HZ: dict[tuple[int, ...], int] = {(1,): 62_094, (5,): 99_079, (6,): 62_466, (7, 8): 166_299, (9, 11): 135_836}
FRAME_STEPS = (1, 2, 5, 10, 25, 50)  # 50 Hz frames per row of a file at 50, 25, 10, 5, 2, 1 Hz

BOX_PADDING = 1.2  # scale = 1.2 * keypoint box side / 200, as the OpenMMLab converter computes it

# the OpenMMLab converter writes S1, S5-S8 to h36m_train.npz and S9, S11 to h36m_test.npz
ANNOTATION_FILES: dict[str, frozenset[int]] = {"h36m_train": frozenset({1, 5, 6, 7, 8}), "h36m_test": frozenset({9, 11})}


@dataclass(frozen=True)
class Protocol:
    train_subjects: tuple[int, ...]
    test_subjects: tuple[int, ...]
    test_every: int
    test_cameras: tuple[str, ...]
    test_trial: int  # 0 = all trials
    eval_joints: tuple[int, ...]
    metric: str


PROTOCOLS: dict[int, Protocol] = {
    1: Protocol((1, 5, 6, 7, 8), (9, 11), 5, CAMERA_IDS, 0, tuple(range(NUM_JOINTS)), "mpjpe"),
    2: Protocol((1, 5, 6, 7, 8, 9), (11,), 64, CAMERA_IDS, 0, SUBSET_14, "pa_mpjpe"),
    3: Protocol((1, 5, 6, 7, 8), (9, 11), 1, (FRONTAL_CAMERA,), 1, SUBSET_14, "pa_mpjpe"),
}

IMAGES_LAYOUT_LINE = (
    "<root>/annotation_body3d/{cameras.pkl, fps10/h36m_train.npz, fps10/h36m_test.npz, fps50/...} and "
    "<root>/images/S1/S1_Directions_1.54138969/S1_Directions_1.54138969_000001.jpg "
    "(mmpose tools/dataset_converters/preprocess_h36m.py; fps50 is its --sample-rate 1)"
)
IMAGES_LAYOUT_TREE = """\
<root>/
  annotation_body3d/
    cameras.pkl                      {('S1', '54138969'): {R, T, c, f, k, p, w, h}, ...}
    fps10/h36m_train.npz             imgname, center, scale, part (N,17,3), S (N,17,4); S1 S5 S6 S7 S8
    fps10/h36m_test.npz              the same for S9 S11
    fps50/h36m_{train,test}.npz      all frames: needed by Protocols #2 (every 64th) and #3 (all)
  images/
    S1/S1_Directions_1.54138969/S1_Directions_1.54138969_000001.jpg
    ...
made by mmpose's tools/dataset_converters/preprocess_h36m.py (--sample-rate 5 -> fps10, 1 -> fps50)"""

POSES_LAYOUT_LINE = (
    "<root>/data_3d_h36m.npz, <root>/data_2d_h36m_<source>.npz (VideoPose3D data/prepare_data_h36m.py) and camera "
    "extrinsics in <root>/annotation_body3d/cameras.pkl or <root>/h36m_cameras_extrinsic_params.json"
)
POSES_LAYOUT_TREE = """\
<root>/
  data_3d_h36m.npz                   positions_3d[subject][action]: (T, 32, 3) world metres
  data_2d_h36m_<source>.npz          positions_2d[subject][action]: 4 x (T, 17 or 32, 2) px (source gt, cpn_ft_h36m_dbb, ...)
  h36m_cameras_extrinsic_params.json VideoPose3D's h36m_cameras_extrinsic_params as JSON
    or annotation_body3d/cameras.pkl (the OpenMMLab converter's camera file)
made by VideoPose3D's data/prepare_data_h36m.py; no images (for lifting methods)"""

_IMGNAME = re.compile(r"^S(\d+)_(.+)\.(\d+)_(\d+)\.\w+$")  # the file name of imgname
_SEQUENCE = re.compile(r"^([A-Za-z]+)(?:[ _](\d+))?$")


def parse_action(name: str) -> tuple[int, int]:
    """A sequence name ("Directions 1", "TakingPhoto_1", "WalkDog") -> (action id, numeric suffix; 0 if none)."""
    match = _SEQUENCE.match(name.strip())
    base = match.group(1) if match else name
    base = ACTION_ALIASES.get(base, base)
    if not match or base not in ACTIONS:
        raise DatasetLayoutError(f"unknown Human3.6M action {name!r}; expected one of {', '.join(ACTIONS)} with an optional ' N'")
    return ACTIONS.index(base), int(match.group(2) or 0)


def trial_numbers(names: Sequence[tuple[int, str]]) -> dict[tuple[int, str], int]:
    """(subject, sequence name) -> trial 1, 2, ...: within a subject and action, by numeric suffix (none first)."""
    groups: dict[tuple[int, int], list[tuple[int, str]]] = {}
    for subject, name in set(names):
        action, suffix = parse_action(name)
        groups.setdefault((subject, action), []).append((suffix, name))
    trials = {}
    for (subject, _), members in groups.items():
        for k, (_, name) in enumerate(sorted(members)):
            trials[(subject, name)] = k + 1
    return trials


def box_from_keypoints(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """center (..., 2) and scale (...) of 2D points (..., J, 2), as the OpenMMLab converter does."""
    low, high = points.min(-2), points.max(-2)
    return (low + high) / 2, BOX_PADDING * (high - low).max(-1) / 200.0


@dataclass
class Human36MConfig(RecordDataConfig):
    name: str = "human36m"
    layout: str = choice("images", ("images", "poses"))
    protocol: int = choice(1, (1, 2, 3))
    train_every: int = 0  # keep frames whose 50 fps index is a multiple; 0 = 5 (10 fps)
    test_every: int = 0  # 0 = the protocol's (#1: 5, #2: 64, #3: 1)
    cameras: list[str] = field(default_factory=list)  # test cameras; empty = the protocol's
    trial: int = -1  # test trial (1 or 2; 0 = all); -1 = the protocol's
    val_subjects: list[int] = field(default_factory=list)  # empty: hold out the end of every training sequence
    val_fraction: float = 0.1
    source_2d: str = "gt"  # poses layout: data_2d_h36m_<source_2d>.npz (gt, cpn_ft_h36m_dbb, detectron_ft_h36m, ...)
    fps: int = choice(0, (0, 1, 2, 5, 10, 25, 50))  # poses layout: the files' frame rate; 0 = read from their frame counts
    test_subjects: list[int] = field(default_factory=list)  # empty: the protocol's
    cameras_file: str = ""  # poses layout: extrinsics file; empty = look for the two known names
    crop_margin: float = 1.1  # 'scale' already pads the keypoint box by 1.2: crops span 1.32 x the body


@dataclass
class _Table:
    """Per-frame metadata of one layout, before selection (numpy columns of equal length)."""

    subject: np.ndarray
    action: np.ndarray
    trial: np.ndarray
    camera: np.ndarray  # index into CAMERA_IDS
    frame: np.ndarray  # 0-based index in the 50 fps video
    sequence: np.ndarray  # id of (subject, sequence name)
    source: np.ndarray  # which array block the frame comes from
    row: np.ndarray  # the row inside that block

    def __len__(self) -> int:
        return len(self.subject)

    @staticmethod
    def concat(tables: list["_Table"]) -> "_Table":
        return _Table(*[np.concatenate([getattr(t, f) for t in tables]) for f in _Table.__dataclass_fields__])


class Human36MDataModule(RecordDataModule):
    """Human3.6M under a protocol (module docstring): train / held-out validation / test."""

    Config = Human36MConfig
    dataset_name = "Human3.6M"
    person_box_padding = BOX_PADDING  # 'scale' pads the keypoint box
    focal_per_frame_side = float(np.mean([np.mean(c["f"]) / max(c["w"], c["h"]) for c in CAMERA_INTRINSICS.values()]))
    action_names = ACTIONS

    def __init__(self, cfg: dict):
        self.cfg: Human36MConfig
        layout = cfg.get("layout", Human36MConfig.layout)
        self.layout_line = IMAGES_LAYOUT_LINE if layout == "images" else POSES_LAYOUT_LINE
        self.layout_tree = IMAGES_LAYOUT_TREE if layout == "images" else POSES_LAYOUT_TREE
        super().__init__(cfg)
        if self.cfg.protocol not in PROTOCOLS:
            raise DatasetLayoutError(f"bad value for data.protocol: {self.cfg.protocol}; choose one of 1, 2, 3")
        unknown = [c for c in self.cfg.cameras if str(c) not in CAMERA_IDS]
        if unknown:
            raise DatasetLayoutError(f"bad value for data.cameras: {unknown}; choose from {', '.join(CAMERA_IDS)}")
        outside = [s for s in self.cfg.val_subjects if s not in self.protocol.train_subjects]
        if outside:
            raise DatasetLayoutError(f"bad value for data.val_subjects: {outside} are not training subjects of Protocol "
                                     f"#{self.cfg.protocol}; choose from {list(self.protocol.train_subjects)} "
                                     "(validation never uses test subjects)")
        leaked = [s for s in self.cfg.test_subjects if s in self.protocol.train_subjects]
        if leaked:
            raise DatasetLayoutError(f"bad value for data.test_subjects: {leaked} are training subjects of Protocol "
                                     f"#{self.cfg.protocol}; expected subjects it does not train on, e.g. "
                                     f"{list(self.protocol.test_subjects)} (the protocol's)")
        if self.cfg.fps and self.cfg.layout != "poses":
            raise DatasetLayoutError(f"bad value for data.fps: {self.cfg.fps}; it declares the frame rate of the poses "
                                     "layout's files (the images layout names its frames)")
        if not 0.0 <= self.cfg.val_fraction < 1.0:
            raise DatasetLayoutError(f"bad value for data.val_fraction: {self.cfg.val_fraction}; expected 0 <= x < 1")

    # -- protocol ------------------------------------------------------------------------
    @property
    def protocol(self) -> Protocol:
        return PROTOCOLS[self.cfg.protocol]

    @property
    def train_every(self) -> int:
        return self.cfg.train_every or 5

    @property
    def test_every(self) -> int:
        return self.cfg.test_every or self.protocol.test_every

    @property
    def test_cameras(self) -> tuple[str, ...]:
        return tuple(str(c) for c in self.cfg.cameras) or self.protocol.test_cameras

    @property
    def test_trial(self) -> int:
        return self.protocol.test_trial if self.cfg.trial < 0 else self.cfg.trial

    @property
    def test_subjects(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.cfg.test_subjects) or self.protocol.test_subjects

    @property
    def train_subjects(self) -> tuple[int, ...]:
        return tuple(s for s in self.protocol.train_subjects if s not in self.cfg.val_subjects)

    @property
    def eval_joints(self) -> tuple[int, ...]:
        return self.protocol.eval_joints

    @property
    def protocol_info(self) -> dict:
        """What the protocol evaluates: ``eval_joints`` (H36M-17 indices) and the headline ``metric``."""
        p = self.protocol
        return {"protocol": self.cfg.protocol, "eval_joints": p.eval_joints, "metric": p.metric,
                "test_subjects": self.test_subjects, "test_cameras": self.test_cameras, "test_every": self.test_every,
                "test_trial": self.test_trial}

    def describe_protocol(self) -> str:
        p = self.protocol
        cams = "all 4 cameras" if len(self.test_cameras) == 4 else f"camera {', '.join(self.test_cameras)}"
        trial = "all trials" if self.test_trial == 0 else f"trial {self.test_trial}"
        every = "all frames" if self.test_every == 1 else f"every {_ordinal(self.test_every)} frame"
        joints = f"{len(p.eval_joints)} joints"
        return f"Protocol #{self.cfg.protocol}: {cams}, {trial}, {every}, {p.metric} over {joints}"

    @property
    def test_subject_names(self) -> tuple[str, ...]:
        return tuple(f"S{s}" for s in self.test_subjects)

    @property
    def test_subjects_label(self) -> str:
        subjects = ", ".join(f"S{s}" for s in self.test_subjects)
        label = f"{subjects} (Human3.6M {self.describe_protocol()}"
        if "all-test" in self._records:
            used, total = len(self.records("test")), len(self.all_records("test"))
            label += f"; {used:,} of {total:,} frames" if used < total else f"; {total:,} frames"
        return label + ")"

    # -- layout checks -------------------------------------------------------------------
    def _annotation_path(self, fps: int, stem: str) -> Path:
        return self.root / "annotation_body3d" / f"fps{fps}" / f"{stem}.npz"

    def _fps_for(self, every: int, stems: Sequence[str]) -> int:
        """fps10 when ``every`` is a multiple of 5 and fps10 holds the files, else fps50 (or a layout error)."""
        missing_10 = [s for s in stems if not self._annotation_path(10, s).is_file()]
        if every % 5 == 0 and not missing_10:
            return 10
        missing_50 = [s for s in stems if not self._annotation_path(50, s).is_file()]
        if not missing_50:
            return 50
        if every % 5 == 0:
            raise self.layout_error(f"missing {self._annotation_path(10, missing_10[0])}")
        raise self.layout_error(f"missing {self._annotation_path(50, missing_50[0])} (every {_ordinal(every)} frame "
                                "needs all frames; fps10 holds only every 5th)")

    def _stems_for(self, subjects: Sequence[int]) -> list[str]:
        return [stem for stem, members in ANNOTATION_FILES.items() if members & set(subjects)]

    def _split_plan(self, split: str) -> tuple[tuple[int, ...], int]:
        """(subjects, every) whose frames a split draws from (val: from the training subjects)."""
        if split == "test":
            return self.test_subjects, self.test_every
        if split == "val" and self.cfg.val_subjects:
            return tuple(self.cfg.val_subjects), self.train_every
        return self.train_subjects, self.train_every

    def check_layout(self) -> None:
        if self.cfg.layout == "images":
            self.require("annotation_body3d/cameras.pkl")
            for split in ("train", "test"):
                subjects, every = self._split_plan(split)
                self._fps_for(every, self._stems_for(subjects))
            self.require("images")
        else:
            self.require("data_3d_h36m.npz")
            self._source_2d_path()
            self._extrinsics_path()

    # -- loading: images layout ----------------------------------------------------------
    @cached_property
    def cameras(self) -> dict[tuple[int, str], dict[str, np.ndarray]]:
        """(subject, camera id) -> {"intrinsics": (4,), "R_w2c": (3, 3), "centre_mm": (3,)}."""
        if self.cfg.layout == "images":
            return _read_cameras_pkl(self.require("annotation_body3d/cameras.pkl"))
        path = self._extrinsics_path()
        if path.suffix == ".pkl":
            return _read_cameras_pkl(path)
        return _read_extrinsics_json(path)

    def _annotation(self, fps: int, stem: str) -> dict[str, np.ndarray]:
        key = (fps, stem)
        cache = self.__dict__.setdefault("_annotations", {})
        if key not in cache:
            path = self._annotation_path(fps, stem)
            try:
                with np.load(path) as data:
                    missing = [k for k in ("imgname", "center", "scale", "part", "S") if k not in data.files]
                    if missing:
                        raise self.layout_error(f"{path} lacks {missing}; expected imgname, center, scale, part, S")
                    cache[key] = {k: data[k] for k in ("imgname", "center", "scale", "part", "S")}
            except (OSError, ValueError) as error:
                raise self.layout_error(f"cannot read {path}: {str(error).splitlines()[0]}") from None
            if cache[key]["part"].shape[1:] != (NUM_JOINTS, 3) or cache[key]["S"].shape[1:] != (NUM_JOINTS, 4):
                raise self.layout_error(f"{path}: part/S have shapes {cache[key]['part'].shape}, {cache[key]['S'].shape}; "
                                        "expected (N, 17, 3) and (N, 17, 4)")
        return cache[key]

    def _image_table(self, fps: int, stem: str, block: int) -> _Table:
        cache = self.__dict__.setdefault("_image_tables", {})
        if (fps, stem) not in cache:
            names = self._annotation(fps, stem)["imgname"]
            n = len(names)
            subject, camera, frame = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64)
            seq_names = []
            for i, name in enumerate(names):
                match = _IMGNAME.match(str(name).replace("\\", "/").rsplit("/", 1)[-1])
                if match is None:
                    raise self.layout_error(f"{self._annotation_path(fps, stem)}: imgname {str(name)!r} is not "
                                            "S<n>/S<n>_<Action>.<camera>/S<n>_<Action>.<camera>_<frame>.jpg")
                camera_id = match.group(3)
                if camera_id not in CAMERA_IDS:
                    raise self.layout_error(f"{name}: unknown camera {camera_id}; expected one of {', '.join(CAMERA_IDS)}")
                subject[i], camera[i], frame[i] = int(match.group(1)), CAMERA_IDS.index(camera_id), int(match.group(4)) - 1
                seq_names.append(match.group(2))
            cache[(fps, stem)] = _sequence_table(subject, seq_names, camera, frame, 0)
        table = cache[(fps, stem)]
        return dataclasses.replace(table, source=np.full(len(table), block, dtype=np.int64),
                                   sequence=table.sequence + block * 1_000_000)

    # -- loading: poses layout -----------------------------------------------------------
    def _source_2d_path(self) -> Path:
        """``data_2d_h36m_<data.source_2d>.npz``, or an error naming the sources this root has."""
        path = self.root / f"data_2d_h36m_{self.cfg.source_2d}.npz"
        if not path.is_file():
            found = sorted(p.name[len("data_2d_h36m_"):-len(".npz")] for p in self.root.glob("data_2d_h36m_*.npz"))
            raise self.layout_error(f"missing {path} (data.source_2d={self.cfg.source_2d}); this root has "
                                    f"{'data.source_2d=' + ', '.join(found) if found else 'no data_2d_h36m_<source>.npz'}")
        return path

    def _extrinsics_path(self) -> Path:
        if self.cfg.cameras_file:
            path = Path(self.cfg.cameras_file).expanduser()
            path = path if path.is_absolute() else self.root / path
            if not path.is_file():
                raise self.layout_error(f"data.cameras_file={path} does not exist")
            return path
        for relative in ("h36m_cameras_extrinsic_params.json", "annotation_body3d/cameras.pkl", "cameras.pkl"):
            if (self.root / relative).is_file():
                return self.root / relative
        raise self.layout_error(
            f"missing camera extrinsics: neither {self.root / 'h36m_cameras_extrinsic_params.json'} nor "
            f"{self.root / 'annotation_body3d/cameras.pkl'} exists (the pose layout stores world coordinates)")

    @cached_property
    def _poses(self) -> tuple[dict, dict]:
        """(positions_3d, positions_2d) of the VideoPose3D files, 17 joints (:mod:`pose3d.h36m_mocap`)."""
        try:
            positions_3d = read_positions_3d(self.require("data_3d_h36m.npz"))
            positions_2d = read_positions_2d(self._source_2d_path())
        except PoseFileError as error:
            raise self.layout_error(str(error)) from None
        return positions_3d, positions_2d

    def _pose_sequences(self) -> list[tuple[int, str, np.ndarray, list[np.ndarray]]]:
        """(subject, action name, 3D (T, 17, 3) world mm, [2D (T, 17, 2) px per camera]) per sequence."""
        cache = self.__dict__.get("_pose_sequence_cache")
        if cache is not None:
            return cache
        positions_3d, positions_2d = self._poses
        sequences = []
        for subject_key in sorted(positions_3d, key=lambda s: int(str(s).lstrip("S"))):
            subject = int(str(subject_key).lstrip("S"))
            for action, world in sorted(positions_3d[subject_key].items()):
                views = positions_2d.get(subject_key, {}).get(action)
                if views is None:
                    continue  # e.g. a sequence a 2D detector skipped
                world = np.asarray(world, dtype=np.float64)
                if len(views) != len(CAMERA_IDS):
                    raise self.layout_error(f"positions_2d[{subject_key}][{action}] has {len(views)} cameras; expected 4")
                views = [np.asarray(v, dtype=np.float32) for v in views]
                length = min([len(world)] + [len(v) for v in views])  # 2D files may hold a few extra frames
                # float32 (sub-micrometre at these magnitudes) halves the memory of the full files
                sequences.append((subject, str(action), (world[:length] * 1000.0).astype(np.float32),
                                  [v[:length] for v in views]))
        self.__dict__["_pose_sequence_cache"] = sequences
        return sequences

    @cached_property
    def pose_fps(self) -> tuple[int, str]:
        """(frame rate of the poses layout's files, how it was found): ``data.fps`` when declared, else
        read from the 3D file's frames per subject against :data:`FRAMES_50HZ` (50 when they match no rate)."""
        if self.cfg.fps:
            return self.cfg.fps, "declared by data.fps"
        frames: dict[int, int] = {}
        for subject, _, world, _ in self._pose_sequences():
            frames[subject] = frames.get(subject, 0) + len(world)
        ratios = [documented / sum(frames[s] for s in group)
                  for group, documented in FRAMES_50HZ.items() if all(s in frames for s in group)]
        if not ratios:
            return 50, "assumed (no subject of the documented frame counts; declare data.fps if not 50)"
        ratio = float(np.median(ratios))
        step = min(FRAME_STEPS, key=lambda k: abs(ratio / k - 1))
        if abs(ratio / step - 1) > 0.1:
            return 50, (f"assumed (the frames per subject are {1 / ratio:.2f} x the documented 50 Hz counts, no "
                        "frame rate's; declare data.fps if not 50)")
        return 50 // step, f"read from the frame counts ({1 / ratio:.2f} x the documented 50 Hz counts)"

    @property
    def frame_step(self) -> int:
        """50 Hz frames per row of the poses layout's files (5 for a 10 Hz copy)."""
        return 50 // self.pose_fps[0]

    def _pose_table(self) -> _Table:
        cache = self.__dict__.get("_pose_table_cache")
        if cache is not None:
            return cache
        sequences = self._pose_sequences()
        if not sequences:
            raise self.layout_error(f"no sequence of {self.root / 'data_3d_h36m.npz'} has 2D poses in "
                                    f"data_2d_h36m_{self.cfg.source_2d}.npz")
        trials = trial_numbers([(subject, action) for subject, action, _, _ in sequences])
        step = self.frame_step
        parts = []
        for block, (subject, action, world, _) in enumerate(sequences):
            length, cams = len(world), len(CAMERA_IDS)
            n = length * cams
            parts.append(_Table(
                subject=np.full(n, subject, dtype=np.int64),
                action=np.full(n, parse_action(action)[0], dtype=np.int64),
                trial=np.full(n, trials[(subject, action)], dtype=np.int64),
                camera=np.repeat(np.arange(cams, dtype=np.int64), length),
                frame=np.tile(np.arange(length, dtype=np.int64) * step, cams),
                sequence=np.full(n, block, dtype=np.int64),
                source=np.full(n, block, dtype=np.int64),
                row=np.tile(np.arange(length, dtype=np.int64), cams),
            ))
        table = _Table.concat(parts)
        self.__dict__["_pose_table_cache"] = table
        return table

    # -- selection -----------------------------------------------------------------------
    def _selected(self, split: str) -> tuple[_Table, np.ndarray, int, list[str]]:
        """The table the split draws from, the selected rows, the fps and annotation files it was read from."""
        subjects, every = self._split_plan(split)
        if self.cfg.layout == "images":
            stems = self._stems_for(subjects)
            fps = self._fps_for(every, stems)
            table = _Table.concat([self._image_table(fps, stem, block) for block, stem in enumerate(stems)])
        else:
            fps, stems = self.pose_fps[0], []
            if every % self.frame_step:
                raise self.layout_error(
                    f"the {split} split keeps every {_ordinal(every)} frame of the 50 Hz video, but the pose files hold "
                    f"{fps} Hz (every {_ordinal(self.frame_step)} frame; {self.pose_fps[1]}); expected a 50 Hz copy or "
                    f"data.{'test' if split == 'test' else 'train'}_every a multiple of {self.frame_step}")
            table = self._pose_table()
        keep = np.isin(table.subject, subjects) & (table.frame % every == 0)
        if split == "test":
            keep &= np.isin(table.camera, [CAMERA_IDS.index(c) for c in self.test_cameras])
            if self.test_trial:
                keep &= table.trial == self.test_trial
        elif not self.cfg.val_subjects:
            held_out = _held_out(table, self.cfg.val_fraction, 50 // fps)
            keep &= held_out if split == "val" else ~held_out
        return table, np.flatnonzero(keep), fps, stems

    def load_records(self, split: str) -> Sequence[PoseRecord]:
        table, rows, fps, stems = self._selected(split)
        pairs = np.unique(np.stack([table.subject[rows], table.camera[rows]], -1), axis=0) if len(rows) else []
        for subject, camera in pairs:  # fail now, not in the middle of an epoch
            self._camera(int(subject), CAMERA_IDS[int(camera)])
        if self.cfg.layout == "images":
            blocks = [self._annotation(fps, stem) for stem in stems]

            def make(i: int) -> PoseRecord:
                r = rows[i]
                data, row = blocks[table.source[r]], table.row[r]
                subject, camera_id = int(table.subject[r]), CAMERA_IDS[table.camera[r]]
                camera = self._camera(subject, camera_id)
                return PoseRecord(
                    image_path=str(Path("images") / str(data["imgname"][row])),
                    center=np.asarray(data["center"][row], dtype=np.float64),
                    scale=float(data["scale"][row]),
                    joints_2d=np.asarray(data["part"][row, :, :2], dtype=np.float64),
                    visible=np.asarray(data["part"][row, :, 2]) > 0,
                    joints_3d=np.asarray(data["S"][row, :, :3], dtype=np.float64) * 1000.0,
                    intrinsics=camera["intrinsics"],
                    rotation=contract_rotation(camera["R_w2c"], "z"),
                    subject=subject,
                    action=int(table.action[r]),
                )
        else:
            sequences = self._pose_sequences()

            def make(i: int) -> PoseRecord:
                r = rows[i]
                subject, _, world, views = sequences[table.source[r]]
                camera_id = CAMERA_IDS[table.camera[r]]
                row = table.row[r]
                camera = self._camera(subject, camera_id)
                joints_3d = (world[row].astype(np.float64) - camera["centre_mm"]) @ camera["R_w2c"].T
                joints_2d = views[table.camera[r]][row].astype(np.float64)
                center, scale = box_from_keypoints(joints_2d)
                return PoseRecord(
                    image_path="",
                    center=center,
                    scale=float(scale),
                    joints_2d=joints_2d,
                    visible=np.ones(NUM_JOINTS, dtype=bool),
                    joints_3d=joints_3d,
                    intrinsics=camera["intrinsics"],
                    rotation=contract_rotation(camera["R_w2c"], "z"),
                    subject=subject,
                    action=int(table.action[r]),
                )

        return LazyRecords(len(rows), make, actions=table.action[rows])

    def _camera(self, subject: int, camera_id: str) -> dict[str, np.ndarray]:
        try:
            camera = dict(self.cameras[(subject, camera_id)])
        except KeyError:
            raise self.layout_error(f"the camera file has no entry for subject S{subject}, camera {camera_id}") from None
        if "intrinsics" not in camera:  # VideoPose3D extrinsics: the published intrinsics
            i = CAMERA_INTRINSICS[camera_id]
            camera["intrinsics"] = np.array([*i["f"], *i["c"]], dtype=np.float64)
        return camera

    # -- report --------------------------------------------------------------------------
    def check(self) -> str:
        """Validate the layout and describe it (``python -m pose3d.data check human36m PATH``)."""
        self.check_layout()
        lines = [f"Human3.6M, {self.cfg.layout} layout, at {self.root}"]
        if self.cfg.layout == "images":
            for fps in (10, 50):
                for stem in ANNOTATION_FILES:
                    path = self._annotation_path(fps, stem)
                    if not path.is_file():
                        lines.append(f"  {path.relative_to(self.root)}: absent")
                        continue
                    table = self._image_table(fps, stem, 0)
                    subjects = " ".join(f"S{s}" for s in np.unique(table.subject))
                    cams = len(np.unique(table.camera))
                    lines.append(f"  {path.relative_to(self.root)}: {len(table):,} frames; subjects {subjects}; "
                                 f"{cams} cameras; {len(np.unique(table.sequence))} sequences")
        else:
            sequences = self._pose_sequences()
            subjects = sorted({s for s, *_ in sequences})
            frames = sum(len(w) for _, _, w, _ in sequences)
            lines.append(f"  data_3d_h36m.npz + data_2d_h36m_{self.cfg.source_2d}.npz: {len(sequences)} sequences with 2D, "
                         f"{frames:,} frames x 4 cameras; subjects {' '.join(f'S{s}' for s in subjects)}")
            lines.append(f"  frame rate: {self.pose_fps[0]} Hz, {self.pose_fps[1]}")
            lines.append(f"  camera extrinsics: {self._extrinsics_path().relative_to(self.root)}")
        cameras = sorted({c for _, c in self.cameras})
        lines.append(f"  cameras: {', '.join(cameras)} for subjects "
                     f"{' '.join(f'S{s}' for s in sorted({s for s, _ in self.cameras}))}")
        lines.append(f"  {self.describe_protocol()}")
        for split in ("train", "val", "test"):
            records = self.all_records(split)
            subjects, every = self._split_plan(split)
            lines.append(f"  {split}: {len(records):,} frames (subjects {' '.join(f'S{s}' for s in subjects)}, "
                         f"every {_ordinal(every)} frame){self._val_note() if split == 'val' else ''}")
            if self.cfg.layout == "images" and len(records):
                sample = [records[int(i)] for i in evenly_spaced(len(records), 20)]
                missing = [r.image_path for r in sample if not (self.root / r.image_path).is_file()]
                if missing:
                    raise self.layout_error(f"missing image {self.root / missing[0]} "
                                            f"({len(missing)} of {len(sample)} sampled {split} frames absent)")
                lines.append(f"    images: {len(sample)} of {len(sample)} sampled frames present")
        if self.cfg.layout == "poses":
            lines.append("  images: none in this layout (black images; for lifting methods)")
        return "\n".join(lines)

    def _val_note(self) -> str:
        if self.cfg.val_subjects:
            return " -- held-out training subjects"
        return f" -- the last {self.cfg.val_fraction:.0%} of every training sequence, not in train"


def _ordinal(n: int) -> str:
    if n == 1:
        return "1st"
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _sequence_table(subject, seq_names, camera, frame, block) -> _Table:
    """A _Table from per-frame subject, sequence names, camera index and frame (one block)."""
    subject = np.asarray(subject, dtype=np.int64)
    keys = list(zip(subject.tolist(), seq_names))
    unique = {key: k for k, key in enumerate(dict.fromkeys(keys))}
    trials = trial_numbers(list(unique))
    actions = {key: parse_action(key[1])[0] for key in unique}
    n = len(subject)
    return _Table(
        subject=subject,
        action=np.array([actions[k] for k in keys], dtype=np.int64),
        trial=np.array([trials[k] for k in keys], dtype=np.int64),
        camera=np.asarray(camera, dtype=np.int64),
        frame=np.asarray(frame, dtype=np.int64),
        sequence=np.array([unique[k] for k in keys], dtype=np.int64) + block * 1_000_000,
        source=np.full(n, block, dtype=np.int64),
        row=np.arange(n, dtype=np.int64),
    )


def _held_out(table: _Table, fraction: float, step: int = 1) -> np.ndarray:
    """True for the last ``fraction`` of every sequence's frames (the same cut in all cameras).
    ``step``: 50 Hz frames per row, so that the cut is made in 50 Hz frames at any frame rate."""
    if fraction <= 0 or len(table) == 0:
        return np.zeros(len(table), dtype=bool)
    ids, inverse = np.unique(table.sequence, return_inverse=True)
    last = np.zeros(len(ids), dtype=np.int64)
    np.maximum.at(last, inverse, table.frame)
    cut = np.floor((last + step) * (1.0 - fraction)).astype(np.int64)
    return table.frame >= cut[inverse]


def _read_cameras_pkl(path: Path) -> dict[tuple[int, str], dict[str, np.ndarray]]:
    """The OpenMMLab converter's cameras.pkl, read as data (:func:`pose3d.safe_load.read_pickle`)."""
    try:
        raw = read_pickle(path)
    except UnsafeFileError:
        raise
    except Exception as error:  # noqa: BLE001 - any other unpickling failure is a layout problem
        raise DatasetLayoutError(f"cannot read {path}: {error}; expected the cameras.pkl of preprocess_h36m.py") from None
    cameras = {}
    for key, value in raw.items():
        try:
            subject, camera_id = int(str(key[0]).lstrip("S")), str(key[1])
            R = np.asarray(value["R"], dtype=np.float64).reshape(3, 3)  # camera-to-world
            T = np.asarray(value["T"], dtype=np.float64).reshape(3)  # camera centre, world metres
            f = np.asarray(value["f"], dtype=np.float64).reshape(2)
            c = np.asarray(value["c"], dtype=np.float64).reshape(2)
        except (KeyError, TypeError, ValueError, IndexError):
            raise DatasetLayoutError(f"{path}: entry {key!r} is not {{R (3,3), T (3,1), f (2,1), c (2,1), ...}} keyed by "
                                     "('S1', '54138969')") from None
        cameras[(subject, camera_id)] = {"intrinsics": np.concatenate([f, c]), "R_w2c": R.T, "centre_mm": T * 1000.0}
    return cameras


def _read_extrinsics_json(path: Path) -> dict[tuple[int, str], dict[str, np.ndarray]]:
    """VideoPose3D's h36m_cameras_extrinsic_params as JSON: orientation (w, x, y, z) camera-to-world, translation mm."""
    try:
        raw = json.loads(path.read_text())
        cameras = {}
        for subject_key, entries in raw.items():
            subject = int(str(subject_key).lstrip("S"))
            for camera_id, entry in zip(CAMERA_IDS, entries):
                if not entry:
                    continue  # S2-S4 have no public extrinsics
                q = np.asarray(entry["orientation"], dtype=np.float64)
                cameras[(subject, camera_id)] = {
                    "R_w2c": _quaternion_matrix(q).T,
                    "centre_mm": np.asarray(entry["translation"], dtype=np.float64).reshape(3),
                }
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise DatasetLayoutError(f"cannot read {path}: {error}; expected {{\"S1\": [{{\"orientation\": [w, x, y, z], "
                                 "\"translation\": [x, y, z] mm}} x 4], ...}}") from None
    return cameras


def _quaternion_matrix(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])
