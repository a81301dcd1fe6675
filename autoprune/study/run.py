"""search: Ray Tune runs the trials, Optuna (through Ray's OptunaSearch) proposes the plans.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from autoprune.core import config as cfg
from autoprune.core.errors import AutopruneError, SearchInterrupted, TrialsFailed
from autoprune.core.inputs import as_spec
from autoprune.core.records import (
    FINISHED,
    RUN_FORMAT,
    BudgetEntry,
    FinetuneEntry,
    RunConfig,
    Status,
    StudyEntry,
    at,
    ratios_of,
    status_of,
)
from autoprune.latency.budget import judged_ms
from autoprune.latency.cache import LatencyCache
from autoprune.latency.cost import CostModel, channel_block
from autoprune.latency.measure import (
    baseline_latency,
    latency_for,
    reference_record,
    run_references,
    thinned_reference,
)
from autoprune.latency.profiles import DEFAULT_PROFILE, resolve_profile
from autoprune.latency.reference import Reference, thinned_model
from autoprune.latency.widths import channel_multiple
from autoprune.load.models import architecture_fingerprint, fingerprint
from autoprune.prune.engine import count_macs_params, prune
from autoprune.prune.plan import Plan
from autoprune.report.frames import (
    best_within_budget,
    trials_frame,
    write_pareto,
    write_trials,
)
from autoprune.report.html import write_report
from autoprune.report.progress import SearchProgress
from autoprune.space.sensitivity import load_sensitivity, sensitivity_seeds
from autoprune.study.arguments import check_address, check_search, choice, positive
from autoprune.study.options import RunOptions
from autoprune.study.outputs import (
    Checkpoint,
    RunOutputs,
    check_out,
    draw_plots,
    existing_run,
    new_run,
)
from autoprune.study.repair import BudgetAim, shifted
from autoprune.study.samplers import (
    list_samplers,
    reads_infeasible_values,
    uniform_seeds,
)
from autoprune.study.storage import (
    check_storage,
    load_study,
    reconcile,
    storage_url,
    study_name,
)
from autoprune.study.trial import TrialSettings, deployed_accuracy, quantization_inputs
from autoprune.study.workload import Workload, load_workload
from autoprune.train.finetune import FinetuneConfig, evaluate


@dataclass(frozen=True)
class SearchResult:
    run_dir: Path  # where this process wrote the run (for a URL: its local copy)
    trials: pd.DataFrame
    pareto: pd.DataFrame
    budget_ms: float  # on the primary profile
    budgets_ms: dict[str, float]  # profile name -> budget in ms
    baseline: dict[str, Any]
    plot: Path | None
    location: str = ""  # where the run is kept: ``run_dir``, or the URL given as ``out``


def measure_baseline(work: Workload, *, cache: LatencyCache | None = None
                     ) -> tuple[dict[str, Any], dict[str, Reference]]:
    """The unpruned model's accuracy, size and latency on every profile (the primary's also unsuffixed),
    and, per pooled profile, the reference every trial is timed against (``reference.thinned_model``)."""
    macs, params = count_macs_params(work.model, input_shape=work.input_shape)
    base_acc = evaluate(work.model, work.data.trial_val, metric=work.metric)
    base: dict[str, Any] = {"accuracy": base_acc, "macs": macs, "params": params, "profiles": {}}
    arch = architecture_fingerprint(work.model)
    refs: dict[str, Reference] = {}
    calibration = quantization_inputs(work.data, work.profiles)
    deployed = deployed_accuracy(work.model, work.data, work.profiles, input_shape=work.input_shape,
                                 calibration=calibration)
    space = work.space
    thin = None
    if any(thinned_reference(p) for p in work.profiles):
        try:
            thin = thinned_model(work.model, groups=list(space.groups), input_shape=work.input_shape,
                                 round_to=space.round_to, ignored=space.ignored)
        except Exception:  # noqa: BLE001 - the unpruned model is as valid a reference, only slower to time
            thin = None
    for i, profile in enumerate(work.profiles):
        lat, ref = baseline_latency(work.model, profile, input_shape=work.input_shape, arch_key=arch, cache=cache,
                                    calibration=calibration, reference_model=thin)
        if ref is not None:
            refs[profile.name] = ref
        figure = {"latency_p50_ms": lat.p50_ms, "latency_ci_low_ms": lat.ci_low_ms,
                  "latency_ci_high_ms": lat.ci_high_ms, "latency_p90_ms": lat.p90_ms, "method": lat.method,
                  "node": lat.node, "latency": lat.describe(), "quantization": profile.quantization}
        if profile.name in deployed:
            figure["accuracy"] = deployed[profile.name]  # the unpruned model as deployed there (INT8)
        if ref is not None and ref.name == "thinned":
            figure["reference"] = reference_record(ref, groups=list(space.groups), round_to=space.round_to,
                                                   ignored=space.ignored)
        base["profiles"][profile.name] = figure
        if i == 0:
            base.update(figure)
            if profile.name in deployed:
                base["accuracy_float"] = base_acc
    return base, refs


def search(*, budget: str | Sequence[str] = "50ms", model: str = "builtin:demo", data: str = "builtin:digits",
           space: str | Path | None = None, profile: str | Path | Sequence[str | Path] = DEFAULT_PROFILE,
           trials: int | None = None, concurrency: int = 1, seed: int = 0, finetune_steps: int = 30,
           criterion: str | None = None, out: str | Path = "runs", quiet: bool = False, sampler: str = "tpe",
           precheck: bool = True, bn_recalibration: int = 10, early_stop: str = "none",
           initial_plans: Sequence[dict[str, float]] | None = None, storage: str | None = None,
           address: str | None = None, cpus_per_trial: float | None = None, gpus_per_trial: float = 0.0,
           resume: str | Path | None = None, sensitivity: str | Path | None = None,
           budget_confidence: str = "upper", formulation: str = "budget",
           seed_plans: str | Sequence[str] | None = None, weights: str | Path | None = None,
           metric: str = "top1", loss: str = "cross_entropy", val_samples: int | None = None, confirm: int = 3,
           confirm_seeds: int = 2, landing_moves: int = 2) -> SearchResult:
    """Search per-group prune ratios for the best metric/latency trade-off under the budget(s).

    ``profile`` may name several hardware profiles: every trial is measured on each. ``budget``
    may be several, one per profile (``50ms@cpu-1thread-b1``, ``0.5x@cpu-default``); the first
    budget's profile is the primary one, whose latency is the second objective.

    ``precheck`` reports a plan whose latency misses a budget as infeasible without fine-tuning
    it. ``initial_plans`` are tried first, as given (default: the seed plans; with ``front``,
    uniform ratios bracketing the budget; ``[]`` for none; with ``sensitivity``, a sensitivity.csv, plans that prune the least sensitive groups
    most come first, then the middle uniform plan). The study lives in ``storage`` (an Optuna RDB URL; default ``RUN/study.db``).
    ``resume`` continues the run in that directory with its own settings, up to its trial count
    (or ``trials``, when given); only ``concurrency``, ``address``, the per-trial resources and
    ``quiet`` are taken from this call. ``budget_confidence``: a plan meets a budget when its
    latency's 95 % CI lies within it (``upper``, default) or when its point estimate does (``p50``).

    ``formulation``: ``budget`` (default) optimises the metric among plans moved onto the budget's
    boundary (each proposal's ratios shifted together until its predicted latency meets the
    budget, see ``repair``); ``front`` searches accuracy and latency as two objectives, spreading
    trials along the whole front. Both report the front of every trial. ``seed_plans``: the cheap
    answers tried first (``uniform``, ``global`` = Torch-Pruning global pruning, ``sensitivity`` =
    greedy from a sensitivity table, computed here when ``sensitivity`` is not given); budget
    formulation only (``front`` seeds uniform plans bracketing the budget).

    ``weights``: a state_dict file loaded into ``model``. ``metric`` ranks plans (``top1``, ``top5``,
    ``next_token_top1``, ``perplexity`` or ``package.module:fn(model, loader) -> float``; higher is better
    unless the function says ``direction = "minimize"``, as perplexity does) and ``loss`` trains them (``cross_entropy`` or
    ``package.module:fn(outputs, targets)``). ``val_samples``: trials evaluate on a fixed, seeded
    subset of that many validation samples (``apply`` reports the full set).

    ``confirm``: after the trials, the top that many distinct plans within budget are re-trained
    with ``confirm_seeds`` fresh seeds each; their mean (``confirmed_accuracy``, with its sd) names
    ``best``, so the pick is not the luckiest of N noisy trials (0: off).

    ``landing_moves``: in the budget formulation, a trial whose measured plan misses the budget or
    sits under 90 % of it re-measures up to that many nearby plans (one group a grid step at a
    time) and fine-tunes the least pruned one within budget (0: off; ``autoprune.study.landing``).
    """
    if resume is not None:
        return _resume(resume, trials=trials, concurrency=concurrency, quiet=quiet, address=address,
                       cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial)
    args = check_search(budget=budget, profile=profile, trials=trials, concurrency=concurrency,
                        finetune_steps=finetune_steps, bn_recalibration=bn_recalibration, confirm=confirm,
                        confirm_seeds=confirm_seeds, landing_moves=landing_moves, early_stop=early_stop,
                        budget_confidence=budget_confidence, formulation=formulation, sampler=sampler,
                        seed_plans=seed_plans, sensitivity=sensitivity, address=address,
                        out=out, gpus_per_trial=gpus_per_trial)
    choice("sampler", sampler, list_samplers())
    profiles, budgets, trials, seed_names = args.profiles, args.budgets, args.trials, args.seed_plans
    if storage is not None:
        check_storage(storage)
    check_out(out)
    progress = SearchProgress(total=trials, quiet=quiet, budget_rule=budget_confidence)
    with progress.phase("loading model, data and space", key="load_s"):
        work = load_workload(model=model, data=data, space=space, profiles=profiles, criterion=criterion,
                             weights=weights, metric=metric, loss=loss, val_samples=val_samples)
    progress.sense = work.sense
    if initial_plans is not None:
        initial_plans = [work.space.check_plan(p, source=f"initial plan {i}") for i, p in enumerate(initial_plans)]
    sens_table = load_sensitivity(sensitivity, space=work.space) if sensitivity is not None else None

    # tune_runner imports Ray: keep it off the bad-input path above
    from autoprune.study.ray_backend import ray_session

    with ray_session(progress, address=address) as cache:
        baseline, references, budgets_ms = _measure_start(work, budgets, cache=cache, progress=progress)
        if formulation == "budget" and all(baseline["profiles"][p]["latency_p50_ms"] <= ms
                                           for p, ms in budgets_ms.items()):
            # Every plan would be repaired back to the unpruned model: nothing to aim at.
            progress.print("the unpruned model already meets every budget: searching the whole accuracy/latency "
                           "front instead (formulation front)")
            formulation, sampler = "front", "tpe" if sampler == "local" else sampler
        aim = None
        if formulation == "budget":
            with progress.phase("calibrating the latency model: uniform plans measured", key="cost_s"):
                aim = budget_aim(work, budgets_ms=budgets_ms, baseline=baseline)
                measured_plans = calibrate_aim(aim, work, references=references, cache=cache)
            check_reach(aim, measured=measured_plans)
        land_initial = initial_plans is None and formulation == "budget"  # seeds land; plans a user lists run as given
        if initial_plans is None:
            initial_plans = _first_plans(work, aim, formulation=formulation, seed_names=seed_names,
                                         sens_table=sens_table, baseline=baseline, budgets_ms=budgets_ms,
                                         progress=progress)
        outputs = new_run(out, warn=progress.print)
        run_dir = outputs.local
        finetune = FinetuneConfig(steps=finetune_steps, seed=seed)
        primary, base_fp = work.profiles[0].name, fingerprint(work.model)
        run_config = RunConfig(
            format=RUN_FORMAT, model=model, weights=None if weights is None else str(weights),
            model_fingerprint=base_fp, data=data, metric=metric, loss=loss, val_samples=val_samples,
            metric_direction=work.sense.direction, metric_percent=work.sense.percent,
            preprocessing=work.data.preprocessing, **as_spec(work.input_shape).record(),
            budget=str(budgets[0]), budget_ms=budgets_ms[primary],
            budgets={b.profile: BudgetEntry(budget=str(b), ms=budgets_ms[b.profile]) for b in budgets},
            trials=trials, concurrency=concurrency, seed=seed, sampler=sampler, budget_confidence=budget_confidence,
            formulation=formulation, seed_plans=list(seed_names), confirm=confirm, confirm_seeds=confirm_seeds,
            landing_moves=landing_moves if formulation == "budget" else 0, precheck=precheck,
            bn_recalibration=bn_recalibration, early_stop=early_stop,
            eval_every=max(1, finetune_steps // 4) if early_stop == "asha" else 0,
            finetune=FinetuneEntry(steps=finetune_steps, lr=finetune.lr, batch_size=finetune.batch_size),
            study=StudyEntry(storage=storage, name=study_name(run_dir, storage)),
            initial_plans=[dict(p) for p in initial_plans],
            seeded_from=((str(sensitivity) if sensitivity is not None else "uniform ratios") if formulation == "front"
                         else ", ".join(seed_names) or "none"),
            profiles=[p.model_dump(mode="json") for p in work.profiles], space=work.space.model_dump(mode="json"),
            plan={"criterion": work.space.criterion, "round_to": work.space.round_to, "ignored": work.space.ignored,
                  "base_model": model, "base_fingerprint": base_fp, "seed": seed},
            baseline=baseline)
        _write_run_files(run_config, work, run_dir)
        opts = _run_options(run_config, run_dir, trials=trials, concurrency=concurrency,
                            cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial,
                            initial_plans=tuple(initial_plans), aim=aim, land_initial=land_initial)
        outputs.sync()  # the config is there before the first trial ends
        return _execute(work, outputs, run_config, opts, cache=cache, progress=progress, rows=[],
                        references=references)


def _measure_start(work: Workload, budgets: Sequence[Any], *, cache: LatencyCache, progress: SearchProgress
                   ) -> tuple[dict[str, Any], dict[str, Reference], dict[str, float]]:
    """The unpruned model measured on every profile, and each budget in ms (a ``0.5x`` budget is a
    share of that figure)."""
    names = ", ".join(p.name for p in work.profiles)
    with progress.phase(f"measuring the unpruned model on {names}", key="baseline_s"):
        baseline, references = measure_baseline(work, cache=cache)
    budgets_ms = {b.profile: b.resolve_ms(baseline_ms=baseline["profiles"][b.profile]["latency_p50_ms"])
                  for b in budgets}
    progress.baseline(baseline, budgets=budgets, budgets_ms=budgets_ms)
    return baseline, references, budgets_ms


def _first_plans(work: Workload, aim: BudgetAim | None, *, formulation: str, seed_names: Sequence[str],
                 sens_table: pd.DataFrame | None, baseline: dict[str, Any], budgets_ms: dict[str, float],
                 progress: SearchProgress) -> list[dict[str, float]]:
    """The plans tried first when the user lists none: the seed plans on the budget, or for the
    front uniform ratios bracketing it (the least sensitive groups pruned most first, with a table)."""
    if formulation == "budget":
        return _seeds(work, aim, seed_names, sens_table=sens_table, progress=progress)
    targets = {p: (ms, baseline["profiles"][p]["latency_p50_ms"]) for p, ms in budgets_ms.items()}
    plans = uniform_seeds(work.space, budgets=targets)
    if sens_table is not None:
        tightest = min(ms / base for ms, base in targets.values())
        seeds = sensitivity_seeds(work.space, sens_table, target=tightest)
        plans = seeds + [p for p in plans[1:2] if p not in seeds]
    return plans


def _write_run_files(run_config: RunConfig, work: Workload, run_dir: Path) -> None:
    """config.yaml, each profile and the space: what resume, apply and a teammate read back."""
    run_config.write(run_dir)
    for p in work.profiles:
        cfg.dump(p, run_dir / "profiles" / f"{p.name}.yaml")
    work.space.save(run_dir / "space.yaml")


def budget_aim(work: Workload, *, budgets_ms: dict[str, float], baseline: dict[str, Any],
               rows: Sequence[dict[str, Any]] = (), rule: str = "upper") -> BudgetAim:
    """The repair's cost model and latency models (fed with any trials already measured)."""
    cost = CostModel.build(work.model, input_shape=work.input_shape, space=work.space)
    blocks = {p.name: channel_block(channel_multiple(p), cpu=p.on_cpu) for p in work.profiles}
    aim = BudgetAim.build(space=work.space, cost=cost, budgets_ms=budgets_ms, blocks=blocks,
                          baseline_ms={p: baseline["profiles"][p]["latency_p50_ms"] for p in budgets_ms})
    for row in rows:
        ratios = ratios_of(row)
        measured = {p: row.get(at("latency_p50_ms", p)) for p in budgets_ms}
        if ratios and all(isinstance(v, (int, float)) and not math.isnan(v) for v in measured.values()):
            aim.landed(ratios, measured_ms=measured, judged_ms={p: judged_ms(row, p, rule=rule) for p in budgets_ms})
    return aim


