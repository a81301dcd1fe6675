"""Seed plans: the cheap answers a user would try first, put on the budget, for the search to beat.

- ``uniform``: one ratio for every group (the level set by the budget).
- ``global``: Torch-Pruning's global pruning (group L1, one ranking over all channels) at the
  smallest overall ratio whose plan meets the budget.
- ``latency``: latency-aware (HALP's idea): every grid step of every group is priced by the
  first-order Taylor loss of the channels it removes (one scale across groups) and by the
  milliseconds the cost model says it saves; the cheapest loss per millisecond is taken until the
  plan fits the budget. Seconds, even on a real model: it is in the default.
- ``sensitivity``: greedy per-layer selection from a sensitivity table (AIMET's greedy
  compression-ratio selection): one accuracy-drop threshold; each group takes the largest ratio
  whose drop alone stayed within it; the threshold is the smallest whose plan meets the budget.

Each is then repaired onto the budget's boundary like every proposal (``repair.BudgetAim``), and
the search tries them first: it starts from the best cheap answer and can only improve on it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd
import torch
from torch import nn

from autoprune.core.metric import ACCURACY, MetricSense
from autoprune.prune.groups import removed_units
from autoprune.study.repair import BudgetAim, shifted


def uniform_seed(aim: BudgetAim) -> dict[str, float]:
    return aim.repair({name: g.low for name, g in aim.space.groups.items()}).ratios


def global_seed(aim: BudgetAim, model: nn.Module, *, input_shape: Sequence[int]) -> dict[str, float]:
    """Torch-Pruning global pruning at the overall ratio that meets the budget (bisected), on the grid."""
    from autoprune.prune.engine import global_ratios

    def plan_at(r: float) -> dict[str, float]:
        ratios = global_ratios(model, input_shape=input_shape, ratio=r, ignored=aim.space.ignored,
                               round_to=aim.space.round_to)
        return shifted(ratios, 0.0, aim.space)  # clipped to each group's range, snapped to its grid

    # Not a bisection over [0, 0.9]: with channel rounding, global pruning is not monotone in its
    # ratio (a group whose threshold keeps fewer than ``round_to`` channels is left whole, so 0.9 can
    # prune nothing). Scan up to the first ratio that fits, then bisect within that step.
    lo, hi, best = None, None, None
    for i in range(1, 19):
        plan = plan_at(0.05 * i)
        if aim.fits(plan):
            lo, hi, best = 0.05 * (i - 1), 0.05 * i, plan
            break
    if best is None:  # nothing global pruning gives fits: the repair shifts its most-pruned plan on
        return aim.repair(plan_at(0.9)).ratios
    for _ in range(3):
        mid = (lo + hi) / 2
        plan = plan_at(mid)
        if aim.fits(plan):
            hi, best = mid, plan
        else:
            lo = mid
    return aim.repair(best).ratios


def latency_seed(aim: BudgetAim, scores: Mapping[str, torch.Tensor], *, lookahead: int = 3) -> dict[str, float]:
    """Greedy on loss per millisecond: from the space's lowest ratios, the grid step (of up to
    ``lookahead`` steps: one may save nothing by itself where widths round to the same block) that
    costs the least Taylor loss per predicted millisecond saved, until the plan fits every budget."""
    space, cost = aim.space, aim.cost
    cum = {g: torch.cat([torch.zeros(1), torch.sort(s).values.cumsum(0)]) for g, s in scores.items()}

    def loss(name: str, ratio: float) -> float:
        group = cost.groups.get(name)
        if group is None or name not in cum:
            return math.inf
        return float(cum[name][min(removed_units(group, ratio, cost.round_to), len(cum[name]) - 1)])

    def predicted(plan: Mapping[str, float]) -> float:  # relative to each budget, summed over profiles
        return sum(ms / aim.budgets_ms[p] for p, ms in aim.predict(plan).items())

    plan = {name: g.low for name, g in space.groups.items()}
    now = predicted(plan)
    for _ in range(sum(len(g.choices()) for g in space.groups.values())):
        if aim.fits(plan):
            break
        best: tuple[float, str, float, float] | None = None
        for name, g in space.groups.items():
            grid = g.choices()
            i = grid.index(plan[name])
            for nxt in grid[i + 1: i + 1 + lookahead]:
                after = predicted({**plan, name: nxt})
                saved = now - after
                if saved <= 1e-12:
                    continue
                price = (loss(name, nxt) - loss(name, plan[name])) / saved
                if best is None or price < best[0]:
                    best = (price, name, nxt, after)
                break  # the first step that saves anything: the next ones are priced when we get there
        if best is None:
            break  # every group at its high: the repair says whether this corner fits
        _, name, nxt, now = best
        plan[name] = nxt
    # The step that crossed the boundary lands it there (the repair's uniform shift would undo the
    # allocation); a corner that still misses goes to the repair, which says so.
    return plan if aim.fits(plan) else aim.repair(plan).ratios


def latency_scores(model: nn.Module, data, *, input_shape: Sequence[int], ignored: Sequence[str] | None,
                   loss: str = "cross_entropy", batches: int = 4, batch_size: int = 32,
                   seed: int = 0) -> dict[str, torch.Tensor]:
    """Taylor scores of every group's units from ``batches`` seeded training batches (the latency seed's prices)."""
    from torch.utils.data import DataLoader

    from autoprune.prune.engine import taylor_scores
    from autoprune.train.task import resolve_loss

    loader = DataLoader(data.train, batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    taken = [b for _, b in zip(range(batches), loader)]
    return taylor_scores(model, [(x, y) for x, y, *_ in taken], input_shape=input_shape, ignored=ignored,
                         loss=resolve_loss(loss))


def sensitivity_seed(aim: BudgetAim, table: pd.DataFrame) -> dict[str, float]:
    """Greedy per-layer selection: the smallest accuracy-drop threshold whose plan meets the budget."""
    from autoprune.space.sensitivity import threshold_plans

    plans = threshold_plans(aim.space, table)
    chosen = next((p for p in plans if aim.fits(p)), plans[-1])  # none fits: prune as far as the table goes
    return aim.repair(chosen).ratios


def quick_sensitivity(model: nn.Module, data, *, space, input_shape: Sequence[int],
                      ratios: Sequence[float] = (0.25, 0.5, 0.75), bn_recalibration: int = 10,
                      metric: str = "top1", sense: MetricSense = ACCURACY) -> pd.DataFrame:
    """Each group pruned alone at ``ratios``, BN recalibrated, no fine-tune: the accuracy drops the
    greedy selection needs (no latency: the cost model prices plans). Groups × ratios evaluations."""
    from autoprune.prune.plan import Plan
    from autoprune.study.trial import TrialSettings, run_trial
    from autoprune.train.finetune import FinetuneConfig, evaluate

    settings = TrialSettings(input_shape=tuple(input_shape), profiles=(), finetune=FinetuneConfig(steps=0),
                             bn_recalibration=bn_recalibration, metric=metric, sense=sense)
    base = evaluate(model, data.trial_val, metric=metric)
    rows = []
    for name in space.groups:
        for r in ratios:
            plan = Plan(ratios={name: r}, criterion=space.criterion, round_to=space.round_to, ignored=space.ignored)
            acc = run_trial(model, data, plan, settings=settings)["accuracy"]
            rows.append({"group": name, "ratio": r, "accuracy": acc, "accuracy_drop": sense.drop(base, acc)})
    return pd.DataFrame(rows)
