"""Why a trial over budget is not evaluated: the samplers that skip it never read its value.

Two studies with the same seed and the same trials, differing only in the value told for the
infeasible ones, must propose the same next plans; for the GP sampler they need not, so it keeps
evaluating infeasible plans (``TrialSettings.evaluate_infeasible``).
"""

from __future__ import annotations

import optuna
import pytest

from autoprune.study.samplers import (
    list_samplers,
    make_sampler,
    reads_infeasible_values,
)


def _proposals(sampler_name: str, infeasible_value: float, n: int = 14) -> list[tuple[float, float]]:
    study = optuna.create_study(direction="maximize", sampler=make_sampler(sampler_name, trials=n, concurrency=1, seed=3))
    out = []
    for _ in range(n):
        trial = study.ask()
        a, b = trial.suggest_float("a", 0.0, 0.7, step=0.05), trial.suggest_float("b", 0.0, 0.7, step=0.05)
        over = 0.9 - (a + b)  # "latency" falls as more is pruned: little pruning is over budget
        trial.set_constraint("latency_over_budget_ms@p", over)
        accuracy = 1.0 - (a - 0.2) ** 2 - (b - 0.5) ** 2
        study.tell(trial, accuracy if over <= 0 else infeasible_value)
        out.append((a, b))
    return out


@pytest.mark.parametrize("sampler", list_samplers())
def test_a_sampler_reads_an_infeasible_trials_value_only_where_it_says_so(sampler: str) -> None:
    """Generated from the registry: a sampler that does not say it reads infeasible values must
    propose the same plans whatever they are told, so those plans need not be evaluated."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    same = _proposals(sampler, 0.0) == _proposals(sampler, 0.93)
    assert same is not reads_infeasible_values(sampler)
