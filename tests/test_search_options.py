"""Sampler registry, uniform seed plans, the latency pre-check, BN recalibration, early stopping
and study storage: each against a real Optuna study or a real Ray search."""

from __future__ import annotations

import math

import optuna
import pandas as pd
import pytest
import torch

from autoprune import search
from autoprune.core.errors import AutopruneError, ConfigError
from autoprune.latency.profiles import HardwareProfile
from autoprune.space.space import SearchSpace
from autoprune.study.samplers import (
    CONSTRAINT_PREFIX,
    list_samplers,
    make_sampler,
    uniform_seeds,
)
from autoprune.train.finetune import recalibrate_bn
from tests.conftest import TINY_PROFILE, TINY_SINGLE
from tests.helpers import DEMO_GROUPS, TINY_GROUPS, demo_space, tiny_space


@pytest.mark.parametrize("name", list_samplers())
def test_every_sampler_honours_the_budget_constraint(name):
    """Contract: a two-objective study with constraints runs on the sampler, and the sampler
    ends up proposing mostly feasible points once it has seen which are feasible."""
    sampler = make_sampler(name, trials=24, concurrency=1, seed=0)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    for _ in range(24):
        trial = study.ask({"r": optuna.distributions.FloatDistribution(0.0, 0.9, step=0.05)})
        latency = (1 - trial.params["r"]) ** 2 * 100
        trial.set_constraint(f"{CONSTRAINT_PREFIX}cpu", latency - 50)  # feasible when r >= ~0.3
        study.tell(trial, [1 - trial.params["r"] ** 2, latency])
    feasible = [t for t in study.trials if t.constraints[f"{CONSTRAINT_PREFIX}cpu"] <= 0]
    assert len(study.trials) == 24 and len(feasible) >= 6
    if name != "random":
        late = study.trials[12:]
        assert sum(t.constraints[f"{CONSTRAINT_PREFIX}cpu"] <= 0 for t in late) >= 6, name


def test_unknown_sampler_is_refused_before_any_work(tmp_path):
    with pytest.raises(AutopruneError, match="sampler 'bayes' is unknown; choose one of tpe, local, nsga2, random, gp"):
        search(budget="1000ms", model="tests.helpers:tiny_resnet", profile=TINY_PROFILE, sampler="bayes",
               out=tmp_path, quiet=True)
    assert list(tmp_path.iterdir()) == []


def test_uniform_seeds_bracket_the_budget():
    space = SearchSpace.model_validate({"groups": {g: {"low": 0.0, "high": 0.7, "step": 0.05} for g in "ab"}})
    # latency ~ (1 - r)^2: a quarter of the unpruned latency needs r = 0.5
    plans = uniform_seeds(space, budgets={"cpu": (25.0, 100.0)})
    assert [p["a"] for p in plans] == pytest.approx([0.4, 0.5, 0.6])
    assert all(p["a"] == p["b"] for p in plans)
    # the tightest of several budgets decides; the grid's top caps it
    plans = uniform_seeds(space, budgets={"cpu": (25.0, 100.0), "gpu": (1.0, 100.0)})
    assert [p["a"] for p in plans] == pytest.approx([0.7])
    # a budget the unpruned model meets starts from no pruning
    assert uniform_seeds(space, budgets={"cpu": (200.0, 100.0)})[0] == {"a": 0.0, "b": 0.0}


def test_initial_plans_are_checked_against_the_space():
    space = SearchSpace.model_validate({"groups": {"a": {"low": 0.0, "high": 0.5, "step": 0.25}}})
    assert space.check_plan({"a": 0.25}) == {"a": 0.25}
    with pytest.raises(ConfigError, match=r"<plan>: a: 0.3 is not valid; one of the group's ratios 0.0..0.5"):
        space.check_plan({"a": 0.3})
    with pytest.raises(ConfigError, match="a group of the space: a"):
        space.check_plan({"a": 0.0, "zz": 0.25})
    with pytest.raises(ConfigError, match="a ratio for every group"):
        space.check_plan({})


def test_bn_recalibration_replaces_running_statistics_with_the_data():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4)).eval()
    x = torch.randn(64, 1, 8, 8) * 3 + 2
    data = torch.utils.data.TensorDataset(x, torch.zeros(64, dtype=torch.long))
    bn = model[1]
    assert torch.allclose(bn.running_mean, torch.zeros(4))
    assert recalibrate_bn(model, data, batches=1, batch_size=64) == 1
    with torch.no_grad():
        feats = model[0](x)
    assert torch.allclose(bn.running_mean, feats.mean((0, 2, 3)), atol=1e-4)
    assert bn.momentum == 0.1 and not model.training


@pytest.fixture(scope="module")
def coarse_space(tmp_path_factory):
    path = tmp_path_factory.mktemp("space") / "space.yaml"
    return tiny_space(path, high=0.5, step=0.25)


