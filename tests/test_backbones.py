"""ResNet-50 with torchvision's state-dict names: names, shapes, loading, stages, truncation."""
from __future__ import annotations

import pytest
import torch

from lightning_modules.blocks.backbones import build_backbone
from lightning_modules.blocks.resnet import load_torchvision_weights, parse_up_to, resnet18, resnet50


def bn(name: str, channels: int) -> dict[str, tuple[int, ...]]:
    """A BatchNorm2d's five state-dict entries."""
    return {f"{name}.weight": (channels,), f"{name}.bias": (channels,), f"{name}.running_mean": (channels,),
            f"{name}.running_var": (channels,), f"{name}.num_batches_tracked": ()}


def torchvision_resnet50_state() -> dict[str, tuple[int, ...]]:
    """``torchvision.models.resnet50().state_dict()``: name -> shape, in torchvision's order.

    Written from the architecture, not from our model: stem conv1 7x7/2 (3 -> 64) and bn1;
    layer1..layer4 of 3, 4, 6, 3 bottlenecks of width 64, 128, 256, 512 and expansion 4, each
    conv1 1x1 (reduce) + bn1, conv2 3x3 (the stride, v1.5) + bn2, conv3 1x1 (x4) + bn3; the
    first block of each layer also downsample.0 (1x1 conv) + downsample.1 (BN); fc 2048 -> 1000.
    """
    state = {"conv1.weight": (64, 3, 7, 7), **bn("bn1", 64)}
    cin = 64
    for layer, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512)), start=1):
        for b in range(blocks):
            p = f"layer{layer}.{b}"
            state[f"{p}.conv1.weight"] = (width, cin, 1, 1)
            state.update(bn(f"{p}.bn1", width))
            state[f"{p}.conv2.weight"] = (width, width, 3, 3)
            state.update(bn(f"{p}.bn2", width))
            state[f"{p}.conv3.weight"] = (4 * width, width, 1, 1)
            state.update(bn(f"{p}.bn3", 4 * width))
            if b == 0:
                state[f"{p}.downsample.0.weight"] = (4 * width, cin, 1, 1)
                state.update(bn(f"{p}.downsample.1", 4 * width))
            cin = 4 * width
    state["fc.weight"] = (1000, 2048)
    state["fc.bias"] = (1000,)
    return state


EXPECTED = torchvision_resnet50_state()


def shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_expected_list_has_torchvision_count():
    # 53 convs (1 stem + 16 blocks x 3 + 4 downsample) + 53 BNs x 5 tensors + fc weight/bias
    assert len(EXPECTED) == 53 + 53 * 5 + 2 == 320


def test_names_and_shapes_are_torchvision_resnet50():
    model = resnet50(num_classes=1000)
    assert list(shapes(model).items()) == list(EXPECTED.items())  # same names, shapes and order
    backbone = {k: v for k, v in EXPECTED.items() if not k.startswith("fc.")}
    assert shapes(resnet50()) == backbone and len(backbone) == 318
    assert shapes(build_backbone("resnet50")) == backbone


def test_strides_sit_where_torchvision_puts_them():
    model = resnet50()
    assert model.conv1.stride == (2, 2) and model.conv1.padding == (3, 3)
    for layer, stride in (("layer1", 1), ("layer2", 2), ("layer3", 2), ("layer4", 2)):
        first = getattr(model, layer)[0]
        assert first.conv1.stride == (1, 1) and first.conv2.stride == (stride, stride)  # v1.5
        assert first.downsample[0].stride == (stride, stride)


def fake_torchvision_file(path, state=EXPECTED, seed=0):
    g = torch.Generator().manual_seed(seed)
    tensors = {k: torch.tensor(7) if k.endswith("num_batches_tracked") else torch.randn(s, generator=g)
               for k, s in state.items()}
    torch.save(tensors, path)
    return tensors