def calibrate_aim(aim: BudgetAim, work: Workload, *, references: dict[str, Reference], cache: LatencyCache | None,
                  ratios: Sequence[float] = (0.25, 0.5, 0.75)) -> dict[tuple, dict[str, float]]:
    """Measure uniform plans across the space on every budgeted profile, so the latency model starts
    from measured points spread over the range (how far latency falls with MACs differs widely
    between models and targets: on a small ResNet at batch 64, half the MACs left 80 % of the time).
    Returns each measured plan (``plan_key``) -> profile -> p50 ms."""
    from autoprune.study.budgeted import plan_key

    calibration = quantization_inputs(work.data, work.profiles)
    profiles = [p for p in work.profiles if p.name in aim.budgets_ms]
    measured_plans: dict[tuple, dict[str, float]] = {}
    for r in ratios:
        plan = shifted(dict.fromkeys(work.space.groups, r), 0.0, work.space)
        if plan_key(plan) in measured_plans:
            continue
        # L1 whatever the space's criterion: latency depends on the shapes only, and L1 needs no
        # calibration batch (Taylor, APoZ and the activation criteria do).
        pruned = prune(work.model, Plan(ratios=plan, criterion="l1", round_to=work.space.round_to,
                                        ignored=work.space.ignored), input_shape=work.input_shape)
        arch = architecture_fingerprint(pruned)
        # Stored on this machine: every run of this model prunes these plans to the same bytes and
        # times them against the same reference, so a search after the first starts without them.
        measured = {p.name: latency_for(pruned, p, input_shape=work.input_shape, arch_key=arch, cache=cache,
                                        reference=references.get(p.name), calibration=calibration,
                                        stored=True).p50_ms
                    for p in profiles}
        aim.landed(plan, measured_ms=measured, judged_ms={})
        measured_plans[plan_key(plan)] = measured
    return measured_plans


