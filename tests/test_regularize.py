"""Sparsity regularisation: every registered penalty really shrinks what it targets, from a real
training loop; and the command end to end."""

from __future__ import annotations

import pytest
import torch
import yaml
from torch import nn

from autoprune.core.errors import AutopruneError
from autoprune.prune.criteria import list_criteria
from autoprune.prune.penalties import (
    bn_scales,
    get_regularizer,
    list_regularizers,
    penalty_hook,
)
from autoprune.train.finetune import FinetuneConfig, finetune
from tests.helpers import cli, tiny_resnet


def _conv_norms(model: nn.Module) -> torch.Tensor:
    return torch.cat([m.weight.detach().flatten(1).norm(dim=1) for n, m in model.named_modules()
                      if isinstance(m, nn.Conv2d)])


@pytest.mark.parametrize("method", list_regularizers())
def test_every_penalty_shrinks_its_target_against_the_same_training_without_it(method, digits):
    reg = get_regularizer(method)
    ft = FinetuneConfig(steps=20, lr=0.05, seed=0)
    control, shaped = tiny_resnet(), tiny_resnet()
    finetune(control, digits.train, config=ft)
    hook = penalty_hook(shaped, method, input_shape=(1, 8, 8), strength=0.1)
    finetune(shaped, digits.train, config=ft, after_backward=hook)
    target = bn_scales if reg.criterion == "bn_scale" else _conv_norms
    assert float(target(shaped).mean()) < 0.9 * float(target(control).mean())
    assert shaped.fc.weight.shape == control.fc.weight.shape  # nothing pruned: only trained
    assert reg.criterion in list_criteria()


def test_unknown_penalty_and_negative_strength_are_explained():
    with pytest.raises(AutopruneError, match="choose one of: bn_l1"):
        penalty_hook(tiny_resnet(), "l0", input_shape=(1, 8, 8))
    with pytest.raises(AutopruneError, match=">= 0"):
        penalty_hook(tiny_resnet(), "bn_l1", input_shape=(1, 8, 8), strength=-1.0)


def test_regularize_command_trains_measures_and_writes_a_loadable_model(tmp_path):
    from autoprune.load.models import load_model

    proc = cli("regularize", "--model", "tests.helpers:tiny_resnet", "--method", "bn_l1", "--strength", "0.2",
               "--epochs", "1", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = yaml.safe_load((tmp_path / "report.yaml").read_text())
    mean, small = report["bn_scale_mean"], report["bn_scales_below_1e-2"]
    assert mean["regularized"] < 0.9 * mean["input"]
    probe = report["after_pruning"]
    assert probe["criterion"] == "bn_scale" and all(0 <= a <= 1 for a in probe["accuracy"].values())
    model = load_model(str(tmp_path / "model.pt"))
    assert float((bn_scales(model) < 1e-2).float().mean()) == pytest.approx(small["regularized"])
    assert (tmp_path / "bn_scales.png").stat().st_size > 10_000
    assert "--criterion bn_scale" in report["next"]
    bad = cli("regularize", "--method", "slimming", "--out", str(tmp_path / "bad"))
    assert bad.returncode == 2 and "bn_group_lasso" in bad.stderr and not (tmp_path / "bad").exists()
