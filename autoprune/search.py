"""search: Ray Tune runs the trials, Optuna (through Ray's OptunaSearch) proposes the plans."""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from autoprune import config as cfg
from autoprune.budget import Budget
from autoprune.data import DataSplits, load_data
from autoprune.errors import AutopruneError
from autoprune.finetune import FinetuneConfig, evaluate
from autoprune.latency import measure_model
from autoprune.models import fingerprint, load_model
from autoprune.plan import Plan
from autoprune.profiles import DEFAULT_PROFILE, HardwareProfile, resolve_profile
from autoprune.progress import SearchProgress
from autoprune.pruning import count_macs_params
from autoprune.report import plot_pareto, write_pareto, write_trials
from autoprune.space import SearchSpace, init_space
from autoprune.trial import TrialSettings

RUN_FORMAT = 1


@dataclass(frozen=True)
class SearchResult:
    run_dir: Path
    trials: pd.DataFrame
    pareto: pd.DataFrame
    budget_ms: float
    baseline: dict[str, Any]
    plot: Path | None


@dataclass(frozen=True)
class Workload:
    """What every trial needs, loaded and checked once in the driver."""

    model: torch.nn.Module
    data: DataSplits
    input_shape: tuple[int, ...]
    space: SearchSpace
    profile: HardwareProfile


def _positive(name: str, value: int, *, minimum: int = 1) -> int:
    if not isinstance(value, int) or value < minimum:
        raise AutopruneError(f"{name} is {value!r}; it must be an integer >= {minimum}")
    return value


def load_workload(*, model: str, data: str, space: str | Path | None, profile: str | Path,
                  criterion: str | None = None) -> Workload:
    """Resolve and cross-check model, data, space and profile: every user error surfaces here."""
    hw = resolve_profile(profile)
    loaded_space = SearchSpace.load(space) if space is not None else None
    splits = load_data(data)
    net = load_model(model)
    input_shape = splits.input_shape
    try:
        with torch.no_grad():
            net(torch.zeros(2, *input_shape))
    except Exception as exc:  # noqa: BLE001 - any failure here means model and data do not fit
        raise AutopruneError(f"model {model!r} does not accept inputs of shape {input_shape} from data {data!r} "
                             f"({type(exc).__name__}); pass --data that matches the model") from None
    if loaded_space is None:
        loaded_space = init_space(net, input_shape=input_shape, model_name=model)
    else:
        loaded_space.check_against(net, input_shape=input_shape, source=str(space))
    if criterion is not None:
        from autoprune.criteria import get_criterion

        get_criterion(criterion)
        loaded_space = loaded_space.model_copy(update={"criterion": criterion})
    return Workload(model=net, data=splits, input_shape=input_shape, space=loaded_space, profile=hw)


def measure_baseline(work: Workload) -> dict[str, Any]:
    macs, params = count_macs_params(work.model, input_shape=work.input_shape)
    lat = measure_model(work.model, work.profile, input_shape=work.input_shape)
    return {"accuracy": evaluate(work.model, work.data.val), "latency_p50_ms": lat.p50_ms,
            "latency_p90_ms": lat.p90_ms, "macs": macs, "params": params, "latency": lat.describe()}


def new_run_dir(out: str | Path) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(out) / stamp
    run_dir, n = base, 1
    while run_dir.exists():
        run_dir, n = Path(f"{base}-{n}"), n + 1
    (run_dir / "plans").mkdir(parents=True)
    return run_dir


