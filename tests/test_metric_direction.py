"""A metric declares which way is better (issue 24): perplexity, an error rate or a loss ranks plans
lowest first in the front, the best pick, the confirmation stage, the sampler's incumbent and the
sensitivity drop; a plan never scored is told the metric's worst value."""

from __future__ import annotations

import math

import optuna
import pandas as pd
import pytest
import torch
from torch import nn

from autoprune.core.errors import AutopruneError
from autoprune.core.metric import ACCURACY, MetricSense
from autoprune.core.records import Status
from autoprune.report.frames import best_within_budget, pareto_front
from autoprune.study.confirm import candidates
from autoprune.study.local_sampler import LocalMovesSampler
from autoprune.train.task import metric_sense, perplexity

PERPLEXITY = MetricSense(name="perplexity", direction="minimize", percent=False)


def _trials(values, latencies, *, confirmed=None):
    rows = []
    for i, (v, lat) in enumerate(zip(values, latencies, strict=True)):
        rows.append({"trial": f"trial-{i:03d}", "status": Status.COMPLETED, "accuracy": v, "latency_p50_ms": lat,
                     "meets_budget": True, "ratio.a": 0.1 * i,
                     "confirmed_accuracy": math.nan if confirmed is None else confirmed[i]})
    return pd.DataFrame(rows)


def test_the_front_keeps_the_lowest_perplexity_at_each_latency():
    t = _trials([10.0, 8.0, 9.0, 5.0], [1.0, 2.0, 3.0, 4.0])
    assert list(pareto_front(t, sense=PERPLEXITY)["trial"]) == ["trial-000", "trial-001", "trial-003"]
    # read as an accuracy (higher is better), the same numbers give another front
    assert list(pareto_front(t, sense=ACCURACY)["trial"]) == ["trial-000"]


def test_the_best_plan_is_the_lowest_perplexity_and_its_confirmed_mean_wins():
    t = _trials([10.0, 8.0, 9.0], [1.0, 2.0, 3.0])
    assert best_within_budget(t, sense=PERPLEXITY)["trial"] == "trial-001"
    assert best_within_budget(t, sense=ACCURACY)["trial"] == "trial-000"
    confirmed = _trials([10.0, 8.0, 9.0], [1.0, 2.0, 3.0], confirmed=[math.nan, 8.5, 7.9])
    assert best_within_budget(confirmed, sense=PERPLEXITY)["trial"] == "trial-002"


def test_confirmation_candidates_come_lowest_first():
    rows = _trials([10.0, 8.0, 9.0], [1.0, 2.0, 3.0]).to_dict("records")
    assert [r["trial"] for r in candidates(rows, 2, sense=PERPLEXITY)] == ["trial-001", "trial-002"]
    assert [r["trial"] for r in candidates(rows, 2)] == ["trial-000", "trial-002"]


def test_the_local_samplers_incumbent_follows_the_studys_direction():
    for direction, expected in (("minimize", 2.0), ("maximize", 9.0)):
        study = optuna.create_study(direction=direction)
        for v in (5.0, 2.0, 9.0):
            study.add_trial(optuna.trial.create_trial(params={"a": 0.1}, value=v,
                                                      distributions={"a": optuna.distributions.FloatDistribution(0, 1)}))
        assert LocalMovesSampler._incumbent(study).value == expected


def test_the_sense_orders_formats_and_drops():
    assert PERPLEXITY.better(5.0, 6.0) and not ACCURACY.better(0.5, 0.6)
    assert PERPLEXITY.drop(5.0, 6.5) == 1.5 and ACCURACY.drop(0.9, 0.85) == pytest.approx(0.05)
    assert PERPLEXITY.worst == math.inf and ACCURACY.worst == 0.0
    assert PERPLEXITY.fmt(12.3456) == "12.35" and ACCURACY.fmt(0.983) == "98.3%"
    assert (PERPLEXITY.mode, ACCURACY.mode) == ("min", "max")


def test_built_in_and_user_metrics_declare_their_direction():
    assert metric_sense("perplexity") == MetricSense(name="perplexity", direction="minimize", percent=False)
    assert metric_sense("top1").higher_is_better and metric_sense("top1").percent
    user = metric_sense("tests.user_functions:error_rate")
    assert (user.direction, user.percent) == ("minimize", False)
    with pytest.raises(AutopruneError, match="direction = 'lower'; use 'maximize' or 'minimize'"):
        metric_sense("tests.user_functions:bad_direction")


def test_perplexity_is_exp_of_the_next_token_cross_entropy():
    torch.manual_seed(0)
    vocab, seq = 11, 6
    model = nn.Sequential(nn.Embedding(vocab, 8), nn.Linear(8, vocab)).eval()
    x = torch.randint(0, vocab, (4, seq))
    with torch.no_grad():
        logits = model(x)[:, :-1]
        expected = math.exp(nn.functional.cross_entropy(logits.reshape(-1, vocab), x[:, 1:].reshape(-1)).item())
        assert perplexity(model, [(x[:2], x[:2]), (x[2:], x[2:])]) == pytest.approx(expected, rel=1e-5)


def test_a_plan_over_budget_is_told_the_metrics_worst_value(digits):
    from autoprune.latency.profiles import HardwareProfile
    from autoprune.prune.plan import Plan
    from autoprune.study.trial import TrialSettings, run_trial
    from autoprune.train.finetune import FinetuneConfig
    from tests.conftest import TINY_SINGLE
    from tests.helpers import tiny_resnet

    profile = HardwareProfile.load(TINY_SINGLE)
    for sense, told in ((PERPLEXITY, math.inf), (ACCURACY, 0.0)):
        settings = TrialSettings(input_shape=(1, 8, 8), profiles=(profile,), budgets_ms={"tiny": 1e-6},
                                 finetune=FinetuneConfig(steps=0), sense=sense)
        metrics = run_trial(tiny_resnet(), digits, Plan(ratios={}), settings=settings)
        assert metrics["finetuned"] is False and metrics["accuracy"] == told


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "random", "local"])
def test_samplers_take_an_infinite_perplexity_for_a_plan_over_budget(sampler):
    from autoprune.study.samplers import make_sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=make_sampler(sampler, trials=12, concurrency=1, seed=1))
    for _ in range(12):
        trial = study.ask()
        a = trial.suggest_float("a", 0.0, 0.7, step=0.05)
        trial.set_constraint("latency_over_budget_ms@p", 0.3 - a)
        study.tell(trial, 5.0 + (a - 0.5) ** 2 if a >= 0.3 else math.inf)
    feasible = [t for t in study.trials if t.params["a"] >= 0.3]
    assert feasible and study.best_trial.value < math.inf
