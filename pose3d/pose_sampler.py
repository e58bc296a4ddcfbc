"""Kinematic pose sampler: joint angles with anatomical limits, activity families, FK.

This is the pose source of the synthetic dataset. A pose is a set of local joint
rotations on the Human3.6M tree (``pose3d.skeleton``); forward kinematics turns it
into 17 joint positions for a subject's bone lengths (``pose3d.body``).

Frame and units
---------------
Canonical body frame of ``pose3d.body``: millimetres, x = the person's left,
y = down, z = the person's back (the person faces -z). Poses are root-relative
(pelvis at the origin). Whole-body yaw is *not* sampled (the DataModule applies yaw
and the camera); only a small random tilt of the pelvis is.

Angle convention
----------------
``angles`` is a (17, 3) array in radians (or (..., 17, 3)). Row ``j`` is the local
rotation of the bone from ``parent(j)`` to ``j``, i.e. the joint at the *parent*:
row 2 (r_knee) is the right hip joint, row 3 (r_ankle) the right knee, row 12
(l_elbow) the left shoulder, row 13 (l_wrist) the left elbow. Row 0 is the pelvis
orientation (it turns the hips and the spine). The three columns are anatomical:

    0 flexion    positive = anatomical flexion: trunk/neck bend forward, hip raises
                 the thigh forward, knee bends the shin backward, shoulder raises the
                 arm forward, elbow brings the forearm forward (arm hanging down).
    1 abduction  limbs: positive = away from the midline; trunk/neck/head: positive =
                 lateral bend towards the person's left; clavicles: elevation (shrug).
    2 twist      limbs: positive = internal rotation about the bone; trunk/neck/head:
                 positive = turn towards the person's left; clavicles: protraction.

The local rotation is ``Rx(sx*flexion) @ Rz(sz*abduction) @ Ry(sy*twist)`` about the
canonical axes of the parent bone's frame (twist first, then abduction, flexion last),
where the signs (sx, sz, sy) of ``ANGLE_SIGNS`` make a left/right pair mirror images.
All zeros is the rest pose: standing upright, arms hanging down. Knees and elbows are
1-DoF hinges (flexion 0..155 and 0..150 deg), so they never hyper-extend. The limits
in degrees are ``JOINT_LIMITS_DEG`` (17, 3, 2): rows 1 and 4 (pelvis to hip) are rigid.
"""
from __future__ import annotations

import numpy as np

from pose3d.skeleton import H36M_PARENTS, NUM_JOINTS

ACTIVITIES: tuple[str, ...] = ("standing", "walking", "sitting", "crouching", "reaching", "bending")
ACTIVITY_INDEX = {name: i for i, name in enumerate(ACTIVITIES)}

# Rows of the angle array (named after the joint that rotates, see the module doc).
PELVIS, LUMBAR, THORACIC, NECK, HEAD = 0, 7, 8, 9, 10
RIGHT, LEFT = 0, 1  # side index into the tuples below
HIP = (2, 5)
KNEE = (3, 6)
CLAVICLE = (14, 11)
SHOULDER = (15, 12)
ELBOW = (16, 13)


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


# Direction of each bone in the rest pose (canonical frame); row 0 is unused.
REST_DIRECTIONS = np.zeros((NUM_JOINTS, 3))
REST_DIRECTIONS[[1, 14]] = _unit([-1.0, 0.0, 0.0])           # pelvis->r_hip, thorax->r_shoulder
REST_DIRECTIONS[[4, 11]] = _unit([1.0, 0.0, 0.0])            # pelvis->l_hip, thorax->l_shoulder
REST_DIRECTIONS[[2, 3, 5, 6, 12, 13, 15, 16]] = [0.0, 1.0, 0.0]  # legs and arms hang down
REST_DIRECTIONS[[7, 8]] = [0.0, -1.0, 0.0]                   # spine up
REST_DIRECTIONS[9] = _unit([0.0, -1.0, -0.35])               # thorax->nose: up, a little forward
REST_DIRECTIONS[10] = _unit([0.0, -1.0, 0.3])                # nose->head top: up, a little back