def search(*, budget: str = "50ms", model: str = "builtin:demo", data: str = "builtin:digits",
           space: str | Path | None = None, profile: str | Path = DEFAULT_PROFILE, trials: int = 24,
           concurrency: int = 1, seed: int = 0, finetune_steps: int = 30, criterion: str | None = None,
           out: str | Path = "runs", quiet: bool = False) -> SearchResult:
    """Search per-group prune ratios for the best accuracy/latency trade-off under ``budget``."""
    parsed = Budget.parse(budget)
    _positive("trials", trials)
    _positive("concurrency", concurrency)
    _positive("finetune_steps", finetune_steps, minimum=0)
    progress = SearchProgress(total=trials, quiet=quiet)
    with progress.phase("loading model, data, space and profile", key="load_s"):
        work = load_workload(model=model, data=data, space=space, profile=profile, criterion=criterion)
    with progress.phase(f"measuring the unpruned model on {work.profile.name}", key="baseline_s"):
        baseline = measure_baseline(work)
    budget_ms = parsed.resolve_ms(baseline_ms=baseline["latency_p50_ms"])
    progress.baseline(baseline, budget_ms=budget_ms, budget=str(parsed))

    run_dir = new_run_dir(out)
    finetune = FinetuneConfig(steps=finetune_steps, seed=seed)
    base_fp = fingerprint(work.model)
    plan_fields = {"criterion": work.space.criterion, "round_to": work.space.round_to, "ignored": work.space.ignored,
                   "base_model": model, "base_fingerprint": base_fp, "seed": seed}
    cfg.dump({"format": RUN_FORMAT, "model": model, "model_fingerprint": base_fp, "data": data,
              "input_shape": list(work.input_shape), "budget": str(parsed), "budget_ms": budget_ms,
              "trials": trials, "concurrency": concurrency, "seed": seed,
              "finetune": {"steps": finetune_steps, "lr": finetune.lr, "batch_size": finetune.batch_size},
              "profile": work.profile.model_dump(mode="json"), "space": work.space.model_dump(mode="json"),
              "plan": plan_fields, "baseline": baseline}, run_dir / "config.yaml")
    cfg.dump(work.profile, run_dir / "profile.yaml")
    work.space.save(run_dir / "space.yaml")
    settings = TrialSettings(input_shape=work.input_shape, profiles=(work.profile,), finetune=finetune)

    from autoprune.tune_runner import run_trials  # imports Ray: keep it off the bad-input path

    rows = run_trials(work=work, settings=settings, plan_fields=plan_fields, budget_ms=budget_ms, trials=trials,
                      concurrency=concurrency, seed=seed, run_dir=run_dir, progress=progress)
    return finish(run_dir, rows, budget_ms=budget_ms, baseline=baseline, profile=work.profile.name,
                  progress=progress)


def finish(run_dir: Path, rows: list[dict[str, Any]], *, budget_ms: float, baseline: dict[str, Any], profile: str,
           progress: SearchProgress) -> SearchResult:
    """Write trials.csv, pareto.csv and the plot for whatever finished."""
    table = trials_frame(rows)
    write_trials(table, run_dir)
    pareto_path, front = write_pareto(table, run_dir)
    plot = None
    if (table["status"] == "completed").any():
        plot = plot_pareto(table, run_dir, budget_ms=budget_ms, baseline=baseline, profile=profile)
    n_failed = int((table["status"] != "completed").sum())
    cfg.dump({"trials": len(table), "failed": n_failed, "pareto_size": len(front), "budget_ms": budget_ms,
              "timings_s": {**progress.timings, "total_s": time.perf_counter() - progress.t0}},
             run_dir / "summary.yaml")
    progress.summary(front, run_dir=run_dir, plot=plot, n_failed=n_failed)
    return SearchResult(run_dir=run_dir, trials=table, pareto=front, budget_ms=budget_ms, baseline=baseline, plot=plot)


_FIRST = ["trial", "status", "accuracy", "latency_p50_ms", "latency_p90_ms", "latency_spread", "meets_budget",
          "macs", "params", "wall_s", "trial_s", "prune_s", "finetune_s", "evaluate_s", "export_s", "measure_s",
          "overhead_s", "started_at", "finished_at", "error", "plan"]


def trials_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    for col in _FIRST:
        if col not in table:
            table[col] = pd.NA
    table["meets_budget"] = table["meets_budget"].fillna(False).astype(bool)
    rest = [c for c in table.columns if c not in _FIRST]
    return table[_FIRST + sorted(rest)].sort_values("trial").reset_index(drop=True)


def save_plan(run_dir: Path, number: int, ratios: dict[str, float], plan_fields: dict[str, Any]) -> Path:
    plan = Plan(ratios=ratios, **plan_fields)
    return plan.save(run_dir / "plans" / f"{trial_name(number)}.yaml")


def trial_name(number: int) -> str:
    return f"trial-{number:03d}"


def env_for_ray() -> None:
    # Quiet Ray: no dashboard, no per-trial logger files we never read.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", "1")
