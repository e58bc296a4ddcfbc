"""BVH parsing, forward kinematics, and the real rigs mapped to H36M-17."""
from pathlib import Path

import numpy as np
import pytest

from pose3d.bvh import FILE_TO_PROJECT, bvh_to_h36m, euler_to_matrix, guess_unit_mm, load_bvh, load_bvh_poses
from pose3d.skeleton import H36M_BONES, JOINT_INDEX, BvhRig
from tests.conftest import SHARED_DATA

J = JOINT_INDEX
CMU_BVH = SHARED_DATA / "cmu_bvh"


def _write_bvh(path: Path, root_channels: str, frames: list[list[float]]) -> Path:
    """A 2-joint chain (hips -> knee -> end site), the root with the given channels."""
    body = f"""HIERARCHY
ROOT hips
{{
  OFFSET 0 0 0
  CHANNELS {len(root_channels.split())} {root_channels}
  JOINT knee
  {{
    OFFSET 0 -10 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    End Site
    {{
      OFFSET 0 -5 0
    }}
  }}
}}
MOTION
Frames: {len(frames)}
Frame Time: 0.04
"""
    path.write_text(body + "".join(" ".join(f"{v:g}" for v in row) + "\n" for row in frames))
    return path


def test_fk_hand_computed(tmp_path):
    path = _write_bvh(tmp_path / "chain.bvh", "Xposition Yposition Zposition Zrotation Xrotation Yrotation", [
        [0, 0, 0, 0, 0, 0, 0, 0, 0],
        # root moved to (1,2,3) and turned 90 deg about Z; knee bent 90 deg about X
        [1, 2, 3, 90, 0, 0, 0, 90, 0],
    ])
    m = load_bvh(path)
    assert m.joint_names == ["hips", "knee", "knee_end"]
    assert m.parents.tolist() == [-1, 0, 1]
    assert m.frame_time == pytest.approx(0.04) and m.fps == pytest.approx(25)
    assert m.positions.shape == (2, 3, 3)
    np.testing.assert_allclose(m.positions[0], [[0, 0, 0], [0, -10, 0], [0, -15, 0]], atol=1e-9)
    # Rz(90) takes the knee offset (0,-10,0) to (10,0,0); Rx(90) takes the end offset (0,-5,0) to (0,0,-5)
    np.testing.assert_allclose(m.positions[1], [[1, 2, 3], [11, 2, 3], [11, 2, -2]], atol=1e-9)


def test_rotation_order_follows_the_channels(tmp_path):
    """The same angles (Z=90, X=90) give different poses in ZXY and XYZ order."""
    zxy = load_bvh(_write_bvh(tmp_path / "zxy.bvh", "Zrotation Xrotation Yrotation", [[90, 90, 0, 0, 0, 0]]))
    xyz = load_bvh(_write_bvh(tmp_path / "xyz.bvh", "Xrotation Yrotation Zrotation", [[90, 0, 90, 0, 0, 0]]))
    # ZXY: Rz(90) @ Rx(90) @ (0,-10,0) = Rz(90) @ (0,0,-10) = (0,0,-10)
    np.testing.assert_allclose(zxy.joint("knee")[0], [0, 0, -10], atol=1e-9)
    # XYZ: Rx(90) @ Rz(90) @ (0,-10,0) = Rx(90) @ (10,0,0) = (10,0,0)
    np.testing.assert_allclose(xyz.joint("knee")[0], [10, 0, 0], atol=1e-9)
    r = euler_to_matrix(np.array([[30.0, -50.0, 70.0]]), "ZXY")[0]
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(r) == pytest.approx(1.0)


