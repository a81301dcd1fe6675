"""Ray's OptunaSearch, with the budget forwarded to the sampler as each trial's constraint, and (in
the budget formulation) every proposal repaired onto the budget's boundary before it runs.

Optuna's samplers read a trial's constraint values from the trial itself (``Trial.set_constraint``,
Optuna >= 5; the older ``constraints_func`` sees only params and attributes). Ray's ``OptunaSearch``
tells Optuna the objective values alone, so the adapter sets the budget violation from the trial's
result on the Optuna trial just before that ``tell``.

The repair changes what runs, not what the sampler proposed: the Optuna trial keeps the proposal
as its params (the sampler models proposal → accuracy) and the plan run as a user attribute.
"""

from __future__ import annotations

from typing import Any

from ray.tune.search.optuna import OptunaSearch

from autoprune.core.records import at
from autoprune.latency.budget import judged_ms
from autoprune.study.local_sampler import RATIOS_ATTR
from autoprune.study.repair import BudgetAim
from autoprune.study.samplers import (
    TRIAL_NUMBER_KEY,
    budget_constraints,
    ratios_from_config,
)

SHIFT_KEY = "__repair_shift"
PREDICTED_KEY = "__predicted_ms"


class BudgetedOptunaSearch(OptunaSearch):
    """OptunaSearch that forwards the latency-budget violation to the sampler's constraint."""

    def __init__(self, *, budgets_ms: dict[str, float], budget_rule: str, aim: BudgetAim | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._budgets_ms = dict(budgets_ms)  # profile name -> budget in ms
        self._rule = budget_rule
        self._aim = aim
        self._ran: dict[str, dict[str, float]] = {}  # trial id -> the plan it ran

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        config = super().suggest(trial_id)
        if not isinstance(config, dict):
            return config
        # _ot_trials: OptunaSearch's private map of Ray trial → Optuna trial (ray is bounded in pyproject.toml)
        ot_trial = self._ot_trials[trial_id]
        # Optuna's trial number names the trial in every output file: stable and sequential.
        extra: dict[str, Any] = {TRIAL_NUMBER_KEY: ot_trial.number}
        # Plans given to try first (seed plans, already on the boundary; plans the user listed) run as given.
        enqueued = "fixed_params" in ot_trial.storage.get_trial_system_attrs(ot_trial._trial_id)
        if self._aim is not None and not enqueued:
            repaired = self._aim.repair(ratios_from_config(config))
            config = dict(repaired.ratios)
            primary = next(iter(self._budgets_ms))
            extra.update({SHIFT_KEY: repaired.shift, PREDICTED_KEY: repaired.predicted_ms[primary]})
            ot_trial.set_user_attr(RATIOS_ATTR, dict(repaired.ratios))
        self._ran[trial_id] = ratios_from_config(config)
        return {**config, **extra}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is not None and result:
            for key, value in budget_constraints(result, self._budgets_ms, rule=self._rule).items():
                ot_trial.set_constraint(key, value)
            ran = self._ran.pop(trial_id, None)
            if self._aim is not None and ran is not None:
                measured = {p: result[at("latency_p50_ms", p)] for p in self._budgets_ms
                            if result.get(at("latency_p50_ms", p)) is not None}
                judged = {p: judged_ms(result, p, rule=self._rule) for p in measured}
                self._aim.landed(ran, measured_ms=measured, judged_ms=judged)
        super().on_trial_complete(trial_id, result=result, error=error)
