"""Unstructured magnitude pruning: real masks, real fine-tuning, real ONNX Runtime sizes and timings."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from autoprune.core.errors import AutopruneError
from autoprune.latency.sparse import sparsity_report
from autoprune.prune.masks import magnitude_masks, make_permanent, zero_fraction
from autoprune.train.finetune import FinetuneConfig, finetune
from tests.helpers import tiny_resnet


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: m.weight.detach() for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def test_global_threshold_is_one_cut_over_all_layers():
    model = tiny_resnet()
    before = torch.cat([w.abs().flatten() for w in _weights(model).values()])
    make_permanent(magnitude_masks(model, sparsity=0.6, scope="global"))
    after = _weights(model)
    assert zero_fraction(model) == pytest.approx(0.6, abs=1e-3)
    # every surviving weight is at least as large as every zeroed one: a single threshold
    threshold = torch.kthvalue(before, int(0.6 * before.numel())).values
    assert all(bool((w[w != 0].abs() >= threshold).all()) for w in after.values())
    per_layer = [float((w == 0).float().mean()) for w in after.values()]
    assert max(per_layer) - min(per_layer) > 0.05  # layers lose different fractions


def test_layer_threshold_cuts_every_layer_equally():
    model = make_permanent(magnitude_masks(tiny_resnet(), sparsity=0.5, scope="layer"))
    for name, w in _weights(model).items():
        assert float((w == 0).float().mean()) == pytest.approx(0.5, abs=1 / w.numel() + 1e-6), name


def test_zeros_stay_zero_through_fine_tuning_and_shrink_the_compressed_file(digits):
    dense = tiny_resnet()
    sparse = magnitude_masks(copy.deepcopy(dense), sparsity=0.8, scope="global")
    zeroed = {n: w == 0 for n, w in _weights(sparse).items()}
    finetune(sparse, digits.train, config=FinetuneConfig(steps=15, lr=0.05))
    make_permanent(sparse)
    assert "weight_orig" not in " ".join(sparse.state_dict())  # plain parameters again
    for n, w in _weights(sparse).items():
        assert bool((w[zeroed[n]] == 0).all()), n
    assert any(bool((w[~zeroed[n]] != _weights(dense)[n][~zeroed[n]]).any()) for n, w in _weights(sparse).items())
    d, s = (sparsity_report(m, input_shape=(1, 8, 8)) for m in (dense, sparse))
    assert d.sparsity < 0.01 and s.sparsity == pytest.approx(0.8, abs=1e-3)
    assert s.dense_bytes == d.dense_bytes  # nothing left the tensors
    assert s.sparse_bytes < d.sparse_bytes and s.onnx_gzip_bytes < 0.6 * d.onnx_gzip_bytes


@pytest.mark.parametrize("sparsity, scope, match", [(1.0, "global", r"in \[0, 1\)"), (-0.1, "layer", "fraction"),
                                                    (0.5, "neuron", "global .* or layer")])
def test_bad_sparsity_settings_are_explained(sparsity, scope, match):
    with pytest.raises(AutopruneError, match=match):
        magnitude_masks(tiny_resnet(), sparsity=sparsity, scope=scope)


def test_attention_transfer_is_zero_for_the_teacher_itself_and_positive_for_a_pruned_student(digits):
    from autoprune.prune.engine import prune
    from autoprune.prune.plan import Plan
    from autoprune.train.finetune import Distillation, feature_layers

    teacher = tiny_resnet()
    layers = feature_layers(teacher, "auto", input_shape=(1, 8, 8))
    assert layers == ("stem", "block1", "block2")
    x = torch.stack([digits.train[i][0] for i in range(16)])
    ce = torch.tensor(1.0)

    def loss(student: nn.Module, features: tuple[str, ...]) -> float:
        kd = Distillation(teacher=teacher, features=features)
        with kd.student_maps(student) as maps:
            out = student(x)
            return kd.loss(out, x, ce, maps).item()

    same = copy.deepcopy(teacher)
    assert loss(same, layers) == pytest.approx(loss(same, ()), abs=1e-6)
    pruned = prune(teacher, Plan(ratios={"block1.conv1": 0.5, "block2.conv1": 0.5}), input_shape=(1, 8, 8))
    assert loss(pruned, layers) > loss(pruned, ()) + 1e-4  # channel counts differ; the maps still compare
    with pytest.raises(AutopruneError, match="lacks; use auto"):
        feature_layers(teacher, "block9", input_shape=(1, 8, 8))
