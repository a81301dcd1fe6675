"""What unstructured sparsity buys on a runtime: the ONNX file's size (dense and gzipped) and latency.

Zeros do not make dense kernels faster; they compress. ``SparsityReport`` gives both, measured.
"""

from __future__ import annotations

import gzip
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from torch import nn

from autoprune.latency.measure import measure_on_profile
from autoprune.latency.onnx import LatencyStats, export_onnx
from autoprune.latency.profiles import HardwareProfile
from autoprune.latency.reference import Reference
from autoprune.prune.masks import make_permanent, masked_copy, weighted_parameters


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
    weights = [m.weight.detach() for m, _ in weighted_parameters(model)]
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
    shape = profile.sample(input_shape)
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