# Signs (x, z, y) that turn (flexion, abduction, twist) into rotations about the canonical axes.
ANGLE_SIGNS = np.ones((NUM_JOINTS, 3))
ANGLE_SIGNS[[PELVIS, LUMBAR, THORACIC, NECK, HEAD]] = [1, 1, -1]
ANGLE_SIGNS[HIP[RIGHT]], ANGLE_SIGNS[HIP[LEFT]] = [-1, 1, -1], [-1, -1, 1]
ANGLE_SIGNS[list(KNEE)] = [1, 0, 0]
ANGLE_SIGNS[CLAVICLE[RIGHT]], ANGLE_SIGNS[CLAVICLE[LEFT]] = [1, 1, -1], [1, -1, 1]
ANGLE_SIGNS[SHOULDER[RIGHT]], ANGLE_SIGNS[SHOULDER[LEFT]] = [-1, 1, -1], [-1, -1, 1]
ANGLE_SIGNS[list(ELBOW)] = [-1, 0, 0]


def _limits() -> np.ndarray:
    lim = np.zeros((NUM_JOINTS, 3, 2))
    lim[PELVIS] = [(-20, 95), (-15, 15), (-8, 8)]   # small tilt; forward lean for bending/crouching
    lim[LUMBAR] = [(-25, 45), (-25, 25), (-20, 20)]
    lim[THORACIC] = [(-20, 40), (-20, 20), (-30, 30)]
    lim[NECK] = [(-45, 50), (-35, 35), (-60, 60)]
    lim[HEAD] = [(-30, 30), (-15, 15), (-20, 20)]
    for s in (RIGHT, LEFT):
        lim[HIP[s]] = [(-25, 135), (-25, 50), (-40, 45)]
        lim[KNEE[s]] = [(0, 155), (0, 0), (0, 0)]
        lim[CLAVICLE[s]] = [(0, 0), (-10, 25), (-15, 20)]
        lim[SHOULDER[s]] = [(-50, 180), (-15, 160), (-60, 85)]
        lim[ELBOW[s]] = [(0, 150), (0, 0), (0, 0)]
    return lim


JOINT_LIMITS_DEG = _limits()
JOINT_LIMITS = np.deg2rad(JOINT_LIMITS_DEG)

# Std (deg) of the per-joint noise added on top of every activity family.
NOISE_STD_DEG = np.zeros((NUM_JOINTS, 3))
NOISE_STD_DEG[PELVIS] = [3, 2, 2]
NOISE_STD_DEG[LUMBAR] = NOISE_STD_DEG[THORACIC] = [3, 3, 4]
NOISE_STD_DEG[NECK] = [6, 5, 10]
NOISE_STD_DEG[HEAD] = [5, 3, 4]
NOISE_STD_DEG[list(HIP)] = [4, 3, 6]
NOISE_STD_DEG[list(KNEE)] = [4, 0, 0]
NOISE_STD_DEG[list(CLAVICLE)] = [0, 3, 3]
NOISE_STD_DEG[list(SHOULDER)] = [7, 5, 10]
NOISE_STD_DEG[list(ELBOW)] = [6, 0, 0]


def _depth(j: int) -> int:
    return 0 if H36M_PARENTS[j] < 0 else 1 + _depth(H36M_PARENTS[j])


# Forward kinematics works on the joints sorted by tree depth, so that every level is a
# contiguous slice and one batched matmul per level composes the frames.
_BY_DEPTH = np.array(sorted(range(NUM_JOINTS), key=_depth))
_FROM_DEPTH = np.argsort(_BY_DEPTH)
_LEVELS = []
for _d in range(1, max(map(_depth, range(NUM_JOINTS))) + 1):
    _members = [i for i, j in enumerate(_BY_DEPTH) if _depth(j) == _d]
    _parents = np.array([_FROM_DEPTH[H36M_PARENTS[_BY_DEPTH[i]]] for i in _members])
    _LEVELS.append((slice(_members[0], _members[-1] + 1), _parents))

