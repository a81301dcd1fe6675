"""Ray's OptunaSearch, with the budget forwarded to the sampler as each trial's constraint.

Optuna's samplers read a trial's constraint values from the trial itself (``Trial.set_constraint``,
Optuna >= 5; the older ``constraints_func`` sees only params and attributes). Ray's ``OptunaSearch``
tells Optuna the objective values alone, so the adapter sets the budget violation from the trial's
result on the Optuna trial just before that ``tell``.
"""

from __future__ import annotations

from typing import Any

from ray.tune.search.optuna import OptunaSearch

from autoprune.sampler import TRIAL_NUMBER_KEY, budget_constraints


class BudgetedOptunaSearch(OptunaSearch):
    """OptunaSearch that forwards the latency-budget violation to the sampler's constraint."""

    def __init__(self, *, budgets_ms: dict[str, float], budget_rule: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._budgets_ms = dict(budgets_ms)  # profile name -> budget in ms
        self._rule = budget_rule

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        config = super().suggest(trial_id)
        if isinstance(config, dict):
            # Optuna's trial number names the trial in every output file: stable and sequential.
            config = {**config, TRIAL_NUMBER_KEY: self._ot_trials[trial_id].number}
        return config

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is not None and result:
            for key, value in budget_constraints(result, self._budgets_ms, rule=self._rule).items():
                ot_trial.set_constraint(key, value)
        super().on_trial_complete(trial_id, result=result, error=error)
