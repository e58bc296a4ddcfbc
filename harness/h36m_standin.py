"""A stand-in for VideoPose3D's Human3.6M pose files: the real files' layout, units and frame counts,
with synthetic people (Human3.6M itself may not be redistributed).

    python -m pose3d.h36m_standin OUT [--scale 1.0] [--fps 50] [--seed 0]

writes ``OUT/data_3d_h36m.npz`` (``positions_3d[subject][action]``: (T, 32, 3) world metres, z up,
the 17 joints of :data:`pose3d.skeleton.H36M_32_TO_17` filled, the other 15 zero),
``OUT/data_2d_h36m_gt.npz`` (``positions_2d[subject][action]``: 4 cameras x (T, 17, 2) pixels, the
pinhole projection of the 3D) and ``OUT/h36m_cameras_extrinsic_params.json`` (VideoPose3D's
extrinsics as JSON), the ``poses`` layout of :mod:`datamodules.human36m`.

What is real and what is not:

* subjects S1, S5, S6, S7, S8, S9, S11, 15 actions x 2 trials each, named as in the files
  ("Directions", "Directions 1", ...); per subject the published 50 Hz frame counts
  (:data:`datamodules.human36m.FRAMES_50HZ`: S1 62,094 frames per camera ... where only the sum
  of S7 and S8, or of S9 and S11, is published it is split in half), spread over the 30
  sequences at random; ``--scale`` keeps that fraction of every sequence (a tiny copy for CI),
  ``--fps 10`` every 5th frame (a 10 Hz copy);
* the four cameras' published intrinsics (:data:`datamodules.human36m.CAMERA_INTRINSICS`); their
  extrinsics are not public in this project, so the cameras stand where Human3.6M's do in
  kind: one at each corner of the capture area, 4.5-5.5 m from its centre, 1.5-1.65 m high,
  looking at the centre, the same for every subject up to a few centimetres;
* the people: bodies of :func:`pose3d.body.make_subject` (bone lengths near Human3.6M's
  averages), moving smoothly: keyframes of the kinematic sampler (:mod:`pose3d.pose_sampler`, the
  activity that fits each action) every half second, joint angles interpolated in between, a
  slowly turning heading and a wandering root within the capture area, feet on the floor.
  No lens distortion (the real 2D files have it).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from datamodules.human36m import ACTIONS, CAMERA_IDS, CAMERA_INTRINSICS, FRAMES_50HZ
from pose3d.body import make_subject
from pose3d.pose_sampler import ACTIVITY_INDEX, foot_offset, forward_kinematics, sample_angles
from pose3d.skeleton import H36M_32_TO_17, NUM_JOINTS

SUBJECTS = (1, 5, 6, 7, 8, 9, 11)
# the sampler's y-down canonical frame -> Human3.6M's z-up world: X_world = Y_DOWN_TO_Z_UP @ X
Y_DOWN_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
KEYFRAME_SECONDS = 0.5
ANKLE_HEIGHT_MM = 80.0
# the sampler's activities that fit each action (one is drawn per keyframe)
ACTION_ACTIVITIES = {
    "Directions": ("standing", "reaching"), "Discussion": ("standing", "reaching"), "Eating": ("sitting",),
    "Greeting": ("standing", "reaching"), "Phoning": ("standing", "sitting"), "Photo": ("standing", "crouching"),
    "Posing": ("standing", "reaching"), "Purchases": ("standing", "bending"), "Sitting": ("sitting",),
    "SittingDown": ("sitting", "crouching"), "Smoking": ("standing", "sitting"), "Waiting": ("standing",),
    "WalkDog": ("walking", "bending"), "Walking": ("walking",), "WalkTogether": ("walking",),
}
WALKING = ("Walking", "WalkDog", "WalkTogether")


def subject_frames() -> dict[int, int]:
    """50 Hz frames per camera of every subject (a published sum is split evenly between its subjects)."""
    frames = {}
    for group, total in FRAMES_50HZ.items():
        for k, subject in enumerate(group):
            frames[subject] = total // len(group) + (1 if k < total % len(group) else 0)
    return frames


def sequence_names() -> list[str]:
    """The 30 sequence names of a subject: every action's two trials, "Directions" and "Directions 1"."""
    return [name for action in ACTIONS for name in (action, f"{action} 1")]


def cameras(subject: int, rng: np.random.Generator) -> list[dict]:
    """Four cameras at the corners of the capture area (module doc): ``{"R_c2w", "centre_mm", "intrinsics"}``."""
    out = []
    for k, camera_id in enumerate(CAMERA_IDS):
        azimuth = np.deg2rad(45.0 + 90.0 * k + rng.normal(0, 4.0))
        distance, height = rng.uniform(4500.0, 5500.0), rng.uniform(1500.0, 1650.0)
        centre = np.array([distance * np.cos(azimuth), distance * np.sin(azimuth), height])
        forward = np.array([0.0, 0.0, 900.0]) - centre  # looks at the centre of the area, at hip height
        forward /= np.linalg.norm(forward)
        right = np.cross(forward, [0.0, 0.0, 1.0])
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        intrinsics = CAMERA_INTRINSICS[camera_id]
        out.append({"R_c2w": np.stack([right, down, forward], axis=1), "centre_mm": centre,
                    "intrinsics": np.array([*intrinsics["f"], *intrinsics["c"]])})
    return out


def _smooth_walk(rng: np.random.Generator, frames: int, step: float, limit: float) -> np.ndarray:
    """A smooth 2D random walk (frames, 2) that stays within ``limit`` of the origin."""
    velocity = np.cumsum(rng.normal(0, step, (frames, 2)), axis=0)
    velocity -= np.linspace(0, 1, frames)[:, None] * velocity[-1]
    position = np.cumsum(velocity, axis=0) / 50.0
    position -= position.mean(0)
    scale = np.abs(position).max() / limit
    return position / max(scale, 1.0)


