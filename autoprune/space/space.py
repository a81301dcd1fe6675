"""SearchSpace: which prunable groups are searched, each with a ratio range and step.

Stored as YAML in ``search_spaces/``; ``init_space`` writes one for any model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from torch import nn

from autoprune.core import config
from autoprune.core.config import StrictModel
from autoprune.core.errors import AutopruneError, ConfigError


class GroupRange(StrictModel):
    low: float = Field(default=0.0, ge=0.0, lt=1.0)
    high: float = Field(default=0.7, ge=0.0, lt=1.0)
    step: float = Field(default=0.05, gt=0.0, lt=1.0)
    members: list[str] = Field(default_factory=list)  # informational: the coupled layers pruned together
    channels: int | None = None  # informational
    unit: str = "channels"  # informational: "heads" for an attention block's heads (whole heads leave)

    @model_validator(mode="after")
    def _ordered(self) -> GroupRange:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) is above high ({self.high}); low must be <= high")
        return self

    def choices(self) -> list[float]:
        """Every ratio on the grid from low to high (high included when it lies on the grid)."""
        n = round((self.high - self.low) / self.step + 1e-9)
        return [round(self.low + i * self.step, 6) for i in range(n + 1) if self.low + i * self.step <= self.high + 1e-9]


class SearchSpace(StrictModel):
    model: str = ""  # informational: what the space was generated from
    criterion: str = "l1"
    round_to: int = Field(default=8, ge=1)  # kept channels rounded to a multiple: see init_space
    ignored: list[str] | None = None  # None: the model's output layer
    groups: dict[str, GroupRange]
    left_out: dict[str, str] = Field(default_factory=dict)  # informational: group -> why it cannot be pruned

    @field_validator("groups")
    @classmethod
    def _not_empty(cls, v: dict[str, GroupRange]) -> dict[str, GroupRange]:
        if not v:
            raise ValueError("no groups; name at least one prunable group (autoprune space init lists them)")
        return v

    @classmethod
    def load(cls, path: str | Path) -> SearchSpace:
        return config.load(cls, path)

    def save(self, path: str | Path) -> Path:
        return config.dump(self, path, header=_HEADER)

    def to_yaml(self) -> str:
        import yaml

        return _HEADER + yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def check_against(self, model: nn.Module, *, input_shape: Sequence[int], source: str = "<space>") -> None:
        """Fail with file, key and value when a group is not a prunable group of ``model``."""
        from autoprune.prune.groups import find_groups

        modules = dict(model.named_modules())
        for name in self.ignored or []:
            if name not in modules:
                raise ConfigError(file=source, key="ignored", value=name,
                                  expected="no such layer in the model; name layers as in model.named_modules()")
        groups = {g.name: g for g in find_groups(model, input_shape=input_shape, ignored=self.ignored)}
        member_of = {m: g.name for g in groups.values() for m in g.members}
        for name in self.groups:
            if name in groups:
                continue
            if name not in modules:
                why = "no such layer in the model"
            elif name in member_of:
                why = f"this layer is coupled to {member_of[name]!r} (residual add) and is pruned with it; name that group"
            else:
                why = "this layer has no prunable output channels (the output layer, or ignored)"
            raise ConfigError(file=source, key=f"groups.{name}", value=name,
                              expected=f"{why}; prunable groups: {', '.join(groups)}")

    def check_plan(self, ratios: dict[str, float], *, source: str = "<plan>") -> dict[str, float]:
        """A ratio for every group, each on that group's grid; returns them as floats."""
        if not isinstance(ratios, dict):
            raise ConfigError(file=source, key="", value=ratios, expected="a mapping of group name to ratio")
        for name, value in ratios.items():
            if name not in self.groups:
                raise ConfigError(file=source, key=name, value=value,
                                  expected=f"a group of the space: {', '.join(self.groups)}")
        out = {}
        for name, g in self.groups.items():
            if name not in ratios:
                raise ConfigError(file=source, key=name, value=None, expected="a ratio for every group of the space")
            value = ratios[name]
            grid = g.choices()
            if not isinstance(value, (int, float)) or min(abs(float(value) - v) for v in grid) > 1e-6:
                raise ConfigError(file=source, key=name, value=value,
                                  expected=f"one of the group's ratios {grid[0]}..{grid[-1]} in steps of {g.step}")
            out[name] = float(value)
        return out


_HEADER = ("# autoprune search space: one ratio (fraction of output channels removed) per prunable group.\n"
           "# Layers coupled by residual adds form one group and share its ratio (members).\n")


def init_space(model: nn.Module, *, input_shape: Sequence[int], model_name: str = "", low: float = 0.0,
               high: float = 0.7, step: float = 0.05, criterion: str = "l1", round_to: int = 8) -> SearchSpace:
    """A search space covering every prunable group of ``model`` (the output layer is kept).

    ``round_to=8``: ONNX Runtime's CPU convolutions work on blocks of 8 or 16 channels; an odd
    width can run slower than the unpruned layer (measured: bench/bench_rounding.py).
    """
    from autoprune.prune.engine import unprunable_groups
    from autoprune.prune.groups import find_groups

    skipped: dict[str, str] = {}
    found = find_groups(model, input_shape=input_shape, skipped=skipped)
    label = model_name or type(model).__name__
    if not found and not skipped:
        raise AutopruneError(f"model {label} has no prunable conv or linear groups")
    # Every ratio the range allows is checked: its ends and middle first, where most breaks show
    grid = [r for r in GroupRange(low=low, high=high, step=step).choices() if r > 0]
    first = [grid[-1], grid[0], min(grid, key=lambda r: abs(r - 0.5))] if grid else []
    ratios = list(dict.fromkeys([*first, *grid]))
    left_out = {**skipped, **unprunable_groups(model, found, input_shape=input_shape, round_to=round_to,
                                               ratios=ratios)}
    groups = [g for g in found if g.name not in left_out]
    if not groups:
        name, why = next(iter(left_out.items()))
        raise AutopruneError(f"model {label}: no group can be pruned; e.g. layer {name!r}: {why}")
    return SearchSpace(
        model=model_name, criterion=criterion, round_to=round_to, left_out=left_out,
        groups={g.name: GroupRange(low=low, high=high, step=step, members=list(g.members), channels=g.channels,
                                   unit=g.unit)
                for g in groups})
