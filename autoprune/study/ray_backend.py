"""Ray Tune side of the search: the trainable, the Optuna searcher, and a recorder of finished trials."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import socket
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import optuna
import ray
import torch
from ray import tune
from ray.tune.search import ConcurrencyLimiter

from autoprune.core.errors import AutopruneError, first_line
from autoprune.core.records import TRIAL_METRICS, Status, TrialRecord
from autoprune.core.signals import terminate_as_interrupt
from autoprune.latency.budget import budget_verdicts, over_budget
from autoprune.latency.cache import LatencyCache, RayLatencyCache
from autoprune.prune.plan import Plan
from autoprune.report.frames import trials_frame, write_trials
from autoprune.report.progress import SearchProgress
from autoprune.study.budgeted import (
    LADDER_KEY,
    PREDICTED_KEY,
    SHIFT_KEY,
    BudgetedOptunaSearch,
)
from autoprune.study.landing import Ladder
from autoprune.study.options import RunOptions
from autoprune.study.samplers import (
    TRIAL_NUMBER_KEY,
    make_sampler,
    ratios_from_config,
    trial_name,
)
from autoprune.study.trial import TrialSettings, run_trial
from autoprune.study.workload import Workload

_OBJECTIVES = ["accuracy", "latency_p50_ms"]

def on_assigned_resources(settings: TrialSettings) -> TrialSettings:
    """Inside a Ray trial or task: torch on the CPUs Ray assigned, training on its GPU when it has one."""
    assigned = ray.get_runtime_context().get_assigned_resources()
    torch.set_num_threads(max(1, int(assigned.get("CPU", 1))))
    if assigned.get("GPU", 0) > 0 and torch.cuda.is_available():  # Ray sets CUDA_VISIBLE_DEVICES for the trial
        settings = dataclasses.replace(settings, device="cuda")
    return settings


def _trainable(config: dict[str, Any], *, model, data, settings: TrialSettings, plan_fields: dict,
               trial_fn: Callable[..., dict[str, Any]] = run_trial) -> None:

    ctx = ray.get_runtime_context()
    settings = on_assigned_resources(settings)
    node = f"{socket.gethostname()} ray-node:{ctx.get_node_id()}"
    plan = Plan(ratios=ratios_from_config(config), **plan_fields)
    landing = {"ladder": Ladder.from_dict(json.loads(config[LADDER_KEY]))} if config.get(LADDER_KEY) else {}
    metrics = trial_fn(model, data, plan, settings=settings, report=lambda m: tune.report({**m, "node": node}),
                       **landing)
    # fidelity 2 is the bn scheduler's end (max_t); screen_accuracy NaN: a final result (a plan over
    # budget, or one already screened) never moves the screen's cutoff.
    tune.report({**metrics, "node": node, "finetune_step": settings.finetune.steps if metrics["finetuned"] else 0,
                 "fidelity": 2, "screen_accuracy": float("nan")})


# How Ray says a trial's process is gone (its error file holds the message, not always the type).
_DIED = ("ActorDiedError", "WorkerCrashedError", "OutOfMemoryError", "worker process has died", "actor died")


def _error_line(trial) -> str:
    """The one line that says why a trial failed, out of the traceback Ray wrote for it."""
    path = trial.error_file  # written locally before the callbacks run
    text = Path(path).read_text() if path and Path(path).is_file() else str(trial.get_pickled_error() or "")
    if not text:
        return "unknown error (see the Ray logs)"
    m = re.search(r"TrialFailed: (.+)", text)
    if m:
        return m.group(1).strip()
    if any(d in text for d in _DIED):
        exit_type = re.search(r"Worker exit type: (\w+)", text)
        how = f", {exit_type.group(1)}" if exit_type else ""
        return f"worker: the trial's process died (killed, crashed or out of memory{how})"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1]


class Recorder(tune.Callback):
    """Turns finished trials into rows and saves each plan; ``on_rows`` gets every row so far as each
    trial finishes (default: trials.csv rewritten), so nothing finished is lost if the driver dies."""

    def __init__(self, *, run_dir: Path, budgets_ms: dict[str, float], budget_rule: str, plan_fields: dict[str, Any],
                 progress: SearchProgress, rows: Sequence[dict[str, Any]] = (),
                 on_rows: Callable[[list[dict[str, Any]]], None] | None = None) -> None:
        self.run_dir, self.budgets_ms, self.plan_fields = run_dir, budgets_ms, plan_fields
        self.on_rows = on_rows
        self.budget_rule = budget_rule
        self.progress = progress
        self.rows: list[dict[str, Any]] = list(rows)  # a resumed run starts with the trials already done
        self.finished_here = 0
        self._started: dict[str, float] = {}

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles callbacks into its experiment state; the console and the writer stay here.
        return {k: v for k, v in self.__dict__.items() if k not in ("progress", "on_rows")}

    def on_trial_start(self, iteration, trials, trial, **info):
        self._started[trial.trial_id] = time.time()

    def _record(self, trial, status: Status, **fields: Any) -> TrialRecord:
        number = int(trial.config[TRIAL_NUMBER_KEY])
        result = trial.last_result or {}
        if result.get("plan_run"):  # the trial landed on another rung of its ladder: it ran (and predicted) that plan
            ratios, predicted = ratios_from_config(json.loads(result["plan_run"])), result.get("predicted_ms")
        else:
            ratios, predicted = ratios_from_config(trial.config), trial.config.get(PREDICTED_KEY)
        plan = save_plan(self.run_dir, number, ratios, self.plan_fields)
        now = time.time()
        return TrialRecord(trial=trial_name(number), status=status, plan=str(plan.relative_to(self.run_dir)),
                           ratios=ratios, started_at=self._started.get(trial.trial_id, now), finished_at=now,
                           repair_shift=trial.config.get(SHIFT_KEY), predicted_ms=predicted,
                           **fields)

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = trial.last_result or {}
        if not result.get("final", True):
            status = Status.STOPPED  # early-stopped by the scheduler: accuracy is an interim figure
        elif result.get("finetuned") is False:
            status = Status.INFEASIBLE  # over budget, so never fine-tuned: no accuracy to report
        else:
            status = Status.COMPLETED
        metrics = {k: v for k, v in result.items() if k in TRIAL_METRICS or k.startswith(("latency_", "accuracy@"))}
        missed = over_budget(metrics, self.budgets_ms, rule=self.budget_rule)
        verdicts = budget_verdicts(metrics, self.budgets_ms)
        budgets = {name: (name not in missed, verdicts[name]) for name in self.budgets_ms}
        self._add(self._record(trial, status, metrics=metrics, budgets=budgets).row())

    def on_trial_error(self, iteration, trials, trial, **info):
        from autoprune.core.usercode import debug

        if debug() and trial.error_file and Path(trial.error_file).is_file():  # --traceback: the trial's whole story
            print(Path(trial.error_file).read_text().rstrip(), file=sys.stderr)
        self._add(self._record(trial, Status.FAILED, error=_error_line(trial)).row())

    def _add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.finished_here += 1
        if self.on_rows is not None:
            self.on_rows(self.rows)
        else:
            write_trials(trials_frame(self.rows), self.run_dir)
        self.progress.trial(row)


@contextlib.contextmanager
def ray_session(progress: SearchProgress, *, address: str | None = None) -> Iterator[LatencyCache]:
    """A Ray for the search, and the latency cache its trials share: a running one is reused;
    ``address`` (``auto``, ``ray://HOST:PORT``, or ``RAY_ADDRESS``, as ``ray job submit`` sets it)
    joins an existing cluster; else a local Ray is started, and stopped at the end."""
    env_for_ray()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started_here = False
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS")
        with progress.phase(f"joining the Ray cluster at {address}" if address else "starting a local Ray",
                            key="ray_start_s"):
            if address:  # an existing cluster: its nodes bring their own CPUs and resources
                try:
                    with warnings.catch_warnings():  # Ray's own timeout warning: the one line below says it
                        warnings.simplefilter("ignore", UserWarning)
                        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
                except (ConnectionError, RuntimeError, ValueError) as exc:
                    raise AutopruneError(f"cannot join the Ray cluster at --address {address!r} ({exc}); start one "
                                         "with `ray start --head`, or leave --address out for a local Ray") from None
            else:
                # address="local": a Ray of its own, even when another search on this machine runs one
                try:
                    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False,
                             logging_level=logging.ERROR, log_to_driver=False, configure_logging=True)
                except Exception as exc:  # a node that did not come up (disk, memory, ports, a busy machine)
                    with contextlib.suppress(Exception):
                        ray.shutdown()  # what did start, stopped
                    raise AutopruneError(
                        f"could not start a local Ray ({type(exc).__name__}: {first_line(exc)[:200]}); check that "
                        f"{os.environ.get('RAY_TMPDIR', '/tmp')} is writable with free space and memory is free, "
                        "run `ray stop` to end stale Ray processes, then try again (or join a running cluster with "
                        "--address)") from exc
        started_here = True
    try:
        with terminate_as_interrupt():  # after ray.init, which sets a SIGTERM handler of its own
            yield RayLatencyCache()
    finally:
        if started_here:
            ray.shutdown()


def trial_resources(opts: RunOptions) -> dict[str, float]:
    """CPUs (and GPUs) per trial: as asked, else the cluster's CPUs shared by the concurrent trials."""
    # A trial runs on one node: never ask for more CPUs than the biggest node has.
    node_cpus = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=1)
    if opts.cpus_per_trial is not None:
        if opts.cpus_per_trial > node_cpus:
            raise AutopruneError(f"--cpus-per-trial {opts.cpus_per_trial:g} is more than any node has "
                                 f"({node_cpus:g}); use at most {node_cpus:g}")
        cpus = opts.cpus_per_trial
    else:
        total = int(ray.cluster_resources().get("CPU", 1))
        cpus = max(1, min(total // opts.concurrency, int(node_cpus)))
    res: dict[str, float] = {"cpu": cpus}
    if opts.gpus_per_trial:
        gpus = ray.cluster_resources().get("GPU", 0)
        if gpus < opts.gpus_per_trial:
            raise AutopruneError(f"--gpus-per-trial {opts.gpus_per_trial:g} but the cluster has {gpus:g} GPU(s); "
                                 "leave it out to fine-tune on CPUs")
        res["gpu"] = opts.gpus_per_trial
    return res


def _scheduler(opts: RunOptions, settings: TrialSettings):
    if opts.early_stop == "none":
        return None
    from ray.tune.schedulers import ASHAScheduler

    if opts.early_stop == "bn":
        # One rung, at the adaptive-BN score before fine-tuning (fidelity 1): a plan is fine-tuned when
        # its score is in the top half of those screened so far, else stopped there (EagleEye).
        # Results over budget carry NaN there, which the rung's percentile ignores (quietly: before
        # the first screened plan, a rung of NaNs only).
        warnings.filterwarnings("ignore", message="All-NaN slice encountered", category=RuntimeWarning)
        return ASHAScheduler(time_attr="fidelity", metric="screen_accuracy", mode=settings.sense.mode, max_t=2,
                             grace_period=1, reduction_factor=2)
    steps = settings.finetune.steps or 1
    # Rungs at fine-tune steps eval_every, 2x, 4x…: a trial continues while in the top half there.
    return ASHAScheduler(time_attr="finetune_step", metric="accuracy", mode=settings.sense.mode, max_t=steps,
                         grace_period=max(1, settings.eval_every), reduction_factor=2)


def run_trials(*, work: Workload, settings: TrialSettings, plan_fields: dict[str, Any], budgets_ms: dict[str, float],
               opts: RunOptions, run_dir: Path, progress: SearchProgress,
               rows: Sequence[dict[str, Any]] = (),
               trial_fn: Callable[..., dict[str, Any]] = run_trial,
               on_rows: Callable[[list[dict[str, Any]]], None] | None = None) -> tuple[list[dict], bool, bool]:
    """Run ``opts.trials`` trials on the Ray the caller holds (see ``ray_session``).

    ``trial_fn`` has ``run_trial``'s signature; the orchestration benchmark passes trials of fixed cost.
    ``on_rows`` writes the outputs as each trial finishes (see ``Recorder``).

    Returns every row (``rows`` given, then one per trial finished here), whether the run was
    interrupted (Ctrl-C) before all its trials finished, and whether it ended early because every
    plan of the space had run (``exhausted``: a small space, no plan runs twice).
    """
    resources = trial_resources(opts)
    # Trials waiting for resources are proposed early, before results the sampler could use: allow
    # just enough of them to keep ``concurrency`` trials running (1 would run them one at a time).
    os.environ["TUNE_MAX_PENDING_TRIALS_PG"] = str(opts.concurrency)
    space = {name: optuna.distributions.FloatDistribution(g.low, g.high, step=g.step)
             for name, g in work.space.groups.items()}
    # budget: one objective (accuracy) among plans repaired onto the boundary; front: two objectives.
    best = settings.sense.mode  # "max" for accuracy, "min" for perplexity
    metric, mode = (_OBJECTIVES[0], best) if opts.formulation == "budget" else (_OBJECTIVES, [best, "min"])
    searcher = BudgetedOptunaSearch(
        space=space, metric=metric, mode=mode, budgets_ms=budgets_ms, budget_rule=settings.budget_rule,
        aim=opts.aim if opts.formulation == "budget" else None, land_initial=opts.land_initial,
        sampler=make_sampler(opts.sampler, trials=opts.trials, concurrency=opts.concurrency, seed=opts.seed),
        storage=optuna.storages.RDBStorage(opts.storage), study_name=opts.study_name,
        points_to_evaluate=[dict(p) for p in opts.initial_plans] or None)
    recorder = Recorder(run_dir=run_dir, budgets_ms=budgets_ms, budget_rule=settings.budget_rule,
                        plan_fields=plan_fields, progress=progress, rows=rows, on_rows=on_rows)
    trainable = tune.with_resources(
        # with_parameters puts model and data in the object store once; every trial reads that copy.
        tune.with_parameters(_trainable, model=work.model, data=work.data, settings=settings, plan_fields=plan_fields,
                             trial_fn=trial_fn),
        resources)
    n = 1 + sum(1 for _ in (run_dir / "ray").glob("tune*")) if (run_dir / "ray").is_dir() else 1
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=ConcurrencyLimiter(searcher, max_concurrent=opts.concurrency),
                                    scheduler=_scheduler(opts, settings), num_samples=opts.trials,
                                    reuse_actors=True),
        run_config=tune.RunConfig(name="tune" if n == 1 else f"tune-{n}", storage_path=str((run_dir / "ray").resolve()),
                                  verbose=0, callbacks=[recorder], failure_config=tune.FailureConfig(max_failures=0)),
    )
    tune_logger = logging.getLogger("ray.tune")
    level = tune_logger.level
    tune_logger.setLevel(logging.CRITICAL)  # failed trials are reported by the Recorder, in one line each
    interrupted = False
    what = f"running {opts.trials} trials, {opts.concurrency} at a time on {resources}"
    try:
        with progress.phase(what, key="tune_s"):
            # Ctrl-C: Ray Tune's handler ends the loop and stops the running trials; a second Ctrl-C
            # raises here. Either way the trials that finished are in recorder.rows.
            tuner.fit()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        tune_logger.setLevel(level)
    exhausted = searcher.exhausted and not interrupted
    if exhausted:
        progress.print(f"every plan of the search space has run: the search ends after {recorder.finished_here} "
                       f"of {opts.trials} trials (widen the space, or lower its step, for more)")
    interrupted = interrupted or (recorder.finished_here < opts.trials and not exhausted)
    return recorder.rows, interrupted, exhausted


def save_plan(run_dir: Path, number: int, ratios: dict[str, float], plan_fields: dict[str, Any]) -> Path:
    plan = Plan(ratios=ratios, **plan_fields)
    return plan.save(run_dir / "plans" / f"{trial_name(number)}.yaml")


def env_for_ray() -> None:
    # Quiet Ray: no dashboard, no per-trial logger files we never read.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