def check_reach(aim: BudgetAim, *, measured: dict[tuple, dict[str, float]]) -> None:
    """Refuse, before any trial, a budget that no plan of the space meets, or that only its most-pruned
    corner (every group at its ``high``) meets: there would be nothing to search.

    Latency falls as any ratio rises, so the corner with one group a grid step lower is the next
    fastest plan in each direction: when none of these fits, nothing but the corner can."""
    from autoprune.study.budgeted import plan_key

    space = aim.space
    corner = shifted({name: g.high for name, g in space.groups.items()}, 0.0, space)
    models, predicted = aim.models, aim.predict(corner)
    seen = measured.get(plan_key(corner), {})
    over = [p for p, b in aim.budgets_ms.items() if seen.get(p, predicted[p]) > b]
    highs = sorted({g.high for g in space.groups.values()})
    high = f"{highs[0]:g}" if len(highs) == 1 else f"{highs[0]:g}-{highs[-1]:g}"

    def figure(p: str) -> str:
        how = "measured" if p in seen else "predicted"
        return f"{seen.get(p, predicted[p]):.4g} ms ({how}) against the budget {aim.budgets_ms[p]:.4g} ms on {p}"

    if over:
        raise AutopruneError(f"no plan of the search space meets the budget: its most-pruned corner (every group at "
                             f"its high, {high}) is {figure(over[0])}; raise the space's high or loosen the budget")
    # The corner's neighbours, priced through the corner's measured figure where there is one (the
    # latency model's error is largest at the space's edge; one grid step from it, a ratio is exact).
    scale = {p: seen[p] / predicted[p] if p in seen and predicted[p] > 0 else 1.0 for p in aim.budgets_ms}
    kept = aim.cost.kept(corner)

    def fits(plan: dict[str, float]) -> bool:
        pred = aim.predict(plan)
        return all(pred[p] * scale[p] <= b * (1 - models[p].margin) for p, b in aim.budgets_ms.items())

    below = []
    for name, g in space.groups.items():
        grid = g.choices()
        i = grid.index(corner[name])
        if i > 0 and aim.cost.kept({**corner, name: grid[i - 1]}) != kept:
            below.append({**corner, name: grid[i - 1]})
    if below and not any(fits(plan) for plan in below):
        p = next(iter(aim.budgets_ms))
        raise AutopruneError(f"only the search space's most-pruned corner (every group at its high, {high}) meets the "
                             f"budget: it is {figure(p)}; nothing would be left to search. Raise the space's high "
                             "or loosen the budget")