def test_position_channels_on_a_child_joint(tmp_path):
    text = """HIERARCHY
ROOT a
{
 OFFSET 0 0 0
 CHANNELS 3 Yrotation Xposition Zposition
 JOINT b
 {
  OFFSET 1 0 0
  CHANNELS 6 Xposition Yposition Zposition Xrotation Yrotation Zrotation
  End Site
  {
   OFFSET 0 1 0
  }
 }
}
MOTION
Frames: 1
Frame Time: 0.1
90 5 0 0 2 0 0 0 0
"""
    path = tmp_path / "pos.bvh"
    path.write_text(text)
    m = load_bvh(path)
    # root at (5,0,0) turned 90 deg about Y; b's local translation is offset + channels = (1,2,0),
    # which Ry(90) turns into (0,2,-1)
    np.testing.assert_allclose(m.positions[0], [[5, 0, 0], [5, 2, -1], [5, 3, -1]], atol=1e-9)


def test_unknown_rig_names_file_and_expected_joints(tmp_path):
    path = _write_bvh(tmp_path / "mystery.bvh", "Zrotation Xrotation Yrotation", [[0] * 6])
    with pytest.raises(ValueError, match=r"mystery\.bvh: unknown rig.*cmu_original: LeftHip") as err:
        bvh_to_h36m(path)
    assert "\n" not in str(err.value)


def test_malformed_file(tmp_path):
    path = tmp_path / "bad.bvh"
    path.write_text("HIERARCHY\nROOT a\n{\n OFFSET 0 0\n")
    with pytest.raises(ValueError, match="bad.bvh"):
        load_bvh(path)


def test_unit_guess_and_custom_rig(tmp_path):
    assert guess_unit_mm(42.0) == 10.0  # cm
    assert guess_unit_mm(0.42) == 1000.0  # m
    assert guess_unit_mm(7.3) == pytest.approx(25.4 / 0.45)  # CMU ASF units
    # a custom rig with unknown units: the unit is guessed from the 10-unit thigh of the chain
    rig = BvhRig("chain", {"pelvis": ("hips", "hips"), "l_hip": "hips", "l_knee": "knee"}, unit_mm=None)
    path = _write_bvh(tmp_path / "c.bvh", "Zrotation Xrotation Yrotation", [[0] * 6])
    poses, mask = bvh_to_h36m(path, rig=rig)
    assert mask.sum() == 3 and poses.dtype == np.float32
    # the knee is below the hips: +y (down) in the project frame
    np.testing.assert_allclose(poses[0, J["l_knee"]], [0, 10 * guess_unit_mm(10.0), 0], rtol=1e-6)


# ------------------------------------------------------------ real rigs

# one small file per rig (iclone 02_03 also has the extra RL_BoneRoot), the
# toes and ankles used to tell forward, and the plausible thigh length (mm)
RIG_FILES = {
    "cmu_original": ("cmu_original/131_01.bvh", ("LeftToe", "LeftAnkle"), (380, 450)),
    "iclone_cc": ("iclone_cc/06_09.bvh", ("CC_Base_L_ToeBase", "CC_Base_L_Foot"), (440, 500)),
    "iclone_cc_boneroot": ("iclone_cc/02_03.bvh", ("CC_Base_L_ToeBase", "CC_Base_L_Foot"), (440, 500)),
    "acrnn_daz": ("acrnn_daz/martial_07.bvh", ("lFoot_end", "lFoot"), (340, 400)),
}