# _ANCESTORS[j, k] = 1 when bone k lies on the path from the root to joint j.
_ANCESTORS = np.zeros((NUM_JOINTS, NUM_JOINTS))
for _j in range(1, NUM_JOINTS):
    _k = _j
    while _k > 0:
        _ANCESTORS[_j, _k] = 1.0
        _k = H36M_PARENTS[_k]


# --------------------------------------------------------------------------- kinematics

def local_rotations(angles: np.ndarray) -> np.ndarray:
    """(..., 17, 3) anatomical angles in radians -> (..., 17, 3, 3) local rotation matrices.

    ``Rx(sx*flexion) @ Rz(sz*abduction) @ Ry(sy*twist)``, written out entry by entry.
    """
    signed = np.asarray(angles, dtype=np.float64) * ANGLE_SIGNS
    c, s = np.cos(signed), np.sin(signed)
    cx, cz, cy = c[..., 0], c[..., 1], c[..., 2]
    sx, sz, sy = s[..., 0], s[..., 1], s[..., 2]
    # rows of Rz @ Ry: (cz*cy, -sz, cz*sy), (sz*cy, cz, sz*sy), (-sy, 0, cy); Rx mixes rows 1 and 2
    r1 = (sz * cy, cz, sz * sy)
    r2 = (-sy, np.zeros_like(cz), cy)
    entries = (cz * cy, -sz, cz * sy,
               cx * r1[0] - sx * r2[0], cx * r1[1], cx * r1[2] - sx * r2[2],
               sx * r1[0] + cx * r2[0], sx * r1[1], sx * r1[2] + cx * r2[2])
    return np.stack(entries, axis=-1).reshape(signed.shape[:-1] + (3, 3))


def rest_pose(bone_lengths: np.ndarray) -> np.ndarray:
    """The all-zero-angle pose (standing, arms down), (17, 3) float32, pelvis at 0."""
    return forward_kinematics(np.zeros((NUM_JOINTS, 3)), bone_lengths)


def forward_kinematics(angles: np.ndarray, bone_lengths: np.ndarray, return_frames: bool = False):
    """Joint positions (..., 17, 3) float32 (pelvis at 0, mm) from angles (..., 17, 3).

    Bone ``j`` points along ``frames[j] @ REST_DIRECTIONS[j]`` with length
    ``bone_lengths[j]``, where ``frames[j] = frames[parent(j)] @ local[j]`` (the
    pelvis frame is ``local[0]``); a joint is the sum of the bone vectors above it.
    With ``return_frames`` also returns the (..., 17, 3, 3) global bone frames, float64.
    """
    local = local_rotations(angles)[..., _BY_DEPTH, :, :]
    frames = np.empty_like(local)          # in _BY_DEPTH order: each tree level is a slice
    frames[..., 0, :, :] = local[..., 0, :, :]
    for level, parents in _LEVELS:
        np.matmul(frames[..., parents, :, :], local[..., level, :, :], out=frames[..., level, :, :])
    frames = frames[..., _FROM_DEPTH, :, :]
    offsets = REST_DIRECTIONS * np.asarray(bone_lengths, dtype=np.float64)[:, None]
    bones = (frames @ offsets[:, :, None])[..., 0]
    joints = (_ANCESTORS @ bones).astype(np.float32)   # each joint: sum of the bones above it
    return (joints, frames) if return_frames else joints


def clip_to_limits(angles: np.ndarray) -> np.ndarray:
    """Clip (..., 17, 3) angles in radians to ``JOINT_LIMITS``."""
    return np.clip(angles, JOINT_LIMITS[..., 0], JOINT_LIMITS[..., 1])


# --------------------------------------------------------------------------- activity families
# Every family fills a (17, 3) array of angles in *degrees*; sample_angles adds noise and clips.

ARM_MODES = ("hang", "hips", "front", "crossed", "lap")


