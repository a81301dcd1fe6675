"""The budget formulation: the cost model, the repair onto the budget, the seed plans, the
local-moves sampler, and a real search that aims at the budget."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml

from autoprune import search
from autoprune.core.errors import AutopruneError
from autoprune.latency.cost import CostModel, LatencyModel
from autoprune.prune.engine import prune
from autoprune.prune.groups import layer_shapes
from autoprune.prune.plan import Plan
from autoprune.space.space import init_space
from autoprune.study.arguments import parse_seed_plans
from autoprune.study.local_sampler import RATIOS_ATTR, LocalMovesSampler
from autoprune.study.repair import BudgetAim, shifted, to_budget
from autoprune.study.seeds import global_seed, sensitivity_seed, uniform_seed
from tests.conftest import TINY_SINGLE
from tests.helpers import SHAPE, tiny_mobile, tiny_resnet, tiny_space


@pytest.mark.parametrize("make", [tiny_resnet, tiny_mobile], ids=["residual", "depthwise"])
def test_cost_model_prices_a_plan_as_the_pruned_model_counts(make):
    """MACs from the layer graph, without pruning, equal the pruned model's own conv/linear MACs,
    rounding to 8 included; activations likewise."""
    model = make()
    space = init_space(model, input_shape=SHAPE, low=0.0, high=0.75, step=0.125, round_to=8)
    cost = CostModel.build(model, input_shape=SHAPE, space=space)
    rng = np.random.default_rng(0)
    for _ in range(6):
        ratios = {g: float(rng.choice(r.choices())) for g, r in space.groups.items()}
        pruned = prune(model, Plan(ratios=ratios, round_to=8), input_shape=SHAPE)
        actual = layer_shapes(pruned, input_shape=SHAPE)
        assert cost.features(ratios) == pytest.approx((sum(l.macs for l in actual), sum(l.out_elems for l in actual)))
        # in channel blocks of 16: every pruned width counted as padded up to a multiple of 16
        padded = sum(l.macs * (-(-l.out_channels // 16) * 16 / l.out_channels)
                     * (1 if l.depthwise else -(-l.in_channels // 16) * 16 / l.in_channels) for l in actual)
        assert cost.features(ratios, block=16)[0] == pytest.approx(padded)
    assert cost.features({}) == cost.base_features()  # an empty plan prunes nothing


def test_latency_model_learns_an_affine_cost_and_its_margin_follows_misses():
    model = LatencyModel(base=(100.0, 10.0), base_ms=12.0)
    assert model.predict((50.0, 10.0)) == pytest.approx(6.0)  # proportional until it has seen plans
    for macs in (20.0, 40.0, 60.0, 80.0):  # the truth: 2 ms that never shrink + 0.1 ms per MAC
        model.observe((macs, 10.0), 2.0 + 0.1 * macs)
    assert model.predict((50.0, 10.0)) == pytest.approx(7.0, rel=1e-6)
    start = model.margin
    model.landed(budget_ms=10.0, judged_ms=10.5)  # missed: aim lower next time
    assert model.margin > start
    for _ in range(30):
        model.landed(budget_ms=10.0, judged_ms=7.0)  # far under: aim closer
    assert model.margin == 0.0
    model.landed(budget_ms=10.0, judged_ms=9.7)  # on the aim: the margin stays
    assert model.margin == 0.0


def _aim(model, *, budget_fraction: float) -> BudgetAim:
    space = init_space(model, input_shape=SHAPE, low=0.0, high=0.75, step=0.125, round_to=8)
    cost = CostModel.build(model, input_shape=SHAPE, space=space)
    base_ms = 10.0
    return BudgetAim.build(space=space, cost=cost, budgets_ms={"cpu": base_ms * budget_fraction},
                           baseline_ms={"cpu": base_ms})


def test_repair_moves_any_proposal_onto_the_budget_and_keeps_its_allocation():
    aim = _aim(tiny_resnet(), budget_fraction=0.5)
    limit = aim.budgets_ms["cpu"] * (1 - aim.models["cpu"].margin)
    rng = np.random.default_rng(1)
    for _ in range(10):
        raw = {g: float(rng.choice(r.choices())) for g, r in aim.space.groups.items()}
        fixed = aim.repair(raw)
        assert fixed.reachable and fixed.predicted_ms["cpu"] <= limit
        assert all(v in aim.space.groups[g].choices() for g, v in fixed.ratios.items())
        # on the boundary: the least shift that fits (any less pruning everywhere breaks the budget),
        # and the slack filled only towards the proposal
        assert fixed.shift <= -1 or not aim.fits(shifted(raw, fixed.shift - 1e-3, aim.space))
        base = shifted(raw, fixed.shift, aim.space)
        for g, v in fixed.ratios.items():
            assert min(base[g], max(raw[g], aim.space.groups[g].low)) - 1e-9 <= v <= base[g] + 1e-9
    # a uniform proposal stays uniform up to the final fill; the shift is applied to every group
    assert shifted({"stem.0": 0.1}, 0.2, aim.space)["stem.0"] == 0.25
    # a budget no plan of the space meets: the most the space allows, flagged
    tight = _aim(tiny_resnet(), budget_fraction=0.01)
    out = to_budget({}, space=tight.space, cost=tight.cost, models=tight.models, budgets_ms=tight.budgets_ms)
    assert not out.reachable and set(out.ratios.values()) == {0.75}


def test_seed_plans_are_the_cheap_answers_on_the_budget():
    model = tiny_mobile()
    aim = _aim(model, budget_fraction=0.5)
    uni = uniform_seed(aim)
    glob = global_seed(aim, model, input_shape=SHAPE)
    for plan in (uni, glob):
        assert aim.fits(plan) and set(plan) == set(aim.space.groups)
    table = pd.DataFrame([(g, r, 0.0 if g == "head.0" else r / 10) for g in aim.space.groups for r in (0.25, 0.5, 0.75)],
                         columns=["group", "ratio", "accuracy_drop"])
    sens = sensitivity_seed(aim, table)
    assert aim.fits(sens)
    assert sens["head.0"] == max(sens.values())  # the insensitive group is pruned most
    assert parse_seed_plans("uniform, global") == ("uniform", "global") and parse_seed_plans("none") == ()
    with pytest.raises(AutopruneError, match="seed plan 'magic' is unknown; choose from uniform, global, latency, sensitivity"):
        parse_seed_plans("uniform,magic")


def test_local_sampler_moves_channels_between_groups_of_the_incumbent():
    """Contract on a real single-objective Optuna study: after the incumbent, a proposal is the
    incumbent's plan with one or two (up, down) grid-step pairs, or a TPE proposal."""
    dists = {g: optuna.distributions.FloatDistribution(0.0, 0.75, step=0.125) for g in "abcd"}
    sampler = LocalMovesSampler(seed=0, explore=0.0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.enqueue_trial({"a": 0.25, "b": 0.25, "c": 0.5, "d": 0.5})
    moved = 0
    for i in range(12):
        trial = study.ask(dists)
        ratios = dict(trial.params)
        trial.set_user_attr(RATIOS_ATTR, ratios)
        trial.set_constraint("over", -1.0)
        if i > 0:
            best = max((t for t in study.trials if t.value is not None), key=lambda t: t.value)
            diff = [round((ratios[g] - best.params[g]) / 0.125) for g in "abcd"]
            assert sum(diff) in (0, 1, -1, 2, -2) and sum(abs(d) for d in diff) <= 4
            moved += any(diff)
        study.tell(trial, -sum((v - 0.4) ** 2 for v in ratios.values()))
    assert moved >= 8


@pytest.fixture
def fine_space(tmp_path):
    return tiny_space(tmp_path / "space.yaml", high=0.75, step=0.125)


def test_budget_search_aims_every_trial_at_the_budget(ray_local, tmp_path):
    # The demo's whole space: four of its groups at 0.75 read 0.59x to 0.72x of the unpruned demo from
    # one machine to the next, so a budget inside their reach was at the space's corner on some.
    result = search(budget="0.6x", model="builtin:demo", profile=TINY_SINGLE,
                    trials=5, finetune_steps=2, seed_plans="uniform,global", out=tmp_path, quiet=True)
    config = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert config["formulation"] == "budget" and config["seed_plans"] == ["uniform", "global"]
    assert 1 <= len(config["initial_plans"]) <= 2
    trials = pd.read_csv(result.run_dir / "trials.csv").sort_values("trial")
    assert len(trials) == 5
    # every trial the sampler proposed was repaired: predicted within the budget
    proposed = trials.iloc[len(config["initial_plans"]):]
    # (or, where even the space's highest ratios are predicted over it, pruned as far as the space goes)
    assert proposed["predicted_ms"].notna().all()
    # A trial that landed on another plan as measured reports that plan's prediction, which the
    # measured / predicted correction may have put over the budget.
    assert ((proposed["predicted_ms"] <= result.budget_ms) | (proposed["repair_shift"] >= 1)
            | (proposed["landing_moves"] > 0)).all()
    study = optuna.load_study(study_name="autoprune", storage=f"sqlite:///{result.run_dir / 'study.db'}")
    assert len(study.directions) == 1  # one objective: accuracy at the budget
    for t in study.trials[len(config["initial_plans"]):]:
        assert t.user_attrs[RATIOS_ATTR] == pytest.approx(
            {g: trials.loc[trials["trial"] == f"trial-{t.number:03d}", f"ratio.{g}"].item() for g in t.params})
    assert (result.run_dir / "pareto.csv").is_file()
    if len(result.pareto):
        assert (result.run_dir / "pareto_channels.png").stat().st_size > 0
    assert not math.isnan(result.budget_ms)


def test_bad_formulation_and_sampler_pairs_are_refused_before_any_work(tmp_path):
    with pytest.raises(AutopruneError, match="formulation 'both' is unknown; choose one of budget, front"):
        search(budget="1000ms", model="tests.helpers:tiny_resnet", profile=TINY_SINGLE, formulation="both",
               out=tmp_path, quiet=True)
    with pytest.raises(AutopruneError, match="sampler 'local'.*needs --formulation budget"):
        search(budget="1000ms", model="tests.helpers:tiny_resnet", profile=TINY_SINGLE, sampler="local",
               formulation="front", out=tmp_path, quiet=True)
    assert not any(tmp_path.iterdir())


def test_cli_refuses_an_unknown_seed_plan_in_one_line(tmp_path):
    from tests.helpers import cli

    proc = cli("search", "--budget", "0.5x", "--seed-plans", "uniform,best", "--out", str(tmp_path))
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "seed plan 'best' is unknown; choose from uniform, global, latency, sensitivity" in lines[0]
    assert not any(tmp_path.iterdir())
