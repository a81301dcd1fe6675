"""Which channel widths a target computes fast: a width sweep timed on the target, and the multiple
to round pruned widths to.

Kernels compute channels in blocks (ONNX Runtime's and OpenVINO's CPU convolutions in 8 or 16 on
AVX2/AVX-512, TensorRT in 8 for FP16): a width between two multiples costs about what the next
multiple costs, or more (a remainder path). Pruning to such a width buys parameters, not time.
The probe times chains of layers (one isolated conv misleads: layout reorders at a network's edges
hide the steps) over a window of widths, interleaved in worker processes like every pooled figure,
and finds the step: the largest multiple ``m`` such that rounding a width aligned to ``m / 2`` up
to a multiple of ``m`` costs no more time (both lie in one block). Compared with the half-multiples,
not with every width: a remainder path can make rounding *any* width up pay, to any multiple.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import statistics
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from autoprune.core import config
from autoprune.core.errors import AutopruneError
from autoprune.core.files import cache_dir
from autoprune.latency import node_lock
from autoprune.latency.anchor import machine_key
from autoprune.latency.onnx import export_onnx
from autoprune.latency.pooled import Spawn, spawn_workers, timing_job
from autoprune.latency.profiles import HardwareProfile

WIDTHS = tuple(range(64, 129))  # two half-multiples of 32 (80, 112), four of 16, ...
MULTIPLES = (2, 4, 8, 16, 32)
# Rounding up "costs nothing" within this share of the time (the timing's noise). So a multiple of
# 2 or 4 can come out for a kernel without blocks: 1-2 channels of ~100 cost about that much.
TOLERANCE = 0.03


@dataclass(frozen=True)
class WidthProbe:
    """One layer kind's sweep: ms per width, the step's ratio per candidate multiple, the recommendation."""

    layer: str  # "conv" or "linear"
    ms: dict[int, float]  # width -> median ms of the chain
    # multiple m -> median over widths aligned to m/2 but not m of ms(width rounded up to m) / ms(width)
    up_ratio: dict[int, float]
    multiple: int  # the largest multiple whose rounding up costs no time (1: widths cost as their MACs)


def _chain(layer: str, width: int) -> tuple[nn.Module, tuple[int, ...]]:
    if layer == "conv":  # three 3x3 convs at 8x8: a mid-network stage
        return nn.Sequential(nn.Conv2d(64, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1),
                             nn.ReLU(), nn.Conv2d(width, width, 3, padding=1), nn.ReLU()), (64, 8, 8)
    # three linear layers over 64 tokens: a transformer's MLP
    return nn.Sequential(nn.Linear(256, width), nn.GELU(), nn.Linear(width, width), nn.GELU(),
                         nn.Linear(width, width)), (64, 256)


def recommend(ms: dict[int, float], *, multiples: Sequence[int] = MULTIPLES,
              tolerance: float = TOLERANCE) -> tuple[dict[int, float], int]:
    """(per multiple m, ms(rounded up to m) / ms of the widths aligned to m/2; the largest m whose
    rounding up costs at most ``tolerance``)."""
    widths = sorted(ms)
    ratios: dict[int, float] = {}
    for m in multiples:
        pairs = [(w, w + m // 2) for w in widths if w % m and w % (m // 2) == 0]
        pairs = [(w, up) for w, up in pairs if up in ms]
        if pairs:
            ratios[m] = statistics.median(ms[up] / ms[w] for w, up in pairs)
    # the largest m of an unbroken run from 2: each finer multiple lies within the coarser one's block
    multiple = 1
    for m in sorted(ratios):
        if ratios[m] > 1.0 + tolerance:
            break
        multiple = m
    return ratios, multiple


def probe_widths(profile: HardwareProfile, *, layers: Sequence[str] = ("conv", "linear"),
                 widths: Sequence[int] = WIDTHS, rounds: int = 15, processes: int = 3, spawn: Spawn = spawn_workers,
                 on_layer: Callable[[str], None] | None = None) -> list[WidthProbe]:
    """Time each layer kind's chain at every width on ``profile`` (batch 1: a width's step does not
    depend on the batch), ``rounds`` interleaved rounds in each of ``processes`` worker processes."""
    one = profile.model_copy(update={"batch_size": 1, "rounds": rounds})
    out = []
    with tempfile.TemporaryDirectory(prefix="autoprune-widths-") as tmp:
        for layer in layers:
            if on_layer is not None:
                on_layer(layer)
            paths = []
            for w in widths:
                model, shape = _chain(layer, w)
                paths.append(str(export_onnx(model.eval(), Path(tmp) / f"{layer}-{w}.onnx", input_shape=shape,
                                             batch_size=1)))
            samples: dict[int, list[float]] = {w: [] for w in widths}
            with node_lock.measuring():
                for result in spawn([timing_job(one, paths, seed=p) for p in range(processes)]):
                    if "error" in result:
                        raise AutopruneError(f"profile {profile.name!r}: {result['error']}")
                    for i, _, ms in result["samples"]:
                        samples[widths[i]].append(ms)
            ms = {w: statistics.median(v) for w, v in samples.items()}
            ratios, multiple = recommend(ms)
            out.append(WidthProbe(layer=layer, ms=ms, up_ratio=ratios, multiple=multiple))
    return out


def _stored_file(profile: HardwareProfile) -> Path:
    key = hashlib.sha256(profile.timing_key().encode()).hexdigest()[:16]
    return cache_dir() / "widths" / machine_key() / f"{profile.name}-{key}.yaml"


def store_multiple(profile: HardwareProfile, probes: Sequence[WidthProbe], *, multiple: int) -> Path:
    """Keep a probe's multiple for this machine and profile: later searches on it round to it."""
    path = _stored_file(profile)
    config.dump({"multiple": multiple, "layers": {p.layer: p.multiple for p in probes},
                 "up_ratio": {p.layer: {int(m): float(r) for m, r in p.up_ratio.items()} for p in probes},
                 "profile": profile.name, "machine": machine_key(),
                 "probed_at": dt.datetime.now().isoformat(timespec="seconds")}, path,
                header="# autoprune profile probe: the channel multiple this machine computes in on this profile\n")
    return path


def channel_multiple(profile: HardwareProfile) -> int | None:
    """The multiple a target computes channels in, as known: the profile's ``channel_block``, else
    what ``profile probe`` measured on this machine (not for a profile measured on a remote node),
    else None (unknown: the caller assumes)."""
    if profile.channel_block:
        return profile.channel_block
    path = _stored_file(profile)
    if profile.ray_resources or not path.is_file():
        return None
    return int(config.read_yaml(path)["multiple"])