def _arm(rng: np.random.Generator, a: np.ndarray, side: int, mode: str) -> None:
    """A relaxed arm pose: (flexion, abduction, internal rotation) of the shoulder + elbow."""
    u = rng.uniform
    if mode == "hang":
        a[SHOULDER[side]] = [u(-15, 20), u(3, 15), u(-10, 30)]
        a[ELBOW[side], 0] = u(5, 35)
    elif mode == "hips":      # hand on the hip, elbow out
        a[SHOULDER[side]] = [u(-15, 5), u(35, 55), u(50, 80)]
        a[ELBOW[side], 0] = u(90, 120)
    elif mode == "front":     # holding something in front of the belly/chest
        a[SHOULDER[side]] = [u(15, 55), u(0, 20), u(10, 50)]
        a[ELBOW[side], 0] = u(60, 110)
    elif mode == "crossed":   # forearm across the chest
        a[SHOULDER[side]] = [u(5, 30), u(5, 20), u(65, 85)]
        a[ELBOW[side], 0] = u(110, 140)
    else:                     # "lap": hands resting on the thighs when sitting
        a[SHOULDER[side]] = [u(10, 40), u(5, 20), u(0, 30)]
        a[ELBOW[side], 0] = u(40, 80)


def _pick(rng: np.random.Generator, options: tuple, p: tuple[float, ...] | None = None):
    """One of ``options`` (uniform, or with probabilities ``p``); cheaper than rng.choice."""
    if p is None:
        return options[int(rng.integers(len(options)))]
    return options[min(int(np.searchsorted(np.cumsum(p), rng.random(), side="right")), len(options) - 1)]


def _arms(rng: np.random.Generator, a: np.ndarray, modes: tuple[str, ...], p: tuple[float, ...]) -> None:
    """Both arms from ``modes``: the same mode on both sides half of the time."""
    first = _pick(rng, modes, p)
    second = first if rng.random() < 0.5 else _pick(rng, modes, p)
    side = int(rng.integers(2))
    _arm(rng, a, side, first)
    _arm(rng, a, 1 - side, second)


def _head(rng: np.random.Generator, a: np.ndarray, flex: tuple[float, float] = (-15, 30)) -> None:
    a[NECK] = [rng.uniform(*flex), rng.uniform(-10, 10), rng.uniform(-50, 50)]


def _stance(rng: np.random.Generator, a: np.ndarray) -> None:
    """Standing legs: weight on one leg, the other one relaxed (a little bent and out)."""
    free = int(rng.integers(2))
    a[HIP[1 - free]] = [rng.uniform(-5, 5), rng.uniform(-3, 6), rng.uniform(-10, 10)]
    a[KNEE[1 - free], 0] = rng.uniform(0, 8)
    a[HIP[free]] = [rng.uniform(-5, 20), rng.uniform(0, 15), rng.uniform(-10, 25)]
    a[KNEE[free], 0] = rng.uniform(0, 30)
    a[PELVIS, 1] = rng.uniform(0, 5) * (1 if free == LEFT else -1)


def _standing(rng, a):
    _stance(rng, a)
    a[LUMBAR, 0], a[THORACIC, 0] = rng.uniform(-8, 8), rng.uniform(-5, 12)
    _head(rng, a)
    _arms(rng, a, ("hang", "hips", "front", "crossed"), (0.55, 0.15, 0.15, 0.15))


def _walking(rng, a):
    """Gait cycle at a random phase: legs in anti-phase, each arm swings against its leg."""
    phase, stride = rng.uniform(0, 2 * np.pi), rng.uniform(12, 28)
    swing = np.sin(phase) * np.array([1.0, -1.0])          # + when that leg is in front
    lift = np.maximum(0.0, np.cos(phase - 0.3) * np.array([1.0, -1.0])) ** 2  # swing-phase knee
    knee_peak, arm_gain = rng.uniform(30, 55), rng.uniform(0.4, 1.2)
    for s in (RIGHT, LEFT):
        a[HIP[s]] = [8 + stride * swing[s], rng.uniform(0, 8), rng.uniform(-5, 15)]
        a[KNEE[s], 0] = rng.uniform(3, 15) + knee_peak * lift[s]
        flex = 5 - arm_gain * stride * swing[s]
        a[SHOULDER[s]] = [flex, rng.uniform(5, 14), rng.uniform(0, 25)]
        a[ELBOW[s], 0] = rng.uniform(10, 30) + 0.6 * max(0.0, flex)
    if rng.random() < 0.2:                                  # carrying something: one arm still
        _arm(rng, a, int(rng.integers(2)), _pick(rng, ("front", "hang")))
    a[PELVIS, 0] = rng.uniform(0, 8)                        # slight forward lean
    a[THORACIC, 2] = -rng.uniform(2, 8) * np.sin(phase)     # shoulders counter-rotate
    _head(rng, a, (-10, 25))


