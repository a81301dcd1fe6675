"""The search in stages: the latency-aware seed, budgets at the space's edge refused before any
trial, no plan run twice, the front listing each plan once, and the confirmation stage."""

from __future__ import annotations

import itertools
import json
import math

import optuna
import pandas as pd
import pytest
import torch

from autoprune import search
from autoprune.core.errors import AutopruneError
from autoprune.core.records import CONFIRMED_COLUMNS, RATIO_PREFIX, at, ratio_column
from autoprune.latency.cost import CostModel
from autoprune.report.frames import best_within_budget, pareto_front
from autoprune.space.space import init_space
from autoprune.study.budgeted import LADDER_KEY, BudgetedOptunaSearch, plan_key
from autoprune.study.confirm import candidates, fresh_seeds
from autoprune.study.repair import BudgetAim
from autoprune.study.run import check_reach
from autoprune.study.samplers import ratios_from_config
from autoprune.study.seeds import latency_seed, uniform_seed
from tests.conftest import TINY_SINGLE
from tests.helpers import SHAPE, demo_space, tiny_resnet, tiny_space


def _aim(model, budget_ms: float):
    space = init_space(model, input_shape=SHAPE, low=0.0, high=0.75, step=0.125)
    cost = CostModel.build(model, input_shape=SHAPE, space=space)
    base_ms = 10.0  # proportional to MACs until plans are measured: enough to price the seed
    return BudgetAim.build(space=space, cost=cost, budgets_ms={"p": budget_ms}, baseline_ms={"p": base_ms})


def test_latency_seed_prunes_where_loss_per_millisecond_is_cheapest():
    """Scores that make one group free to prune: the seed prunes it to its high and keeps the most
    expensive group whole, where uniform prunes both alike; both fit the budget."""
    model = tiny_resnet()
    aim = _aim(model, budget_ms=4.0)
    names = list(aim.space.groups)
    free, dear = names[0], names[-1]
    scores = {n: torch.ones(aim.cost.channels[n]) for n in names}
    scores[free] = torch.zeros(aim.cost.channels[free])
    scores[dear] = torch.full((aim.cost.channels[dear],), 1e6)
    seed = latency_seed(aim, scores)
    assert aim.fits(seed)
    kept, corner = aim.cost.kept(seed), aim.cost.kept({n: g.high for n, g in aim.space.groups.items()})
    assert kept[free] == corner[free]  # pruned as far as the space goes (channel rounding counted)
    assert kept[dear] == 1.0 and aim.cost.kept(uniform_seed(aim))[dear] < 1.0


def test_pareto_front_lists_a_plan_run_twice_once():
    ratio = ratio_column("a")
    table = pd.DataFrame({"trial": ["trial-000", "trial-001", "trial-002"], "status": "completed",
                          "accuracy": [0.9, 0.9, 0.8], "latency_p50_ms": [5.0, 5.0, 4.0], ratio: [0.5, 0.5, 0.75]})
    front = pareto_front(table)
    assert list(front["trial"]) == ["trial-002", "trial-000"]


def test_budget_at_the_space_edge_is_refused_before_any_trial(ray_local, tmp_path):
    space = tiny_space(tmp_path / "space.yaml", high=0.5, step=0.25)
    with pytest.raises(AutopruneError, match="no plan of the search space meets the budget") as err:
        search(budget="0.05x", model="tests.helpers:tiny_resnet", space=space, profile=TINY_SINGLE, trials=3,
               finetune_steps=1, out=tmp_path / "runs", quiet=True)
    assert "\n" not in str(err.value) and "(measured)" in str(err.value) and "raise the space's high" in str(err.value)
    assert not list((tmp_path / "runs").glob("*/trials.csv"))  # refused before the first trial


def test_a_budget_only_the_corner_meets_is_refused_and_one_step_more_room_is_not():
    model = tiny_resnet()
    probe = _aim(model, budget_ms=10.0)
    corner = {n: g.high for n, g in probe.space.groups.items()}
    corner_ms = probe.predict(corner)["p"]
    below = []  # the next fastest plans: the corner with one group a grid step lower
    for n, g in probe.space.groups.items():
        plan = {**corner, n: g.choices()[-2]}
        if probe.cost.kept(plan) != probe.cost.kept(corner):
            below.append(probe.predict(plan)["p"])
    margin = 1 - probe.models["p"].margin
    just_corner = (corner_ms / margin + min(below) / margin) / 2
    with pytest.raises(AutopruneError, match="only the search space's most-pruned corner") as err:
        check_reach(_aim(model, budget_ms=just_corner), measured={})
    assert f"{corner_ms:.4g} ms (predicted)" in str(err.value)
    check_reach(_aim(model, budget_ms=min(below) / margin * 1.01), measured={})  # room for another plan: runs
    with pytest.raises(AutopruneError, match="no plan"):  # a measured corner over the budget outweighs the model
        check_reach(_aim(model, budget_ms=just_corner), measured={plan_key(corner): {"p": just_corner * 1.5}})


def _searcher(*, high: float, step: float, budget_ms: float) -> tuple[BudgetedOptunaSearch, BudgetAim]:
    """The driver's searcher on the tiny ResNet's space, without Ray: suggest and complete by hand."""
    model = tiny_resnet()
    space = init_space(model, input_shape=SHAPE, low=0.0, high=high, step=step)
    cost = CostModel.build(model, input_shape=SHAPE, space=space)
    aim = BudgetAim.build(space=space, cost=cost, budgets_ms={"p": budget_ms}, baseline_ms={"p": 10.0})
    dists = {n: optuna.distributions.FloatDistribution(g.low, g.high, step=g.step) for n, g in space.groups.items()}
    searcher = BudgetedOptunaSearch(space=dists, metric="accuracy", mode="max", budgets_ms={"p": budget_ms},
                                    budget_rule="p50", aim=aim, sampler=optuna.samplers.RandomSampler(seed=0))
    return searcher, aim


