import pytest
import torch
from torch import nn

from autoprune.core.errors import AutopruneError
from autoprune.load.models import architecture_fingerprint
from autoprune.prune.engine import count_macs_params, prune
from autoprune.prune.groups import channels_to_remove, find_groups
from autoprune.prune.plan import Plan
from tests.helpers import SHAPE


def _all_half(model, **kw):
    return Plan(ratios={g.name: 0.5 for g in find_groups(model, input_shape=SHAPE)}, **kw)


def test_pruning_removes_channels_keeps_output_and_cuts_macs(demo_untrained):
    before = count_macs_params(demo_untrained, input_shape=SHAPE)
    x = torch.randn(4, *SHAPE)
    pruned = prune(demo_untrained, _all_half(demo_untrained), input_shape=SHAPE)
    after = count_macs_params(pruned, input_shape=SHAPE)
    assert pruned(x).shape == demo_untrained(x).shape == (4, 10)
    assert after[0] < 0.35 * before[0] and after[1] < 0.35 * before[1]
    # channels physically left the tensors, BatchNorm included
    assert pruned.layer1[0].conv1.weight.shape == (24, 24, 3, 3)
    assert pruned.layer1[0].bn1.running_mean.shape == (24,)
    assert pruned.fc.out_features == 10


def test_residual_coupled_layers_stay_consistent(demo_untrained):
    plan = Plan(ratios={"stem.0": 0.5, "layer2.0.conv2": 0.25})
    pruned = prune(demo_untrained, plan, input_shape=SHAPE)
    widths = {pruned.stem[0].out_channels, pruned.layer1[0].conv2.out_channels, pruned.layer1[1].conv2.out_channels,
              pruned.layer2[0].conv1.in_channels, pruned.layer2[0].shortcut[0].in_channels}
    assert widths == {24}
    assert {pruned.layer2[0].conv2.out_channels, pruned.layer2[0].shortcut[0].out_channels,
            pruned.layer2[1].conv2.out_channels, pruned.layer3[0].conv1.in_channels} == {72}
    pruned(torch.randn(2, *SHAPE))  # the residual adds still line up


def test_same_plan_same_weights_gives_same_model_and_leaves_original(demo_untrained):
    original = {k: v.clone() for k, v in demo_untrained.state_dict().items()}
    plan = _all_half(demo_untrained, round_to=8)
    a, b = prune(demo_untrained, plan, input_shape=SHAPE), prune(demo_untrained, plan, input_shape=SHAPE)
    assert architecture_fingerprint(a) == architecture_fingerprint(b)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    for k, v in demo_untrained.state_dict().items():
        assert torch.equal(v, original[k])


def test_l1_removes_the_smallest_filters(demo_untrained):
    conv = demo_untrained.layer1[0].conv1
    with torch.no_grad():
        conv.weight[:5].mul_(1e-4)  # five obviously unimportant filters
    pruned = prune(demo_untrained, Plan(ratios={"layer1.0.conv1": 5 / 48}), input_shape=SHAPE)
    kept = pruned.layer1[0].conv1.weight
    assert kept.shape[0] == 43
    assert torch.allclose(kept, conv.weight[5:])


@pytest.mark.parametrize(("channels", "ratio", "round_to", "removed"),
                         [(48, 0.5, 1, 24), (48, 0.3, 8, 16), (48, 0.0, 8, 0), (10, 0.99, 1, 9), (48, 0.9, 8, 40),
                          (12, 0.1, 8, 4)])
def test_channels_to_remove_rounds_kept_width(channels, ratio, round_to, removed):
    assert channels_to_remove(channels, ratio, round_to) == removed


def test_plan_naming_unknown_group_is_refused(demo_untrained):
    with pytest.raises(AutopruneError, match="'nope'.*prunable groups: stem.0"):
        prune(demo_untrained, Plan(ratios={"nope": 0.2}), input_shape=SHAPE)


def test_torchvision_resnet18_prunes_consistently():
    import torchvision

    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    shape = (3, 32, 32)
    groups = find_groups(model, input_shape=shape)
    assert any("layer1.0.conv2" in g.members and "conv1" in g.members for g in groups)
    pruned = prune(model, Plan(ratios={g.name: 0.3 for g in groups}, round_to=8), input_shape=shape)
    assert pruned(torch.randn(1, *shape)).shape == (1, 10)
    assert count_macs_params(pruned, input_shape=shape)[0] < count_macs_params(model, input_shape=shape)[0]
    assert all(m.out_channels % 8 == 0 for m in pruned.modules() if isinstance(m, nn.Conv2d))


def test_index_mappings_reused_while_widths_are_unchanged_prune_as_torch_pruning_does(monkeypatch):
    """The engine skips Torch-Pruning's recomputation of concat/split/reshape mappings when no width
    changed since the last one (graph.py); a DenseNet (every block a concatenation) pruned with the
    skip and with Torch-Pruning's own update gets the same weights."""
    import torchvision

    from autoprune.prune import graph
    from autoprune.prune.tp import tp

    torch.manual_seed(0)
    model = torchvision.models.DenseNet(growth_rate=8, block_config=(2, 2), num_init_features=16, bn_size=2,
                                        num_classes=10).eval()
    shape = (3, 32, 32)
    groups = [g.name for g in find_groups(model, input_shape=shape)]
    assert len(groups) > 4
    plan = Plan(ratios=dict.fromkeys(groups, 0.4))
    original, calls = graph._tp_update_index_mapping, []

    def counting(g):
        calls.append(g)
        original(g)

    monkeypatch.setattr(graph, "_tp_update_index_mapping", counting)
    with_skip = prune(model, plan, input_shape=shape)
    assert 0 < len(calls) < 3 * len(groups)  # Torch-Pruning updates at each of 3 calls per group
    monkeypatch.setattr(tp.dependency.index_mapping, "update_index_mapping", original)
    without = prune(model, plan, input_shape=shape)
    assert with_skip.state_dict().keys() == without.state_dict().keys()
    assert all(torch.equal(v, without.state_dict()[k]) for k, v in with_skip.state_dict().items())
    assert count_macs_params(with_skip, input_shape=shape)[0] < count_macs_params(model, input_shape=shape)[0]