def _seeds(work: Workload, aim: BudgetAim, names: Sequence[str], *, sens_table: pd.DataFrame | None,
           progress: SearchProgress) -> list[dict[str, float]]:
    """The seed plans, each on the budget's boundary, duplicates dropped (in the order asked)."""
    from autoprune.study.seeds import (
        global_seed,
        latency_scores,
        latency_seed,
        quick_sensitivity,
        sensitivity_seed,
        uniform_seed,
    )

    plans: dict[str, dict[str, float]] = {}
    for name in names:
        if name == "uniform":
            plans[name] = uniform_seed(aim)
        elif name == "global":
            with progress.phase("seed plan: Torch-Pruning global pruning at the budget", key="seed_global_s"):
                plans[name] = global_seed(aim, work.model, input_shape=work.input_shape)
        elif name == "latency":
            with progress.phase("seed plan: latency-aware (Taylor loss per millisecond saved)", key="seed_latency_s"):
                scores = latency_scores(work.model, work.data, input_shape=work.input_shape,
                                        ignored=work.space.ignored, loss=work.loss)
                plans[name] = latency_seed(aim, scores)
        elif name == "sensitivity":
            if sens_table is None:
                n = len(work.space.groups) * 3
                with progress.phase(f"seed plan: sensitivity of each group alone ({n} evaluations)",
                                    key="seed_sensitivity_s"):
                    sens_table = quick_sensitivity(work.model, work.data, space=work.space,
                                                   input_shape=work.input_shape, metric=work.metric,
                                                   sense=work.sense)
            plans[name] = sensitivity_seed(aim, sens_table)
    unique: list[dict[str, float]] = []
    for plan in plans.values():
        if plan not in unique:
            unique.append(plan)
    return unique


