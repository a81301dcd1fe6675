"""The driver dies mid-search (kill -9) or is interrupted (Ctrl-C); ``--resume`` finishes the run
with every trial that had finished kept as it was. Real CLI processes, real Ray, real study."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest

from tests.conftest import ROOT, TINY_PROFILE

TRIALS = 6


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from autoprune.cli import main; main()", *args]


def _start(out: Path) -> subprocess.Popen:
    # Own session: the test can signal the driver's whole process group, as a terminal's Ctrl-C does.
    return subprocess.Popen(
        _cli("search", "--budget", "1000ms", "--model", "tests.helpers:tiny_resnet", "--profile", str(TINY_PROFILE),
             "--trials", str(TRIALS), "--finetune-steps", "60", "--out", str(out)),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait_for_rows(out: Path, proc: subprocess.Popen, n: int, timeout: float = 240) -> Path:
    t0 = time.time()
    while time.time() - t0 < timeout:
        for csv in out.glob("*/trials.csv"):
            try:
                if len(pd.read_csv(csv)) >= n:
                    return csv.parent
            except (pd.errors.EmptyDataError, pd.errors.ParserError):
                pass  # caught mid-write
        if proc.poll() is not None:
            pytest.fail(f"search ended before {n} trials: {proc.stderr.read()[-2000:]}")
        time.sleep(0.2)
    pytest.fail(f"no {n} finished trials within {timeout} s")


def _resume(run_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(_cli("search", "--resume", str(run_dir)), cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # Ray processes the dead driver left behind
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)


def _check_complete(run_dir: Path, before: pd.DataFrame) -> pd.DataFrame:
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


def test_resume_after_kill_9_loses_no_finished_trial(tmp_path):
    proc = _start(tmp_path)
    try:
        run_dir = _wait_for_rows(tmp_path, proc, 2)
        os.kill(proc.pid, signal.SIGKILL)  # the driver only, mid-trial
        proc.wait(timeout=60)
    finally:
        _kill_group(proc)
    before = pd.read_csv(run_dir / "trials.csv")
    assert 2 <= len(before) < TRIALS
    assert not (run_dir / "pareto.csv").exists()  # kill -9 gave the driver no chance to write it
    done = _resume(run_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{len(before)} of {TRIALS} trials already finished" in done.stdout
    _check_complete(run_dir, before)


def test_ctrl_c_writes_what_finished_exits_non_zero_and_resumes(tmp_path):
    proc = _start(tmp_path)
    try:
        run_dir = _wait_for_rows(tmp_path, proc, 2)
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole foreground group
        _, stderr = proc.communicate(timeout=120)
    finally:
        _kill_group(proc)
    assert proc.returncode == 130, stderr[-3000:]
    assert f"--resume {run_dir}" in stderr
    before = pd.read_csv(run_dir / "trials.csv")
    assert 2 <= len(before) < TRIALS
    assert (run_dir / "pareto.csv").is_file() and (run_dir / "pareto.png").is_file()
    assert set(pd.read_csv(run_dir / "pareto.csv")["trial"]) <= set(before["trial"])
    done = _resume(run_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    _check_complete(run_dir, before)
