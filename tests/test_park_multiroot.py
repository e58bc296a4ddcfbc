"""Park et al. 2016: grid soft labels (Eq. 1-2), the cross-entropy (Eq. 3), 2D-cls without a 3D
gradient into the 2D layers, Multi-reg (Eq. 4, 6, 7), scale recovery, the per-action filter."""
from __future__ import annotations

import json
import math

import pytest
import torch

from lightning_modules.blocks.grid2d import containing_cell, expected_position, grid_cross_entropy, soft_labels
from lightning_modules.park_multiroot import (
    SIX_ROOTS, TORSO_BONES, MultiRootRegression, average_roots, bone_length_stats, normalise_pose,
    summarise_runs,
)
from pose3d.config import ConfigError
from pose3d.skeleton import H36M_BONES, H36M_PARENTS, JOINT_INDEX, bone_lengths
from tests.helpers import OPTIM, random_batch

SIZE, GRID = 64, 16  # cells of w_g = 4 px; cell (row, col) has its centre at ((col + .5) 4 - .5, (row + .5) 4 - .5)
INFO = {"num_joints": 17, "image_size": 32, "action_names": ("a", "b")}


def pixel(col: float, row: float) -> list[float]:
    """Crop pixels of grid coordinates (cell centres at integers)."""
    return [(col + 0.5) * 4 - 0.5, (row + 0.5) * 4 - 0.5]


def labels_of(*points, mask=None) -> torch.Tensor:
    joints = torch.tensor([list(points)], dtype=torch.float32)
    mask = torch.ones(joints.shape[:2], dtype=torch.bool) if mask is None else torch.tensor([mask])
    return soft_labels(joints, mask, SIZE, GRID)[0]


def cell(col: int, row: int) -> int:
    return row * GRID + col


def model(**cfg) -> MultiRootRegression:
    torch.manual_seed(0)
    base = {"conv_widths": [4, 8, 8, 8, 8], "fc_2d": 16, "fc_3d": 16, "fc_probs": 8, "grid": 8}
    return MultiRootRegression(model={**base, **cfg}, optim=OPTIM, data_info=INFO)


# -- Eq. 1-3 -----------------------------------------------------------------------------
def test_soft_labels_by_hand():
    centre, border, corner4, general = labels_of(pixel(3, 5), pixel(3.5, 5), pixel(3.5, 5.5), pixel(3.3, 5.4))
    # at a cell centre: d = 0 there, exactly w_g to the 4-neighbours (not < w_g): one-hot (Eq. 1's limit)
    assert centre[cell(3, 5)] == 1 and centre.sum() == 1
    # on the border of two cells: d = w_g / 2 to both, sqrt(1.25) w_g to the next ones: 1/2 each
    assert border[cell(3, 5)] == pytest.approx(0.5) and border[cell(4, 5)] == pytest.approx(0.5)
    assert torch.count_nonzero(border) == 2
    # on the corner of four cells: sqrt(1/2) w_g to each of them: 1/4 each
    assert torch.count_nonzero(corner4) == 4
    assert all(corner4[cell(c, r)] == pytest.approx(0.25) for c in (3, 4) for r in (5, 6))
    # (3.3, 5.4): distances 0.5, sqrt(.65), sqrt(.45), sqrt(.85) cell widths, all < 1
    inverse = {cell(3, 5): 1 / 0.5, cell(4, 5): 1 / math.sqrt(0.65), cell(3, 6): 1 / math.sqrt(0.45), cell(4, 6): 1 / math.sqrt(0.85)}
    total = sum(inverse.values())  # p = 0.343896, 0.213275, 0.256325, 0.186504
    assert torch.count_nonzero(general) == 4
    for index, value in inverse.items():
        assert general[index].item() == pytest.approx(value / total, rel=1e-5)


def test_soft_labels_at_image_corners_masked_and_outside():
    top_left, bottom_right, masked, outside, slightly_out = labels_of(
        [-0.5, -0.5], [63.5, 63.5], pixel(7, 7), [-9.0, 30.0], [-1.0, 1.5], mask=[True, True, False, True, True])
    # the crop's corner is sqrt(1/2) cell widths from the corner cell's centre and >= 1 from every other
    assert top_left[cell(0, 0)] == 1 and top_left.sum() == 1
    assert bottom_right[cell(15, 15)] == 1 and bottom_right.sum() == 1
    assert masked.sum() == 0  # not visible / no 2D label: no target, no loss
    assert outside.sum() == 0  # no cell centre within one cell width
    assert slightly_out[cell(0, 0)] == 1  # half a pixel outside: still the border cell (d = 0.125 w_g)