def _run_options(run_config: RunConfig, run_dir: Path, **kwargs: Any) -> RunOptions:
    return RunOptions(seed=run_config.seed, sampler=run_config.sampler, early_stop=run_config.early_stop,
                      formulation=run_config.formulation, storage=storage_url(run_dir, run_config.study.storage),
                      study_name=run_config.study.name, **kwargs)


def _execute(work: Workload, outputs: RunOutputs, run_config: RunConfig, opts: RunOptions, *, cache: LatencyCache,
             progress: SearchProgress, rows: list[dict[str, Any]], references: dict[str, Reference]) -> SearchResult:
    """Run the trials of a new or resumed run, then write its outputs (also after Ctrl-C)."""
    from autoprune.study.ray_backend import run_trials

    budgets_ms = run_config.budgets_ms
    ft = run_config.finetune
    settings = TrialSettings(
        input_shape=work.input_shape, profiles=work.profiles, cache=cache, budgets_ms=budgets_ms,
        finetune=FinetuneConfig(steps=ft.steps, lr=ft.lr, batch_size=ft.batch_size, seed=run_config.seed,
                                loss=work.loss, workers=work.data.workers),
        metric=work.metric, sense=work.sense, precheck=run_config.precheck,
        evaluate_infeasible=reads_infeasible_values(run_config.sampler), bn_recalibration=run_config.bn_recalibration,
        eval_every=run_config.eval_every, screen=run_config.early_stop == "bn", references=references, budget_rule=run_config.budget_confidence,
        landing_moves=run_config.landing_moves)
    profiles = [p.name for p in work.profiles]
    written = Checkpoint(outputs, budgets_ms=budgets_ms, baseline=run_config.baseline, profiles=profiles,
                         timings=progress.timings, sense=work.sense)
    rows, interrupted, exhausted = run_trials(work=work, settings=settings, plan_fields=run_config.plan, budgets_ms=budgets_ms,
                                   opts=opts, run_dir=outputs.local, progress=progress, rows=rows, on_rows=written)
    if not interrupted and run_config.confirm:
        from autoprune.study.confirm import confirm, with_confirmations
        from autoprune.study.ray_backend import trial_resources

        confirmations = confirm(rows, model=work.model, data=work.data, settings=settings,
                                plan_fields=run_config.plan, k=run_config.confirm, seeds=run_config.confirm_seeds,
                                resources=trial_resources(opts), progress=progress)
        rows = with_confirmations(rows, confirmations)
    result = finish(outputs, rows, budgets_ms=budgets_ms, baseline=run_config.baseline, profiles=profiles,
                    progress=progress, exhausted=exhausted)
    if interrupted:
        raise SearchInterrupted(outputs.local, done=len(rows), total=run_config.trials, location=outputs.where())
    return result


