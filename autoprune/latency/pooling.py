"""Statistics of pooled latency: per-process figures, their pooled estimate with a 95 % CI, budget verdicts.

A process is the unit of independence (as in pyperf): one process's samples share its bias
(memory layout, the core it landed on, the host's phase), so their spread says nothing about the
next process. Each process gives one figure; the estimate is the geometric mean over processes,
and its confidence interval comes from the spread *between* processes (Student's t on logs).
No timing here: the numbers come in, so a fake timer can test all of it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from autoprune.core.records import BUDGET_RULES

Verdict = Literal["met", "missed", "inconclusive"]

# Two-sided 95 % quantiles of Student's t, by degrees of freedom (1..30); 1.96 beyond.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045,
         2.042)


def t975(df: int) -> float:
    if df < 1:
        return math.inf
    return _T975[df - 1] if df <= len(_T975) else 1.96


@dataclass(frozen=True)
class ProcessTiming:
    """One worker process's samples: the candidate's and the reference's ms, paired by round."""

    candidate_ms: tuple[float, ...]
    reference_ms: tuple[float, ...] = ()

    @property
    def candidate(self) -> float:
        return statistics.median(self.candidate_ms)

    @property
    def reference(self) -> float:
        return statistics.median(self.reference_ms)

    @property
    def ratio(self) -> float:
        """Median of the per-round ratios: each pairs two runs taken moments apart."""
        return statistics.median(c / r for c, r in zip(self.candidate_ms, self.reference_ms, strict=True))


@dataclass(frozen=True)
class Estimate:
    """A positive quantity pooled over ``n`` processes: geometric mean and its 95 % CI."""

    value: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        """Relative half-width of the CI (0.02: the truth is within about ±2 %)."""
        if self.n < 2 or self.low <= 0:
            return math.inf
        return math.sqrt(self.high / self.low) - 1.0

    def widened(self, systematic: float) -> Estimate:
        """The CI with a systematic relative half-width added in quadrature (what more processes in one
        window cannot reduce: the drift between windows)."""
        h = math.sqrt(self.half_width ** 2 + systematic ** 2)
        return Estimate(self.value, self.value / (1.0 + h), self.value * (1.0 + h), self.n)

    def scaled(self, factor: float) -> Estimate:
        return Estimate(self.value * factor, self.low * factor, self.high * factor, self.n)


def pool(values: Sequence[float]) -> Estimate:
    """Geometric mean of per-process figures with a t-based 95 % CI on their logs."""
    if not values or min(values) <= 0:
        raise ValueError(f"need positive per-process figures, got {list(values)}")
    logs = [math.log(v) for v in values]
    mean = statistics.fmean(logs)
    if len(logs) < 2:
        return Estimate(math.exp(mean), 0.0, math.inf, 1)
    half = t975(len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs))
    return Estimate(math.exp(mean), math.exp(mean - half), math.exp(mean + half), len(logs))


def enough(estimate: Estimate, *, target_ci: float, min_processes: int, max_processes: int) -> bool:
    """Stop adding processes: the CI is narrow enough (after ``min_processes``), or the cap is reached."""
    if estimate.n >= max_processes:
        return True
    return estimate.n >= min_processes and estimate.half_width <= target_ci


def decided(estimate: Estimate, *, budget: float, margin: float) -> bool:
    """The CI lies wholly on one side of ``budget`` with ``margin`` (relative) to spare: more processes
    would narrow it without changing the verdict. A plan within ``margin`` of its budget never is."""
    return estimate.n >= 2 and (estimate.high <= budget * (1.0 - margin) or estimate.low >= budget * (1.0 + margin))


def verdict(*, low: float, high: float, budget: float) -> Verdict:
    """met: the whole CI is within the budget; missed: all of it is over; else inconclusive."""
    if high <= budget:
        return "met"
    if low > budget:
        return "missed"
    return "inconclusive"


def judged(*, p50: float, high: float, rule: str) -> float:
    """The figure a budget is decided on: the CI's upper end (``upper``) or the point estimate (``p50``).

    A figure without a CI (a single-process or table profile) is judged on its point estimate.
    """
    if rule not in BUDGET_RULES:
        raise ValueError(f"budget rule {rule!r}; expected one of {BUDGET_RULES}")
    if rule == "upper" and math.isfinite(high):
        return high
    return p50


def describe_rule(rule: str, *, short: bool = False) -> str:
    """How a budget is decided, in words: for a sentence, or (``short``) for a column or a parenthesis."""
    if short:
        return "CI upper end" if rule == "upper" else "p50"
    return "the 95 % CI's upper end" if rule == "upper" else "the point estimate (p50)"
