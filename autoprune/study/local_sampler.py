"""NetAdapt-style local moves: from the best plan within the budget, shift channels between groups.

Each proposal takes the incumbent (the most accurate feasible trial so far, the seed plans
included), raises one group's ratio by a grid step and lowers another's; the budget repair then
levels the plan back onto the boundary, so a move trades one group's channels for another's at
equal latency. A share of proposals (``explore``) comes from TPE instead, so that the search is
not held in one basin. Single-objective studies only (the budget formulation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, FloatDistribution
from optuna.trial import FrozenTrial, TrialState

RATIOS_ATTR = "ratios"  # user attribute: the plan a trial ran (after the repair), group -> ratio


class LocalMovesSampler(optuna.samplers.BaseSampler):
    def __init__(self, *, seed: int = 0, explore: float = 0.25, moves: Sequence[int] = (1, 2),
                 fallback: optuna.samplers.BaseSampler | None = None) -> None:
        self._rng = np.random.default_rng(seed)
        self._explore = explore
        self._moves = tuple(moves)
        self._fallback = fallback or optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=4)

    def reseed_rng(self) -> None:
        self._rng = np.random.default_rng()
        self._fallback.reseed_rng()

    @staticmethod
    def _incumbent(study: optuna.Study) -> FrozenTrial | None:
        best = None
        sign = 1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1.0  # perplexity: lower
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if any(v > 0 for v in t.constraints.values()) or t.value is None:
                continue
            if best is None or sign * t.value > sign * best.value:
                best = t
        return best

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return optuna.search_space.intersection_search_space(study.get_trials(deepcopy=False))

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        incumbent = self._incumbent(study) if len(study.directions) == 1 else None  # two objectives: TPE's
        if incumbent is None or not search_space or self._rng.random() < self._explore:
            space = self._fallback.infer_relative_search_space(study, trial)
            return self._fallback.sample_relative(study, trial, space)
        base = dict(incumbent.user_attrs.get(RATIOS_ATTR) or incumbent.params)
        names = [n for n, d in search_space.items() if isinstance(d, FloatDistribution)]
        plan = {n: base.get(n, search_space[n].low) for n in search_space}
        for _ in range(int(self._rng.choice(self._moves))):
            up, down = self._rng.choice(names, size=2, replace=False) if len(names) > 1 else (names[0], names[0])
            for name, sign in ((up, 1), (down, -1)):
                d = search_space[name]
                step = d.step or (d.high - d.low) / 10
                plan[name] = float(min(d.high, max(d.low, plan[name] + sign * step)))
        return {n: round(v, 6) if not math.isnan(v) else v for n, v in plan.items()}

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._fallback.before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self._fallback.after_trial(study, trial, state, values)