def _resume(run: str | Path, *, trials: int | None, concurrency: int, quiet: bool, address: str | None,
            cpus_per_trial: float | None, gpus_per_trial: float) -> SearchResult:
    """Continue a run (stopped by Ctrl-C, ``kill -9`` or a crash) up to its trial count; a run at a
    URL is fetched, continued here and pushed back as its trials end."""
    check_address(address)
    outputs = existing_run(run, what="--resume")
    run_dir = outputs.local
    run_config = RunConfig.read(run_dir, what="--resume")
    total = run_config.trials if trials is None else positive("trials", trials)
    positive("concurrency", concurrency)
    rows = (pd.read_csv(run_dir / "trials.csv").to_dict("records")
            if (run_dir / "trials.csv").is_file() else [])
    rows = [r for r in rows if status_of(r) in FINISHED]
    progress = SearchProgress(total=total, quiet=quiet, done=len(rows), budget_rule=run_config.budget_confidence)
    outputs.warn = progress.print
    profiles = [resolve_profile(run_dir / "profiles" / f"{p['name']}.yaml") for p in run_config.profiles]
    with progress.phase(f"resuming {outputs.where()}: loading model, data and space", key="load_s"):
        work = load_workload(model=run_config.model, data=run_config.data, space=run_dir / "space.yaml",
                             profiles=profiles, weights=run_config.weights, metric=run_config.metric,
                             loss=run_config.loss, val_samples=run_config.val_samples)
    progress.sense = work.sense
    if fingerprint(work.model) != run_config.model_fingerprint:
        raise AutopruneError(f"--resume {outputs.where()}: model {run_config.model!r} no longer has the weights this "
                             "run searched (fingerprint differs); start a new search for the new weights")
    url = storage_url(run_dir, run_config.study.storage)
    check_storage(url)
    requeued = reconcile(load_study(url, run_config.study.name), rows=rows, budgets_ms=run_config.budgets_ms,
                         budget_rule=run_config.budget_confidence)
    remaining = total - len(rows)
    progress.print(f"{len(rows)} of {total} trials already finished; {requeued} interrupted plan(s) queued again")
    if remaining <= 0:
        return finish(outputs, rows, budgets_ms=run_config.budgets_ms,
                      baseline=run_config.baseline, profiles=[p.name for p in profiles], progress=progress)
    if total != run_config.trials:
        run_config = run_config.model_copy(update={"trials": total})
        run_config.write(run_dir)

    from autoprune.study.ray_backend import ray_session

    with ray_session(progress, address=address) as cache:
        aim = (budget_aim(work, budgets_ms=run_config.budgets_ms, baseline=run_config.baseline, rows=rows,
                           rule=run_config.budget_confidence)
               if run_config.formulation == "budget" else None)
        opts = _run_options(run_config, run_dir, trials=remaining, concurrency=concurrency,
                            cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial, aim=aim)
        references = run_references(work.model, work.profiles, input_shape=work.input_shape,
                                    baseline=run_config.baseline,
                                    calibration=quantization_inputs(work.data, work.profiles))
        return _execute(work, outputs, run_config, opts, cache=cache, progress=progress, rows=rows,
                        references=references)


