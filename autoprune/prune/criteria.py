"""Importance criteria: a registry of how to rank channels, built on Torch-Pruning's estimators."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from autoprune.core.registry import Registry
from autoprune.prune.graph import run_hooked
from autoprune.prune.tp import tp


@dataclass(frozen=True)
class Criterion:
    """``needs_gradients``: the engine runs a backward pass on a calibration batch before scoring."""

    name: str
    description: str
    make: Callable[[], tp.importance.Importance] | None = None
    needs_gradients: bool = False
    deterministic: bool = True
    # Activation criteria: a per-channel statistic of a layer's output over the calibration batch.
    activation_stat: Callable[[torch.Tensor], torch.Tensor] | None = None

    @property
    def needs_activations(self) -> bool:
        return self.activation_stat is not None

    def scorer(self, stats: dict[nn.Module, torch.Tensor] | None = None) -> tp.importance.Importance:
        if self.make is None:  # an activation criterion: register() allows no third kind
            return ActivationImportance(stats or {})
        return self.make()


CRITERIA: Registry[Criterion] = Registry("criterion")


def register(criterion: Criterion) -> Criterion:
    """Add a criterion (under its name) to ``CRITERIA``; a user's own works the same way."""
    if (criterion.make is None) == (criterion.activation_stat is None):
        raise ValueError(f"criterion {criterion.name!r} needs exactly one of make and activation_stat")
    return CRITERIA.register(criterion.name, criterion)


def get_criterion(name: str) -> Criterion:
    return CRITERIA.get(name)


def list_criteria() -> list[str]:
    return CRITERIA.names()


_OUT = (tp.function.prune_conv_out_channels, tp.function.prune_linear_out_channels,
        tp.function.prune_batchnorm_out_channels)


class ActivationImportance(tp.importance.GroupMagnitudeImportance):
    """Scores a group's channels by statistics of its layers' outputs (recorded by the pruning
    engine on the calibration batch): a BatchNorm's output where the group has one, since that is
    what the next layer sees; else the conv or linear output. Averaged over the group's layers."""

    def __init__(self, stats: dict[nn.Module, torch.Tensor]) -> None:
        super().__init__(p=1, group_reduction="mean", normalizer=None)
        self.stats = stats

    @torch.no_grad()
    def __call__(self, group, **kwargs):
        deps = [(dep, idxs, group[i].root_idxs) for i, (dep, idxs) in enumerate(group)
                if dep.pruning_fn in _OUT and dep.layer in self.stats]
        bns = [d for d in deps if isinstance(d[0].layer, nn.modules.batchnorm._BatchNorm)]
        imps, root = [], []
        for dep, idxs, root_idxs in bns or deps:
            imps.append(self.stats[dep.layer][idxs].float())
            root.append(root_idxs)
        return self._reduce(imps, root) if imps else None


def _channels(x: torch.Tensor) -> torch.Tensor:
    """(N, C, ...) -> (N, C): each sample's channel values averaged over space."""
    return x.flatten(2).mean(2) if x.dim() > 2 else x


def mean_activation(x: torch.Tensor) -> torch.Tensor:
    return _channels(torch.relu(x)).mean(0)


def nonzero_fraction(x: torch.Tensor) -> torch.Tensor:
    """1 - APoZ (average percentage of zeros after ReLU; Hu et al. 2016): high keeps the channel."""
    return _channels((x > 0).float()).mean(0)


def activation_entropy(x: torch.Tensor, bins: int = 16) -> torch.Tensor:
    """Entropy of each channel's distribution of (spatially averaged) activations over the batch
    (Luo & Wu 2017): a channel whose output barely varies carries little information."""
    a = _channels(torch.relu(x))
    lo, hi = a.min(0).values, a.max(0).values
    span = (hi - lo).clamp_min(1e-12)
    idx = ((a - lo) / span * bins).long().clamp(0, bins - 1)  # (N, C) bin of each value
    counts = torch.zeros(bins, a.shape[1]).scatter_add_(0, idx, torch.ones_like(a))
    p = counts / a.shape[0]
    ent = -(p * torch.log(p.clamp_min(1e-12))).sum(0)
    return torch.where(hi - lo > 1e-12, ent, torch.zeros_like(ent))


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
register(Criterion("activation", "mean activation (after ReLU) of each channel on a calibration batch",
                   activation_stat=mean_activation))
register(Criterion("apoz", "1 - average percentage of zeros (after ReLU) of each channel on a calibration batch",
                   activation_stat=nonzero_fraction))
register(Criterion("entropy", "entropy of each channel's activation distribution over a calibration batch",
                   activation_stat=activation_entropy))


def activation_stats(model: nn.Module, x: torch.Tensor, stat: Callable[[torch.Tensor], torch.Tensor]
                     ) -> dict[nn.Module, torch.Tensor]:
    """``stat`` of every conv, linear and BatchNorm output of ``model`` on ``x`` (eval mode)."""
    stats: dict[nn.Module, torch.Tensor] = {}
    kinds = (nn.modules.conv._ConvNd, nn.Linear, nn.modules.batchnorm._BatchNorm)

    def hook(module: nn.Module, _inp: object, out: torch.Tensor) -> None:
        stats[module] = stat(out.detach())  # before any in-place ReLU that follows

    run_hooked(model, x, [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)])
    return stats
