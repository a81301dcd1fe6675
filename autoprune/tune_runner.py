"""Ray Tune side of the search: the trainable, the Optuna searcher, and a recorder of finished trials."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import ray
from ray import tune
from ray.tune.search import ConcurrencyLimiter

from autoprune.latency_cache import LatencyCache, RayLatencyCache
from autoprune.plan import Plan
from autoprune.progress import SearchProgress
from autoprune.report import write_trials
from autoprune.sampler import TRIAL_NUMBER_KEY, BudgetedOptunaSearch, make_sampler, ratios_from_config
from autoprune.search import Workload, env_for_ray, save_plan, trial_name, trials_frame
from autoprune.trial import PHASES, TrialSettings, run_trial

_OBJECTIVES = ["accuracy", "latency_p50_ms"]
_METRICS = {"accuracy", "macs", "params", "arch_fingerprint", "pruned_fingerprint", "trial_s", *(f"{p}_s" for p in PHASES)}


def _trainable(config: dict[str, Any], *, model, data, settings: TrialSettings, plan_fields: dict) -> None:  # noqa: ANN001
    import torch

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))
    metrics = run_trial(model, data, Plan(ratios=ratios_from_config(config), **plan_fields), settings=settings)
    tune.report(metrics)


def _error_line(trial) -> str:  # noqa: ANN001 - a ray.tune Trial
    """The one line that says why a trial failed, out of the traceback Ray wrote for it."""
    path = trial.error_file  # written locally before the callbacks run
    text = Path(path).read_text() if path and Path(path).is_file() else str(trial.get_pickled_error() or "")
    if not text:
        return "unknown error (see the Ray logs)"
    m = re.search(r"TrialFailed: (.+)", text)
    if m:
        return m.group(1).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1]


class Recorder(tune.Callback):
    """Turns finished trials into rows, saves each plan, and rewrites trials.csv as trials finish."""

    def __init__(self, *, run_dir: Path, budgets_ms: dict[str, float], plan_fields: dict[str, Any],
                 progress: SearchProgress) -> None:
        self.run_dir, self.budgets_ms, self.plan_fields = run_dir, budgets_ms, plan_fields
        self.progress = progress
        self.rows: list[dict[str, Any]] = []
        self._started: dict[str, float] = {}

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles callbacks into its experiment state; the terminal console cannot travel.
        return {k: v for k, v in self.__dict__.items() if k != "progress"}

    def on_trial_start(self, iteration, trials, trial, **info):  # noqa: ANN001, ANN201
        self._started[trial.trial_id] = time.time()

    def _base_row(self, trial) -> dict[str, Any]:  # noqa: ANN001
        number = int(trial.config[TRIAL_NUMBER_KEY])
        ratios = ratios_from_config(trial.config)
        plan = save_plan(self.run_dir, number, ratios, self.plan_fields)
        now = time.time()
        started = self._started.get(trial.trial_id, now)
        return {"trial": trial_name(number), "wall_s": now - started, "started_at": started, "finished_at": now,
                "plan": str(plan.relative_to(self.run_dir)),
                **{f"ratio.{k}": v for k, v in ratios.items()}}

    def on_trial_complete(self, iteration, trials, trial, **info):  # noqa: ANN001, ANN201
        result = trial.last_result or {}
        row = self._base_row(trial)
        row.update({k: v for k, v in result.items() if k in _METRICS or k.startswith("latency_")})
        row["status"] = "completed"
        for name, budget in self.budgets_ms.items():
            row[f"meets_budget@{name}"] = bool(row[f"latency_p50_ms@{name}"] <= budget)
        row["meets_budget"] = all(row[f"meets_budget@{name}"] for name in self.budgets_ms)
        row["overhead_s"] = row["wall_s"] - sum(row[f"{p}_s"] for p in PHASES)
        self._add(row)

    def on_trial_error(self, iteration, trials, trial, **info):  # noqa: ANN001, ANN201
        row = self._base_row(trial)
        row.update({"status": "failed", "error": _error_line(trial), "meets_budget": False})
        self._add(row)

    def _add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        write_trials(trials_frame(self.rows), self.run_dir)  # nothing finished is lost if the driver dies
        self.progress.trial(row)


@contextlib.contextmanager
def ray_session(progress: SearchProgress) -> Iterator[LatencyCache]:
    """A Ray for the search (a running one is reused, else a local one is started and stopped),
    and the latency cache its trials share."""
    env_for_ray()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started_here = False
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        with progress.phase(f"joining the Ray cluster at {address}" if address else "starting a local Ray",
                            key="ray_start_s"):
            if address:  # an existing cluster: its nodes bring their own CPUs and resources
                ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
            else:
                ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level=logging.ERROR,
                         log_to_driver=False, configure_logging=True)
        started_here = True
    try:
        yield RayLatencyCache()
    finally:
        if started_here:
            ray.shutdown()


def run_trials(*, work: Workload, settings: TrialSettings, plan_fields: dict[str, Any], budgets_ms: dict[str, float],
               trials: int, concurrency: int, seed: int, run_dir: Path, progress: SearchProgress) -> list[dict]:
    """Run the trials on the Ray the caller holds (see ``ray_session``); returns one row per trial."""
    total_cpus = int(ray.cluster_resources().get("CPU", 1))
    # A trial runs on one node: never ask for more CPUs than the biggest node has.
    node_cpus = max((int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")), default=1)
    cpus_per_trial = max(1, min(total_cpus // concurrency, node_cpus))
    space = {name: optuna.distributions.FloatDistribution(g.low, g.high, step=g.step)
             for name, g in work.space.groups.items()}
    searcher = BudgetedOptunaSearch(
        space=space, metric=_OBJECTIVES, mode=["max", "min"], budgets_ms=budgets_ms,
        sampler=make_sampler(trials=trials, concurrency=concurrency, seed=seed),
        storage=optuna.storages.RDBStorage(f"sqlite:///{(run_dir / 'study.db').resolve()}"), study_name="autoprune")
    recorder = Recorder(run_dir=run_dir, budgets_ms=budgets_ms, plan_fields=plan_fields, progress=progress)
    trainable = tune.with_resources(
        tune.with_parameters(_trainable, model=work.model, data=work.data, settings=settings, plan_fields=plan_fields),
        {"cpu": cpus_per_trial})
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=ConcurrencyLimiter(searcher, max_concurrent=concurrency),
                                    num_samples=trials, reuse_actors=True),
        run_config=tune.RunConfig(name="tune", storage_path=str((run_dir / "ray").resolve()), verbose=0,
                                  callbacks=[recorder], failure_config=tune.FailureConfig(max_failures=0)),
    )
    tune_logger = logging.getLogger("ray.tune")
    level = tune_logger.level
    tune_logger.setLevel(logging.CRITICAL)  # failed trials are reported by the Recorder, in one line each
    try:
        with progress.phase(f"running {trials} trials, {concurrency} at a time", key="tune_s"):
            tuner.fit()
    finally:
        tune_logger.setLevel(level)
    return recorder.rows
