"""Ray's OptunaSearch, with the budget forwarded to the sampler as each trial's constraint, and (in
the budget formulation) every proposal repaired onto the budget's boundary before it runs.

Optuna's samplers read a trial's constraint values from the trial itself (``Trial.set_constraint``,
Optuna >= 5; the older ``constraints_func`` sees only params and attributes). Ray's ``OptunaSearch``
tells Optuna the objective values alone, so the adapter sets the budget violation from the trial's
result on the Optuna trial just before that ``tell``.

The repair changes what runs, not what the sampler proposed: the Optuna trial keeps the proposal
as its params (the sampler models proposal → accuracy) and the plan run as a user attribute.

Many proposals repair onto one plan (near the space's edge, or once the sampler converges). A plan
(the channels each group keeps: ratios that round to the same widths are one plan) is never run
twice: a proposal that lands on a finished plan is told that plan's result at once
(user attribute ``duplicate_of``) and the sampler asked again; after ``REASKS`` such answers, or
when the plan is still running, the nearest unseen plan on the budget runs instead (breadth first
over moves: a grid step moved between two groups, or one group a step up or down). When the space
holds no unseen plan at all, the search ends there (``exhausted``) rather than run one twice.

Each trial also gets a ladder of nearby plans with their predicted latency, to land on the budget
as measured (``autoprune.study.landing``); a trial that moved reports the plan it ran (``plan_run``),
which is what the sampler's attribute, the duplicate check and the latency models then hold. A
running trial's rungs are reserved: no other trial proposes, or lands on, a plan it may land on.
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
NEAR_LIMIT = 4096  # plans the search for an unseen one looks at before it settles for what it met


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
        self._reserved: dict[tuple, str] = {}  # plan -> id of the running trial whose ladder holds it
        self._grids: dict[str, list[float]] = {}  # group -> one ratio per kept width (see _widths_grid)
        self.exhausted = False  # every plan of the space has run (or is running): no trial proposed since

    def _key(self, ratios: Mapping[str, float]) -> tuple:
        """What makes two plans one: the channels each group keeps. Ratios a grid step apart can round
        to the same widths (a 0.05 step on a 64-channel group with round_to 8), and then they prune
        the same network: running both would spend a trial to learn the same figure again."""
        if self._aim is None:
            return plan_key(ratios)
        return plan_key(self._aim.cost.kept(ratios))

    def _widths_grid(self, name: str) -> list[float]:
        """The group's grid with one ratio (the lowest) per kept width."""
        if name not in self._grids:
            seen: dict[float, float] = {}
            for r in self._aim.space.groups[name].choices():
                seen.setdefault(round(self._aim.cost.kept({name: r})[name], 6), r)
            self._grids[name] = sorted(seen.values())
        return self._grids[name]

    def _width_of(self, name: str, ratio: float) -> float:
        """The ratio of the group's widths grid that keeps what ``ratio`` keeps."""
        kept = round(self._aim.cost.kept({name: ratio})[name], 6)
        return next(r for r in self._widths_grid(name) if round(self._aim.cost.kept({name: r})[name], 6) == kept)

    def _taken(self, ratios: Mapping[str, float]) -> bool:
        return self._key(ratios) in self._seen or self._key(ratios) in self._reserved

    def _finish(self, ot_trial: Any, trial_id: str) -> str:
        """Nothing unseen is left to run: drop this proposal and tell Ray Tune the search is over."""
        self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.FAIL)
        del self._ot_trials[trial_id]
        self.exhausted = True
        return self.FINISHED

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
                proposal = ratios_from_config(config)  # the sampler's last ask: the ladder keeps its allocation
                repaired = self._aim.repair(proposal)
                earlier = self._seen.get(self._key(repaired.ratios))
                if earlier is None or self._key(repaired.ratios) not in self._told:
                    break
                self._tell_earlier(trial_id, ot_trial, self._key(repaired.ratios), earlier)
                config = super().suggest(trial_id)
                ot_trial = self._ot_trials[trial_id]
            if self._taken(repaired.ratios):
                other = self._unseen_near(repaired.ratios)
                if other is None:
                    return self._finish(ot_trial, trial_id)
                repaired = Repaired(ratios=other, shift=repaired.shift, predicted_ms=self._aim.predict(other),
                                    reachable=True)
            extra[TRIAL_NUMBER_KEY] = ot_trial.number
            config = dict(repaired.ratios)
            primary = next(iter(self._budgets_ms))
            extra.update({SHIFT_KEY: repaired.shift, PREDICTED_KEY: repaired.predicted_ms[primary]})
            ot_trial.set_user_attr(RATIOS_ATTR, dict(repaired.ratios))
        elif self._aim is not None and self._land_initial and self._taken(proposal):
            # A seed that an earlier seed landed on: an unseen neighbour runs instead (no plan twice).
            other = self._unseen_near(proposal)
            if other is None:
                return self._finish(ot_trial, trial_id)
            config = dict(other)
            ot_trial.set_user_attr(RATIOS_ATTR, dict(other))
        if self._aim is not None and (self._land_initial or not enqueued):
            names = self._aim.space.groups
            run_at = ratios_from_config(config)
            ladder = landing.build({n: self._width_of(n, run_at.get(n, names[n].low)) for n in names}, proposal=proposal,
                                   space=self._aim.space, predict=self._aim.predict, ran=self._taken,
                                   grids={n: self._widths_grid(n) for n in names})
            extra[LADDER_KEY] = json.dumps(ladder.to_dict())
            for rung in ladder.rungs:
                self._reserved.setdefault(self._key(rung.ratios), trial_id)
        self._ran[trial_id] = ratios_from_config(config)
        self._seen.setdefault(self._key(self._ran[trial_id]), ot_trial.number)
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

    def _unseen_near(self, ratios: Mapping[str, float]) -> dict[str, float] | None:
        """The nearest plan that no trial runs, ran or may land on, breadth first over moves (one grid
        step moved from one group to another: same level, another allocation; or one group a step up
        or down). The first one predicted within budget; with none among ``NEAR_LIMIT`` plans, the
        fastest unseen one met (a probe of the boundary: the precheck measures it without a
        fine-tune); None when none of them is unseen (on a small space: every plan has run)."""
        space = self._aim.space
        # Per group, one ratio per width it can keep (the lowest): every move changes the network.
        grids = {n: self._widths_grid(n) for n in space.groups}
        start = {n: self._width_of(n, ratios.get(n, space.groups[n].low)) for n in space.groups}
        moves = [{up: 1, down: -1} for up in start for down in start if up != down]
        moves += [{name: by} for by in (1, -1) for name in start]

        def moved(plan: dict[str, float], by: dict[str, int]) -> dict[str, float] | None:
            out = dict(plan)
            for name, step in by.items():
                i = grids[name].index(plan[name]) + step
                if not 0 <= i < len(grids[name]):
                    return None
                out[name] = grids[name][i]
            return out

        visited, ring, fastest = {plan_key(start)}, [start], None
        while ring and len(visited) < NEAR_LIMIT:
            nxt = []
            for plan in ring:
                for by in moves:
                    c = moved(plan, by)
                    if c is not None and plan_key(c) not in visited and len(visited) < NEAR_LIMIT:
                        visited.add(plan_key(c))
                        nxt.append(c)
            unseen = [c for c in nxt if not self._taken(c)]
            fitting = [c for c in unseen if self._aim.fits(c)]
            if fitting:
                return fitting[0]
            for c in unseen:  # none fits yet: keep the fastest met, the probe if none ever does
                ms = sum(self._aim.predict(c).values())
                if fastest is None or ms < fastest[0]:
                    fastest = (ms, c)
            ring = nxt
        return None if fastest is None else fastest[1]

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        for key in [k for k, holder in self._reserved.items() if holder == trial_id]:
            del self._reserved[key]  # its ladder is settled: what it ran is in _seen from here on
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is not None and result:
            constraints = budget_constraints(result, self._budgets_ms, rule=self._rule)
            for key, value in constraints.items():
                ot_trial.set_constraint(key, value)
            ran = self._ran.pop(trial_id, None)
            if result.get("plan_run"):  # the trial landed on another rung of its ladder: that plan ran
                ran = ratios_from_config(json.loads(result["plan_run"]))
                ot_trial.set_user_attr(RATIOS_ATTR, ran)
                self._seen.setdefault(self._key(ran), ot_trial.number)
            if self._aim is not None and ran is not None:
                metric = self.metric  # what OptunaSearch tells: kept to tell a proposal of the same plan
                values = [result.get(m) for m in metric] if isinstance(metric, list) else result.get(metric)
                self._told[self._key(ran)] = (values, constraints)
                for probe in _probes(result, ran, budgets_ms=self._budgets_ms, rule=self._rule):
                    self._aim.landed(probe["ratios"], measured_ms=probe["measured_ms"], judged_ms=probe["judged_ms"])
        super().on_trial_complete(trial_id, result=result, error=error)