def test_cross_entropy_by_hand():
    logits = torch.zeros(1, 2, GRID * GRID)
    logits[0, 0, cell(3, 5)], logits[0, 0, cell(4, 5)] = 2.0, 1.0
    labels = labels_of(pixel(3.25, 5), pixel(3.5, 5), mask=[True, False])[None]  # first: 3/4 and 1/4
    assert labels[0, 0, cell(3, 5)].item() == pytest.approx(0.75)
    log_z = math.log(math.exp(2) + math.exp(1) + GRID * GRID - 2)
    expected = -(0.75 * (2 - log_z) + 0.25 * (1 - log_z))  # = log Z - 1.75
    ce = grid_cross_entropy(logits, labels)
    assert ce[0, 0].item() == pytest.approx(expected, rel=1e-6) and ce[0, 1].item() == 0.0
    uniform = grid_cross_entropy(torch.zeros(1, 1, GRID * GRID), labels[:, :1])
    assert uniform.item() == pytest.approx(math.log(GRID * GRID), rel=1e-6)


def test_model_2d_loss_sums_joints_and_skips_unlabelled_samples():
    net = model().eval()
    data = random_batch(3, seed=1)
    data["has_2d"][2] = False
    data["visible"][0, :5] = False
    logits = net(data["image"])["logits"]
    per_joint = net.loss_2d_per_joint(logits, data)
    assert (per_joint[0, :5] == 0).all() and (per_joint[2] == 0).all() and (per_joint[1] > 0).all()
    _, logs = net.training_loss(data)
    assert logs["loss_2d"].item() == pytest.approx(per_joint[:2].sum().item() / 2, rel=1e-5)


def test_decoded_2d_is_the_expected_cell_centre_and_cell_accuracy_counts_the_argmax():
    probabilities = torch.zeros(1, 1, GRID * GRID)
    probabilities[0, 0, cell(3, 5)], probabilities[0, 0, cell(4, 5)] = 0.75, 0.25
    assert expected_position(probabilities, SIZE)[0, 0].tolist() == pytest.approx([0.75 * 13.5 + 0.25 * 17.5, 21.5])
    index, inside = containing_cell(torch.tensor([[pixel(3.49, 5), [-0.5, -0.5], [64.0, 3.0]]]), SIZE, GRID)
    assert index[0, :2].tolist() == [cell(3, 5), cell(0, 0)] and inside[0].tolist() == [True, True, False]


# -- 2D-cls (Sec. 3.2) ---------------------------------------------------------------------
def test_no_3d_gradient_reaches_the_2d_softmax_or_layers():
    net = model(cls2d=True)
    data = random_batch(4, seed=3)
    out = net(data["image"])
    loss_3d = net.loss_3d_per_root(out["per_root"], data["joints_3d"]).sum()
    assert torch.autograd.grad(loss_3d, out["logits"], retain_graph=True, allow_unused=True)[0] is None
    loss_3d.backward()
    assert all(p.grad is None for p in [*net.fc1_2d.parameters(), *net.fc2_2d.parameters()])
    assert net.fc_probs_2d[0].weight.grad.abs().sum() > 0  # fc probs 2D is trained by the 3D loss
    assert net.features[0][0].weight.grad.abs().sum() > 0  # the shared convolutions by both


def test_baseline_has_no_2d_cls_layers():
    net = model(cls2d=False, roots=["pelvis"])
    assert net.fc_probs_2d is None and len(net.fc2_3d) == 1 and net.fc2_3d[0].in_features == 16


# -- Multi-reg (Sec. 3.3, Eq. 4, 6, 7) -------------------------------------------------------
def test_six_roots_cover_every_joint_with_their_neighbours():
    roots = {JOINT_INDEX[name] for name in SIX_ROOTS}
    covered = set(roots) | {j for j, p in enumerate(H36M_PARENTS) if p in roots} | {H36M_PARENTS[r] for r in roots if r}
    assert covered == set(range(17)) and len(roots) == 6


def test_each_root_head_receives_only_its_own_gradient():
    net = model()
    data = random_batch(4, seed=4)
    for r in range(6):
        net.zero_grad(set_to_none=True)
        net.loss_3d_per_root(net(data["image"])["per_root"], data["joints_3d"])[:, r].sum().backward()
        grads = [head.weight.grad for head in net.fc2_3d]
        assert grads[r] is not None and grads[r].abs().sum() > 0
        assert all(g is None or g.abs().sum() == 0 for k, g in enumerate(grads) if k != r)


