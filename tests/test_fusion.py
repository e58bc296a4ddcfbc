"""Tekin et al. 2017 fusion network: Eq. 1 mixing, the special cases, Eq. 3/4, pruning."""
from __future__ import annotations

import pytest
import torch

from lightning_modules.blocks.fusion import (
    FixedFusionWeights,
    FusionNetwork,
    SigmoidFusionWeights,
    count_parameters,
    fusion_plan,
    squared_correlation,
)

SIZE, JOINTS, CONV, FC = 16, 5, [4, 6], [12]
L = len(CONV) + len(FC)


def make_network(weights) -> FusionNetwork:
    torch.manual_seed(0)
    return FusionNetwork({"image": 3, "cms": JOINTS}, CONV, FC, SIZE, 3 * JOINTS, weights).eval()


@pytest.fixture
def inputs() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return {"image": torch.rand(4, 3, SIZE, SIZE), "cms": torch.rand(4, JOINTS, SIZE, SIZE)}


def manual_forward(network: FusionNetwork, inputs, w) -> torch.Tensor:
    """Eq. 1 written out layer by layer."""
    image, cms = [inputs["image"]], [inputs["cms"]]
    for l in range(1, L + 1):
        image.append(network.streams["image"][l - 1](image[-1]))
        cms.append(network.streams["cms"][l - 1](cms[-1]))
    mix = torch.cat([image[0], cms[0]], 1)  # Z_0
    for l in range(1, L + 1):
        z = network.fusion[str(l)](mix)
        mix = (1 - w[l - 1]) * torch.cat([image[l], cms[l]], 1) + w[l - 1] * z
    return network.fusion[str(L + 1)](mix)


def set_sigmoid(network: FusionNetwork, alpha: float, beta: float) -> None:
    with torch.no_grad():
        network.weights.alpha.fill_(alpha)
        network.weights.beta.fill_(beta)


def test_eq1_mixes_data_and_fusion_streams(inputs):
    w = [0.2, 0.7, 0.45]
    network = make_network(FixedFusionWeights(w))
    assert network.plan.data_depth == L and network.plan.fusion_layers == (1, 2, 3, 4)
    torch.testing.assert_close(network(inputs), manual_forward(network, inputs, w))


def test_sigmoid_weights_follow_eq3():
    weights = SigmoidFusionWeights(4, alpha=2.0, beta=1.5)
    expected = torch.tensor([1 / (1 + torch.exp(torch.tensor(-2.0 * (l - 1.5)))) for l in range(1, 5)])
    torch.testing.assert_close(weights(), expected)
    assert SigmoidFusionWeights(6).beta.item() == 3.0  # the paper's start: the middle layer


def test_weights_of_one_reduce_to_the_fusion_stream(inputs):
    network = make_network(SigmoidFusionWeights(L))
    set_sigmoid(network, alpha=1e3, beta=0.5)  # w = 1 everywhere: early fusion
    chain = torch.cat([inputs["image"], inputs["cms"]], 1)
    for l in range(1, L + 2):
        chain = network.fusion[str(l)](chain)
    torch.testing.assert_close(network(inputs), chain)
    with torch.no_grad():  # the data streams no longer matter
        for p in network.streams.parameters():
            p.add_(1.0)
    torch.testing.assert_close(network(inputs), chain)


def test_beta_at_last_layer_is_late_fusion(inputs):
    network = make_network(SigmoidFusionWeights(L))
    set_sigmoid(network, alpha=1e3, beta=L + 0.5)  # w = 0 everywhere: late fusion
    image, cms = inputs["image"], inputs["cms"]
    for l in range(L):
        image, cms = network.streams["image"][l](image), network.streams["cms"][l](cms)
    expected = network.fusion[str(L + 1)](torch.cat([image, cms], 1))
    torch.testing.assert_close(network(inputs), expected)
    late = make_network(FixedFusionWeights.after_layer(L, L))
    assert late.plan.fusion_layers == (L + 1,) and late.plan.data_depth == L


@pytest.mark.parametrize(
    "weights, depth, fusion",
    [
        ([1.0, 1.0, 1.0], 0, (1, 2, 3, 4)),  # early
        ([0.0, 0.0, 0.0], 3, (4,)),  # late
        ([0.0, 1.0, 1.0], 1, (2, 3, 4)),  # fuse after layer 1
        ([0.0, 0.0, 1.0], 2, (3, 4)),
        ([0.3, 1.0, 1.0], 1, (1, 2, 3, 4)),
        (None, 3, (1, 2, 3, 4)),
    ],
)
def test_fusion_plan_keeps_only_what_the_output_reads(weights, depth, fusion):
    plan = fusion_plan(weights, 3)
    assert (plan.data_depth, plan.fusion_layers) == (depth, fusion)


def test_fixed_strategies_build_no_dead_layers():
    early = make_network(FixedFusionWeights.after_layer(0, L))
    late = make_network(FixedFusionWeights.after_layer(L, L))
    full = make_network(SigmoidFusionWeights(L))
    assert len(early.streams["image"]) == 0 and len(late.fusion) == 1
    assert count_parameters(early) < count_parameters(full) and count_parameters(late) < count_parameters(full)
    with pytest.raises(ValueError, match="outside 0..3"):
        FixedFusionWeights.after_layer(4, L)


def test_gradients_reach_alpha_and_beta(inputs):
    network = make_network(SigmoidFusionWeights(L, alpha=0.5))
    network(inputs).pow(2).sum().backward()
    for parameter in (network.weights.alpha, network.weights.beta):
        assert parameter.grad is not None and torch.isfinite(parameter.grad) and parameter.grad.abs() > 0


def test_pruned_network_matches_and_is_smaller(inputs):
    network = make_network(SigmoidFusionWeights(L))
    set_sigmoid(network, alpha=60.0, beta=1.5)  # w = (~0, ~1, ~1): fuse after layer 1
    pruned = network.pruned(tolerance=1e-6)
    assert pruned.plan.data_depth == 1 and pruned.plan.fusion_layers == (2, 3, 4)
    assert count_parameters(pruned) < count_parameters(network) - 2
    torch.testing.assert_close(pruned(inputs), network(inputs), atol=1e-5, rtol=1e-4)


def test_soft_weights_cannot_be_pruned():
    network = make_network(SigmoidFusionWeights(L))
    with pytest.raises(ValueError, match=r"cannot prune: fusion weights w_1=.* not within 0.001"):
        network.pruned(tolerance=1e-3)


def test_squared_correlation_hand_values():
    x = torch.tensor([0.0, 1.0, 2.0, 3.0])
    features = torch.stack([x, 2 * x + 1, torch.tensor([1.0, -1.0, -1.0, 1.0]), torch.ones(4)], 1)
    r2 = squared_correlation(features)
    assert r2[0, 1] == pytest.approx(1.0) and r2[0, 2] == pytest.approx(0.0, abs=1e-7)
    assert r2[3].abs().max() == 0  # a constant feature correlates with nothing


def test_the_authors_squared_alpha_form():
    weights = SigmoidFusionWeights(4, alpha=-3.0, beta=1.5, squared_alpha=True)
    expected = torch.sigmoid(9.0 * (torch.arange(1, 5.0) - 1.5))  # sigmoid(alpha^2 (l - beta)): sign-free
    assert torch.allclose(weights(), expected)
    assert torch.allclose(SigmoidFusionWeights(4, alpha=-3.0, beta=1.5)(), torch.sigmoid(-3.0 * (torch.arange(1, 5.0) - 1.5)))
