"""Contract over the option space: every registered criterion, formulation, sampler and seed plan runs
a real search (tiny model, in-process, the session's Ray) to a completed trial; apply --progressive
and sensitivity with every criterion, regularize with every method.

The cases are generated from the registries, so a new entry is covered without editing this file.
They cover every pair of options whose code meets (which a bug like "criterion taylor cannot search
in the budget formulation" lives in): criterion x formulation, criterion x seed plan (every seed plan
is computed for every criterion: the budget cases ask for all of them), sampler x formulation, and
no seed plan. The full product (over 300 searches) would take an hour on 2 cores.
"""

from __future__ import annotations

import itertools

import pandas as pd
import pytest

from autoprune import search
from autoprune.core.errors import AutopruneError
from autoprune.core.records import FORMULATIONS, Status
from autoprune.prune.criteria import list_criteria
from autoprune.prune.penalties import list_regularizers
from autoprune.study.arguments import SEED_PLANS, check_search
from autoprune.study.samplers import list_samplers
from tests.conftest import TINY_SINGLE
from tests.helpers import demo_space

MODEL = "builtin:demo"  # its widest groups only: pruned, they move its latency well beyond the noise


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    return demo_space(tmp_path_factory.mktemp("space") / "space.yaml", high=0.75, step=0.25)


def accepted(*, formulation: str, sampler: str) -> bool:
    """Whether the search takes this pair at all (it refuses, before any work, what cannot run)."""
    try:
        check_search(budget="0.9x", profile=str(TINY_SINGLE), trials=2, concurrency=1, finetune_steps=2,
                     bn_recalibration=2, confirm=0, confirm_seeds=1, landing_moves=0, early_stop="none",
                     budget_confidence="p50", formulation=formulation, sampler=sampler, seed_plans="uniform",
                     sensitivity=None, address=None, out=None, gpus_per_trial=0.0)
    except AutopruneError:
        return False
    return True


def cases() -> list[tuple[str, str, str, str]]:
    """(criterion, formulation, sampler, seed plans): each criterion with each formulation, the
    samplers taken in turn per formulation (so each meets each formulation it accepts), the budget
    cases computing every seed plan (the first runs as a trial, the sampler proposes the second);
    then no seed plan at all."""
    criteria, samplers = list_criteria(), list_samplers()
    out = []
    for formulation in FORMULATIONS:
        usable = itertools.cycle([s for s in samplers if accepted(formulation=formulation, sampler=s)])
        for criterion in criteria:
            seeds = ",".join(SEED_PLANS) if formulation == "budget" else "uniform"
            out.append((criterion, formulation, next(usable), seeds))
    out.append((criteria[-1], "budget", "tpe", "none"))  # no seed plan: the sampler's proposals from the first trial
    return out


@pytest.fixture(scope="module")
def runs(ray_local, tmp_path_factory):
    """criterion -> (a run searched with it, a completed trial of that run): what apply is given."""
    return {}


@pytest.mark.parametrize(("criterion", "formulation", "sampler", "seed_plans"), cases(),
                         ids=lambda v: str(v).replace(",", "+"))
def test_every_option_combination_searches_to_a_completed_trial(runs, space, tmp_path, criterion, formulation,
                                                                 sampler, seed_plans):
    # No pre-check: a plan over the budget is fine-tuned too, so a completed trial does not hang on
    # how the noise of a 0.2 ms model falls against its budget.
    result = search(budget="0.85x", model=MODEL, space=space, profile=TINY_SINGLE, trials=2, finetune_steps=2,
                    bn_recalibration=2, criterion=criterion, formulation=formulation, sampler=sampler,
                    seed_plans=seed_plans, precheck=False, confirm=0, landing_moves=0, val_samples=120, out=tmp_path,
                    quiet=True)
    table = result.trials
    assert (table["status"] == Status.COMPLETED).sum() >= 1, table[["trial", "status", "error"]].to_string()
    assert table["accuracy"].notna().any() and not (table["status"] == Status.FAILED).any()
    assert len(pd.read_csv(result.run_dir / "trials.csv")) == len(table)
    done = table[table["status"] == Status.COMPLETED]
    runs.setdefault(criterion, (result.run_dir, done["trial"].iloc[0]))


@pytest.mark.parametrize("criterion", list_criteria())
def test_apply_progressive_with_every_criterion(runs, criterion, tmp_path):
    from autoprune.commands.apply import apply

    if criterion not in runs:
        pytest.skip(f"no search of criterion {criterion} finished above")
    run_dir, trial = runs[criterion]
    result = apply(run_dir, pick=trial, epochs=0.1, progressive=2, out=tmp_path / "applied", quiet=True)
    report = result.report
    assert report["recovery"]["progressive_steps"] == 2 and len(report["recovery"]["steps"]) == 2
    assert 0.0 <= report["accuracy"]["applied"] <= 1.0 and report["onnx_max_abs_diff"] <= 1e-4
    assert report["plan"].endswith(f"{trial}.yaml") and result.onnx_path.is_file()


@pytest.mark.parametrize("criterion", list_criteria())
def test_sensitivity_with_every_criterion(criterion, space, tmp_path):
    from autoprune.commands.sensitivity import sensitivity

    result = sensitivity(model=MODEL, space=space, profile=TINY_SINGLE, ratios=(0.5,), bn_recalibration=2, criterion=criterion,
                         out=tmp_path, quiet=True)
    table = result.table
    assert len(table) >= 3 and table["accuracy"].between(0, 1).all()


@pytest.mark.parametrize("method", list_regularizers())
def test_regularize_with_every_method(method, tmp_path):
    from autoprune.commands.regularize import regularize

    result = regularize(model=MODEL, method=method, epochs=0.1, out=tmp_path, quiet=True)
    assert result.model_path.is_file() and result.report