def test_eq4_6_targets_and_loss_with_a_2d_only_sample_masked():
    net = model().eval()
    data = random_batch(3, seed=5, two_d_only=1)
    data["joints_3d"][2] = 0.0
    out = net(data["image"])
    unit = normalise_pose(data["joints_3d"])
    assert unit[:2].flatten(1).norm(dim=1).tolist() == pytest.approx([1.0, 1.0]) and unit[2].abs().sum() == 0
    targets = net.root_targets(data["joints_3d"])
    knee = SIX_ROOTS.index("r_knee")
    assert torch.allclose(targets[:, knee], unit - unit[:, JOINT_INDEX["r_knee"]][:, None])
    assert (out["per_root"][:, knee, JOINT_INDEX["r_knee"]] == 0).all()  # each head's root row is zero
    loss, logs = net.training_loss(data)
    eq6 = (out["per_root"] - targets).pow(2).sum(dim=(1, 2, 3))[:2].mean()  # sum over roots and joints
    assert loss.item() == pytest.approx(0.1 * logs["loss_2d"].item() + 0.5 * eq6.item(), rel=1e-5)
    assert logs["loss_3d"].item() == pytest.approx(eq6.item() / 6, rel=1e-5)  # logged: mean over roots


def test_eq7_translates_each_root_pose_to_zero_mean_and_averages():
    pose = torch.randn(2, 17, 3)
    roots = [0, 2, 5]
    per_root = torch.stack([pose - pose[:, r : r + 1] for r in roots], dim=1)
    assert torch.allclose(average_roots(per_root), pose - pose.mean(1, keepdim=True), atol=1e-6)
    offsets = torch.tensor([[1.0, 0, 0], [0, 3.0, 0], [0, 0, -2.0]])  # by hand: two roots of a two-joint body
    two = torch.tensor([[[[0.0, 0, 0], [2.0, 0, 0]], [[-4.0, 0, 0], [0.0, 0, 0]]]]) + offsets[:1]
    assert average_roots(two)[0].tolist() == [[-1.5, 0, 0], [1.5, 0, 0]]  # mean of (-1, 1) and (-2, 2)


# -- scale recovery (Sec. 4) -----------------------------------------------------------------
def test_scale_recovery_from_the_training_torso_lengths():
    net = model()
    train = random_batch(5, seed=6, two_d_only=2)["joints_3d"]
    has_3d = torch.tensor([True, True, True, False, False])
    stats = bone_length_stats(train, has_3d)
    assert stats[-1] == 3 and torch.allclose(stats[:-1], bone_lengths(train[:3].double()).sum(0))
    net.bone_length_sum.copy_(stats[:-1])
    net.bone_length_count.fill_(stats[-1])
    torso = [[j for j, _ in H36M_BONES].index(JOINT_INDEX[n]) for n in TORSO_BONES]
    expected = bone_lengths(train[:3].double())[:, torso].sum(-1).mean()
    assert net.reference_length().item() == pytest.approx(expected.item(), rel=1e-9)
    test_pose = torch.randn(2, 17, 3) * 300
    test_pose *= (expected / bone_lengths(test_pose.double())[:, torso].sum(-1))[:, None, None].float()  # torso = mean
    recovered = net.recover_scale(normalise_pose(test_pose))
    assert torch.allclose(recovered, test_pose - test_pose.mean(1, keepdim=True), atol=1e-3)


def test_predict_is_pelvis_relative_mm_with_2d_in_the_crop():
    net = model().eval()
    prediction = net.predict(random_batch(2, seed=7))
    joints_3d, joints_2d = prediction["joints_3d"], prediction["joints_2d"]
    assert joints_3d.shape == (2, 17, 3) and (joints_3d[:, 0] == 0).all()
    assert joints_2d.shape == (2, 17, 2) and ((joints_2d >= -0.5) & (joints_2d < 31.5)).all()
    torso = [[j for j, _ in H36M_BONES].index(JOINT_INDEX[n]) for n in TORSO_BONES]
    lengths = bone_lengths(joints_3d)[:, torso].sum(-1)
    assert torch.allclose(lengths, net.reference_length().float().expand(2), rtol=1e-4)  # the template body before training


# -- schedule, config, training -----------------------------------------------------------
def test_lambda_2d_schedule_and_config_errors():
    net = model(lambda_2d_schedule=[[0, 0.1], [16, 0.01]])
    assert [net.lambda_2d(e) for e in (0, 15, 16, 27)] == [0.1, 0.1, 0.01, 0.01]
    with pytest.raises(ConfigError, match="model.lambda_2d_schedule"):
        model(lambda_2d_schedule=[[2, 0.1]])
    with pytest.raises(ConfigError, match="model.roots: \\['pelvis', 'tail'\\]; expected distinct joint names"):
        model(roots=["pelvis", "tail"])