@pytest.mark.parametrize("rig", list(RIG_FILES))
def test_real_rig_maps_to_plausible_h36m(rig):
    rel, (toe, ankle), thigh_range = RIG_FILES[rig]
    path = CMU_BVH / rel
    if not path.exists():
        pytest.skip(f"real BVH data not found at {path} (../shared/data is absent in a fresh clone)")
    motion = load_bvh(path)
    poses, mask = bvh_to_h36m(motion)
    assert poses.shape == (motion.num_frames, 17, 3) and poses.dtype == np.float32
    # the CMU rig has a head-top end site; the iClone and Daz heads have none
    assert mask[J["head"]] == (rig == "cmu_original")
    assert mask.sum() >= 16 and (poses[:, ~mask] == 0).all()
    np.testing.assert_allclose(poses[:, J["pelvis"]], 0, atol=1e-3)

    lengths = {child: np.linalg.norm(poses[:, child] - poses[:, parent], axis=-1)
               for child, parent in H36M_BONES if mask[child] and mask[parent]}
    assert thigh_range[0] < lengths[J["r_knee"]].mean() < thigh_range[1]
    for child, length in lengths.items():
        assert 50 < length.mean() < 550, child
        if child not in (J["spine"], J["thorax"], J["neck"], J["l_shoulder"], J["r_shoulder"]):
            assert length.std() < 1.0, child  # limbs are rigid bones: same length every frame
    assert abs(lengths[J["l_knee"]].mean() - lengths[J["r_knee"]].mean()) < 15

    # up: the thorax and neck are above the pelvis (smaller y) in (nearly) every frame
    assert (poses[:, J["thorax"], 1] < -300).mean() > 0.95
    assert (poses[:, J["neck"], 1] < poses[:, J["thorax"], 1]).mean() > 0.95
    # left/right not mirrored: forward = left x up (a right-handed body) agrees with
    # where the toes point (the toes come through the same proper rotation)
    left = poses[:, J["l_hip"]] - poses[:, J["r_hip"]]
    up = poses[:, J["thorax"]] - poses[:, J["pelvis"]]
    forward = np.cross(left, up)
    toes = (motion.joint(toe) - motion.joint(ankle)) @ FILE_TO_PROJECT.T
    cos = np.sum(forward * toes, -1) / np.linalg.norm(forward, axis=-1) / np.linalg.norm(toes, axis=-1)
    assert np.median(cos) > 0.5


def test_left_is_on_the_right_when_facing_the_camera():
    """In the frames where the walking CMU subject faces -z (the camera), l_hip has larger x."""
    path = CMU_BVH / "cmu_original/131_01.bvh"
    if not path.exists():
        pytest.skip(f"real BVH data not found at {path}")
    motion = load_bvh(path)
    poses, _ = bvh_to_h36m(motion)
    left = poses[:, J["l_hip"]] - poses[:, J["r_hip"]]
    up = poses[:, J["thorax"]] - poses[:, J["pelvis"]]
    forward = np.cross(left, up)
    facing_camera = forward[:, 2] < -0.5 * np.linalg.norm(forward, axis=-1)
    if not facing_camera.any():
        pytest.skip("no frame faces the camera")
    assert (left[facing_camera, 0] > 0).all()


def test_load_folder_with_subsampling():
    folder = CMU_BVH / "cmu_original"
    if not folder.exists():
        pytest.skip(f"real BVH data not found at {folder}")
    files = sorted(folder.glob("*.bvh"))
    frames = [load_bvh(f).num_frames for f in files]
    poses, mask = load_bvh_poses(folder, fps=10)  # files are 30 fps: every 3rd frame
    assert poses.shape == (sum(-(-t // 3) for t in frames), 17, 3)
    assert mask.all()
    first, _ = bvh_to_h36m(files[0])
    np.testing.assert_array_equal(poses[:3], first[::3][:3])


def test_unreadable_bvh_files_name_themselves(tmp_path):
    import os

    from pose3d.bvh import BvhError, load_bvh
    from pose3d.readers import FileFormatError

    binary = tmp_path / "random.bvh"
    binary.write_bytes(b"\xff\xfe" + os.urandom(512))
    with pytest.raises(FileFormatError, match=r"random.bvh: binary content .*; expected a BVH text file"):
        load_bvh(binary)
    text = tmp_path / "nan.bvh"
    text.write_text("HIERARCHY\nROOT Hips\n{\n OFFSET 0 0 0\n CHANNELS 3 Xposition Yposition Zposition\n"
                    " End Site\n {\n  OFFSET 0 1 0\n }\n}\nMOTION\nFrames: 1\nFrame Time: 0.1\n0 1 oops\n")
    with pytest.raises(BvhError, match=r"nan.bvh: the MOTION section holds 'oops'; expected numbers only"):
        load_bvh(text)
