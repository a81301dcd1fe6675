"""Faults injected into real trials (raise, NaN loss, ONNX export failure, killed worker): each is
recorded as failed with its reason, the search finishes, and no finished trial is lost."""

from __future__ import annotations

import optuna
import pandas as pd
import pytest

from autoprune import search
from tests.conftest import TINY_SINGLE
from tests.helpers import TINY_GROUPS, cli, expected_fault, tiny_space


@pytest.fixture(scope="module")
def run(ray_local, tmp_path_factory):
    out = tmp_path_factory.mktemp("faults")
    tiny_space(out / "space.yaml", high=0.5, step=0.5)
    # The healthy plan first, then one plan per fault: the search goes on past each fault.
    plans = [dict.fromkeys(TINY_GROUPS, 0.0)] + [{**dict.fromkeys(TINY_GROUPS, 0.0), g: 0.5} for g in TINY_GROUPS]
    return search(budget="1000ms", model="tests.helpers:faulty_resnet", space=out / "space.yaml",
                  profile=TINY_SINGLE, trials=5, concurrency=2, finetune_steps=4, initial_plans=plans, out=out,
                  quiet=True)


def test_every_fault_is_recorded_with_its_reason(run):
    trials = pd.read_csv(run.run_dir / "trials.csv")
    assert len(trials) == 5 and trials["trial"].is_unique
    seen = set()
    for row in trials.itertuples():
        ratios = {g: trials.loc[row.Index, f"ratio.{g}"] for g in TINY_GROUPS}
        fault = expected_fault(ratios)
        if fault is None:
            assert row.status == "completed", (row.trial, row.error)
            assert 0.0 <= row.accuracy <= 1.0
        else:
            assert row.status == "failed", row.trial
            assert row.error.startswith(fault), (row.trial, row.error)
            seen.add(fault)
    assert len(seen) == 4  # raise, NaN loss, export failure and killed worker all happened


def test_the_study_and_the_outputs_agree_after_faults(run):
    trials = pd.read_csv(run.run_dir / "trials.csv")
    study = optuna.load_study(study_name="autoprune", storage=f"sqlite:///{run.run_dir / 'study.db'}")
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == (trials["status"] == "completed").sum()
    assert states.count(optuna.trial.TrialState.FAIL) == (trials["status"] == "failed").sum()
    front = pd.read_csv(run.run_dir / "pareto.csv")
    assert set(front["trial"]) <= set(trials.loc[trials["status"] == "completed", "trial"])
    assert len(front) >= 1 and (run.run_dir / "pareto.png").is_file()


def test_a_search_whose_every_trial_failed_exits_non_zero_with_the_cause_and_keeps_the_rows(ray_local, tmp_path):
    space = tiny_space(tmp_path / "space.yaml", high=0.5, step=0.5)
    proc = cli("search", "--budget", "1000ms", "--model", "tests.helpers:untrainable_resnet", "--space", str(space),
               "--profile", str(TINY_SINGLE), "--trials", "2", "--finetune-steps", "2", "--seed-plans", "uniform",
               "--out", str(tmp_path / "runs"))
    assert proc.returncode == 1, proc.stderr
    error = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(error) == 1 and "all 2 trial(s) failed" in error[0], proc.stderr
    assert "finetune: RuntimeError: injected fault: this model cannot train (2 of 2)" in error[0]
    assert "autoprune apply" not in proc.stdout
    (run_dir,) = (tmp_path / "runs").iterdir()
    trials = pd.read_csv(run_dir / "trials.csv")
    assert list(trials["status"]) == ["failed", "failed"]
