"""Which way a task's metric is better, and how it reads.

Accuracy is better high; perplexity (or a loss, or an error rate) is better low. Everything that
ranks plans (the sampler's direction, the early-stopping scheduler, the Pareto front, the confirmed
best, the sensitivity table's "drop") asks a ``MetricSense`` instead of assuming "higher". The
column keeps its name, ``accuracy``: it holds the metric's value, whichever metric ranks the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Direction = Literal["maximize", "minimize"]  # Optuna's words
DIRECTIONS: tuple[str, ...] = ("maximize", "minimize")


@dataclass(frozen=True)
class MetricSense:
    name: str = "top1"
    direction: Direction = "maximize"
    percent: bool = True  # a fraction in [0, 1] shown as a percentage (accuracy); else shown as is

    @property
    def higher_is_better(self) -> bool:
        return self.direction == "maximize"

    @property
    def mode(self) -> str:
        """Ray Tune's word for the direction."""
        return "max" if self.higher_is_better else "min"

    @property
    def worst(self) -> float:
        """What the sampler is told for a plan never scored (over budget): an accuracy of 0, or the
        far end of an unbounded metric."""
        if self.percent and self.higher_is_better:
            return 0.0
        return -math.inf if self.higher_is_better else math.inf

    def key(self, value: float) -> float:
        """A sort key, larger is better."""
        return value if self.higher_is_better else -value

    def better(self, a: float, b: float) -> bool:
        return self.key(a) > self.key(b)

    def drop(self, base: float, value: float) -> float:
        """How much worse ``value`` is than ``base`` (negative: better)."""
        return (base - value) if self.higher_is_better else (value - base)

    def shown(self, value: float) -> float:
        """The value on a plot's axis."""
        return value * 100 if self.percent else value

    def axis(self) -> str:
        return f"validation {self.label} (%)" if self.percent else f"validation {self.label}"

    @property
    def label(self) -> str:
        return "accuracy" if self.name in ("top1", "top5", "next_token_top1") else self.name.rsplit(":", 1)[-1]

    def fmt(self, value: float) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "n/a"
        return f"{value:.1%}" if self.percent else f"{value:.4g}"

    def fmt_drop(self, base: float, value: float) -> str:
        d = self.drop(base, value)
        return f"{d:+.1%}" if self.percent else f"{d:+.4g}"


ACCURACY = MetricSense()
