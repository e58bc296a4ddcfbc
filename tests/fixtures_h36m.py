"""Tiny copies of the two Human3.6M layouts (``datamodules.human36m``), written by the tests.

The files use the published field names, shapes and units; the content is synthetic but
consistent: 3D poses (sampled bodies, :mod:`pose3d.pose_sampler`) in a z-up world frame (as
Human3.6M's), level-ish cameras around them (no lens distortion), 2D labels = the pinhole projection of the 3D, frames that
draw a dot at every joint (so image content can be checked against the labels).
"""
from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from datamodules.human36m import CAMERA_IDS, CAMERA_INTRINSICS, box_from_keypoints
from pose3d.body import MEAN_BONE_LENGTHS
from pose3d.pose_sampler import sample_pose
from pose3d.skeleton import H36M_32_TO_17

SUBJECTS = (1, 5, 6, 7, 8, 9, 11)
# (name as in the 3D file / image folder, spaces kept here) two trials of one action, one of another
SEQUENCES = ("Directions", "Directions 1", "Walking 1")
FRAME_SIZE = 96  # pixels of the tiny frames of the image layout
FOCAL = 120.0
# the sampler's y-down frame -> Human3.6M's z-up world: X_world = Y_DOWN_TO_Z_UP @ X_sampler
Y_DOWN_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
DISTANCE_MM = 4500.0


@dataclass
class Fixture:
    root: Path
    num_frames: int
    subjects: tuple[int, ...]
    sequences: tuple[str, ...]
    # (subject, camera id) -> (R_c2w (3,3), centre mm (3,), intrinsics (4,))
    cameras: dict = field(default_factory=dict)


def _rotation(yaw: float, pitch: float) -> np.ndarray:
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    return rx @ ry  # world -> camera


def _quaternion(R: np.ndarray) -> np.ndarray:
    """(w, x, y, z) of a rotation matrix (w > 0 branch; fine for the fixture's moderate rotations)."""
    w = np.sqrt(max(0.0, 1.0 + R[0, 0] + R[1, 1] + R[2, 2])) / 2
    return np.array([w, (R[2, 1] - R[1, 2]) / (4 * w), (R[0, 2] - R[2, 0]) / (4 * w), (R[1, 0] - R[0, 1]) / (4 * w)])


def make_cameras(subjects, intrinsics_of) -> dict:
    cams = {}
    for s in subjects:
        for k, cid in enumerate(CAMERA_IDS):
            R_w2c = _rotation(np.deg2rad(90.0 * k + 10.0 + s), np.deg2rad(8.0)) @ Y_DOWN_TO_Z_UP.T
            centre = -R_w2c.T @ np.array([0.0, 0.0, DISTANCE_MM + 30.0 * k])  # the origin sits ahead of the camera
            cams[(s, cid)] = (R_w2c.T, centre, intrinsics_of(cid))
    return cams


def world_poses(rng: np.random.Generator, num_frames: int) -> np.ndarray:
    """(T, 17, 3) mm: sampled poses (about upright, z up) swaying near the world origin."""
    poses = np.stack([sample_pose(rng, MEAN_BONE_LENGTHS, int(rng.integers(4))) for _ in range(num_frames)])
    drift = np.cumsum(rng.normal(0, 5.0, size=(num_frames, 1, 3)), axis=0)
    return (poses + drift) @ Y_DOWN_TO_Z_UP.T


