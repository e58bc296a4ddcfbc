"""DeepSkeleton skeleton maps: parts, sticks, foreground/background layers by depth."""
import pytest
import torch

from pose3d.skeleton import JOINT_INDEX as J, NUM_JOINTS
from pose3d.skeleton_maps import (
    NUM_PARTS,
    SKELETON_MAP_BONES,
    SKELETON_MAP_COLORS,
    render_skeleton_maps,
    skeleton_map_palette,
    skeleton_maps_for_batch,
    stack_skeleton_maps,
)

SIZE = (64, 64)  # image size == map size: input pixels are map pixels
PALETTE = skeleton_map_palette()
PART = {(a, b): k for k, (a, b) in enumerate(SKELETON_MAP_BONES)}


def standing_pose():
    """A frontal pose on a 64x64 image with arms stretched sideways, limbs well apart."""
    xy = {
        "pelvis": (32, 36), "r_hip": (28, 36), "r_knee": (26, 46), "r_ankle": (26, 58),
        "l_hip": (36, 36), "l_knee": (38, 46), "l_ankle": (38, 58), "spine": (32, 28),
        "thorax": (32, 20), "neck": (32, 16), "head": (32, 10), "l_shoulder": (40, 20),
        "l_elbow": (50, 20), "l_wrist": (60, 20), "r_shoulder": (24, 20), "r_elbow": (14, 20),
        "r_wrist": (4, 20),
    }
    joints = torch.zeros(1, NUM_JOINTS, 2)
    for name, p in xy.items():
        joints[0, J[name]] = torch.tensor(p, dtype=torch.float32)
    depth = torch.full((1, NUM_JOINTS), 5000.0)
    return joints, depth


def crossing(depth_r, depth_l):
    """Only r_hip-r_knee (horizontal, y=30) and l_hip-l_knee (vertical, x=30) are drawn."""
    joints = torch.zeros(1, NUM_JOINTS, 2)
    depth = torch.full((1, NUM_JOINTS), 3000.0)
    joints[0, J["r_hip"]], joints[0, J["r_knee"]] = torch.tensor([10.0, 30.0]), torch.tensor([50.0, 30.0])
    joints[0, J["l_hip"]], joints[0, J["l_knee"]] = torch.tensor([30.0, 10.0]), torch.tensor([30.0, 50.0])
    depth[0, J["r_hip"]], depth[0, J["r_knee"]] = depth_r
    depth[0, J["l_hip"]], depth[0, J["l_knee"]] = depth_l
    visible = torch.zeros(1, NUM_JOINTS, dtype=torch.bool)
    visible[0, [J["r_hip"], J["r_knee"], J["l_hip"], J["l_knee"]]] = True
    return joints, depth, visible


def colour_at(image, x, y):
    return image[0, :, y, x]


def test_fifteen_parts_rooted_at_thorax_without_neck():
    assert NUM_PARTS == 15 and len(SKELETON_MAP_COLORS) == 15
    joints = {j for bone in SKELETON_MAP_BONES for j in bone}
    assert joints == set(range(NUM_JOINTS)) - {J["neck"]}  # 16 joints, as in the paper (K = 16)
    children = [b for _, b in SKELETON_MAP_BONES]
    assert len(set(children)) == 15 and J["thorax"] not in children  # a tree with the thorax as root
    assert PALETTE.min() >= 0 and PALETTE.max() <= 1
    assert torch.all(PALETTE.sum(-1) > 0)  # no part is black (= empty)
    distances = torch.cdist(PALETTE, PALETTE) + 10 * torch.eye(15)
    assert distances.min() > 0.2  # pairwise distinct


def test_stick_pixels_have_their_part_colour_and_far_pixels_are_zero():
    joints, depth = standing_pose()
    maps = render_skeleton_maps(joints, depth, SIZE, SIZE, stick_width=3.0)
    fg, bg = maps["foreground"], maps["background"]
    assert fg.shape == bg.shape == (1, 3, 64, 64)
    assert fg.min() >= 0 and fg.max() <= 1
    forearm = PART[(J["l_elbow"], J["l_wrist"])]
    assert torch.allclose(colour_at(fg, 55, 20), PALETTE[forearm])
    assert torch.allclose(colour_at(fg, 55, 21), PALETTE[forearm])  # within half the width
    assert maps["foreground_part"][0, 20, 55] == forearm
    assert torch.count_nonzero(colour_at(fg, 55, 23)) == 0  # 3 px off the bone, width 3
    shin = PART[(J["r_knee"], J["r_ankle"])]
    assert torch.allclose(colour_at(fg, 26, 52), PALETTE[shin])
    head = PART[(J["thorax"], J["head"])]
    assert torch.allclose(colour_at(fg, 32, 16), PALETTE[head])  # through the dropped neck joint
    for x, y in [(5, 60), (60, 5), (50, 50), (10, 35)]:
        assert torch.count_nonzero(colour_at(fg, x, y)) == 0
    assert torch.count_nonzero(colour_at(bg, 55, 20)) == 0  # one part only: no background
    assert maps["background_part"][0, 20, 55] == -1


