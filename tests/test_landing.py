"""Landing a plan on its budget inside the trial: the ladder of nearby plans, the move the measured
figure asks for, and a trial that reports (and fine-tunes) the plan it actually ran."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest

from autoprune import search
from autoprune.core.records import RATIO_PREFIX, at
from autoprune.latency.budget import judged_ms
from autoprune.latency.cost import AIM, CostModel
from autoprune.latency.profiles import resolve_profile
from autoprune.load.data import load_data
from autoprune.load.models import fingerprint, load_model
from autoprune.prune.engine import prune
from autoprune.prune.plan import Plan
from autoprune.space.space import init_space
from autoprune.study import landing
from autoprune.study.repair import BudgetAim
from autoprune.study.trial import TrialSettings, calibration_batch, run_trial
from autoprune.train.finetune import FinetuneConfig
from tests.conftest import TINY_SINGLE
from tests.helpers import SHAPE, tiny_resnet


def _aim(model):
    space = init_space(model, input_shape=SHAPE, low=0.0, high=0.75, step=0.125)
    cost = CostModel.build(model, input_shape=SHAPE, space=space)
    return BudgetAim.build(space=space, cost=cost, budgets_ms={"p": 5.0}, baseline_ms={"p": 10.0})


def _middle(aim):
    return {n: g.choices()[len(g.choices()) // 2] for n, g in aim.space.groups.items()}


def test_ladder_steps_one_group_one_notch_and_keeps_the_proposals_allocation():
    aim = _aim(tiny_resnet())
    plan = _middle(aim)
    names = sorted(plan)
    proposal = {**plan, names[0]: plan[names[0]] + 0.25}  # the sampler wanted more pruning in one group
    ladder = landing.build(plan, proposal=proposal, space=aim.space, predict=aim.predict)
    assert ladder.rungs[ladder.start].ratios == plan
    predicted = [r.predicted_ms["p"] for r in ladder.rungs]
    assert predicted == sorted(predicted, reverse=True)  # least pruned first
    for a, b in zip(ladder.rungs, ladder.rungs[1:], strict=False):
        moved = [n for n in plan if a.ratios[n] != b.ratios[n]]
        assert len(moved) == 1 and b.ratios[moved[0]] > a.ratios[moved[0]]
    # Towards more pruning, the group the proposal wanted pruned more goes first.
    after = ladder.rungs[ladder.start + 1].ratios
    assert after[names[0]] > plan[names[0]]
    assert landing.Ladder.from_dict(json.loads(json.dumps(ladder.to_dict()))) == ladder
    skipped = landing.build(plan, proposal=proposal, space=aim.space, predict=aim.predict,
                            ran=lambda r: r == after)
    assert after not in [r.ratios for r in skipped.rungs] and skipped.rungs[skipped.start].ratios == plan


@pytest.mark.parametrize(("fraction", "direction"), [(1.10, +1), (0.30, -1), (0.95, 0)])
def test_the_measured_figure_moves_the_plan_towards_the_budget(fraction, direction):
    """Over budget: to a more pruned rung predicted (scaled by measured / predicted) within AIM of it;
    far under: to a less pruned one; inside 90-100 %: no move."""
    aim = _aim(tiny_resnet())
    ladder = landing.build(_middle(aim), proposal=None, space=aim.space, predict=aim.predict)
    start = ladder.rungs[ladder.start].predicted_ms["p"]
    budget = start / fraction
    nxt = landing.next_rung(ladder, at=ladder.start, judged_ms={"p": start}, budgets_ms={"p": budget})
    if direction == 0:
        assert nxt is None
        return
    assert (nxt - ladder.start) * direction > 0
    chosen = ladder.rungs[nxt].predicted_ms["p"]
    # The least pruned rung that fits (the one before it would not), else the most pruned one.
    assert chosen <= AIM * budget or nxt == len(ladder.rungs) - 1
    assert nxt == 0 or ladder.rungs[nxt - 1].predicted_ms["p"] > AIM * budget
    assert landing.next_rung(ladder, at=ladder.start, judged_ms={"p": start}, budgets_ms={"p": budget},
                             tried=[nxt]) is None
    assert landing.pick([(0, False), (3, True), (5, True)]) == 3 and landing.pick([(1, False), (4, False)]) == 4


def test_a_trial_over_its_budget_lands_on_a_rung_and_reports_the_plan_it_ran():
    """A budget under the plan's measured figure: the trial measures rungs of its ladder, keeps the
    least pruned one within budget, and its figures and pruned fingerprint are that plan's."""
    model = load_model("builtin:demo")  # at a few ms, pruning moves its latency well beyond the noise
    data = load_data("builtin:digits")
    aim = _aim(model)
    profile = resolve_profile(str(TINY_SINGLE))
    plan = Plan(ratios=_middle(aim))
    settings = TrialSettings(input_shape=SHAPE, profiles=(profile,), finetune=FinetuneConfig(steps=0))
    # The lower of two warm figures: a process's first measurement can read a third high (CI: 4.55 ms,
    # then 3.35 ms for the same plan), which would put the budget above the plan's own figure.
    start_ms = min(judged_ms(run_trial(model, data, plan, settings=settings), profile.name, rule="upper")
                   for _ in range(2))
    ladder = landing.build(plan.ratios, proposal=None, space=aim.space,
                           predict=lambda r: {profile.name: aim.predict(r)["p"]})
    budget = 0.8 * start_ms
    landed = run_trial(model, data, plan, ladder=ladder,
                       settings=TrialSettings(input_shape=SHAPE, profiles=(profile,), finetune=FinetuneConfig(steps=1),
                                              budgets_ms={profile.name: budget}, landing_moves=2))
    probes = json.loads(landed["landing_probes"])
    assert landed["landing_moves"] == len(probes) - 1 >= 1
    assert probes[0]["ratios"] == plan.ratios and probes[0]["judged_ms"][profile.name] > budget
    ran = json.loads(landed["plan_run"])
    assert ran in [r.ratios for r in ladder.rungs] and ran != plan.ratios
    fitting = [p for p in probes if p["judged_ms"][profile.name] <= budget]
    if fitting:  # kept: the least pruned plan measured within budget, fine-tuned
        kept = max(fitting, key=lambda p: p["judged_ms"][profile.name])
        assert ran == kept["ratios"] and landed["finetuned"]
    assert landed[at("latency_p50_ms", profile.name)] == next(
        p["measured_ms"][profile.name] for p in probes if p["ratios"] == ran)
    calib = calibration_batch(data.train, settings.calibration_size)
    rebuilt = prune(model, Plan(ratios=ran), input_shape=SHAPE, calibration=calib)
    assert fingerprint(rebuilt) == landed["pruned_fingerprint"]


