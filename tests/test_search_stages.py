"""The search in stages: the latency-aware seed, budgets at the space's edge refused before any
trial, no plan run twice, the front listing each plan once, and the confirmation stage."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from autoprune import search
from autoprune.core.errors import AutopruneError
from autoprune.core.records import CONFIRMED_COLUMNS, RATIO_PREFIX, ratio_column
from autoprune.latency.cost import CostModel
from autoprune.report.frames import best_within_budget, pareto_front
from autoprune.space.space import init_space
from autoprune.study.budgeted import plan_key
from autoprune.study.confirm import candidates, fresh_seeds
from autoprune.study.repair import BudgetAim
from autoprune.study.run import check_reach
from autoprune.study.seeds import latency_seed, uniform_seed
from tests.conftest import TINY_SINGLE
from tests.helpers import demo_space, tiny_resnet, tiny_space

SHAPE = (1, 8, 8)


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


def test_no_plan_runs_twice_and_the_top_plans_are_confirmed_with_fresh_seeds(ray_local, tmp_path):
    """A coarse space (3 ratios a group) and more trials than plans on the budget: proposals that
    repair onto a plan already run are told its result, never run; then the top 2 plans within budget
    are re-trained with 2 fresh seeds each, and ``best`` is the best confirmed mean."""
    space = demo_space(tmp_path / "space.yaml", high=0.5, step=0.25)
    result = search(budget="0.7x", model="builtin:demo", space=space, profile=TINY_SINGLE, trials=8,
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

