"""Contract every registered importance criterion must meet."""

import pytest
import torch

from autoprune.core.errors import AutopruneError
from autoprune.prune.criteria import get_criterion, list_criteria
from autoprune.prune.engine import prune
from autoprune.prune.groups import find_groups
from autoprune.prune.plan import Plan
from tests.helpers import SHAPE


@pytest.fixture(scope="module")
def calib(digits):
    x, y = next(iter(torch.utils.data.DataLoader(digits.train, batch_size=32)))
    return x, y


@pytest.mark.parametrize("name", list_criteria())
def test_criterion_contract(name, demo_untrained, calib):
    crit = get_criterion(name)
    assert crit.name == name and crit.description
    groups = find_groups(demo_untrained, input_shape=SHAPE)
    plan = Plan(ratios={g.name: 0.5 for g in groups}, criterion=name)
    a = prune(demo_untrained, plan, input_shape=SHAPE, calibration=calib)
    b = prune(demo_untrained, plan, input_shape=SHAPE, calibration=calib)
    x = torch.randn(3, *SHAPE)
    assert a(x).shape == (3, 10)
    assert torch.isfinite(a(x)).all()
    assert a.layer3[0].conv1.out_channels == 96
    # reproducible: the same plan, weights and calibration batch choose the same channels
    assert _same(a, b)
    # a deterministic criterion ignores the plan's seed; a random one follows it
    c = prune(demo_untrained, plan.model_copy(update={"seed": plan.seed + 1}), input_shape=SHAPE, calibration=calib)
    assert _same(a, c) is crit.deterministic


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(va, vb) for va, vb in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_gradient_criterion_without_calibration_is_a_clear_error(demo_untrained):
    with pytest.raises(AutopruneError, match="taylor.*calibration"):
        prune(demo_untrained, Plan(ratios={"stem.0": 0.5}, criterion="taylor"), input_shape=SHAPE)


def test_unknown_criterion_lists_known_ones():
    with pytest.raises(AutopruneError, match="'magic' is unknown; choose one of: l1, l2, bn_scale"):
        get_criterion("magic")


def test_criteria_choose_differently(demo_untrained, calib):
    plan = {"ratios": {"layer1.0.conv1": 0.5}}
    kept = {}
    for name in ("l1", "random", "taylor"):
        pruned = prune(demo_untrained, Plan(**plan, criterion=name), input_shape=SHAPE, calibration=calib)
        kept[name] = pruned.layer1[0].conv1.weight.detach()
    assert not torch.equal(kept["l1"], kept["random"])
    assert not torch.equal(kept["l1"], kept["taylor"])  # gradients rank differently from magnitudes


@pytest.mark.parametrize("name", ["activation", "apoz", "entropy"])
def test_activation_criteria_remove_a_dead_channel_first(name, demo_untrained, calib):
    """A channel whose BatchNorm output never passes the ReLU carries nothing: removed first."""
    from autoprune.prune.criteria import get_criterion

    assert get_criterion(name).needs_activations
    model = demo_untrained
    bn = model.layer1[0].bn1
    with torch.no_grad():
        bn.bias[5] = -1e4  # channel 5 of layer1.0.conv1 is now always zero after ReLU
        marked = model.layer1[0].conv1.weight[5].clone()
    pruned = prune(model, Plan(ratios={"layer1.0.conv1": 0.25}, criterion=name, round_to=1), input_shape=SHAPE,
                   calibration=calib)
    kept = pruned.layer1[0].conv1.weight
    assert kept.shape[0] == 36
    assert not any(torch.equal(w, marked) for w in kept)


def test_entropy_is_zero_for_a_constant_channel_and_grows_with_spread():
    from autoprune.prune.criteria import activation_entropy

    x = torch.zeros(64, 3, 4, 4)
    x[:, 1] = torch.linspace(0, 1, 64).view(64, 1, 1)  # spread evenly over the batch
    x[:32, 2] = 1.0  # two values
    ent = activation_entropy(x)
    assert ent[0] == 0
    assert ent[1] > ent[2] > 0
    assert ent[2] == pytest.approx(torch.log(torch.tensor(2.0)).item())


def test_activation_criterion_without_calibration_is_a_clear_error(demo_untrained):
    with pytest.raises(AutopruneError, match="'entropy' needs a calibration batch \\(activations\\)"):
        prune(demo_untrained, Plan(ratios={"stem.0": 0.5}, criterion="entropy"), input_shape=SHAPE)
