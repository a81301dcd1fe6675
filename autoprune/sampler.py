"""Optuna under Ray Tune: the sampler choice, and an adapter that lets the sampler see the budget.

Optuna's samplers read a trial's constraint values from the trial itself (``Trial.set_constraint``,
Optuna >= 5; the older ``constraints_func`` sees only params and attributes). Ray's ``OptunaSearch``
tells Optuna the objective values alone, so the adapter sets the budget violation from the trial's
result on the Optuna trial just before that ``tell``.
"""

from __future__ import annotations

from typing import Any

import optuna
from ray.tune.search.optuna import OptunaSearch

CONSTRAINT_PREFIX = "latency_over_budget_ms@"  # + profile name: one constraint per budget
TRIAL_NUMBER_KEY = "__trial_number"


def ratios_from_config(config: dict[str, Any]) -> dict[str, float]:
    """Group → ratio from a trial's config; rounding drops the float noise of Optuna's step grid."""
    return {k: round(float(v), 6) for k, v in config.items() if k != TRIAL_NUMBER_KEY}


def make_sampler(*, trials: int, concurrency: int, seed: int) -> optuna.samplers.BaseSampler:
    """Multi-objective TPE; the budget reaches it as each trial's constraint.

    NSGA-II would spend a default population of 50 on random plans, i.e. all of a typical search;
    TPE starts modelling after a few random trials. The constant liar keeps parallel trials apart.
    """
    return optuna.samplers.TPESampler(
        n_startup_trials=min(10, max(4, trials // 4)),
        multivariate=True,
        constant_liar=concurrency > 1,
        seed=seed,
    )


class BudgetedOptunaSearch(OptunaSearch):
    """OptunaSearch that forwards the latency-budget violation to the sampler's constraint."""

    def __init__(self, *, budgets_ms: dict[str, float], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._budgets_ms = dict(budgets_ms)  # profile name -> budget in ms

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        config = super().suggest(trial_id)
        if isinstance(config, dict):
            # Optuna's trial number names the trial in every output file: stable and sequential.
            config = {**config, TRIAL_NUMBER_KEY: self._ot_trials[trial_id].number}
        return config

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is not None and result:
            for profile, budget in self._budgets_ms.items():
                latency = result.get(f"latency_p50_ms@{profile}")
                if latency is not None:
                    # Feasible when <= 0: latency minus budget, in ms.
                    ot_trial.set_constraint(f"{CONSTRAINT_PREFIX}{profile}", float(latency) - budget)
        super().on_trial_complete(trial_id, result=result, error=error)
