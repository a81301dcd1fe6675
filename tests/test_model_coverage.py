"""The engine on the architectures people prune: one registry of builders, one contract each.

Every entry is pruned with a uniform plan over the groups ``init_space`` offers, exported to ONNX
and run by ONNX Runtime; the outputs must match torch and parameters must fall. The full sweep over
torchvision's classification models is ``bench/bench_coverage.py``; these are small, fast cases of
each structure (grouped convs, channel shuffle, depthwise + SE, LayerNorm blocks, attention).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from autoprune.latency.onnx import export_onnx, onnx_outputs
from autoprune.prune.engine import count_macs_params, prune
from autoprune.prune.plan import Plan
from autoprune.space.space import init_space
from tests.helpers import tiny_vit


def _tv(name: str, **kwargs):
    return lambda: torchvision.models.get_model(name, weights=None, **kwargs)


MODELS = {
    "resnet18": (_tv("resnet18", num_classes=10), (3, 64, 64)),
    "resnext50_32x4d": (_tv("resnext50_32x4d", num_classes=10), (3, 64, 64)),  # grouped convs
    "regnet_y_400mf": (_tv("regnet_y_400mf", num_classes=10), (3, 64, 64)),  # grouped convs + SE
    "shufflenet_v2_x0_5": (_tv("shufflenet_v2_x0_5", num_classes=10), (3, 64, 64)),  # channel shuffle
    "mobilenet_v3_small": (_tv("mobilenet_v3_small", num_classes=10), (3, 64, 64)),  # depthwise + SE
    "efficientnet_b0": (_tv("efficientnet_b0", num_classes=10), (3, 64, 64)),
    "densenet121": (_tv("densenet121", num_classes=10), (3, 64, 64)),  # concatenations
    "convnext_tiny": (_tv("convnext_tiny", num_classes=10), (3, 64, 64)),  # channels-last LayerNorm
    "vit": (lambda: torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4,
                                                         hidden_dim=64, mlp_dim=128, num_classes=10), (3, 32, 32)),
    "swin": (lambda: torchvision.models.SwinTransformer(patch_size=[4, 4], embed_dim=32, depths=[2, 2],
                                                        num_heads=[2, 4], window_size=[4, 4], num_classes=10),
             (3, 64, 64)),
    "timm_style_vit": (tiny_vit, (1, 16, 16)),  # attention heads as groups
    "timm_deit": (lambda: _timm("deit_tiny_patch16_224", img_size=32, patch_size=8), (3, 32, 32)),
    "timm_efficientnet": (lambda: _timm("efficientnet_b0"), (3, 64, 64)),
    "timm_regnety": (lambda: _timm("regnety_002"), (3, 64, 64)),
}


def _timm(name: str, **kwargs):
    timm = pytest.importorskip("timm")
    return timm.create_model(name, pretrained=False, num_classes=10, **kwargs)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_uniform_plan_prunes_exports_and_matches(name: str, tmp_path) -> None:
    build, shape = MODELS[name]
    torch.manual_seed(0)
    model = build().eval()
    with torch.no_grad():  # zero-initialised heads would make every output 0 and the comparison empty
        for p in model.parameters():
            if p.dim() >= 2 and not p.any():
                p.normal_(std=0.02)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        space = init_space(model, input_shape=shape, model_name=name)
        plan = Plan(ratios={g: 0.4 for g in space.groups}, round_to=space.round_to, ignored=space.ignored)
        pruned = prune(model, plan, input_shape=shape)
    assert count_macs_params(pruned, input_shape=shape)[1] < count_macs_params(model, input_shape=shape)[1]
    x = torch.randn(2, *shape)
    with torch.no_grad():
        want = pruned(x).numpy()
    got = onnx_outputs(export_onnx(pruned, tmp_path / "m.onnx", input_shape=shape, batch_size=2,
                                   dynamic_batch=True), x)
    assert np.abs(got - want).max() <= 1e-3 * (np.abs(want).max() + 1e-6)
    for reason in space.left_out.values():  # every group left out says why, in one line
        assert reason and "\n" not in reason


def test_attention_heads_leave_whole() -> None:
    model = tiny_vit()
    space = init_space(model, input_shape=(1, 16, 16))
    heads = [g for g, r in space.groups.items() if r.unit == "heads"]
    assert heads == ["blocks.0.attn.qkv", "blocks.1.attn.qkv"]
    assert space.groups["blocks.0.mlp.0"].unit == "channels"
    pruned = prune(model, Plan(ratios={heads[0]: 0.5}), input_shape=(1, 16, 16))
    attn = pruned.blocks[0]["attn"]
    assert (attn.num_heads, attn.head_dim) == (2, 8)  # two of four heads gone, each head keeps its width
    assert attn.qkv.out_features == 3 * 16 and attn.proj.in_features == 16
    assert pruned(torch.randn(1, 1, 16, 16)).shape == (1, 10)


def test_timm_vit_heads_are_groups_and_leave_whole() -> None:
    model = _timm("deit_tiny_patch16_224", img_size=32, patch_size=8).eval()
    space = init_space(model, input_shape=(3, 32, 32))
    assert not space.left_out
    assert space.groups["blocks.0.attn.qkv"].unit == "heads" and space.groups["blocks.0.attn.qkv"].channels == 3
    pruned = prune(model, Plan(ratios={"blocks.0.attn.qkv": 0.34}), input_shape=(3, 32, 32))
    assert pruned.blocks[0].attn.num_heads == 2 and pruned.blocks[0].attn.qkv.out_features == 3 * 2 * 64
    assert pruned(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_grouped_conv_groups_stay_equal() -> None:
    model = torchvision.models.resnext50_32x4d(num_classes=10).eval()
    space = init_space(model, input_shape=(3, 64, 64))
    name = "layer1.0.conv1"  # feeds a 32-group 3x3 conv: 128 channels in 32 chunks of 4
    assert space.groups[name].channels == 128
    pruned = prune(model, Plan(ratios={name: 0.5}, round_to=space.round_to), input_shape=(3, 64, 64))
    conv2 = pruned.layer1[0].conv2
    assert conv2.groups == 32 and conv2.in_channels == 64 and conv2.weight.shape[1] == 2


def test_channel_shuffle_groups_are_left_out_with_reason() -> None:
    model = torchvision.models.shufflenet_v2_x0_5(num_classes=10).eval()
    space = init_space(model, input_shape=(3, 64, 64))
    assert space.left_out and all(name.endswith("branch2.5") for name in space.left_out)
    assert any("channel shuffle" in why for why in space.left_out.values())
    assert "stage2.1.branch2.0" in space.groups  # a branch's inner width prunes freely


class SamePaddingConv(nn.Conv2d):
    """A Conv2d subclass that pads in forward (as EfficientNet-Lite's Conv2dStaticSamePadding does)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(nn.functional.pad(x, (1, 1, 1, 1)))


def test_macs_count_conv_subclasses_like_conv2d() -> None:
    plain = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Flatten(), nn.Linear(8 * 16 * 16, 10))
    sub = nn.Sequential(SamePaddingConv(3, 8, 3), nn.Flatten(), nn.Linear(8 * 16 * 16, 10))
    expected = 3 * 9 * 8 * 16 * 16 + 8 * 16 * 16 * 10
    assert count_macs_params(plain, input_shape=(3, 16, 16))[0] == expected
    assert count_macs_params(sub, input_shape=(3, 16, 16))[0] == expected


class FixedWidth(nn.Module):
    """Its forward reshapes to a width held in a constant: pruning ``a`` cannot work, ``b`` can."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 16, 3, padding=1)
        self.b = nn.Conv2d(16, 16, 3, padding=1)
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.a(x).view(x.shape[0], 16, -1).view(x.shape[0], 16, 8, 8)
        return self.head(self.b(x).mean((2, 3)))


def test_a_group_that_breaks_the_model_is_left_out_naming_layer_and_reason() -> None:
    space = init_space(FixedWidth().eval(), input_shape=(3, 8, 8))
    assert list(space.groups) == ["b"]
    assert list(space.left_out) == ["a"] and "pruning it at 0.7 breaks the model" in space.left_out["a"]  # the range's most pruned end, checked first