def motion(rng: np.random.Generator, bone_lengths: np.ndarray, action: str, frames: int) -> np.ndarray:
    """(frames, 17, 3) world mm, z up, of one sequence at 50 Hz (module doc)."""
    every = int(KEYFRAME_SECONDS * 50)
    keys = frames // every + 2
    activities = ACTION_ACTIVITIES[action]
    angles = np.stack([sample_angles(rng, ACTIVITY_INDEX[activities[rng.integers(len(activities))]])
                       for _ in range(keys)])
    t = np.arange(frames) / every
    low = np.floor(t).astype(np.int64)
    w = (t - low)[:, None, None]
    w = w * w * (3 - 2 * w)  # ease in and out between keyframes
    poses = forward_kinematics(angles[low] * (1 - w) + angles[low + 1] * w, bone_lengths).astype(np.float64)
    heading = np.cumsum(rng.normal(0, 0.01 if action not in WALKING else 0.02, frames)) + rng.uniform(0, 2 * np.pi)
    c, s = np.cos(heading), np.sin(heading)
    yaw = np.stack([c, np.zeros(frames), s, np.zeros(frames), np.ones(frames), np.zeros(frames), -s,
                    np.zeros(frames), c], -1).reshape(frames, 3, 3)
    world = np.einsum("ij,tjk,tlk->tli", Y_DOWN_TO_Z_UP, yaw, poses)
    ground = _smooth_walk(rng, frames, 3.0 if action in WALKING else 0.5, 1500.0)
    world[..., :2] += ground[:, None]
    world[..., 2] += (foot_offset(poses) + ANKLE_HEIGHT_MM)[:, None]
    return world


def project(points_world: np.ndarray, camera: dict) -> np.ndarray:
    """Pinhole projection (..., 2) px of world points (..., 3) mm."""
    cam = (points_world - camera["centre_mm"]) @ camera["R_c2w"]
    fx, fy, cx, cy = camera["intrinsics"]
    return np.stack([fx * cam[..., 0] / cam[..., 2] + cx, fy * cam[..., 1] / cam[..., 2] + cy], -1)


def quaternion(rotation: np.ndarray) -> list[float]:
    """(w, x, y, z) of a rotation matrix (Shepperd's method: stable for any rotation)."""
    m = rotation
    trace = np.trace(m)
    if trace > 0:
        s = 2.0 * np.sqrt(1.0 + trace)
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k])
        q = [0.0] * 4
        q[0], q[1 + i] = (m[k, j] - m[j, k]) / s, 0.25 * s
        q[1 + j], q[1 + k] = (m[j, i] + m[i, j]) / s, (m[k, i] + m[i, k]) / s
    return [float(v) for v in q]


def write_standin(out: Path, scale: float = 1.0, fps: int = 50, seed: int = 0, subjects=SUBJECTS,
                  log=print) -> dict[str, int]:
    """Write the three files (module doc) under ``out``; returns frames per camera per subject."""
    if fps not in (10, 50):
        raise ValueError(f"fps must be 10 or 50, got {fps}")
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    step = 50 // fps
    positions_3d, positions_2d, extrinsics, counts = {}, {}, {}, {}
    totals = subject_frames()
    for subject in subjects:
        key = f"S{subject}"
        names = sequence_names()
        shares = rng.dirichlet(np.full(len(names), 8.0))
        lengths = np.maximum(1, np.round(shares * totals[subject] * scale)).astype(np.int64)
        lengths[np.argmax(lengths)] += max(1, round(totals[subject] * scale)) - lengths.sum()  # the exact total
        body = make_subject(subject).bone_lengths
        views = cameras(subject, rng)
        positions_3d[key], positions_2d[key] = {}, {}
        for name, length in zip(names, lengths):
            world = motion(rng, body, name.split(" ")[0], int(length))[::step]
            full = np.zeros((len(world), 32, 3), dtype=np.float32)
            full[:, list(H36M_32_TO_17)] = world / 1000.0
            positions_3d[key][name] = full
            positions_2d[key][name] = [project(world, camera).astype(np.float32) for camera in views]
        extrinsics[key] = [{"orientation": quaternion(c["R_c2w"]), "translation": c["centre_mm"].tolist()} for c in views]
        counts[key] = int(sum(len(v) for v in positions_3d[key].values()))
        log(f"S{subject}: {counts[key]:,} frames per camera in {len(names)} sequences")
    np.savez_compressed(out / "data_3d_h36m.npz", positions_3d=positions_3d)
    np.savez_compressed(out / "data_2d_h36m_gt.npz", positions_2d=positions_2d,
                        metadata={"layout_name": "h36m", "num_joints": NUM_JOINTS,
                                  "keypoints_symmetry": [[4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]]})
    (out / "h36m_cameras_extrinsic_params.json").write_text(json.dumps(extrinsics))
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pose3d.h36m_standin", description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder to write the three files into")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the real frame counts (1.0: full size)")
    parser.add_argument("--fps", type=int, default=50, choices=(10, 50), help="50: every frame; 10: every 5th")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not 0.0 < args.scale <= 1.0:
        print(f"error: --scale {args.scale}: expected a fraction in (0, 1]", file=sys.stderr)
        return 2
    counts = write_standin(Path(args.out), args.scale, args.fps, args.seed)
    print(f"wrote {args.out}: {sum(counts.values()):,} frames per camera at {args.fps} Hz "
          f"(data_3d_h36m.npz, data_2d_h36m_gt.npz, h36m_cameras_extrinsic_params.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