def test_loss_goes_down_on_a_fixed_batch():
    net = model()
    data = random_batch(8, seed=8)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        optimizer.zero_grad()
        loss, _ = net.training_loss(data)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_paper_preset_layer_shapes():
    from harness.train import load_config

    cfg = load_config(["experiment=park_multiroot", "preset=paper"])
    assert (cfg.data.image_size, cfg.data.batch_size, cfg.trainer.max_epochs, cfg.optim.name) == (225, 128, 28, "sgd")
    assert (cfg.optim.lr, cfg.optim.step_size, cfg.optim.gamma, cfg.optim.weight_decay) == (0.01, 4, 0.5, 0.001)
    assert cfg.model.lambda_2d_schedule == [[0, 0.1], [16, 0.01]] and cfg.model.lambda_3d == 0.5
    with torch.device("meta"):
        net = MultiRootRegression(model=dict(cfg.model), optim=OPTIM, data_info={"image_size": 225})
    convs = [m for m in net.features.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.kernel_size[0], c.stride[0], c.out_channels) for c in convs] == [
        (7, 2, 48), (5, 2, 128), (3, 1, 192), (3, 1, 192), (3, 1, 128)]
    pools = [m for m in net.features.modules() if isinstance(m, torch.nn.MaxPool2d)]
    assert [(p.kernel_size, p.stride) for p in pools] == [(3, 2)] * 3
    assert net.fc1_2d[0].in_features == 128 * 8 * 8  # 225 -> 113 -> 57 -> 29 -> 15 -> 8
    assert net.fc2_2d.out_features == 17 * 16 * 16 and net.fc_probs_2d[0].in_features == 17 * 256
    assert [h.in_features for h in net.fc2_3d] == [1024 + 512] * 6
    assert all(isinstance(m[1], torch.nn.BatchNorm1d) and m[3].p == 0.3 for m in (net.fc1_2d, net.fc1_3d, net.fc_probs_2d))


def test_variants_are_table_2():
    from harness.train import load_config

    def model_of(variant):
        m = load_config(["experiment=park_multiroot", f"variant={variant}"]).model
        return list(m.roots), m.cls2d

    assert model_of("baseline") == (["pelvis"], False) and model_of("cls2d") == (["pelvis"], True)
    assert model_of("multi_reg") == (list(SIX_ROOTS), False) and model_of("both") == (list(SIX_ROOTS), True)


# -- the per-action data filter (the paper trains one model per action) ---------------------
def test_per_action_filter_keeps_only_those_actions_in_every_split():
    from datamodules.synthetic import SyntheticDataModule
    from harness.train import load_config

    cfg = load_config(["experiment=park_multiroot", "preset=smoke", "data.actions=[walking, sitting]"])
    assert list(cfg.data.actions) == ["walking", "sitting"]
    data = SyntheticDataModule({"actions": ["walking", "sitting"], "train_size": 40, "val_size": 20, "test_size": 20})
    wanted = {data.action_names.index("walking"), data.action_names.index("sitting")}
    for split in ("train", "val", "test"):
        dataset = data.dataset(split)
        assert {dataset.describe(i).action for i in range(len(dataset))} == wanted
    everything = SyntheticDataModule({"train_size": 60}).dataset("train")
    assert len({everything.describe(i).action for i in range(60)}) == len(data.action_names)  # default: all
    with pytest.raises(ConfigError, match="data.actions: 'Walking'"):
        SyntheticDataModule({"actions": ["Walking"]})


# -- the ablation's per-action table and Figure 4 ---------------------------------------------
def test_ablation_summary_tables_and_figure4(tmp_path):
    for k, variant in enumerate(("baseline", "multi_reg", "cls2d", "both")):
        run = tmp_path / "runs" / variant
        run.mkdir(parents=True)
        (run / "config.yaml").write_text(f"variant: {variant}\nseed: 0\n")
        per_action = {"walking": {"mpjpe": 100.0 - 5 * k}, "sitting": {"mpjpe": 120.0 - 5 * k}}
        (run / "metrics.json").write_text(json.dumps({"test/mpjpe": 110.0 - 5 * k, "per_action": per_action}))
        curves = [{"epoch": e, "train_loss_3d": 0.1 / (e + 1), "val_loss_3d": 0.2 / (e + 1) - 0.01 * (variant in ("cls2d", "both"))}
                  for e in range(3)]
        (run / "loss_curves.json").write_text(json.dumps(curves))
    reference = {"source": "Table 2", "per_action": {"baseline": {"Walking": 72.55, "Eating": 95.21}}}
    text = summarise_runs(sorted((tmp_path / "runs").iterdir()), tmp_path / "out", reference)
    assert "| baseline | 1 | 120.0 | 100.0 (72.55) | 110.0 |" in text  # our walking beside the paper's
    assert "| baseline | 72.55 | 95.21 | 83.88 |" in text
    assert "Ordering baseline > multi_reg > cls2d > both in mean test MPJPE (the paper's): holds" in text
    assert "2D-cls lowers the held-out loss more than the training loss: yes" in text
    assert (tmp_path / "out" / "figure4.png").is_file() and (tmp_path / "out" / "per_action.md").read_text() == text
