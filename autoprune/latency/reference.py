"""The reference a pooled latency is a ratio to: an ONNX model and its own pooled milliseconds.

In a search and apply the reference is the unpruned model thinned by ``THIN_RATIO`` (in sensitivity,
the unpruned model itself), its milliseconds its ratio to the anchor, stored once per machine and
profile; elsewhere it is the anchor, a fixed small model
shipped with the package and calibrated once per machine and profile (see ``anchor.py``). The ONNX bytes travel with the
reference, so a Ray node that measures a trial can write its own copy.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from autoprune.core.files import write_atomic
from autoprune.latency.onnx import LatencyStats

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True, kw_only=True)
class Reference:
    name: str  # what figures are a ratio to: "thinned", "unpruned" or "anchor"
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
            write_atomic(p, self.onnx)  # a concurrent reader never sees half a file; other users can read it
        return p

    @classmethod
    def measured(cls, *, name: str, onnx: bytes, stats: LatencyStats) -> Reference:
        """A model just measured, as the reference of the next figures (its CI travels with it)."""
        return cls(name=name, onnx=onnx, ms=stats.p50_ms, ms_low=stats.ci_low_ms, ms_high=stats.ci_high_ms)


# A run's trials are timed against its unpruned model thinned by this uniform ratio: on conv nets about
# half the unpruned latency, near where most budgets' plans lie. A reference close to the candidate
# gives the tightest ratio between processes, and a lighter one costs less per process (demo,
# cpu-default: between-process sd 0.010 against the unpruned model's 0.016, 0.47 s against 0.63 s per
# process; the anchor, four times smaller than the plans, 0.022).
THIN_RATIO = 0.3


def thinned_model(model: nn.Module, *, groups: Sequence[str], input_shape: Sequence[int], round_to: int = 1,
                  ignored: Sequence[str] | None = None, ratio: float = THIN_RATIO) -> nn.Module:
    """``model`` with every group of ``groups`` pruned by ``ratio`` (L1): a fixed, deterministic reference
    model (the same weights give the same bytes, so resume and apply rebuild it)."""
    from autoprune.prune.engine import prune
    from autoprune.prune.plan import Plan

    plan = Plan(ratios={g: ratio for g in groups}, criterion="l1", round_to=round_to,
                ignored=None if ignored is None else list(ignored))
    return prune(model, plan, input_shape=input_shape)
