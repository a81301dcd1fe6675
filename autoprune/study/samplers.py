"""The Optuna side of the search: which sampler, and which plans it tries first. No Ray here."""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from typing import Any, Protocol

import optuna

from autoprune.core.records import at
from autoprune.core.registry import Registry
from autoprune.latency.budget import judged_ms
from autoprune.space.space import SearchSpace

CONSTRAINT_PREFIX = "latency_over_budget_ms@"  # + profile name: one constraint per budget
TRIAL_NUMBER_KEY = "__trial_number"


def trial_name(number: int) -> str:
    """The name of Optuna trial ``number`` in every output file."""
    return f"trial-{number:03d}"


def budget_constraints(result: Mapping[str, Any], budgets_ms: Mapping[str, float], *, rule: str) -> dict[str, float]:
    """One Optuna constraint per budget: the judged latency (see ``budget.judged_ms``) minus the budget
    in ms, feasible when <= 0, so the sampler's feasibility is the run's ``meets_budget``."""
    return {f"{CONSTRAINT_PREFIX}{profile}": judged_ms(result, profile, rule=rule) - budget
            for profile, budget in budgets_ms.items() if result.get(at("latency_p50_ms", profile)) is not None}


def ratios_from_config(config: dict[str, Any]) -> dict[str, float]:
    """Group → ratio from a trial's config; rounding drops the float noise of Optuna's step grid."""
    return {k: round(float(v), 6) for k, v in config.items() if not k.startswith("__")}


class SamplerFactory(Protocol):
    def __call__(self, *, trials: int, concurrency: int, seed: int) -> optuna.samplers.BaseSampler: ...


# Every sampler reads the budget from each trial's constraints (``Trial.set_constraint``).
SAMPLERS: Registry[SamplerFactory] = Registry("sampler")


def _startup(trials: int) -> int:
    return min(10, max(4, trials // 4))


@SAMPLERS.register("tpe")
def _tpe(*, trials: int, concurrency: int, seed: int) -> optuna.samplers.BaseSampler:
    """Multi-objective TPE (the default): starts modelling after trials/4 random plans (4..10), and
    the constant liar keeps parallel trials apart."""
    return optuna.samplers.TPESampler(n_startup_trials=_startup(trials), multivariate=True,
                                      constant_liar=concurrency > 1, seed=seed)


@SAMPLERS.register("local")
def _local(*, trials: int, concurrency: int, seed: int) -> optuna.samplers.BaseSampler:
    """NetAdapt-style moves around the best plan within the budget, a quarter of them from TPE
    (budget formulation only: it needs one objective)."""
    from autoprune.study.local_sampler import LocalMovesSampler

    return LocalMovesSampler(seed=seed, fallback=_tpe(trials=trials, concurrency=concurrency, seed=seed))


class _NSGAII(optuna.samplers.NSGAIISampler):
    """Optuna's NSGA-II, picklable: it holds a thread lock, and Ray Tune pickles the searcher (with
    its sampler) when the Tuner is made; the lock is made anew where it is unpickled."""

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_thread_lock"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._thread_lock = threading.Lock()


@SAMPLERS.register("nsga2")
def _nsga2(*, trials: int, concurrency: int, seed: int) -> optuna.samplers.BaseSampler:
    """A population of trials/4 (4..50): the default of 50 would spend a typical search on its
    first, random generation."""
    return _NSGAII(population_size=min(50, max(4, trials // 4)), seed=seed)


@SAMPLERS.register("random")
def _random(*, trials: int, concurrency: int, seed: int) -> optuna.samplers.BaseSampler:
    """The baseline the others must beat."""
    return optuna.samplers.RandomSampler(seed=seed)


@SAMPLERS.register("gp")
def _gp(*, trials: int, concurrency: int, seed: int) -> optuna.samplers.BaseSampler:
    """Gaussian-process log-EHVI: best per trial for small budgets, seconds per suggestion."""
    return optuna.samplers.GPSampler(n_startup_trials=_startup(trials), seed=seed)


def list_samplers() -> list[str]:
    return SAMPLERS.names()


# Samplers that model every trial's value, an infeasible one's too (the GP fits them all): a plan over
# budget is then evaluated rather than told the metric's worst value (tests/test_infeasible_value.py).
READ_INFEASIBLE_VALUES = frozenset({"gp"})


def reads_infeasible_values(name: str) -> bool:
    return name in READ_INFEASIBLE_VALUES


def make_sampler(name: str = "tpe", *, trials: int, concurrency: int, seed: int) -> optuna.samplers.BaseSampler:
    """An Optuna sampler by name, with defaults suited to the trial count and concurrency."""
    return SAMPLERS.get(name)(trials=trials, concurrency=concurrency, seed=seed)


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
