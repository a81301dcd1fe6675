"""Latency budgets: ``50ms`` (absolute, per batch on a profile) or ``0.5x`` (of the unpruned model)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from autoprune.core.errors import AutopruneError
from autoprune.core.records import at
from autoprune.latency.pooling import judged, verdict

_UNITS_MS = {"ms": 1.0, "s": 1000.0, "us": 1e-3, "µs": 1e-3}
_PATTERN = re.compile(r"^\s*(?P<num>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>ms|s|us|µs|x)\s*(?:@(?P<profile>[\w.-]+))?\s*$")
_HINT = ("use a latency such as 50ms, 0.05s or 500us, or a fraction of the unpruned latency such as 0.5x, "
         "optionally @PROFILE (50ms@cpu-1thread-b1)")


@dataclass(frozen=True)
class Budget:
    """A latency constraint; ``relative`` budgets are a fraction of the unpruned model's latency."""

    value: float
    relative: bool = False
    text: str = ""
    profile: str | None = None  # None: the search's first profile

    @classmethod
    def parse(cls, text: str) -> Budget:
        m = _PATTERN.match(str(text))
        if m is None:
            raise AutopruneError(f"budget {text!r} is not understood; {_HINT}")
        num, unit, profile = float(m["num"]), m["unit"], m["profile"]
        if num <= 0:
            raise AutopruneError(f"budget {text!r} must be positive; {_HINT}")
        if unit == "x":
            if num > 1:
                raise AutopruneError(f"budget {text!r} asks for a slower model; use a fraction below 1, e.g. 0.5x")
            return cls(value=num, relative=True, text=str(text).strip(), profile=profile)
        return cls(value=num * _UNITS_MS[unit], relative=False, text=str(text).strip(), profile=profile)

    def on(self, profile: str) -> Budget:
        """This budget, bound to ``profile`` (a budget without @PROFILE binds to the first profile)."""
        return replace(self, profile=profile)

    def resolve_ms(self, *, baseline_ms: float) -> float:
        """The budget in milliseconds, given the unpruned model's latency on the same profile."""
        return self.value * baseline_ms if self.relative else self.value

    def __str__(self) -> str:
        return self.text or (f"{self.value}x" if self.relative else f"{self.value}ms")


def judged_ms(metrics: Mapping[str, Any], profile: str, *, rule: str) -> float:
    """The latency a budget on ``profile`` is decided on, under ``rule`` (see ``pooling.judged``)."""
    return judged(p50=float(metrics[at("latency_p50_ms", profile)]),
                  high=float(metrics.get(at("latency_ci_high_ms", profile), math.nan)), rule=rule)


def over_budget(metrics: Mapping[str, Any], budgets_ms: Mapping[str, float], *, rule: str) -> list[str]:
    """Profiles whose budget the trial's latency misses under ``rule``."""
    return [name for name, ms in budgets_ms.items() if judged_ms(metrics, name, rule=rule) > ms]


def budget_verdicts(metrics: Mapping[str, Any], budgets_ms: Mapping[str, float]) -> dict[str, str]:
    """met / missed / inconclusive per budgeted profile, from the CI (a figure without one: its estimate)."""
    out = {}
    for name, ms in budgets_ms.items():
        p50 = float(metrics[at("latency_p50_ms", name)])
        low, high = (float(metrics.get(at(f"latency_ci_{end}_ms", name), math.nan)) for end in ("low", "high"))
        out[name] = verdict(low=p50, high=p50, budget=ms) if math.isnan(low) else verdict(low=low, high=high, budget=ms)
    return out