def project(points_cam: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    fx, fy, cx, cy = intrinsics
    return np.stack([fx * points_cam[..., 0] / points_cam[..., 2] + cx, fy * points_cam[..., 1] / points_cam[..., 2] + cy], -1)


def _draw(points_2d: np.ndarray) -> np.ndarray:
    """A grey frame with a white dot at every joint."""
    image = np.full((FRAME_SIZE, FRAME_SIZE, 3), 40, dtype=np.uint8)
    for u, v in np.round(points_2d).astype(int):
        if 0 <= u < FRAME_SIZE and 0 <= v < FRAME_SIZE:
            image[max(0, v - 1): v + 2, max(0, u - 1): u + 2] = 255
    return image


def write_images_layout(root: Path, num_frames: int = 70, subjects=SUBJECTS, sequences=SEQUENCES,
                        image_fps: tuple[int, ...] = (10,), seed: int = 0) -> Fixture:
    """The OpenMMLab converter layout: fps10 and fps50 annotation files, cameras.pkl, and JPEG frames
    for the annotation folders in ``image_fps`` (writing every fps50 frame would be slow)."""
    import cv2

    rng = np.random.default_rng(seed)
    intrinsics = lambda cid: np.array([FOCAL, FOCAL * 1.01, FRAME_SIZE / 2 + 2.0, FRAME_SIZE / 2 - 1.5])  # noqa: E731
    fixture = Fixture(root, num_frames, tuple(subjects), tuple(sequences), make_cameras(subjects, intrinsics))
    ann = root / "annotation_body3d"
    ann.mkdir(parents=True, exist_ok=True)
    cameras_pkl = {}
    for (s, cid), (R_c2w, centre, K) in fixture.cameras.items():
        cameras_pkl[(f"S{s}", cid)] = {
            "R": R_c2w, "T": (centre / 1000.0).reshape(3, 1), "c": K[2:].reshape(2, 1), "f": K[:2].reshape(2, 1),
            "k": np.zeros((3, 1)), "p": np.zeros((2, 1)), "w": FRAME_SIZE, "h": FRAME_SIZE,
            "name": f"camera{CAMERA_IDS.index(cid) + 1}", "id": cid,
        }
    with open(ann / "cameras.pkl", "wb") as f:
        pickle.dump(cameras_pkl, f)

    columns = {fps: {split: {k: [] for k in ("imgname", "center", "scale", "part", "S")} for split in ("train", "test")}
               for fps in (10, 50)}
    for s in subjects:
        split = "train" if s in (1, 5, 6, 7, 8) else "test"
        for seq in sequences:
            world = world_poses(rng, num_frames)
            for cid in CAMERA_IDS:
                R_c2w, centre, K = fixture.cameras[(s, cid)]
                cam = (world - centre) @ R_c2w  # R_w2c (X - C) for row vectors
                part = project(cam, K)
                center, scale = box_from_keypoints(part)
                base = f"S{s}_{seq.replace(' ', '_')}.{cid}"
                for fps, step in ((10, 5), (50, 1)):
                    for t in range(0, num_frames, step):
                        name = f"S{s}/{base}/{base}_{t + 1:06d}.jpg"
                        c = columns[fps][split]
                        c["imgname"].append(name)
                        c["center"].append(center[t])
                        c["scale"].append(scale[t])
                        c["part"].append(np.concatenate([part[t], np.ones((17, 1))], -1))
                        c["S"].append(np.concatenate([cam[t] / 1000.0, np.ones((17, 1))], -1))
                        if fps in image_fps:
                            path = root / "images" / name
                            if not path.exists():
                                path.parent.mkdir(parents=True, exist_ok=True)
                                cv2.imwrite(str(path), _draw(part[t]))
    for fps, splits in columns.items():
        (ann / f"fps{fps}").mkdir(exist_ok=True)
        for split, c in splits.items():
            np.savez(ann / f"fps{fps}" / f"h36m_{split}.npz", imgname=np.array(c["imgname"]),
                     center=np.array(c["center"], dtype=np.float32), scale=np.array(c["scale"], dtype=np.float32),
                     part=np.array(c["part"], dtype=np.float32), S=np.array(c["S"], dtype=np.float32))
    (root / "images").mkdir(exist_ok=True)
    return fixture


def write_poses_layout(root: Path, num_frames: int = 70, subjects=SUBJECTS, sequences=SEQUENCES, source: str = "gt",
                       cameras: str = "json", joints_2d: int = 17, seed: int = 0) -> Fixture:
    """The VideoPose3D layout: data_3d_h36m.npz (32 joints, world metres), data_2d_h36m_<source>.npz
    (4 cameras, pixels of the published 1000 px frames) and the extrinsics as VideoPose3D-style
    JSON (``cameras="json"``) or an OpenMMLab cameras.pkl (``"pkl"``)."""
    rng = np.random.default_rng(seed)

    def intrinsics(cid):
        i = CAMERA_INTRINSICS[cid]
        return np.array([*i["f"], *i["c"]])

    fixture = Fixture(root, num_frames, tuple(subjects), tuple(sequences), make_cameras(subjects, intrinsics))
    root.mkdir(parents=True, exist_ok=True)
    positions_3d, positions_2d = {}, {}
    for s in subjects:
        positions_3d[f"S{s}"], positions_2d[f"S{s}"] = {}, {}
        for seq in sequences:
            world = world_poses(rng, num_frames)
            full = np.zeros((num_frames, 32, 3))
            full[:, list(H36M_32_TO_17)] = world
            positions_3d[f"S{s}"][seq] = (full / 1000.0).astype(np.float32)
            views = []
            for cid in CAMERA_IDS:
                R_c2w, centre, K = fixture.cameras[(s, cid)]
                p = project((world - centre) @ R_c2w, K)
                if joints_2d == 32:
                    p32 = np.zeros((num_frames, 32, 2))
                    p32[:, list(H36M_32_TO_17)] = p
                    p = p32
                views.append(np.concatenate([p, p[:2]]).astype(np.float32))  # 2 extra frames, as some videos have
            positions_2d[f"S{s}"][seq] = views
    np.savez_compressed(root / "data_3d_h36m.npz", positions_3d=positions_3d)
    np.savez_compressed(root / f"data_2d_h36m_{source}.npz", positions_2d=positions_2d,
                        metadata={"num_joints": joints_2d})
    if cameras == "json":
        params = {}
        for s in subjects:
            params[f"S{s}"] = [{"orientation": _quaternion(fixture.cameras[(s, cid)][0]).tolist(),
                                "translation": fixture.cameras[(s, cid)][1].tolist()} for cid in CAMERA_IDS]
        params["S2"] = [{}, {}, {}, {}]
        (root / "h36m_cameras_extrinsic_params.json").write_text(json.dumps(params))
    else:
        (root / "annotation_body3d").mkdir(exist_ok=True)
        pkl = {}
        for (s, cid), (R_c2w, centre, K) in fixture.cameras.items():
            pkl[(f"S{s}", cid)] = {"R": R_c2w, "T": (centre / 1000.0).reshape(3, 1), "f": K[:2].reshape(2, 1),
                                   "c": K[2:].reshape(2, 1), "k": np.zeros((3, 1)), "p": np.zeros((2, 1)),
                                   "w": 1000, "h": 1000}
        with open(root / "annotation_body3d" / "cameras.pkl", "wb") as f:
            pickle.dump(pkl, f)
    return fixture


def subsample_poses_layout(source: Path, target: Path, step: int, sources_2d=("gt",)) -> Path:
    """A copy of a poses-layout root (written by :func:`write_poses_layout`) keeping every ``step``-th
    row of every sequence, as a 10 Hz copy (``step=5``) of the 50 Hz files is made."""
    import shutil

    target.mkdir(parents=True, exist_ok=True)
    with np.load(source / "data_3d_h36m.npz", allow_pickle=True) as data:  # the tests' own file
        positions_3d = data["positions_3d"].item()
    np.savez_compressed(target / "data_3d_h36m.npz", positions_3d={
        s: {a: seq[::step] for a, seq in actions.items()} for s, actions in positions_3d.items()})
    for name in sources_2d:
        with np.load(source / f"data_2d_h36m_{name}.npz", allow_pickle=True) as data:
            positions_2d, metadata = data["positions_2d"].item(), data["metadata"].item()
        np.savez_compressed(target / f"data_2d_h36m_{name}.npz", metadata=metadata, positions_2d={
            s: {a: [v[::step] for v in views] for a, views in actions.items()} for s, actions in positions_2d.items()})
    for extra in ("h36m_cameras_extrinsic_params.json", "annotation_body3d"):
        if (source / extra).is_file():
            shutil.copy(source / extra, target / extra)
        elif (source / extra).is_dir():
            shutil.copytree(source / extra, target / extra, dirs_exist_ok=True)
    return target


if __name__ == "__main__":  # python -m tests.fixtures_h36m DIR: the tiny copy make dry-run reads
    import sys

    if len(sys.argv) != 2:
        print("usage: python -m tests.fixtures_h36m DIR", file=sys.stderr)
        sys.exit(2)
    target = Path(sys.argv[1])
    if not (target / "annotation_body3d" / "fps50" / "h36m_test.npz").is_file():
        write_images_layout(target, image_fps=(10, 50))  # every frame: Protocol #2's every 64th is read too
    if not (target / "data_3d_h36m.npz").is_file():
        write_poses_layout(target)  # the mocap file beside the images (Tome's pose prior reads it)
    print(f"tiny Human3.6M images layout (and mocap file) in {target}")
