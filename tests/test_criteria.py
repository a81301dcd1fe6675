"""Contract every registered importance criterion must meet."""

import pytest
import torch

from autoprune.criteria import CRITERIA, get_criterion
from autoprune.errors import AutopruneError
from autoprune.plan import Plan
from autoprune.pruning import find_groups, prune

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def calib(digits):
    x, y = next(iter(torch.utils.data.DataLoader(digits.train, batch_size=32)))
    return x, y


@pytest.mark.parametrize("name", sorted(CRITERIA))
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
    assert all(torch.equal(va, vb) for va, vb in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_gradient_criterion_without_calibration_is_a_clear_error(demo_untrained):
    with pytest.raises(AutopruneError, match="taylor.*calibration"):
        prune(demo_untrained, Plan(ratios={"stem.0": 0.5}, criterion="taylor"), input_shape=SHAPE)


def test_unknown_criterion_lists_known_ones():
    with pytest.raises(AutopruneError, match="'magic'.*bn_scale.*l1"):
        get_criterion("magic")


def test_criteria_choose_differently(demo_untrained, calib):
    plan = {"ratios": {"layer1.0.conv1": 0.5}}
    kept = {}
    for name in ("l1", "random", "taylor"):
        pruned = prune(demo_untrained, Plan(**plan, criterion=name), input_shape=SHAPE, calibration=calib)
        kept[name] = pruned.layer1[0].conv1.weight.detach()
    assert not torch.equal(kept["l1"], kept["random"])
