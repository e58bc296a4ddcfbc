"""Skeleton tables and the mappings of other skeletons into H36M-17."""
import numpy as np
import pytest
import torch

from pose3d.skeleton import (
    BVH_RIGS,
    FLIP_PERMUTATION,
    H36M_JOINTS,
    JOINT_INDEX,
    LSP_14,
    MPI_INF_3DHP_17,
    MPII_16,
    SOURCE_SKELETONS,
    SUBSET_14,
    h36m_to_subset,
    map_to_h36m,
)

J = JOINT_INDEX


def _labelled(num_joints: int, batch=()) -> np.ndarray:
    """Points whose x coordinate is the joint's index + 1 (0 means 'empty')."""
    pts = np.zeros(batch + (num_joints, 3))
    pts[..., 0] = np.arange(num_joints) + 1
    return pts


def _source_of(out: np.ndarray) -> list[int]:
    """For each H36M slot, the source index it was filled from, -1 for an empty slot."""
    return (np.asarray(out)[..., 0].reshape(-1, 17)[0] - 1).astype(int).tolist()


def test_flip_permutation_is_an_involution():
    perm = np.array(FLIP_PERMUTATION)
    assert (perm[perm] == np.arange(17)).all()
    assert H36M_JOINTS[perm[J["l_wrist"]]] == "r_wrist"


def test_mpii_slots_and_mask():
    assert len(MPII_16) == 16
    out, mask = map_to_h36m(_labelled(16, (4,)), "mpii")
    assert out.shape == (4, 17, 3)
    src = _source_of(out)
    assert src[J["pelvis"]] == MPII_16.index("pelvis") == 6
    assert src[J["thorax"]] == MPII_16.index("thorax") == 7
    assert src[J["neck"]] == MPII_16.index("upper_neck") == 8
    assert src[J["head"]] == MPII_16.index("head_top") == 9
    assert src[J["r_ankle"]] == 0 and src[J["l_wrist"]] == 15 and src[J["r_shoulder"]] == 12
    # MPII has no mid-back joint: spine is masked and zero, everything else present
    assert mask.tolist() == [name != "spine" for name in H36M_JOINTS]
    assert (out[:, J["spine"]] == 0).all()


def test_mpi_inf_3dhp_slots_all_present():
    assert MPI_INF_3DHP_17[0] == "head_top" and MPI_INF_3DHP_17[14] == "pelvis"
    assert MPI_INF_3DHP_17[15:] == ("spine", "head")
    out, mask = map_to_h36m(_labelled(17), "mpi_inf_3dhp")
    src = _source_of(out)
    assert mask.all()
    expected = {"pelvis": 14, "spine": 15, "thorax": 1, "neck": 16, "head": 0,
                "r_hip": 8, "l_hip": 11, "l_ankle": 13, "r_wrist": 4, "l_shoulder": 5}
    for name, index in expected.items():
        assert src[J[name]] == index, name
    assert sorted(src) == list(range(17))  # a permutation: nothing dropped or doubled


def test_lsp_matches_subset_14():
    out, mask = map_to_h36m(_labelled(14), "lsp")
    assert sorted(np.flatnonzero(mask).tolist()) == sorted(SUBSET_14)
    assert _source_of(out)[J["thorax"]] == LSP_14.index("neck")
    assert _source_of(out)[J["head"]] == LSP_14.index("head_top")


def test_torch_input_keeps_type_and_dtype():
    pts = torch.tensor(_labelled(16, (2, 3)), dtype=torch.float32)
    out, mask = map_to_h36m(pts, "mpii")
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (2, 3, 17, 3)
    assert isinstance(mask, np.ndarray) and mask.dtype == bool
    assert (out[..., J["spine"], :] == 0).all()
    assert out[0, 0, J["head"], 0].item() == MPII_16.index("head_top") + 1


@pytest.mark.parametrize("name", ["mpi_inf_3dhp", "mpii", "lsp", "h36m"])
def test_subset_round_trip(name):
    skel = SOURCE_SKELETONS[name]
    pts = np.random.default_rng(0).normal(size=(5, skel.num_joints, 2))
    h36m, _ = map_to_h36m(pts, name)
    back, mask = h36m_to_subset(h36m, name)
    assert mask.all()  # every joint of these sources has an H36M slot
    np.testing.assert_array_equal(back, pts)


def test_errors():
    with pytest.raises(ValueError, match="16 joints"):
        map_to_h36m(np.zeros((17, 2)), "mpii")
    with pytest.raises(ValueError, match="unknown skeleton"):
        map_to_h36m(np.zeros((17, 2)), "coco")


def test_bvh_rig_tables_name_h36m_joints():
    for rig in BVH_RIGS.values():
        assert set(rig.joints) <= set(H36M_JOINTS)
        assert rig.joints["pelvis"] == (rig.joints["l_hip"], rig.joints["r_hip"])  # hip centre


def test_bone_vectors_and_lengths_follow_h36m_bones():
    import torch

    from pose3d.skeleton import BONE_CHILDREN, BONE_PARENTS, H36M_BONES, bone_lengths, bone_vectors

    joints = torch.randn(2, 17, 3)
    vectors = bone_vectors(joints)
    k = BONE_CHILDREN.index(3)  # r_ankle, child of r_knee
    assert vectors.shape == (2, 16, 3) and torch.equal(vectors[:, k], joints[:, 3] - joints[:, BONE_PARENTS[k]])
    assert list(zip(BONE_CHILDREN, BONE_PARENTS)) == list(H36M_BONES)
    assert torch.allclose(bone_lengths(joints), vectors.norm(dim=-1))
    assert bone_vectors(joints.numpy()).shape == (2, 16, 3)
