"""A Plan: prunable-group name → ratio, with the criterion, channel rounding and base-model fingerprint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from autoprune.core import config
from autoprune.core.config import StrictModel
from autoprune.core.errors import AutopruneError

PLAN_FORMAT = 1


class Plan(StrictModel):
    """Immutable. Applying the same plan to the same weights always gives the same pruned model."""

    format: int = PLAN_FORMAT
    ratios: dict[str, float]
    criterion: str = "l1"
    round_to: int = Field(default=1, ge=1)
    ignored: list[str] | None = None  # layers kept whole; None: the model's output layer
    base_model: str = ""
    base_fingerprint: str = ""
    seed: int = 0

    @field_validator("ratios")
    @classmethod
    def _ratios_in_range(cls, v: dict[str, float]) -> dict[str, float]:
        for name, r in v.items():
            if not 0.0 <= r < 1.0:
                raise ValueError(f"ratio of group {name!r} is {r}; a ratio must be in [0, 1)")
        return v

    @field_validator("criterion")
    @classmethod
    def _known_criterion(cls, v: str) -> str:
        from autoprune.prune.criteria import list_criteria

        if v not in list_criteria():
            raise ValueError(f"unknown criterion; choose one of: {', '.join(list_criteria())}")
        return v

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "<plan>") -> Plan:
        return config.validate(cls, data, source=source)

    @classmethod
    def load(cls, path: str | Path) -> Plan:
        return config.load(cls, path)

    def save(self, path: str | Path) -> Path:
        return config.dump(self, path, header="# autoprune plan: group -> fraction of output channels removed\n")

    def check_base(self, fingerprint: str, *, model: str) -> None:
        """Refuse to apply a plan made for other weights: the channel choice would differ."""
        if self.base_fingerprint and self.base_fingerprint != fingerprint:
            raise AutopruneError(
                f"plan was made for a model with fingerprint {self.base_fingerprint} ({self.base_model}), "
                f"but model {model!r} has fingerprint {fingerprint}; apply it to the model it was searched on")
