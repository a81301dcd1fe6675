"""Latency figures cached by (architecture fingerprint, profile settings).

Only the standard library here; figures are plain dicts, so the actor that holds a search's cache
stores no torch-backed objects.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

Figure = dict[str, Any]  # LatencyStats.as_dict()


def _spread(fig: Figure) -> float:
    """How unsure a figure is: its CI's width where it has one (pooled), else (p90 - p50) / p50."""
    if fig["p50_ms"] <= 0:
        return float("inf")
    low, high = fig.get("ci_low_ms", math.nan), fig.get("ci_high_ms", math.nan)
    if not (math.isnan(low) or math.isnan(high)):
        return (high - low) / fig["p50_ms"]
    return (fig["p90_ms"] - fig["p50_ms"]) / fig["p50_ms"]


class LatencyCache(Protocol):
    def get(self, key: str) -> Figure | None: ...

    def put(self, key: str, figure: Figure) -> None: ...


class LocalLatencyCache:
    """In-process cache (apply, tests, benchmarks); also what the Ray actor behind RayLatencyCache holds."""

    def __init__(self) -> None:
        self._data: dict[str, Figure] = {}

    def get(self, key: str) -> Figure | None:
        return self._data.get(key)

    def put(self, key: str, figure: Figure) -> None:
        # Keep the steadier figure if two trials raced to measure the same architecture.
        old = self._data.get(key)
        if old is None or _spread(figure) < _spread(old):
            self._data[key] = figure


class RayLatencyCache:
    """A cache every trial of a search shares, wherever it runs: a small Ray actor holds it."""

    def __init__(self) -> None:
        import ray

        self._actor = ray.remote(num_cpus=0)(LocalLatencyCache).remote()

    def get(self, key: str) -> Figure | None:
        import ray

        return ray.get(self._actor.get.remote(key))

    def put(self, key: str, figure: Figure) -> None:
        import ray

        ray.get(self._actor.put.remote(key, figure))
