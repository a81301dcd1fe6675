"""Unstructured magnitude pruning: zero the individual weights below a global or per-layer threshold.

Weights are zeroed, not removed: every tensor keeps its shape, so a dense runtime (ONNX Runtime's
CPU kernels) does exactly the multiply-adds it did before and is no faster. What the zeros buy is
size: they compress. ``SparsityReport`` gives both, measured, so nobody mistakes one for the other.
The masks are torch.nn.utils.prune's: while they are attached, weight = weight_orig * mask, so
fine-tuning cannot revive a zeroed weight.
"""

from __future__ import annotations

import copy
import gzip
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from autoprune.errors import AutopruneError
from autoprune.latency import LatencyStats, export_onnx
from autoprune.measure import measure_on_profile
from autoprune.profiles import HardwareProfile
from autoprune.reference import Reference

SCOPES = ("global", "layer")
_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def check_sparsity(sparsity: float, scope: str) -> None:
    if not 0.0 <= sparsity < 1.0:
        raise AutopruneError(f"unstructured sparsity is {sparsity}; it is the fraction of weights zeroed, in [0, 1), "
                             "e.g. 0.5")
    if scope not in SCOPES:
        raise AutopruneError(f"unstructured scope {scope!r} is not known; use global (one threshold for all layers) "
                             "or layer (each layer loses the same fraction)")


def _targets(model: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(m, "weight") for m in model.modules() if isinstance(m, _WEIGHTED) and m.weight is not None]


def magnitude_masks(model: nn.Module, *, sparsity: float, scope: str = "global") -> nn.Module:
    """Attach magnitude masks to every conv and linear weight of ``model`` (in place) and return it.

    ``global``: one |w| threshold over all layers, so layers with many small weights lose more;
    ``layer``: every layer loses the same fraction. Call ``make_permanent`` before saving/exporting.
    """
    check_sparsity(sparsity, scope)
    targets = _targets(model)
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
    for module, name in _targets(model):
        if torch_prune.is_pruned(module) and hasattr(module, f"{name}_mask"):
            torch_prune.remove(module, name)
    return model


@dataclass(frozen=True)
class SparsityReport:
    """Sizes of a (permanently) sparsified model, in bytes."""

    sparsity: float  # zeros / weights over the conv and linear weights
    zero_weights: int
    weights: int
    params: int  # every parameter, sparsified or not
    dense_bytes: int  # float32 storage of every parameter
    sparse_bytes: int  # CSR-style: each non-zero weight as float32 value + int32 index, other params dense
    onnx_bytes: int  # the exported ONNX file
    onnx_gzip_bytes: int  # the same file gzipped: what the zeros save on disk or on the wire

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def sparsity_report(model: nn.Module, *, input_shape: Sequence[int], opset: int = 17) -> SparsityReport:
    model = make_permanent(masked_copy(model))
    weights = [m.weight.detach() for m, _ in _targets(model)]
    n_w = sum(w.numel() for w in weights)
    zeros = sum(int((w == 0).sum()) for w in weights)
    params = sum(p.numel() for p in model.parameters())
    dense = 4 * params
    sparse = dense - 4 * n_w + 8 * (n_w - zeros) + sum(4 * (w.shape[0] + 1) for w in weights)
    with tempfile.TemporaryDirectory(prefix="autoprune-") as tmp:
        path = export_onnx(model, Path(tmp) / "model.onnx", input_shape=input_shape, batch_size=1, opset=opset)
        raw = path.read_bytes()
    return SparsityReport(sparsity=zeros / max(1, n_w), zero_weights=zeros, weights=n_w, params=params,
                          dense_bytes=dense, sparse_bytes=sparse, onnx_bytes=len(raw),
                          onnx_gzip_bytes=len(gzip.compress(raw, compresslevel=6)))


def latency_side_by_side(models: dict[str, nn.Module], profile: HardwareProfile, *, input_shape: Sequence[int],
                         rounds: int = 3) -> dict[str, LatencyStats]:
    """Each model's latency on ``profile``, side by side.

    Pooled profiles time every other model against the first (paired, interleaved, with a CI);
    single-process ones alternate the models for ``rounds`` rounds (this host's speed drifts;
    alternating puts every model in every phase) and keep the round with the median p50."""
    shape = profile.input_shape or list(input_shape)
    runs: dict[str, list[LatencyStats]] = {name: [] for name in models}
    with tempfile.TemporaryDirectory(prefix="autoprune-") as tmp:
        paths = {name: export_onnx(make_permanent(masked_copy(m)), Path(tmp) / f"{i}.onnx", input_shape=shape,
                                   batch_size=profile.batch_size, opset=profile.opset)
                 for i, (name, m) in enumerate(models.items())}
        if profile.method == "pooled":
            (first, path0), *rest = paths.items()
            base = measure_on_profile(path0, profile)
            ref = Reference.measured(name=first, onnx=path0.read_bytes(), stats=base)
            return {first: base, **{name: measure_on_profile(p, profile, reference=ref) for name, p in rest}}
        for _ in range(rounds):
            for name, path in paths.items():
                runs[name].append(measure_on_profile(path, profile))
    return {name: sorted(r, key=lambda s: s.p50_ms)[len(r) // 2] for name, r in runs.items()}


def zero_fraction(model: nn.Module) -> float:
    """The current fraction of zero conv/linear weights (masks applied)."""
    with torch.no_grad():
        ws = [m.weight for m in model.modules() if isinstance(m, _WEIGHTED)]
        total = sum(w.numel() for w in ws)
        return sum(int((w == 0).sum()) for w in ws) / max(1, total)
