"""Ray's OptunaSearch, with the budget forwarded to the sampler as each trial's constraint, and (in
the budget formulation) every proposal repaired onto the budget's boundary before it runs.

Optuna's samplers read a trial's constraint values from the trial itself (``Trial.set_constraint``,
Optuna >= 5; the older ``constraints_func`` sees only params and attributes). Ray's ``OptunaSearch``
tells Optuna the objective values alone, so the adapter sets the budget violation from the trial's
result on the Optuna trial just before that ``tell``.

The repair changes what runs, not what the sampler proposed: the Optuna trial keeps the proposal
as its params (the sampler models proposal → accuracy) and the plan run as a user attribute.

Many proposals repair onto one plan (near the space's edge, or once the sampler converges). A plan
is never run twice: a proposal that lands on a finished plan is told that plan's result at once
(user attribute ``duplicate_of``) and the sampler asked again; after ``REASKS`` such answers, or
when the plan is still running, an unseen neighbour on the budget (a grid step moved between two
groups, else one group a step up or down) runs instead.

Each trial also gets a ladder of nearby plans with their predicted latency, to land on the budget
as measured (``autoprune.study.landing``); a trial that moved reports the plan it ran (``plan_run``),
which is what the sampler's attribute, the duplicate check and the latency models then hold.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import optuna
from ray.tune.search.optuna import OptunaSearch

from autoprune.core.records import at
from autoprune.latency.budget import judged_ms
from autoprune.study import landing
from autoprune.study.local_sampler import RATIOS_ATTR
from autoprune.study.repair import BudgetAim, Repaired
from autoprune.study.samplers import (
    TRIAL_NUMBER_KEY,
    budget_constraints,
    ratios_from_config,
)

LADDER_KEY = "__ladder"  # JSON of the trial's landing ladder (autoprune.study.landing)
SHIFT_KEY = "__repair_shift"
PREDICTED_KEY = "__predicted_ms"
DUPLICATE_ATTR = "duplicate_of"
REASKS = 8


def plan_key(ratios: Mapping[str, float]) -> tuple[tuple[str, float], ...]:
    """One plan, whatever the order of its groups or the float noise of its ratios."""
    return tuple(sorted((k, round(float(v), 6)) for k, v in ratios.items()))


def _probes(result: Mapping[str, Any], ran: Mapping[str, float], *, budgets_ms: Mapping[str, float],
            rule: str) -> list[dict[str, Any]]:
    """Every plan the trial measured (its landing ladder's rungs, else the plan it ran) and its figures."""
    if result.get("landing_probes"):
        return [{**p, "ratios": ratios_from_config(p["ratios"])} for p in json.loads(result["landing_probes"])]
    measured = {p: result[at("latency_p50_ms", p)] for p in budgets_ms if result.get(at("latency_p50_ms", p)) is not None}
    return [{"ratios": dict(ran), "measured_ms": measured,
             "judged_ms": {p: judged_ms(result, p, rule=rule) for p in measured}}]


class BudgetedOptunaSearch(OptunaSearch):
    """OptunaSearch that forwards the latency-budget violation to the sampler's constraint."""

    def __init__(self, *, budgets_ms: dict[str, float], budget_rule: str, aim: BudgetAim | None = None,
                 land_initial: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._budgets_ms = dict(budgets_ms)  # profile name -> budget in ms
        self._rule = budget_rule
        self._aim = aim
        self._land_initial = land_initial  # the enqueued plans are seeds (land them), not a user's (run as given)
        self._ran: dict[str, dict[str, float]] = {}  # trial id -> the plan it ran
        self._seen: dict[tuple, int] = {}  # plan -> number of the trial that runs (or ran) it
        self._told: dict[tuple, tuple[Any, dict[str, float]]] = {}  # plan -> (values, constraints) told

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
        proposal = ratios_from_config(config)
        if self._aim is not None and not enqueued:
            for _ in range(REASKS):
                repaired = self._aim.repair(ratios_from_config(config))
                earlier = self._seen.get(plan_key(repaired.ratios))
                if earlier is None or plan_key(repaired.ratios) not in self._told:
                    break
                self._tell_earlier(trial_id, ot_trial, plan_key(repaired.ratios), earlier)
                config = super().suggest(trial_id)
                ot_trial = self._ot_trials[trial_id]
            if plan_key(repaired.ratios) in self._seen:
                other = self._neighbour(repaired.ratios)
                if other is not None:
                    repaired = Repaired(ratios=other, shift=repaired.shift, predicted_ms=self._aim.predict(other),
                                        reachable=True)
            extra[TRIAL_NUMBER_KEY] = ot_trial.number
            config = dict(repaired.ratios)
            primary = next(iter(self._budgets_ms))
            extra.update({SHIFT_KEY: repaired.shift, PREDICTED_KEY: repaired.predicted_ms[primary]})
            ot_trial.set_user_attr(RATIOS_ATTR, dict(repaired.ratios))
        elif self._aim is not None and self._land_initial and plan_key(proposal) in self._seen:
            # A seed that an earlier seed landed on: an unseen neighbour runs instead (no plan twice).
            other = self._neighbour(proposal)
            if other is not None:
                config = dict(other)
                ot_trial.set_user_attr(RATIOS_ATTR, dict(other))
        if self._aim is not None and (self._land_initial or not enqueued):
            ladder = landing.build(ratios_from_config(config), proposal=proposal, space=self._aim.space,
                                   predict=self._aim.predict, ran=lambda r: plan_key(r) in self._seen)
            extra[LADDER_KEY] = json.dumps(ladder.to_dict())
        self._ran[trial_id] = ratios_from_config(config)
        self._seen.setdefault(plan_key(self._ran[trial_id]), ot_trial.number)
        return {**config, **extra}

    def _tell_earlier(self, trial_id: str, ot_trial: Any, key: tuple, earlier: int) -> None:
        """Give the sampler the result of the trial that already ran this plan, and free the trial id."""
        values, constraints = self._told[key]
        for name, value in constraints.items():
            ot_trial.set_constraint(name, value)
        ot_trial.set_user_attr(DUPLICATE_ATTR, earlier)
        try:
            self._ot_study.tell(ot_trial, values)
        except Exception:  # noqa: BLE001 - a value Optuna refuses (NaN): the proposal is just dropped
            self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.FAIL)
        del self._ot_trials[trial_id]

    def _neighbour(self, ratios: Mapping[str, float]) -> dict[str, float] | None:
        """An unseen plan next to ``ratios``: one grid step moved from one group to another (same
        level, another allocation), or one group a step up or down. One predicted within budget if
        there is one, else the one predicted fastest (a probe of the boundary: the precheck measures
        it without a fine-tune); None when every neighbour already ran."""
        space = self._aim.space
        grids = {n: g.choices() for n, g in space.groups.items()}
        plan = {n: ratios.get(n, space.groups[n].low) for n in space.groups}

        def moved(moves: dict[str, int]) -> dict[str, float] | None:
            out = dict(plan)
            for name, by in moves.items():
                i = grids[name].index(plan[name]) + by
                if not 0 <= i < len(grids[name]):
                    return None
                out[name] = grids[name][i]
            return out

        moves = [{up: 1, down: -1} for up in plan for down in plan if up != down]
        moves += [{name: by} for by in (1, -1) for name in plan]
        unseen = [c for c in map(moved, moves) if c is not None and plan_key(c) not in self._seen]
        fitting = [c for c in unseen if self._aim.fits(c)]
        if fitting or not unseen:
            return fitting[0] if fitting else None
        return min(unseen, key=lambda c: sum(self._aim.predict(c).values()))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is not None and result:
            constraints = budget_constraints(result, self._budgets_ms, rule=self._rule)
            for key, value in constraints.items():
                ot_trial.set_constraint(key, value)
            ran = self._ran.pop(trial_id, None)
            if result.get("plan_run"):  # the trial landed on another rung of its ladder: that plan ran
                ran = ratios_from_config(json.loads(result["plan_run"]))
                ot_trial.set_user_attr(RATIOS_ATTR, ran)
                self._seen.setdefault(plan_key(ran), ot_trial.number)
            if self._aim is not None and ran is not None:
                metric = self.metric  # what OptunaSearch tells: kept to tell a proposal of the same plan
                values = [result.get(m) for m in metric] if isinstance(metric, list) else result.get(metric)
                self._told[plan_key(ran)] = (values, constraints)
                for probe in _probes(result, ran, budgets_ms=self._budgets_ms, rule=self._rule):
                    self._aim.landed(probe["ratios"], measured_ms=probe["measured_ms"], judged_ms=probe["judged_ms"])
        super().on_trial_complete(trial_id, result=result, error=error)
