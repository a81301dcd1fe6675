"""The reference a pooled latency is a ratio to: an ONNX model and its own pooled milliseconds.

In a search, apply and sensitivity the reference is the unpruned model (its milliseconds: its ratio
to the anchor, stored once per machine and profile); elsewhere it is the anchor, a fixed small model
shipped with the package and calibrated once per machine and profile (see ``anchor.py``). The ONNX bytes travel with the
reference, so a Ray node that measures a trial can write its own copy.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from autoprune.latency.onnx import LatencyStats


@dataclass(frozen=True, kw_only=True)
class Reference:
    name: str  # what figures are a ratio to: "unpruned" or "anchor"
    onnx: bytes = field(repr=False)
    ms: float  # its pooled estimate on the profile: the scale of every figure measured against it
    ms_low: float = math.nan
    ms_high: float = math.nan

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.onnx).hexdigest()[:16]

    def path(self) -> Path:
        """The ONNX file on this machine, written once per content."""
        p = Path(tempfile.gettempdir()) / f"autoprune-reference-{self.digest}.onnx"
        if not p.is_file():
            fd, tmp = tempfile.mkstemp(dir=p.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                fh.write(self.onnx)
            os.replace(tmp, p)  # a concurrent reader never sees half a file
        return p

    @classmethod
    def measured(cls, *, name: str, onnx: bytes, stats: LatencyStats) -> Reference:
        """A model just measured, as the reference of the next figures (its CI travels with it)."""
        return cls(name=name, onnx=onnx, ms=stats.p50_ms, ms_low=stats.ci_low_ms, ms_high=stats.ci_high_ms)