def _complete(searcher: BudgetedOptunaSearch, aim: BudgetAim, trial_id: str, config: dict) -> None:
    ms = aim.predict(ratios_from_config(config))["p"]
    searcher.on_trial_complete(trial_id, result={"accuracy": 0.5, at("latency_p50_ms", "p"): ms})


def test_a_space_whose_every_plan_ran_ends_the_search_instead_of_running_one_twice():
    """Two ratios a group (16 plans), a generous budget and more asks than plans: each plan runs once,
    then the searcher answers FINISHED (Ray Tune stops asking) and says the space is exhausted."""
    searcher, aim = _searcher(high=0.5, step=0.5, budget_ms=9.0)
    n_plans = 2 ** len(aim.space.groups)
    ran = []
    for i in range(3 * n_plans):
        config = searcher.suggest(f"t{i}")
        if config == searcher.FINISHED:
            break
        ran.append(plan_key(ratios_from_config(config)))
        _complete(searcher, aim, f"t{i}", config)
    widths = {plan_key(aim.cost.kept(dict(k))) for k in ran}
    assert searcher.exhausted and len(ran) == len(set(ran)) == len(widths) == n_plans


def test_ratios_that_round_to_the_same_widths_are_one_plan_and_run_once():
    """A fine grid (0.05) on groups of 16 and 32 channels rounded to 8: most grid points prune the same
    network as a neighbour. Each network runs once; the space is exhausted after as many trials as
    there are distinct networks, not ratio combinations."""
    searcher, aim = _searcher(high=0.5, step=0.05, budget_ms=9.0)
    networks = {plan_key(aim.cost.kept(dict(zip(aim.space.groups, combo, strict=True))))
                for combo in itertools.product(*(g.choices() for g in aim.space.groups.values()))}
    ratio_plans = math.prod(len(g.choices()) for g in aim.space.groups.values())
    assert len(networks) < ratio_plans / 10  # the premise: the grid is far finer than the rounding
    ran = []
    for i in range(len(networks) + 5):
        config = searcher.suggest(f"t{i}")
        if config == searcher.FINISHED:
            break
        ran.append(plan_key(aim.cost.kept(ratios_from_config(config))))
        _complete(searcher, aim, f"t{i}", config)
    assert len(ran) == len(set(ran)) and searcher.exhausted and set(ran) == networks


def test_a_running_trials_ladder_is_reserved_so_no_other_trial_lands_where_it_may():
    """Two trials in flight at once: the second neither runs nor lands on a rung of the first's
    ladder; once the first completes, its rungs other than the plan it ran are free again."""
    searcher, aim = _searcher(high=0.75, step=0.125, budget_ms=6.0)
    first, second = searcher.suggest("a"), searcher.suggest("b")
    rungs = [{plan_key(r["ratios"]) for r in json.loads(c[LADDER_KEY])["rungs"]} for c in (first, second)]
    assert len(rungs[0]) > 1 and not rungs[0] & rungs[1]
    assert plan_key(ratios_from_config(second)) not in rungs[0]
    _complete(searcher, aim, "a", first)
    ran = plan_key(aim.cost.kept(ratios_from_config(first)))  # a plan is the widths it keeps
    others = [k for k in rungs[0] if plan_key(aim.cost.kept(dict(k))) != ran]
    assert len(others) == len(rungs[0]) - 1  # every rung is another network
    assert not any(searcher._taken(dict(k)) for k in others)


def test_no_plan_runs_twice_and_the_top_plans_are_confirmed_with_fresh_seeds(ray_local, tmp_path):
    """A coarse space (3 ratios a group) and more trials than plans on the budget: proposals that
    repair onto a plan already run are told its result, never run; then the top 2 plans within budget
    are re-trained with 2 fresh seeds each, and ``best`` is the best confirmed mean."""
    space = demo_space(tmp_path / "space.yaml", high=0.5, step=0.25)
    # 0.85x: well inside what these four groups can cut on the tiny profile (at 0.7x a noisy corner
    # figure on a busy CI machine read over the budget, and the search was rightly refused).
    result = search(budget="0.85x", model="builtin:demo", space=space, profile=TINY_SINGLE, trials=8,
                    finetune_steps=3, out=tmp_path / "runs", quiet=True, confirm=2, confirm_seeds=2)
    trials = result.trials
    ratios = [c for c in trials if c.startswith(RATIO_PREFIX)]
    assert not trials.duplicated(subset=ratios).any(), trials[ratios]
    confirmed = trials[trials["confirmed_seeds"].notna()]
    within = candidates(trials.to_dict("records"), 2)
    assert sorted(confirmed["trial"]) == sorted(r["trial"] for r in within) and len(confirmed) >= 1
    assert (confirmed["confirmed_seeds"] == 2).all() and (confirmed["confirmed_sd"] >= 0).all()
    assert confirmed["confirmed_accuracy"].between(0, 1).all()
    best = best_within_budget(trials)
    assert best["confirmed_accuracy"] == confirmed["confirmed_accuracy"].max()
    front = pd.read_csv(result.run_dir / "pareto.csv")
    assert set(CONFIRMED_COLUMNS) <= set(front.columns)
    assert len({plan_key({c: r[c] for c in ratios}) for _, r in front.iterrows()}) == len(front)
    assert fresh_seeds(0, 2) == [10000, 10001]