def test_precheck_p50_rule_and_a_given_storage_in_one_search(ray_local, tmp_path):
    """One search, three options: the latency pre-check, budgets judged on the point estimate, and
    the study in the storage given."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    space = demo_space(tmp_path / "space.yaml", high=0.5, step=0.25)
    unpruned, halved = dict.fromkeys(DEMO_GROUPS, 0.0), dict.fromkeys(DEMO_GROUPS, 0.5)
    result = search(budget="0.7x", model="builtin:demo", space=space, profile=TINY_SINGLE,
                    trials=2, finetune_steps=5, initial_plans=[unpruned, halved], budget_confidence="p50",
                    storage=url, out=tmp_path, quiet=True)
    trials = pd.read_csv(result.run_dir / "trials.csv").set_index("trial")
    # the unpruned plan is ~1.0x of the unpruned latency: over a 0.7x budget whatever the noise
    on = trials.loc["trial-000"]
    assert on["status"] == "infeasible" and not on["finetuned"] and on["finetune_s"] == 0
    # nor BN-recalibrated, nor evaluated: TPE ranks infeasible trials by their violation alone
    assert math.isnan(on["accuracy"]) and math.isnan(on["accuracy_before_finetune"])
    assert on["recalibrate_s"] == 0 and on["evaluate_s"] == 0
    # p50: a budget is met when the point estimate is within it
    assert ((trials["latency_p50_ms"] <= result.budget_ms) == trials["meets_budget"]).all()
    for name in ("config.yaml", "summary.yaml"):
        assert "budget_confidence: p50" in (result.run_dir / name).read_text()
    study = optuna.load_study(study_name=f"autoprune-{result.run_dir.name}", storage=url)
    assert not (result.run_dir / "study.db").exists()
    first = study.trials[0]  # the sampler learns the plan was infeasible (its value is never read)
    assert first.constraints[f"{CONSTRAINT_PREFIX}tiny"] > 0
    assert first.values[0] == 0.0
    assert len(study.trials) == 2 and all(t.state.is_finished() for t in study.trials)


def test_without_the_precheck_a_plan_over_budget_is_fine_tuned(digits):
    from autoprune.prune.plan import Plan
    from autoprune.study.trial import TrialSettings, run_trial
    from autoprune.train.finetune import FinetuneConfig
    from tests.helpers import tiny_resnet

    profile = HardwareProfile.load(TINY_SINGLE)
    plan = Plan(ratios=dict.fromkeys(TINY_GROUPS, 0.0))
    for precheck in (True, False):
        settings = TrialSettings(input_shape=(1, 8, 8), profiles=(profile,), budgets_ms={"tiny": 1e-6},
                                 precheck=precheck, finetune=FinetuneConfig(steps=3))
        metrics = run_trial(tiny_resnet(), digits, plan, settings=settings)
        assert metrics["finetuned"] is not precheck
        assert (metrics["finetune_s"] > 0) is not precheck
        assert math.isnan(metrics["accuracy_before_finetune"]) is precheck


def test_unknown_budget_confidence_is_refused_before_any_work(tmp_path):
    with pytest.raises(AutopruneError, match="budget_confidence 'p99' is unknown; choose one of upper, p50"):
        search(budget="1000ms", model="tests.helpers:tiny_resnet", profile=TINY_PROFILE, budget_confidence="p99",
               out=tmp_path, quiet=True)
    assert not any(tmp_path.iterdir())


def test_early_stopping_stops_trials_that_trail(ray_local, coarse_space, tmp_path):
    result = search(budget="1000ms", model="tests.helpers:tiny_resnet", space=coarse_space, profile=TINY_SINGLE,
                    trials=8, finetune_steps=8, early_stop="asha", sampler="random", out=tmp_path, quiet=True)
    trials = pd.read_csv(result.run_dir / "trials.csv")
    assert len(trials) == 8 and set(trials["status"]) <= {"completed", "stopped"}
    stopped = trials[trials["status"] == "stopped"]
    assert len(stopped) >= 1
    assert (stopped["finetune_step"] < 8).all() and (trials.loc[trials["status"] == "completed", "finetune_step"] == 8).all()
    assert set(pd.read_csv(result.run_dir / "pareto.csv")["trial"]) <= set(trials.loc[trials["status"] == "completed", "trial"])


def test_the_bn_screen_fine_tunes_only_plans_in_the_top_half_of_their_adaptive_bn_scores(ray_local, coarse_space,
                                                                                        tmp_path):
    result = search(budget="1000ms", model="tests.helpers:tiny_resnet", space=coarse_space, profile=TINY_SINGLE,
                    trials=8, concurrency=1, finetune_steps=8, early_stop="bn", sampler="random", out=tmp_path,
                    quiet=True)
    trials = pd.read_csv(result.run_dir / "trials.csv")
    assert len(trials) == 8 and set(trials["status"]) <= {"completed", "stopped"}
    stopped = trials[trials["status"] == "stopped"]
    assert len(stopped) >= 1 and (stopped["finetune_step"] == 0).all()
    assert (stopped["accuracy"] == stopped["accuracy_before_finetune"]).all()  # the screen's figure, said so
    assert (trials.loc[trials["status"] == "completed", "finetune_step"] == 8).all()
    # One trial at a time: each plan is fine-tuned exactly when its score is not under the median of
    # the scores screened before it (ASHA's rung at reduction factor 2).
    scores = trials.sort_values("trial")["accuracy_before_finetune"].tolist()
    statuses = trials.sort_values("trial")["status"].tolist()
    for k, (score, status) in enumerate(zip(scores, statuses, strict=True)):
        earlier = scores[:k]
        cut = float(pd.Series(earlier).quantile(0.5)) if earlier else -math.inf
        assert (status == "stopped") == (score < cut), (k, score, earlier, status)
    assert set(pd.read_csv(result.run_dir / "pareto.csv")["trial"]) <= set(trials.loc[trials["status"] == "completed", "trial"])


def test_the_bn_screen_without_recalibration_is_refused_before_any_work(tmp_path):
    with pytest.raises(AutopruneError, match="early_stop 'bn' ranks plans by their accuracy after adaptive-BN"):
        search(budget="1000ms", model="tests.helpers:tiny_resnet", profile=TINY_PROFILE, early_stop="bn",
               bn_recalibration=0, out=tmp_path, quiet=True)
    assert not any(tmp_path.iterdir())


def _table(rows: list[tuple[str, float, float, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["group", "ratio", "accuracy_drop", "latency_saving"])


def test_sensitivity_seeds_prune_the_insensitive_groups_most():
    from autoprune.space.sensitivity import sensitivity_seeds

    space = SearchSpace.model_validate({"groups": {g: {"low": 0.0, "high": 0.75, "step": 0.25} for g in "abc"}})
    table = _table([("a", 0.25, 0.00, 0.10), ("a", 0.5, 0.00, 0.20), ("a", 0.75, 0.01, 0.30),  # free
                    ("b", 0.25, 0.02, 0.10), ("b", 0.5, 0.05, 0.20), ("b", 0.75, 0.30, 0.30),  # costly
                    ("c", 0.25, 0.01, 0.05), ("c", 0.5, 0.03, 0.10), ("c", 0.75, 0.10, 0.15)])
    seeds = sensitivity_seeds(space, table, target=0.55)
    assert len(seeds) == 4
    assert all(p["a"] >= p["c"] >= 0 and p["a"] >= p["b"] for p in seeds)
    assert all(v in (0.0, 0.25, 0.5, 0.75) for p in seeds for v in p.values())
    # first-order latency of each seed: two predicted over 0.55x (cheap: the pre-check), then the least
    # pruned plan predicted to meet it and the next
    predicted = [1 - sum({0.0: 0.0, 0.25: s1, 0.5: s2, 0.75: s3}[p[g]] for g, (s1, s2, s3) in
                         {"a": (0.1, 0.2, 0.3), "b": (0.1, 0.2, 0.3), "c": (0.05, 0.1, 0.15)}.items()) for p in seeds]
    assert predicted[0] >= predicted[1] > 0.55 >= predicted[2] >= predicted[3]
    # a target no plan of the table meets: the seeds end with the most the table allows
    assert sensitivity_seeds(space, table, target=0.01)[-1] == {"a": 0.75, "b": 0.75, "c": 0.75}


def test_search_seeds_its_first_trials_from_a_sensitivity_table(ray_local, coarse_space, tmp_path):
    import yaml

    from autoprune.commands.sensitivity import sensitivity
    from autoprune.space.sensitivity import load_sensitivity, sensitivity_seeds

    sens = sensitivity(model="tests.helpers:tiny_resnet", space=coarse_space, profile=TINY_SINGLE, ratios=[0.25, 0.5],
                       out=tmp_path / "sens", quiet=True)
    result = search(budget="0.7x", model="tests.helpers:tiny_resnet", space=coarse_space, profile=TINY_SINGLE,
                    trials=4, finetune_steps=2, sensitivity=tmp_path / "sens", out=tmp_path / "runs", quiet=True,
                    formulation="front")  # the budget formulation seeds differently (tests/test_budget_search.py)
    config = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    space = SearchSpace.load(coarse_space)
    assert load_sensitivity(sens.csv, space=space).equals(sens.table)
    expected = sensitivity_seeds(space, sens.table, target=0.7)
    assert config["initial_plans"][:len(expected)] == expected
    trials = pd.read_csv(result.run_dir / "trials.csv").set_index("trial").sort_index()
    for i, plan in enumerate(config["initial_plans"][:4]):  # the first trials are the seeds, in order
        assert {g: trials.loc[f"trial-{i:03d}", f"ratio.{g}"] for g in plan} == pytest.approx(plan)
    bad = tmp_path / "other.csv"
    bad.write_text("group,ratio,accuracy_drop,latency_saving\nlayer9,0.5,0.0,0.1\n")
    with pytest.raises(ConfigError, match="layer9.*groups of the searched model"):
        search(budget="0.7x", model="tests.helpers:tiny_resnet", space=coarse_space, profile=TINY_SINGLE,
               sensitivity=bad, out=tmp_path / "bad", quiet=True)
    assert not (tmp_path / "bad").exists()
