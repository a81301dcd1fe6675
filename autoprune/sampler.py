"""The Optuna side of the search: which sampler, and which plans it tries first. No Ray here."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import optuna

from autoprune.budget import judged_ms
from autoprune.errors import AutopruneError
from autoprune.space import SearchSpace

CONSTRAINT_PREFIX = "latency_over_budget_ms@"  # + profile name: one constraint per budget
TRIAL_NUMBER_KEY = "__trial_number"


def trial_name(number: int) -> str:
    """The name of Optuna trial ``number`` in every output file."""
    return f"trial-{number:03d}"


def budget_constraints(result: Mapping[str, Any], budgets_ms: Mapping[str, float], *, rule: str) -> dict[str, float]:
    """One Optuna constraint per budget: the judged latency (see ``budget.judged_ms``) minus the budget
    in ms, feasible when <= 0, so the sampler's feasibility is the run's ``meets_budget``."""
    return {f"{CONSTRAINT_PREFIX}{profile}": judged_ms(result, profile, rule=rule) - budget
            for profile, budget in budgets_ms.items() if result.get(f"latency_p50_ms@{profile}") is not None}


def ratios_from_config(config: dict[str, Any]) -> dict[str, float]:
    """Group → ratio from a trial's config; rounding drops the float noise of Optuna's step grid."""
    return {k: round(float(v), 6) for k, v in config.items() if not k.startswith("__")}


SAMPLERS = ("tpe", "local", "nsga2", "random", "gp")


def make_sampler(name: str = "tpe", *, trials: int, concurrency: int, seed: int) -> optuna.samplers.BaseSampler:
    """An Optuna sampler by name, with defaults suited to the trial count and concurrency.

    Every one reads the budget from each trial's constraints (``Trial.set_constraint``).
    - tpe (default): multi-objective TPE; starts modelling after trials/4 random plans (4..10), and
      the constant liar keeps parallel trials apart.
    - nsga2: a population of trials/4 (4..50): the default of 50 would spend a typical search on
      its first, random generation.
    - gp: Gaussian-process log-EHVI; best per trial for small budgets, seconds per suggestion.
    - local: NetAdapt-style moves around the best plan within the budget, a quarter of them from
      TPE (budget formulation only: it needs one objective).
    - random: the baseline the others must beat.
    """
    startup = min(10, max(4, trials // 4))
    if name == "tpe":
        return optuna.samplers.TPESampler(n_startup_trials=startup, multivariate=True, constant_liar=concurrency > 1,
                                          seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=min(50, max(4, trials // 4)), seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(n_startup_trials=startup, seed=seed)
    if name == "local":
        from autoprune.local_sampler import LocalMovesSampler

        return LocalMovesSampler(seed=seed, fallback=optuna.samplers.TPESampler(
            n_startup_trials=startup, multivariate=True, constant_liar=concurrency > 1, seed=seed))
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise AutopruneError(f"sampler {name!r} is unknown; choose one of {', '.join(SAMPLERS)}")


def uniform_seeds(space: SearchSpace, *, budgets: Mapping[str, tuple[float, float]]) -> list[dict[str, float]]:
    """Uniform-ratio plans that bracket the budget, for the sampler to try first.

    ``budgets`` maps a profile to (budget ms, unpruned ms). A convolution's cost scales with its
    input times its output channels, so a uniform ratio r leaves about (1 - r)² of the latency:
    r* = 1 - sqrt(budget / unpruned) for the tightest budget, and one grid step either side of it.
    """
    need = max((1.0 - math.sqrt(min(1.0, b / base)) for b, base in budgets.values() if base > 0), default=0.0)
    plans: list[dict[str, float]] = []
    for target in (need - 0.1, need, need + 0.1):
        plan = {name: min(g.choices(), key=lambda v: abs(v - target)) for name, g in space.groups.items()}
        if plan not in plans:
            plans.append(plan)
    return plans
