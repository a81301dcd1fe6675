"""The persistent Optuna study of a run: where it lives, and making it whole again before a resume.

The study is the sampler's memory; ``trials.csv`` is the run's record. A driver killed mid-search
(Ctrl-C, ``kill -9``) leaves trials RUNNING in the study that will never report: they are marked
failed and their plans queued again, so a resumed search re-runs them and loses nothing finished.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna

from autoprune.core.errors import AutopruneError, first_line
from autoprune.core.records import TOLD, Status, status_of
from autoprune.study.samplers import budget_constraints, trial_name

DEFAULT_STUDY = "autoprune"


def storage_url(run_dir: Path, storage: str | None) -> str:
    """``storage`` as given (any Optuna RDB URL), else a SQLite file in the run directory."""
    return storage or f"sqlite:///{(run_dir / 'study.db').resolve()}"


def study_name(run_dir: Path, storage: str | None) -> str:
    # A shared database holds many runs' studies: name each after its run.
    return f"{DEFAULT_STUDY}-{run_dir.name}" if storage else DEFAULT_STUDY


def redacted(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        import sqlalchemy

        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy parses: say it as given
        return url


def check_storage(url: str) -> None:
    """Connect to an Optuna RDB storage (creating its tables) before any work, so a missing driver or
    an unreachable database is one line, not a traceback after the baseline was measured."""
    try:
        for attempt in range(4):
            try:
                optuna.storages.RDBStorage(url)
                break
            except Exception as exc:
                # Two searches started at once on a new database both create Optuna's tables; the
                # loser sees them half-made (a unique-key violation on the type catalogue). By the
                # next try the winner has finished and the tables are there.
                if attempt == 3 or not any(s in str(exc) for s in ("UniqueViolation", "already exists")):
                    raise
                time.sleep(0.5 * (attempt + 1))
    except ImportError:
        dialect = url.split(":", 1)[0]
        hint = "pip install 'autoprune[postgres]'" if dialect.startswith("postgres") else f"install a driver for {dialect}"
        raise AutopruneError(f"--storage {redacted(url)}: its database driver is not installed; {hint}") from None
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy's errors: bad URL, refused connection, bad login
        raise AutopruneError(f"--storage {redacted(url)}: cannot open it ({first_line(exc)[:200]}); pass an Optuna RDB URL "
                             "such as postgresql://USER:PASSWORD@HOST/DB or sqlite:///study.db") from None


def load_study(url: str, name: str) -> optuna.Study:
    try:
        return optuna.load_study(study_name=name, storage=url, sampler=optuna.samplers.RandomSampler())
    except KeyError:
        raise AutopruneError(f"no study {name!r} in storage {url}; resume a run whose search started "
                             "(see its config.yaml, key study)") from None


def reconcile(study: optuna.Study, *, rows: Sequence[Mapping[str, Any]], budgets_ms: Mapping[str, float],
              budget_rule: str) -> int:
    """Close the trials a dead driver left RUNNING; returns how many plans were queued again.

    A trial whose row reached trials.csv is told its result (the driver died between the two);
    any other is failed, and its plan enqueued so the resumed search runs it first.
    """
    done = {r["trial"]: r for r in rows if status_of(r) in TOLD}
    requeued = 0
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        row = done.get(trial_name(t.number))
        if row is not None:
            trial = optuna.Trial(study, t._trial_id)
            for key, value in budget_constraints(row, budgets_ms, rule=budget_rule).items():
                trial.set_constraint(key, value)
            accuracy = row["accuracy"] if status_of(row) is not Status.INFEASIBLE else row["accuracy_before_finetune"]
            values = [float(accuracy), float(row["latency_p50_ms"])]
            study.tell(t.number, values[:len(study.directions)])  # the budget formulation: accuracy alone
        else:
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
            # The plan it ran (after the budget repair), else its params: the same plan runs again.
            study.enqueue_trial(dict(t.user_attrs.get("ratios") or t.params), skip_if_exists=False)
            requeued += 1
    return requeued
