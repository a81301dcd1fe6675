"""Unstructured magnitude pruning: zero the individual weights below a global or per-layer threshold.

Weights are zeroed, not removed: every tensor keeps its shape, so a dense runtime (ONNX Runtime's
CPU kernels) does exactly the multiply-adds it did before and is no faster. What the zeros buy is
size: they compress. ``SparsityReport`` gives both, measured, so nobody mistakes one for the other.
The masks are torch.nn.utils.prune's: while they are attached, weight = weight_orig * mask, so
fine-tuning cannot revive a zeroed weight.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from autoprune.core.errors import AutopruneError

SCOPES = ("global", "layer")


_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def check_sparsity(sparsity: float, scope: str) -> None:
    if not 0.0 <= sparsity < 1.0:
        raise AutopruneError(f"unstructured sparsity is {sparsity}; it is the fraction of weights zeroed, in [0, 1), "
                             "e.g. 0.5")
    if scope not in SCOPES:
        raise AutopruneError(f"unstructured scope {scope!r} is not known; use global (one threshold for all layers) "
                             "or layer (each layer loses the same fraction)")


def weighted_parameters(model: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(m, "weight") for m in model.modules() if isinstance(m, _WEIGHTED) and m.weight is not None]


def magnitude_masks(model: nn.Module, *, sparsity: float, scope: str = "global") -> nn.Module:
    """Attach magnitude masks to every conv and linear weight of ``model`` (in place) and return it.

    ``global``: one |w| threshold over all layers, so layers with many small weights lose more;
    ``layer``: every layer loses the same fraction. Call ``make_permanent`` before saving/exporting.
    """
    check_sparsity(sparsity, scope)
    targets = weighted_parameters(model)
    if not targets:
        raise AutopruneError("the model has no conv or linear weights to sparsify")
    if sparsity == 0.0:
        return model
    if scope == "global":
        torch_prune.global_unstructured(targets, pruning_method=torch_prune.L1Unstructured, amount=sparsity)
    else:
        for module, name in targets:
            torch_prune.l1_unstructured(module, name, amount=sparsity)
    return model


def masked_copy(model: nn.Module) -> nn.Module:
    """A deep copy that works while masks are attached: after a forward pass with gradients the
    masked ``weight`` is a non-leaf tensor, which ``copy.deepcopy`` refuses; the copy gets it detached."""
    masked = [m for m in model.modules() if hasattr(m, "weight_mask")]
    saved = [m.weight for m in masked]
    for m in masked:
        m.weight = m.weight.detach()
    try:
        return copy.deepcopy(model)
    finally:
        for m, w in zip(masked, saved, strict=True):
            m.weight = w


def make_permanent(model: nn.Module) -> nn.Module:
    """Fold the masks into the weights (in place): plain parameters again, zeros kept."""
    for module, name in weighted_parameters(model):
        if torch_prune.is_pruned(module) and hasattr(module, f"{name}_mask"):
            torch_prune.remove(module, name)
    return model


def zero_fraction(model: nn.Module) -> float:
    """The current fraction of zero conv/linear weights (masks applied)."""
    with torch.no_grad():
        ws = [m.weight for m in model.modules() if isinstance(m, _WEIGHTED)]
        total = sum(w.numel() for w in ws)
        return sum(int((w == 0).sum()) for w in ws) / max(1, total)
