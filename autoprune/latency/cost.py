"""Price a plan before pruning it: MACs from the layer graph, milliseconds from measured trials.

The search's budget formulation moves every proposed plan onto the budget's boundary
(``repair.to_budget``); that takes dozens of what-ifs per plan, so they cannot be measured. A
plan's MACs are exact arithmetic over the layers (``pruning.layer_shapes``: which groups set each
layer's widths); its latency is an affine map of MACs fitted on the plans measured so far, because
on every profile part of the time (memory traffic, small ops) does not shrink with the channels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from torch import nn

from autoprune.prune.groups import (
    LayerShape,
    PrunableGroup,
    channels_to_remove,
    find_groups,
    layer_shapes,
    removed_units,
)
from autoprune.space.space import SearchSpace


@dataclass(frozen=True, kw_only=True)
class CostModel:
    """MACs and activations of the conv and linear layers of a model pruned by a plan, without pruning it."""

    layers: tuple[LayerShape, ...]
    channels: Mapping[str, int]  # group -> unpruned output channels (heads, for a heads group)
    round_to: int = 1
    groups: Mapping[str, PrunableGroup] = field(default_factory=dict)  # chunks and units: the engine's rounding

    @classmethod
    def build(cls, model: nn.Module, *, input_shape: Sequence[int], space: SearchSpace) -> CostModel:
        shapes = layer_shapes(model, input_shape=input_shape, ignored=space.ignored)
        groups = {g.name: g for g in find_groups(model, input_shape=input_shape, ignored=space.ignored)}
        return cls(layers=tuple(shapes), channels={n: g.channels for n, g in groups.items()}, round_to=space.round_to,
                   groups=groups)

    def base_features(self, *, block: int = 1) -> tuple[float, float]:
        return self.features({}, block=block)

    def kept(self, ratios: Mapping[str, float]) -> dict[str, float]:
        """Fraction of each group's channels a plan keeps, with the engine's own rounding."""
        def removed(g: str, c: int) -> int:
            r = ratios.get(g, 0.0)
            return removed_units(self.groups[g], r, self.round_to) if g in self.groups else channels_to_remove(c, r, self.round_to)

        return {g: 1.0 - removed(g, c) / c for g, c in self.channels.items()}

    def features(self, ratios: Mapping[str, float], *, block: int = 1) -> tuple[float, float]:
        """(MACs, output activations) of the pruned conv/linear layers: compute and memory traffic.

        ``block`` > 1 counts every width rounded up to a multiple of it, as a runtime that computes
        in channel blocks does (ONNX Runtime's CPU convolutions: 16 channels with AVX-512, else 8);
        measured on a MobileNet-style net, this halved the latency fit's error.
        """
        keep = self.kept(ratios)

        def padded(width: float) -> float:
            return math.ceil(round(width, 6) / block) * block if block > 1 else width

        total = acts = 0.0
        for layer in self.layers:
            f_out = keep.get(layer.out_group, 1.0) if layer.out_group else 1.0
            c_out = layer.out_channels * f_out
            p_out = padded(c_out) / layer.out_channels
            acts += layer.out_elems * p_out
            if layer.depthwise:
                total += layer.macs * p_out
                continue
            if layer.in_groups:  # a concat of several groups: their widths weighted by channels
                w = [self.channels[g] for g in layer.in_groups]
                f_in = sum(keep[g] * c for g, c in zip(layer.in_groups, w, strict=True)) / sum(w)
            else:
                f_in = 1.0
            total += layer.macs * p_out * padded(layer.in_channels * f_in) / layer.in_channels
        return total, acts


AIM = 0.97  # where a repaired plan should land, as a fraction of the budget (judged latency)


@dataclass(kw_only=True)
class LatencyModel:
    """ms ≈ a + b · MACs + c · activations on one profile, refitted as measured plans come in.

    Until enough plans are measured (and whenever a fit goes negative) it is proportional to MACs
    through the unpruned model. The activation term is memory traffic, which dominates depthwise
    layers. ``margin`` is how far under the budget a repaired plan aims: it grows after a plan
    aimed at the budget missed it and shrinks after one landed more than 10 % under, so that most
    repaired plans land within 90-100 % of the budget whatever the fit's error on this model and
    profile (the measured latency, not this model, decides whether a plan meets the budget).
    """

    base: tuple[float, float]  # (MACs, activations) of the unpruned model, in channel blocks of ``block``
    base_ms: float
    block: int = 1  # the target's channel block (see CostModel.features)
    margin: float = 0.03
    points: list[tuple[float, float, float]] = field(default_factory=list)  # (MACs, activations, ms)

    def observe(self, features: tuple[float, float], ms: float) -> None:
        if np.isfinite(ms) and ms > 0 and features[0] > 0:
            self.points.append((float(features[0]), float(features[1]), float(ms)))

    def coefficients(self) -> tuple[float, float, float]:
        """(a, b, c) of ms ≈ a + b · MACs/MACs₀ + c · acts/acts₀: the richest fit with no negative term."""
        pts = np.array([(*self.base, self.base_ms), *self.points])
        x = pts[:, :2] / np.array(self.base)  # relative to the unpruned model: well conditioned
        if len(pts) >= 3 and np.ptp(x[:, 0]) > 0.05:
            ones = np.ones(len(pts))
            for cols in ((0, 1), (0,), (1,)):  # MACs and activations, MACs alone, activations alone
                if len(pts) < len(cols) + 2:
                    continue
                coef, *_ = np.linalg.lstsq(np.c_[ones, x[:, cols]], pts[:, 2], rcond=None)
                if (coef >= 0).all() and coef[1:].sum() > 0:
                    full = dict(zip(cols, coef[1:], strict=True))
                    return float(coef[0]), float(full.get(0, 0.0)), float(full.get(1, 0.0))
        # Too few or too alike: proportional to MACs through the mean of the observed ratios.
        return 0.0, float(np.mean(pts[:, 2] / x[:, 0])), 0.0

    def error(self) -> float:
        """Relative RMS error of the fit over the measured plans (how well this model explains them)."""
        if not self.points:
            return float("inf")
        pts = np.array(self.points)
        pred = np.array([self.predict((m, a)) for m, a, _ in pts])
        return float(np.sqrt(np.mean(((pred - pts[:, 2]) / pts[:, 2]) ** 2)))

    def predict(self, features: tuple[float, float]) -> float:
        a, b, c = self.coefficients()
        return a + b * features[0] / self.base[0] + c * features[1] / self.base[1]

    def landed(self, *, budget_ms: float, judged_ms: float) -> None:
        """Move the margin so that plans land, as judged, at ``AIM`` of the budget: a proportional
        step on where this one landed (a miss costs a measurement; a plan far under costs accuracy)."""
        if np.isfinite(judged_ms) and budget_ms > 0:
            self.margin = float(np.clip(self.margin + 0.5 * (judged_ms / budget_ms - AIM), 0.0, 0.2))


def channel_block(profile_block: int | None, *, cpu: bool) -> int:
    """The channel block a target computes in: the profile's, else 16 for CPU convolutions (ONNX
    Runtime's and OpenVINO's blocked layouts) on an AVX-512 machine (this one: a guess for a remote
    target; the fit absorbs the rest), else 8."""
    if profile_block:
        return profile_block
    if cpu:
        try:
            with open("/proc/cpuinfo") as f:
                if "avx512f" in f.read():
                    return 16
        except OSError:
            pass
    return 8