def _sitting(rng, a):
    """On a chair: thighs about horizontal, shins about vertical, trunk upright to slouched."""
    lean = rng.uniform(-15, 20)                             # pelvis: back (-) or forward (+)
    a[PELVIS, 0] = lean
    thigh = rng.uniform(65, 100)                            # thigh elevation in the body frame
    for s in (RIGHT, LEFT):
        t = thigh + rng.uniform(-8, 8)
        shin = rng.uniform(30, 65) if rng.random() < 0.2 else rng.uniform(-25, 30)  # + = foot forward
        a[HIP[s]] = [t + lean, rng.uniform(0, 20), rng.uniform(-15, 20)]
        a[KNEE[s], 0] = t - shin
    a[LUMBAR, 0], a[THORACIC, 0] = rng.uniform(-5, 20), rng.uniform(0, 20)
    _head(rng, a)
    _arms(rng, a, ("lap", "front", "crossed", "hang"), (0.45, 0.25, 0.15, 0.15))


def _crouching(rng, a):
    """Squat: deep hip and knee flexion, knees apart, trunk leaning forward, face forward."""
    lean = rng.uniform(10, 35)
    a[PELVIS, 0] = lean
    for s in (RIGHT, LEFT):
        hip = min(rng.uniform(90, 125) + lean, 133.0)
        shin = rng.uniform(-40, -5)                         # knee in front of the ankle
        a[HIP[s]] = [hip, rng.uniform(5, 35), rng.uniform(-30, 5)]
        a[KNEE[s], 0] = (hip - lean) - shin
    a[LUMBAR, 0], a[THORACIC, 0] = rng.uniform(0, 30), rng.uniform(0, 25)
    trunk = lean + a[LUMBAR, 0] + a[THORACIC, 0]
    _head(rng, a)
    a[NECK, 0] = -rng.uniform(0.2, 0.6) * trunk             # look ahead, not at the floor
    if rng.random() < 0.5:                                  # hands on the knees / in front
        for s in (RIGHT, LEFT):
            a[SHOULDER[s]] = [rng.uniform(20, 70), rng.uniform(0, 25), rng.uniform(0, 40)]
            a[ELBOW[s], 0] = rng.uniform(10, 90)
    else:
        _arms(rng, a, ("hang", "front", "crossed"), (0.4, 0.4, 0.2))


def _reaching(rng, a):
    """One or both arms raised forward (60..110 deg) or up (120..175 deg)."""
    _stance(rng, a)
    both, side = rng.random() < 0.25, int(rng.integers(2))
    up = rng.random() < 0.5
    for s in ((RIGHT, LEFT) if both else (side,)):
        flex = rng.uniform(120, 175) if up else rng.uniform(60, 110)
        a[SHOULDER[s]] = [flex, rng.uniform(-5, 35), rng.uniform(-20, 30)]
        a[ELBOW[s], 0] = rng.uniform(0, 40)
        a[CLAVICLE[s], 1] = rng.uniform(0, 20) * flex / 175
    if not both:
        _arm(rng, a, 1 - side, _pick(rng, ("hang", "hang", "front", "hips")))
        toward = 1 if side == LEFT else -1
        a[LUMBAR, 1] = toward * rng.uniform(0, 12)           # lean towards the reaching arm
        a[THORACIC, 2] = -toward * rng.uniform(0, 20)        # and turn its shoulder forward
    if up:
        a[LUMBAR, 0], a[THORACIC, 0] = rng.uniform(-15, 0), rng.uniform(-10, 5)
        _head(rng, a, (-40, -5))                             # look up
    else:
        lean = rng.uniform(0, 25)                            # reach out: lean, legs stay vertical
        a[PELVIS, 0] = lean
        for s in (RIGHT, LEFT):
            a[HIP[s], 0] += lean
        _head(rng, a, (-15, 20))


