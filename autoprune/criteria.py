"""Importance criteria: a registry of how to rank channels, built on Torch-Pruning's estimators."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch_pruning as tp

from autoprune.errors import AutopruneError


@dataclass(frozen=True)
class Criterion:
    """``needs_gradients``: the engine runs a backward pass on a calibration batch before scoring."""

    name: str
    description: str
    make: Callable[[], tp.importance.Importance]
    needs_gradients: bool = False
    deterministic: bool = True


CRITERIA: dict[str, Criterion] = {}


def register(criterion: Criterion) -> Criterion:
    if criterion.name in CRITERIA:
        raise ValueError(f"criterion {criterion.name!r} is already registered")
    CRITERIA[criterion.name] = criterion
    return criterion


def get_criterion(name: str) -> Criterion:
    if name not in CRITERIA:
        raise AutopruneError(f"criterion {name!r} is unknown; choose one of: {', '.join(sorted(CRITERIA))}")
    return CRITERIA[name]


register(Criterion("l1", "L1 norm of each channel's weights across the coupled group",
                   lambda: tp.importance.MagnitudeImportance(p=1)))
register(Criterion("l2", "L2 norm of each channel's weights across the coupled group",
                   lambda: tp.importance.MagnitudeImportance(p=2)))
register(Criterion("bn_scale", "|gamma| of the BatchNorm layers in the group (network slimming)",
                   tp.importance.BNScaleImportance))
register(Criterion("fpgm", "distance to the geometric median of the group's filters",
                   tp.importance.FPGMImportance))
register(Criterion("taylor", "first-order Taylor: |weight x gradient| on a calibration batch",
                   tp.importance.TaylorImportance, needs_gradients=True))
register(Criterion("random", "uniformly random ranking (a baseline)", tp.importance.RandomImportance,
                   deterministic=False))
