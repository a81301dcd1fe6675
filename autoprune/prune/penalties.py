"""Sparsity penalties (a registry): what ``regularize`` adds to the loss so channels become prunable.

BN-scale L1 (network slimming), BN group lasso, and group lasso over each prunable group's weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from autoprune.core.errors import AutopruneError
from autoprune.core.registry import Registry
from autoprune.prune.graph import example_input, traced_inputs


@dataclass(frozen=True)
class Regularizer:
    """``make(model, input_shape, ignored_modules, strength)`` returns the per-step gradient hook."""

    name: str
    description: str
    criterion: str  # the criterion that reads what the penalty shaped
    make: Callable[[nn.Module, Sequence[int], list[nn.Module], float], Callable[[nn.Module], None]]
    # Tuned for a short run (bench/bench_regularize.py: 2 epochs at lr 0.05, where they roughly triple
    # accuracy right after 50 % pruning); Torch-Pruning's 1e-5..1e-4 assume hundreds of epochs.
    default_strength: float


def _bn_scale(group_lasso: bool):
    def make(model, input_shape, ignored, strength):
        from autoprune.prune.tp import tp

        pruner = tp.pruner.BNScalePruner(model, traced_inputs(example_input(input_shape)), importance=tp.importance.BNScaleImportance(),
                                         reg=strength, group_lasso=group_lasso, ignored_layers=ignored)
        return pruner.regularize
    return make


def _group_norm(model, input_shape, ignored, strength):
    from autoprune.prune.tp import tp

    pruner = tp.pruner.GroupNormPruner(model, traced_inputs(example_input(input_shape)),
                                       importance=tp.importance.GroupMagnitudeImportance(p=2), reg=strength,
                                       ignored_layers=ignored)
    return pruner.regularize


REGULARIZERS: Registry[Regularizer] = Registry("regularisation")
for _reg in (
    Regularizer("bn_l1", "L1 on BatchNorm scales (network slimming)", "bn_scale", _bn_scale(False), 1e-2),
    Regularizer("bn_group_lasso", "group lasso on the BatchNorm scales of each coupled group", "bn_scale",
                _bn_scale(True), 1e-2),
    Regularizer("group_norm", "group-level sparsity on every weight of a coupled group (DepGraph)", "l2",
                _group_norm, 3e-3),
):
    REGULARIZERS.register(_reg.name, _reg)


def get_regularizer(name: str) -> Regularizer:
    return REGULARIZERS.get(name)


def list_regularizers() -> list[str]:
    return REGULARIZERS.names()


def penalty_hook(model: nn.Module, method: str, *, input_shape: Sequence[int], strength: float | None = None,
                 ignored: Sequence[str] | None = None) -> Callable[[nn.Module], None]:
    """The per-step hook (call after ``loss.backward()``) that adds ``method``'s penalty gradient.
    ``ignored``: layer names left alone (default: the output layer, whose channels are the classes)."""
    from autoprune.prune.groups import output_layers

    reg = get_regularizer(method)
    strength = reg.default_strength if strength is None else strength
    if strength < 0:
        raise AutopruneError(f"regularisation strength is {strength}; it must be >= 0 (e.g. {reg.default_strength})")
    names = output_layers(model, input_shape) if ignored is None else list(ignored)
    modules = dict(model.named_modules())
    return reg.make(model, input_shape, [modules[n] for n in names], strength)


def bn_scales(model: nn.Module) -> torch.Tensor:
    """Every BatchNorm scale |γ| of the model, flattened."""
    return torch.cat([m.weight.detach().abs().flatten() for m in model.modules()
                      if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine] or [torch.zeros(0)])
