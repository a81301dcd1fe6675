"""Move a proposed plan onto the budget's boundary, keeping its allocation between groups.

A sampler proposes a ratio per group; most proposals land far under or over the budget, and a
plan far under it wastes accuracy the user would have taken. The repair adds one shift ``t`` to
every ratio (clipped to each group's range, snapped to its grid) and picks the smallest ``t``
whose predicted latency meets every budget: differences between groups, the allocation the
sampler chose, are kept; the overall level is set by the budget. A shift of 0 is the proposal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from autoprune.latency.cost import CostModel, LatencyModel
from autoprune.space.space import SearchSpace


@dataclass(frozen=True)
class Repaired:
    ratios: dict[str, float]
    shift: float  # added to every ratio before clipping and snapping
    predicted_ms: dict[str, float]  # profile -> predicted latency of the repaired plan
    reachable: bool  # False: even the space's highest ratios are predicted over a budget


def _snap(value: float, grid: list[float]) -> float:
    return min(grid, key=lambda v: (abs(v - value), v))


def shifted(ratios: Mapping[str, float], shift: float, space: SearchSpace) -> dict[str, float]:
    out = {}
    for name, g in space.groups.items():
        out[name] = _snap(min(g.high, max(g.low, ratios.get(name, g.low) + shift)), g.choices())
    return out


def to_budget(ratios: Mapping[str, float], *, space: SearchSpace, cost: CostModel,
              models: Mapping[str, LatencyModel], budgets_ms: Mapping[str, float]) -> Repaired:
    """The plan ``ratios + t`` with the smallest ``t`` predicted within every budget (less its margin)."""

    def predicted(plan: dict[str, float]) -> dict[str, float]:
        return {p: models[p].predict(cost.features(plan, block=models[p].block)) for p in budgets_ms}

    def fits(plan: dict[str, float]) -> bool:
        pred = predicted(plan)
        return all(pred[p] <= budgets_ms[p] * (1.0 - models[p].margin) for p in budgets_ms)

    lo, hi = -1.0, 1.0  # ratios live in [0, 1): these shifts reach every corner of the space
    if not fits(shifted(ratios, hi, space)):
        plan = shifted(ratios, hi, space)
        return Repaired(ratios=plan, shift=hi, predicted_ms=predicted(plan), reachable=False)
    if fits(shifted(ratios, lo, space)):
        hi = lo
    # Latency falls monotonically with t (every ratio rises or stays): bisect on the step function.
    for _ in range(40):
        if hi - lo < 1e-4:
            break
        mid = (lo + hi) / 2
        if fits(shifted(ratios, mid, space)):
            hi = mid
        else:
            lo = mid
    plan = _fill(shifted(ratios, hi, space), ratios, space=space, fits=fits)
    return Repaired(ratios=plan, shift=hi, predicted_ms=predicted(plan), reachable=True)


def _fill(plan: dict[str, float], proposal: Mapping[str, float], *, space: SearchSpace, fits) -> dict[str, float]:
    """Spend the slack the grid leaves under the boundary: one grid step back at a time, only to
    groups the shift pushed past the proposal (furthest first) and never below it, while the plan
    still fits, so the slack restores the proposal's own allocation."""
    plan = dict(plan)
    changed = True
    while changed:
        changed = False
        for name in sorted(plan, key=lambda n: (-(plan[n] - proposal.get(n, 0.0)), n)):
            grid = space.groups[name].choices()
            i = grid.index(plan[name])
            if i == 0 or grid[i - 1] < proposal.get(name, 0.0) - 1e-9:
                continue
            trial = {**plan, name: grid[i - 1]}
            if fits(trial):
                plan, changed = trial, True
    return plan


@dataclass
class BudgetAim:
    """What the search aims at: the space, its cost model and latency models per budgeted profile.

    ``repair`` puts a proposal on the boundary; ``landed`` feeds a measured trial back, so the
    latency models (and their margins) follow this model on these profiles as the search goes.
    Each profile has two candidate models, widths counted exactly and in the target's channel
    blocks; the one that explains the measured plans better predicts (which one does differs
    between models on one machine: blocks helped a MobileNet-style net, not a ResNet-14).
    """

    space: SearchSpace
    cost: CostModel
    candidates: dict[str, list[LatencyModel]]
    budgets_ms: dict[str, float]

    @classmethod
    def build(cls, *, space: SearchSpace, cost: CostModel, budgets_ms: Mapping[str, float],
              baseline_ms: Mapping[str, float], blocks: Mapping[str, int] | None = None) -> BudgetAim:
        blocks = blocks or {}
        candidates = {p: [LatencyModel(base=cost.base_features(block=b), base_ms=baseline_ms[p], block=b)
                          for b in dict.fromkeys((1, blocks.get(p, 1)))] for p in budgets_ms}
        return cls(space=space, cost=cost, candidates=candidates, budgets_ms=dict(budgets_ms))

    @property
    def models(self) -> dict[str, LatencyModel]:
        """Per profile, the candidate with the smaller error on the plans measured so far."""
        return {p: min(ms, key=lambda m: (m.error(), m.block)) for p, ms in self.candidates.items()}

    def repair(self, ratios: Mapping[str, float]) -> Repaired:
        return to_budget(ratios, space=self.space, cost=self.cost, models=self.models, budgets_ms=self.budgets_ms)

    def landed(self, ratios: Mapping[str, float], *, measured_ms: Mapping[str, float],
               judged_ms: Mapping[str, float]) -> None:
        """A measured plan: its p50 refits the latency models; its judged figure moves their margin."""
        for p, models in self.candidates.items():
            for model in models:
                if p in measured_ms:
                    model.observe(self.cost.features(ratios, block=model.block), measured_ms[p])
                if p in judged_ms:
                    model.landed(budget_ms=self.budgets_ms[p], judged_ms=judged_ms[p])

    def predict(self, ratios: Mapping[str, float]) -> dict[str, float]:
        """Profile -> predicted latency of a plan, on every budgeted profile."""
        return {p: m.predict(self.cost.features(ratios, block=m.block)) for p, m in self.models.items()}

    def fits(self, ratios: Mapping[str, float]) -> bool:
        """Whether a plan is predicted within every budget, less its margin."""
        models, predicted = self.models, self.predict(ratios)
        return all(predicted[p] <= b * (1 - models[p].margin) for p, b in self.budgets_ms.items())