def test_load_torchvision_weights_loads_every_backbone_tensor(tmp_path):
    tensors = fake_torchvision_file(tmp_path / "resnet50-0676ba61.pth")
    model = resnet50()
    loaded, missing = load_torchvision_weights(model, tmp_path / "resnet50-0676ba61.pth")
    assert len(loaded) == 318 and missing == []
    assert all(torch.equal(v, tensors[k]) for k, v in model.state_dict().items())
    # the plain torch call a user would write loads the same, with fc the only unexpected keys
    fresh = resnet50()
    result = fresh.load_state_dict(torch.load(tmp_path / "resnet50-0676ba61.pth"), strict=False)
    assert result.missing_keys == [] and result.unexpected_keys == ["fc.weight", "fc.bias"]
    # with the classifier built, the whole file loads strictly
    resnet50(num_classes=1000).load_state_dict(tensors, strict=True)


def test_load_reports_missing_and_refuses_bad_files(tmp_path):
    partial = {k: v for k, v in EXPECTED.items() if not k.startswith("layer4.")}
    fake_torchvision_file(tmp_path / "partial.pth", partial)
    loaded, missing = load_torchvision_weights(resnet50(), tmp_path / "partial.pth")
    assert len(loaded) == 318 - len(missing) and missing and all(k.startswith("layer4.") for k in missing)

    torch.save([1, 2, 3], tmp_path / "list.pth")
    (tmp_path / "text.pth").write_text("not a checkpoint\n")
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}, "epoch": 3}, tmp_path / "lightning.ckpt")
    for name in ("list.pth", "text.pth", "lightning.ckpt", "absent.pth"):
        with pytest.raises(ValueError, match="not a") as error:
            load_torchvision_weights(resnet50(), tmp_path / name)
        assert "\n" not in str(error.value) and name in str(error.value)

    fake_torchvision_file(tmp_path / "r50.pth")
    with pytest.raises(ValueError, match="wrong shape"):
        load_torchvision_weights(resnet18(), tmp_path / "r50.pth")


def test_forward_stages():
    model = resnet50().eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        stages = model.forward_stages(x)
        out = model(x)
    assert {k: tuple(v.shape) for k, v in stages.items()} == {
        "layer1": (1, 256, 16, 16), "layer2": (1, 512, 8, 8), "layer3": (1, 1024, 4, 4), "layer4": (1, 2048, 2, 2)}
    assert torch.equal(out, stages["layer4"])
    assert model.stage_channels == {"layer1": 256, "layer2": 512, "layer3": 1024, "layer4": 2048}
    assert model.stage_strides == {"layer1": 4, "layer2": 8, "layer3": 16, "layer4": 32}
    assert resnet50(num_classes=10).logits(x).shape == (1, 10)


def test_truncated_up_to_res4f_and_res5a_without_stride(tmp_path):
    res4f = resnet50(up_to="res4f")
    assert shapes(res4f) == {k: v for k, v in EXPECTED.items() if k.startswith(("conv1", "bn1", "layer1", "layer2", "layer3"))}
    assert (res4f.out_channels, res4f.stride) == (1024, 16)
    assert res4f(torch.rand(1, 3, 64, 64)).shape == (1, 1024, 4, 4)

    res5a = resnet50(up_to="res5a", layer4_stride=1)
    assert len(res5a.layer4) == 1 and res5a.layer4[0].conv2.stride == (1, 1)
    assert res5a.layer4[0].downsample[0].stride == (1, 1)
    assert (res5a.out_channels, res5a.stride) == (2048, 16)
    assert res5a(torch.rand(1, 3, 64, 64)).shape == (1, 2048, 4, 4)
    # a torchvision file fills both: the stride does not change any shape
    fake_torchvision_file(tmp_path / "r50.pth")
    loaded, missing = load_torchvision_weights(res5a, tmp_path / "r50.pth")
    assert missing == [] and "layer4.0.downsample.0.weight" in loaded and "layer4.1.conv1.weight" not in loaded


def test_up_to_names():
    blocks = (3, 4, 6, 3)
    assert parse_up_to("layer4", blocks) == (3, 4, 6, 3)
    assert parse_up_to("layer3", blocks) == parse_up_to("res4", blocks) == parse_up_to("res4f", blocks) == (3, 4, 6)
    assert parse_up_to("res5a", blocks) == (3, 4, 6, 1)
    assert parse_up_to("res3b", blocks) == (3, 2)
    with pytest.raises(ValueError, match="res4 has 6 blocks"):
        parse_up_to("res4g", blocks)
    with pytest.raises(ValueError, match="unknown up_to"):
        parse_up_to("conv5", blocks)
