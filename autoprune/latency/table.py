"""A per-layer latency table (``autoprune profile build-table``): predicts a plan's latency from
its layers' widths without exporting it. Built by ``latency.table_build``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import Field
from torch import nn

from autoprune.core import config
from autoprune.core.config import StrictModel
from autoprune.latency.onnx import LatencyStats
from autoprune.latency.profiles import HardwareProfile

TABLE_FORMAT = 1


TABLE_LAYERS = (nn.Conv2d, nn.Linear)


class LayerTable(StrictModel):
    kind: str  # conv | linear
    kernel: list[int] = Field(default_factory=list)
    stride: list[int] = Field(default_factory=list)
    padding: list[int] = Field(default_factory=list)
    dilation: list[int] = Field(default_factory=list)
    depthwise: bool = False
    groups: int = 1
    input_hw: list[int] = Field(default_factory=list)
    in_widths: list[int]
    out_widths: list[int]
    ms: list[list[float]]  # [in index][out index]

    def lookup(self, c_in: int, c_out: int) -> float:
        """Bilinear on the grid; clamped at its edges."""
        grid = np.asarray(self.ms)
        xi = np.interp(c_in, self.in_widths, np.arange(len(self.in_widths)))
        xo = np.interp(c_out, self.out_widths, np.arange(len(self.out_widths)))
        i0, o0 = int(np.floor(xi)), int(np.floor(xo))
        i1, o1 = min(i0 + 1, grid.shape[0] - 1), min(o0 + 1, grid.shape[1] - 1)
        fi, fo = xi - i0, xo - o0
        top = grid[i0, o0] * (1 - fo) + grid[i0, o1] * fo
        bottom = grid[i1, o0] * (1 - fo) + grid[i1, o1] * fo
        return float(top * (1 - fi) + bottom * fi)


class LatencyTable(StrictModel):
    format: int = TABLE_FORMAT
    model: str = ""
    profile: str
    timing_key: str
    base_arch: str
    layers: dict[str, LayerTable]
    scale: float = 1.0  # a, of latency ≈ a · Σ layers + b
    offset_ms: float = 0.0  # b
    calibration: list[list[float]] = Field(default_factory=list)  # [Σ layers, measured] per calibration model

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        return config.load(cls, path)

    def save(self, path: str | Path) -> Path:
        return config.dump(self, path, header="# autoprune latency table: per-layer latency (ms) on one profile\n")

    def layer_sum(self, model: nn.Module) -> float:
        modules = dict(model.named_modules())
        total = 0.0
        for name, table in self.layers.items():
            m = modules[name]
            c_in, c_out = (m.in_channels, m.out_channels) if table.kind == "conv" else (m.in_features, m.out_features)
            total += table.lookup(c_in, c_out)
        return total

    def predict(self, model: nn.Module, *, profile: HardwareProfile) -> LatencyStats:
        ms = self.scale * self.layer_sum(model) + self.offset_ms
        return LatencyStats(profile=profile.name, batch_size=profile.batch_size, p50_ms=ms, p90_ms=ms, mean_ms=ms,
                            min_ms=ms, repeats=0, warmup=0, source="table")