def _common_failure(table: pd.DataFrame) -> str:
    """The most common reason trials failed, with its count: ``"evaluate: … (3 of 4)"``."""
    failed = table[table["status"] == Status.FAILED]
    causes = failed["error"].fillna("unknown error").value_counts() if "error" in failed else pd.Series(dtype=int)
    return f"{causes.index[0]} ({causes.iloc[0]} of {len(failed)})" if len(causes) else "unknown"


def finish(outputs: RunOutputs, rows: list[dict[str, Any]], *, budgets_ms: dict[str, float], baseline: dict[str, Any],
           profiles: list[str], progress: SearchProgress, exhausted: bool = False) -> SearchResult:
    """Write trials.csv, the Pareto front(s) and the plot for whatever finished (and push them to the
    run's URL: an error here names the local copy that holds everything). ``exhausted``: the search
    ended before its trial count because every plan of the space had run (a finished run all the same)."""
    run_dir = outputs.local
    sense = progress.sense
    table = trials_frame(rows, baseline=baseline, profiles=profiles)
    write_trials(table, run_dir)
    front = write_pareto(table, run_dir, profiles=profiles, sense=sense)
    plot, channels_png = draw_plots(run_dir, table, front, budgets_ms=budgets_ms, baseline=baseline,
                                    profiles=profiles, sense=sense)
    n_failed = int((table["status"] == Status.FAILED).sum())
    counts = {k: int(v) for k, v in table["status"].value_counts().items()}
    cfg.dump({"trials": len(table), "failed": n_failed, "status": counts, "pareto_size": len(front),
              "space_exhausted": exhausted,
              "pareto_channels": str(channels_png) if channels_png else None,
              "budgets_ms": budgets_ms, "budget_confidence": progress.budget_rule,
              "timings_s": {**progress.timings, "total_s": time.perf_counter() - progress.t0}},
             run_dir / "summary.yaml")
    cause = _common_failure(table) if n_failed else None
    try:  # report.html: the front, each plan, the trials, config and timings in one page
        write_report(run_dir)
    except Exception as exc:  # noqa: BLE001 - a page for people; the run's results are already written above
        progress.print(f"[yellow]report.html not written[/]: {type(exc).__name__}: {exc}")
    outputs.sync(final=True)
    progress.summary(front, run_dir=run_dir, where=outputs.where, plot=plot, counts=counts,
                     best=best_within_budget(table, sense=sense), failure=cause)
    if n_failed and not counts.get(Status.COMPLETED, 0):  # nothing to apply, and failures are why
        raise TrialsFailed(run_dir, failed=n_failed, cause=cause or "unknown", location=outputs.where(),
                           total=len(table))
    return SearchResult(run_dir=run_dir, trials=table, pareto=front, budget_ms=budgets_ms[profiles[0]],
                        budgets_ms=budgets_ms, baseline=baseline, plot=plot, location=outputs.where())
