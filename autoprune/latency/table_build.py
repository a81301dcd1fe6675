"""Latency tables: predict a pruned model's latency on a target that is out of reach.

``build_table`` measures, on the target profile, every conv/linear layer alone at each pair of
(input width, output width) the search space can produce, then calibrates
``latency ≈ a · Σ layer latencies + b`` on a few whole models (uniform plans), because the layers
alone miss what lies between them (adds, pooling, memory traffic). ``predict`` looks the pruned
widths up (bilinear between grid points) and applies the calibration.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from autoprune.latency.measure import latency_for
from autoprune.latency.profiles import HardwareProfile
from autoprune.latency.table import TABLE_LAYERS, LatencyTable, LayerTable
from autoprune.load.models import architecture_fingerprint
from autoprune.prune.engine import prune
from autoprune.prune.graph import example_input, run_hooked
from autoprune.prune.groups import channels_to_remove
from autoprune.prune.plan import Plan
from autoprune.space.space import SearchSpace


def _layer_inputs(model: nn.Module, input_shape: Sequence[int]) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name: str) -> Callable[..., None]:
        def hook(mod: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            shapes.setdefault(name, tuple(inp[0].shape))  # a hook that returns a value replaces the output

        return hook

    run_hooked(model, example_input(input_shape),
               [m.register_forward_hook(record(name)) for name, m in model.named_modules() if isinstance(m, TABLE_LAYERS)])
    return shapes


def _widths(channels: int, space_group, round_to: int) -> list[int]:
    return sorted({channels - channels_to_remove(channels, r, round_to) for r in [0.0, *space_group.choices()]})


def _standalone(table: LayerTable, c_in: int, c_out: int) -> tuple[nn.Module, list[int]]:
    if table.kind == "linear":
        return nn.Linear(c_in, c_out), [c_in]
    groups = c_in if table.depthwise else table.groups
    conv = nn.Conv2d(c_in, c_out if not table.depthwise else c_in, tuple(table.kernel), tuple(table.stride),
                     tuple(table.padding), tuple(table.dilation), groups=groups, bias=True)
    return conv, [c_in, *table.input_hw]


def build_table(model: nn.Module, *, input_shape: Sequence[int], profile: HardwareProfile, space: SearchSpace,
                model_name: str = "", on_progress: Callable[[str, int, int], None] | None = None,
                calibration_ratios: Sequence[float] = (0.0, 0.25, 0.5, 0.7)) -> LatencyTable:
    """Measure every layer at every width pair the space can produce, on ``profile``; calibrate."""
    model = copy.deepcopy(model).eval()
    modules = dict(model.named_modules())
    inputs = _layer_inputs(model, input_shape)
    layer_names = [n for n, m in model.named_modules() if isinstance(m, TABLE_LAYERS) and n in inputs]
    # Which group sets each layer's input and output width: prune each group alone and watch.
    in_widths = {n: [_in_of(modules[n])] for n in layer_names}
    out_widths = {n: [_out_of(modules[n])] for n in layer_names}
    for gname, grange in space.groups.items():
        probe = prune(model, Plan(ratios={gname: 0.5}, round_to=1, ignored=space.ignored), input_shape=input_shape)
        pm = dict(probe.named_modules())
        channels = _out_of(modules[gname])
        widths = _widths(channels, grange, space.round_to)
        for n in layer_names:
            if _in_of(pm[n]) != _in_of(modules[n]):
                in_widths[n] = widths
            if _out_of(pm[n]) != _out_of(modules[n]):
                out_widths[n] = widths
    tables: dict[str, LayerTable] = {}
    # Cells are timed in this process (hundreds of them; pooled timing would take minutes each): the
    # calibration below, on whole models timed the profile's way, puts them on the profile's scale.
    cell_profile = profile.model_copy(update={"method": "single"})
    total = sum(len(in_widths[n]) * len(out_widths[n]) for n in layer_names)
    done = 0
    for n in layer_names:
        m = modules[n]
        depthwise = isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels
        table = LayerTable(kind="conv" if isinstance(m, nn.Conv2d) else "linear",
                           kernel=list(getattr(m, "kernel_size", [])), stride=list(getattr(m, "stride", [])),
                           padding=list(getattr(m, "padding", [])), dilation=list(getattr(m, "dilation", [])),
                           depthwise=depthwise, groups=getattr(m, "groups", 1),
                           input_hw=list(inputs[n][2:]) if isinstance(m, nn.Conv2d) else [],
                           in_widths=in_widths[n], out_widths=out_widths[n] if not depthwise else in_widths[n],
                           ms=[])
        grid = []
        for c_in in table.in_widths:
            row = []
            for c_out in table.out_widths:
                layer, shape = _standalone(table, c_in, c_out)
                stats = latency_for(layer.eval(), cell_profile, input_shape=shape, arch_key=f"{n}:{c_in}:{c_out}")
                row.append(stats.p50_ms)
                done += 1
                if on_progress is not None:
                    on_progress(n, done, total)
            grid.append(row)
        tables[n] = table.model_copy(update={"ms": grid})
    table = LatencyTable(model=model_name, profile=profile.name, timing_key=profile.timing_key(),
                         base_arch=architecture_fingerprint(model), layers=tables)
    # Calibrate a·Σ + b on whole models at uniform ratios: the layers alone miss what lies between them.
    points = []
    for r in calibration_ratios:
        pruned = prune(model, Plan(ratios={g: r for g in space.groups}, round_to=space.round_to,
                                   ignored=space.ignored), input_shape=input_shape)
        measured = latency_for(pruned, profile, input_shape=input_shape, arch_key="calibration").p50_ms
        points.append([table.layer_sum(pruned), measured])
    scale, offset = fit_calibration(points)
    return table.model_copy(update={"scale": float(scale), "offset_ms": float(offset), "calibration": points})


def fit_calibration(points: Sequence[Sequence[float]]) -> tuple[float, float]:
    """(scale, offset) of measured ≈ scale·Σlayers + offset, with scale > 0 and offset ≥ 0."""
    xs, ys = np.asarray(points, dtype=float).T
    scale, offset = np.polyfit(xs, ys, 1) if len(points) > 1 else (ys[0] / xs[0], 0.0)
    if scale <= 0 or offset < 0:
        # Noise on a fast model can tilt the line (a narrower model timed slower): a table that
        # predicts a wider model faster, or a small one below zero, is worse than one through the origin.
        scale, offset = xs @ ys / (xs @ xs), 0.0
    return float(scale), float(offset)


def _in_of(m: nn.Module) -> int:
    return m.in_channels if isinstance(m, nn.Conv2d) else m.in_features


def _out_of(m: nn.Module) -> int:
    return m.out_channels if isinstance(m, nn.Conv2d) else m.out_features


def prediction_error(table: LatencyTable, models: Sequence[nn.Module], *, profile: HardwareProfile,
                     input_shape: Sequence[int]) -> list[tuple[float, float]]:
    """(predicted, measured) p50 for each model: the table against the real profile."""
    out = []
    for m in models:
        measured = latency_for(m, profile, input_shape=input_shape, arch_key="check").p50_ms
        out.append((table.predict(m, profile=profile).p50_ms, measured))
    return out


def random_plans(space: SearchSpace, n: int, *, seed: int) -> list[Plan]:
    rng = np.random.default_rng(seed)
    return [Plan(ratios={g: float(rng.choice(r.choices())) for g, r in space.groups.items()},
                 round_to=space.round_to, ignored=space.ignored) for _ in range(n)]