def _bending(rng, a):
    """Trunk flexed forward from the hips, legs about straight, arms hanging with gravity."""
    lean = rng.uniform(30, 85)
    a[PELVIS, 0] = lean
    for s in (RIGHT, LEFT):
        a[HIP[s]] = [lean + rng.uniform(-5, 15), rng.uniform(0, 12), rng.uniform(-10, 15)]
        a[KNEE[s], 0] = rng.uniform(0, 30)
    a[LUMBAR, 0], a[THORACIC, 0] = rng.uniform(5, 30), rng.uniform(5, 25)
    a[LUMBAR, 1], a[THORACIC, 2] = rng.uniform(-10, 10), rng.uniform(-15, 15)
    trunk = lean + a[LUMBAR, 0] + a[THORACIC, 0]
    _head(rng, a)
    if rng.random() < 0.5:
        a[NECK, 0] = -rng.uniform(0.2, 0.5) * trunk          # look ahead
    for s in (RIGHT, LEFT):                                 # arms towards the floor
        a[SHOULDER[s]] = [trunk + rng.uniform(-30, 15), rng.uniform(0, 20), rng.uniform(-10, 30)]
        a[ELBOW[s], 0] = rng.uniform(0, 40)


_FAMILIES = (_standing, _walking, _sitting, _crouching, _reaching, _bending)


# --------------------------------------------------------------------------- public API

def sample_angles(rng: np.random.Generator, activity: int) -> np.ndarray:
    """Angles (17, 3) in radians for one pose of ``ACTIVITIES[activity]``, within the limits."""
    a = np.zeros((NUM_JOINTS, 3))
    _FAMILIES[activity](rng, a)
    a += rng.standard_normal((NUM_JOINTS, 3)) * NOISE_STD_DEG
    return clip_to_limits(np.deg2rad(a))


def sample_pose(rng: np.random.Generator, bone_lengths: np.ndarray, activity: int) -> np.ndarray:
    """One pose (17, 3) float32, root-relative, canonical body frame, mm."""
    return forward_kinematics(sample_angles(rng, activity), bone_lengths)


def sample_poses(rng: np.random.Generator, bone_lengths: np.ndarray, activities: np.ndarray) -> np.ndarray:
    """Poses (N, 17, 3) float32 for activity ids (N,); the same as N calls of sample_pose."""
    angles = np.stack([sample_angles(rng, int(act)) for act in np.asarray(activities).reshape(-1)])
    return forward_kinematics(angles.reshape(-1, NUM_JOINTS, 3), bone_lengths)


def retarget(poses: np.ndarray, bone_lengths: np.ndarray) -> np.ndarray:
    """Give poses (N, 17, 3) the bone lengths (17,), keeping every bone's direction.

    Walks the tree from the root, which stays where it is. A zero-length source bone
    takes its rest direction.
    """
    poses = np.asarray(poses, dtype=np.float64)
    out = np.empty_like(poses)
    out[..., 0, :] = poses[..., 0, :]
    for j in range(1, NUM_JOINTS):
        p = H36M_PARENTS[j]
        bone = poses[..., j, :] - poses[..., p, :]
        norm = np.linalg.norm(bone, axis=-1, keepdims=True)
        direction = np.where(norm > 1e-9, bone / np.maximum(norm, 1e-9), REST_DIRECTIONS[j])
        out[..., j, :] = out[..., p, :] + direction * float(bone_lengths[j])
    return out.astype(np.float32)


def foot_offset(pose: np.ndarray) -> np.ndarray:
    """How far (mm) the lowest ankle is below the pelvis (y down): (..., 17, 3) -> (...)."""
    pose = np.asarray(pose)
    return pose[..., [3, 6], 1].max(axis=-1) - pose[..., 0, 1]