def test_front_bone_wins_the_foreground_and_the_other_is_background():
    horizontal, vertical = PART[(J["r_hip"], J["r_knee"])], PART[(J["l_hip"], J["l_knee"])]
    joints, depth, visible = crossing((1000.0, 1000.0), (2000.0, 2000.0))
    maps = render_skeleton_maps(joints, depth, SIZE, SIZE, 4.0, visible=visible)
    assert torch.allclose(colour_at(maps["foreground"], 30, 30), PALETTE[horizontal])
    assert torch.allclose(colour_at(maps["background"], 30, 30), PALETTE[vertical])
    # away from the crossing each bone is alone in the foreground
    assert torch.allclose(colour_at(maps["foreground"], 30, 15), PALETTE[vertical])
    assert torch.count_nonzero(colour_at(maps["background"], 30, 15)) == 0

    joints, depth, visible = crossing((2000.0, 2000.0), (1000.0, 1000.0))
    maps = render_skeleton_maps(joints, depth, SIZE, SIZE, 4.0, visible=visible)
    assert torch.allclose(colour_at(maps["foreground"], 30, 30), PALETTE[vertical])
    assert torch.allclose(colour_at(maps["background"], 30, 30), PALETTE[horizontal])
    # only the hidden bones and the empty pixels are missing: the visible mask hides all others
    assert torch.count_nonzero(maps["foreground"][0, :, 55:, :]) == 0


def test_depth_is_interpolated_along_the_stick():
    # the horizontal bone recedes from 1000 to 3000 mm; it crosses the vertical one (1800 mm)
    # at a quarter of its length, where it is at 1500 mm: in front, although its mean depth is 2000
    horizontal, vertical = PART[(J["r_hip"], J["r_knee"])], PART[(J["l_hip"], J["l_knee"])]
    joints, depth, visible = crossing((1000.0, 3000.0), (1800.0, 1800.0))
    joints[0, J["l_hip"]], joints[0, J["l_knee"]] = torch.tensor([20.0, 10.0]), torch.tensor([20.0, 50.0])
    maps = render_skeleton_maps(joints, depth, SIZE, SIZE, 4.0, visible=visible)
    assert maps["foreground_part"][0, 30, 20] == horizontal
    assert maps["background_part"][0, 30, 20] == vertical


def test_depth_offset_does_not_change_the_maps():
    joints, depth, visible = crossing((1000.0, 3000.0), (1800.0, 1800.0))
    a = render_skeleton_maps(joints, depth, SIZE, SIZE, 4.0, visible=visible)
    b = render_skeleton_maps(joints, depth - 2500.0, SIZE, SIZE, 4.0, visible=visible)  # root-relative
    assert torch.equal(a["foreground"], b["foreground"]) and torch.equal(a["background"], b["background"])


def test_batch_of_two_equals_two_single_renders():
    g = torch.Generator().manual_seed(0)
    joints = 16 + torch.rand(2, NUM_JOINTS, 2, generator=g) * 224
    depth = 4000 + torch.rand(2, NUM_JOINTS, generator=g) * 800
    visible = torch.rand(2, NUM_JOINTS, generator=g) > 0.1
    batch = render_skeleton_maps(joints, depth, (256, 256), (56, 56), 6.0, visible=visible)
    for i in range(2):
        single = render_skeleton_maps(joints[i:i + 1], depth[i:i + 1], (256, 256), (56, 56), 6.0,
                                      visible=visible[i:i + 1])
        for key in ("foreground", "background", "foreground_part", "background_part"):
            assert torch.equal(batch[key][i:i + 1], single[key])
    assert torch.count_nonzero(batch["background"]) > 0  # random poses overlap somewhere


def test_multi_scale_widths_and_map_resolution():
    joints, depth = standing_pose()
    joints = joints * 4 + 1.5  # the same pose on a 256x256 input (pixel-centre mapping to 64x64)
    maps = render_skeleton_maps(joints, depth, (256, 256), SIZE, [3.0, 7.0, 11.0])
    assert isinstance(maps, list) and len(maps) == 3
    covered = [m["foreground_part"] >= 0 for m in maps]
    assert covered[0].sum() < covered[1].sum() < covered[2].sum()
    assert torch.all(covered[1] | ~covered[0]) and torch.all(covered[2] | ~covered[1])
    forearm = PART[(J["l_elbow"], J["l_wrist"])]
    assert maps[0]["foreground_part"][0, 20, 55] == forearm
    single = render_skeleton_maps(joints, depth, (256, 256), SIZE, 7.0)
    assert torch.equal(single["foreground"], maps[1]["foreground"])
    assert stack_skeleton_maps(single).shape == (1, 6, 64, 64)


def test_maps_for_a_contract_batch():
    joints, depth = standing_pose()
    batch = {
        "image": torch.zeros(1, 3, 64, 64),
        "joints_2d": joints,
        "joints_3d": torch.zeros(1, NUM_JOINTS, 3),
        "root_depth": torch.tensor([5000.0]),
        "visible": torch.ones(1, NUM_JOINTS, dtype=torch.bool),
    }
    maps = skeleton_maps_for_batch(batch, SIZE, 3.0)
    direct = render_skeleton_maps(joints, depth, SIZE, SIZE, 3.0)
    assert torch.equal(maps["foreground"], direct["foreground"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_cuda_matches_cpu():
    g = torch.Generator().manual_seed(1)
    joints = 16 + torch.rand(4, NUM_JOINTS, 2, generator=g) * 224
    depth = 4000 + torch.rand(4, NUM_JOINTS, generator=g) * 800
    cpu = render_skeleton_maps(joints, depth, (256, 256), (64, 64), 6.0)
    gpu = render_skeleton_maps(joints.cuda(), depth.cuda(), (256, 256), (64, 64), 6.0)
    assert torch.equal(cpu["foreground_part"], gpu["foreground_part"].cpu())
    assert torch.equal(cpu["background_part"], gpu["background_part"].cpu())