def test_a_search_records_the_plan_each_trial_ran(ray_local, tmp_path, caplog):
    """Whether or not a trial moved, trials.csv's ratios and its plan file rebuild the pruned weights
    the trial measured and fine-tuned."""
    caplog.set_level(logging.INFO, logger="autoprune")
    # The demo, not TinyResNet: its latency falls clearly with pruning, so 0.6x is inside the space.
    result = search(budget="0.6x", model="builtin:demo", profile=TINY_SINGLE, trials=3, finetune_steps=1,
                    out=tmp_path / "runs", quiet=True, confirm=0, landing_moves=2, seed_plans="uniform")
    # quiet, yet its progress reached Python's logging: each phase and each trial
    logged = [r.getMessage() for r in caplog.records if r.name == "autoprune"]
    assert any(m.startswith("… measuring the unpruned model") for m in logged)
    assert sum(m.startswith(f"[  {i}/3]") for m in logged for i in (1, 2, 3)) == 3
    trials = result.trials[result.trials["status"] != "failed"]
    assert "landing_moves" in trials.columns and trials["landing_moves"].between(0, 2).all()
    model, data = load_model("builtin:demo"), load_data("builtin:digits")
    calib = calibration_batch(data.train, 64)
    for _, row in trials.iterrows():
        plan = Plan.load(result.run_dir / row["plan"])
        assert plan.ratios == {c[len(RATIO_PREFIX):]: row[c] for c in trials.columns
                               if c.startswith(RATIO_PREFIX) and pd.notna(row[c])}
        assert fingerprint(prune(model, plan, input_shape=SHAPE, calibration=calib)) == row["pruned_fingerprint"]
