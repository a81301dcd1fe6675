"""The driver dies mid-search (kill -9) or is interrupted (Ctrl-C); ``resume`` finishes the run with
every trial that had finished kept as it was. Real Ray, real study; the stop happens at a known
point (a trial that presses Ctrl-C; the state a killed driver leaves), never after a wait."""

from __future__ import annotations

import optuna
import pandas as pd
import pytest

from autoprune import search
from autoprune.core.errors import SearchInterrupted
from autoprune.space.space import SearchSpace
from tests.conftest import TINY_SINGLE
from tests.helpers import TINY_GROUPS

pytestmark = pytest.mark.usefixtures("ray_local")

TRIALS = 4
# stem.0 at 0.5 keeps 8 of 16 channels: InterruptingResNet presses Ctrl-C when that plan trains
PLANS = [{**dict.fromkeys(TINY_GROUPS, 0.0), "block2.conv1": 0.25}, {**dict.fromkeys(TINY_GROUPS, 0.25), "stem.0": 0.0},
         {**dict.fromkeys(TINY_GROUPS, 0.0), "stem.0": 0.5}]


def _search(out, **kwargs):
    return search(budget="1000ms", profile=TINY_SINGLE, finetune_steps=5, quiet=True, seed_plans="none",
                  out=out, **kwargs)


def _check_complete(run_dir, before: pd.DataFrame) -> pd.DataFrame:
    after = pd.read_csv(run_dir / "trials.csv")
    assert len(after) == TRIALS and after["trial"].is_unique
    assert set(after["status"]) <= {"completed", "infeasible"}
    kept = after.set_index("trial").loc[before["trial"]]
    # every trial finished before the stop is kept exactly: same plan, same accuracy, same latency
    for col in ("accuracy", "latency_p50_ms", "plan", "status"):
        assert list(kept[col]) == list(before[col]), col
    study = optuna.load_study(study_name="autoprune", storage=f"sqlite:///{run_dir / 'study.db'}")
    running = study.get_trials(states=(optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING))
    assert running == []
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == TRIALS
    assert len(pd.read_csv(run_dir / "pareto.csv")) >= 1 and (run_dir / "pareto.png").is_file()
    return after


def test_ctrl_c_then_a_dead_driver_and_resume_lose_no_finished_trial(tmp_path, monkeypatch):
    """Ctrl-C (a trial presses it): what finished is written and the search stops. Then the state a
    ``kill -9`` of the driver leaves on top (no pareto.csv, a trial RUNNING in the study): resume
    fails that trial, runs its plan again first, and finishes the run."""
    (tmp_path / "marker").mkdir()
    monkeypatch.setenv("AUTOPRUNE_TEST_INTERRUPT", str(tmp_path / "marker"))
    with pytest.raises(SearchInterrupted) as info:
        _search(tmp_path / "runs", model="tests.helpers:interrupting_resnet", trials=TRIALS, initial_plans=PLANS)
    assert (tmp_path / "marker" / "pressed").is_file()  # the third plan did press Ctrl-C
    run_dir = info.value.run_dir
    assert f"--resume {run_dir}" in str(info.value)
    before = pd.read_csv(run_dir / "trials.csv")
    assert list(before["trial"]) == ["trial-000", "trial-001"]  # the two plans before it, nothing else
    assert (run_dir / "pareto.csv").is_file() and (run_dir / "pareto.png").is_file()
    assert set(pd.read_csv(run_dir / "pareto.csv")["trial"]) <= set(before["trial"])

    # kill -9 gives the driver no chance to write the outputs or to close the trial in flight
    for name in ("pareto.csv", "pareto.png", "summary.yaml"):
        (run_dir / name).unlink()
    study = optuna.load_study(study_name="autoprune", storage=f"sqlite:///{run_dir / 'study.db'}")
    space = SearchSpace.load(run_dir / "space.yaml")
    in_flight = study.ask({n: optuna.distributions.FloatDistribution(g.low, g.high, step=g.step)
                           for n, g in space.groups.items()})
    killed_plan = {**dict.fromkeys(TINY_GROUPS, 0.25), "block2.conv2": 0.5}
    in_flight.set_user_attr("ratios", killed_plan)  # the plan it ran, as the search records it

    _search(tmp_path / "runs", resume=run_dir)
    after = _check_complete(run_dir, before)
    ran = [{c.removeprefix("ratio."): r[c] for c in after if c.startswith("ratio.")} for _, r in after.iterrows()]
    assert killed_plan in ran[2:]  # the plan in flight ran again
    assert optuna.trial.TrialState.FAIL in {t.state for t in study.get_trials()}


def test_sigterm_ends_a_search_as_ctrl_c_does_with_what_finished_written(tmp_path):
    """A scheduler's stop (SIGTERM to the driver, sent when the second trial trains): exit 143, one line
    saying how to resume, no native stack trace, and the first trial's outputs written."""
    from tests.helpers import reap, search_process

    (tmp_path / "marker").mkdir()
    proc = search_process("--model", "tests.helpers:terminating_resnet", "--trials", "3", "--concurrency", "1",
                          "--out", str(tmp_path / "runs"),
                          env={"AUTOPRUNE_TEST_TERM": str(tmp_path / "marker")})
    _, err = reap(proc)
    assert proc.returncode == 143, err[-3000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert "terminated (SIGTERM): stopped after 1 of 3 trials" in err and f"--resume {run_dir}" in err, err[-3000:]
    assert "SIGTERM received" not in err and "Traceback" not in err
    trials = pd.read_csv(run_dir / "trials.csv")
    assert list(trials["trial"]) == ["trial-000"] and list(trials["status"]) == ["completed"]
    assert (run_dir / "pareto.csv").is_file() and (run_dir / "summary.yaml").is_file()
