"""Landing a plan on its budget inside the trial: measure, move along a ladder of nearby plans, re-measure.

The repair puts a proposal on the budget as the latency model predicts it; at sub-millisecond
figures the prediction is a few percent off either way, so plans land over the budget (a trial
wasted) or well under it (latency the user allowed and got no accuracy for). The trial knows the
measured figure of its plan, so it corrects the prediction by the ratio measured / predicted of
that plan and moves to the ladder's rung that is then predicted closest under the budget; it
re-measures there, at most ``moves`` times, and keeps the least-pruned plan that was measured
within the budget.

A ladder is built in the driver (it needs the cost model): the plan itself, then one group one grid
step at a time towards less and towards more pruning. Each step goes to the group whose ratio is
furthest from the proposal on that side, so the rungs keep the allocation the sampler proposed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from autoprune.latency.cost import AIM
from autoprune.space.space import SearchSpace
from autoprune.study.repair import shifted

LOW = 0.90  # a plan judged under this fraction of its budget moves to a less pruned rung
RUNGS = 8  # rungs each way from the plan


@dataclass(frozen=True)
class Rung:
    ratios: dict[str, float]
    predicted_ms: dict[str, float]  # budgeted profile -> predicted latency

    def to_dict(self) -> dict:
        return {"ratios": dict(self.ratios), "predicted_ms": dict(self.predicted_ms)}

    @classmethod
    def from_dict(cls, data: Mapping) -> Rung:
        return cls(ratios={k: float(v) for k, v in data["ratios"].items()},
                   predicted_ms={k: float(v) for k, v in data["predicted_ms"].items()})


@dataclass(frozen=True)
class Ladder:
    """Plans ordered from the least pruned (slowest) to the most pruned; ``start`` is the plan proposed."""

    rungs: tuple[Rung, ...]
    start: int

    def to_dict(self) -> dict:
        return {"rungs": [r.to_dict() for r in self.rungs], "start": self.start}

    @classmethod
    def from_dict(cls, data: Mapping) -> Ladder:
        return cls(rungs=tuple(Rung.from_dict(r) for r in data["rungs"]), start=int(data["start"]))


def build(plan: Mapping[str, float], *, proposal: Mapping[str, float] | None, space: SearchSpace,
          predict: Callable[[Mapping[str, float]], dict[str, float]], rungs: int = RUNGS,
          ran: Callable[[Mapping[str, float]], bool] = lambda _: False,
          grids: Mapping[str, Sequence[float]] | None = None) -> Ladder:
    """The ladder around ``plan`` (ratios on the space's grid); ``proposal`` is what the sampler asked
    for. Rungs for which ``ran`` is true (plans other trials ran) are left out: no plan runs twice.
    ``grids``: the ratios each group may step through (default its grid; the searcher gives one
    ratio per kept width, so that every rung is another network), ``plan``'s among them."""
    if grids is None:
        grids = {n: g.choices() for n, g in space.groups.items()}
        base = shifted(plan, 0.0, space)  # every group on its grid, so a rung's index is its ratio's
    else:
        grids = {n: list(grids[n]) for n in space.groups}
        base = {n: float(plan[n]) for n in space.groups}
    wanted = {n: float((proposal or base).get(n, base[n])) for n in base}

    def walk(direction: int) -> list[dict[str, float]]:
        out, cur = [], dict(base)
        for _ in range(rungs):
            movable = [n for n in cur if 0 <= grids[n].index(cur[n]) + direction < len(grids[n])]
            if not movable:
                break
            # Towards less pruning (-1) the group furthest above the proposal; towards more (+1) the one
            # furthest below it: the allocation drifts as little as it can. Ties: the name, for determinism.
            name = min(movable, key=lambda n: (direction * (cur[n] - wanted[n]), n))
            cur = {**cur, name: grids[name][grids[name].index(cur[name]) + direction]}
            out.append(cur)
        return out

    slower = [p for p in walk(-1) if not ran(p)]
    faster = [p for p in walk(+1) if not ran(p)]
    plans = [*reversed(slower), base, *faster]
    return Ladder(rungs=tuple(Rung(ratios=p, predicted_ms=dict(predict(p))) for p in plans), start=len(slower))


def next_rung(ladder: Ladder, *, at: int, judged_ms: Mapping[str, float], budgets_ms: Mapping[str, float],
              tried: Sequence[int] = ()) -> int | None:
    """The rung to measure after rung ``at`` was judged ``judged_ms``, or None to stay.

    It moves when the plan misses a budget or sits under ``LOW`` of every budget; it goes to the
    least pruned rung whose prediction, scaled by this plan's measured / predicted, is within ``AIM``
    of every budget (the most pruned rung if none is). A rung already measured is not measured again.
    """
    fractions = {p: judged_ms[p] / b for p, b in budgets_ms.items() if p in judged_ms}
    if not fractions or LOW <= max(fractions.values()) <= 1.0:
        return None
    here = ladder.rungs[at].predicted_ms
    scale = {p: judged_ms[p] / here[p] for p in fractions if here.get(p, 0.0) > 0}
    fitting = [i for i, r in enumerate(ladder.rungs)
               if all(r.predicted_ms[p] * s <= AIM * budgets_ms[p] for p, s in scale.items())]
    target = fitting[0] if fitting else len(ladder.rungs) - 1
    return None if target == at or target in tried else target


def pick(measured: Sequence[tuple[int, bool]]) -> int:
    """Of the rungs measured (index, within every budget), the one to keep: the least pruned within
    budget, else (none fits) the most pruned."""
    fits = [i for i, ok in measured if ok]
    return min(fits) if fits else max(i for i, _ in measured)
