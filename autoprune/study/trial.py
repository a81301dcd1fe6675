"""One trial: prune → export ONNX and measure latency → (if within budget) fine-tune briefly → evaluate.

Latency depends only on the pruned shapes, so it is known before any training: a plan that misses
a budget is reported as infeasible without spending a fine-tune on it. No Ray here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from autoprune.core.errors import AutopruneError
from autoprune.core.metric import ACCURACY, MetricSense
from autoprune.core.records import PHASES, ProfileLatency
from autoprune.core.records import at as at_profile
from autoprune.latency import node_lock
from autoprune.latency.budget import judged_ms, over_budget
from autoprune.latency.cache import LatencyCache
from autoprune.latency.measure import latency_for
from autoprune.latency.profiles import HardwareProfile
from autoprune.latency.reference import Reference
from autoprune.load.data import DataSplits
from autoprune.load.models import architecture_fingerprint, fingerprint
from autoprune.prune.engine import count_macs_params, prune
from autoprune.prune.plan import Plan
from autoprune.study import landing
from autoprune.study.landing import Ladder
from autoprune.train.finetune import FinetuneConfig, evaluate, finetune, recalibrate_bn
from autoprune.train.task import resolve_loss


class TrialFailed(RuntimeError):
    """A trial phase raised; the message names the phase and the cause."""


@dataclass(frozen=True, kw_only=True)
class TrialSettings:
    """``profiles[0]`` is the primary profile: its latency is the search's second objective."""

    input_shape: tuple[int, ...]
    profiles: tuple[HardwareProfile, ...]
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    calibration_size: int = 64
    cache: LatencyCache | None = None
    budgets_ms: Mapping[str, float] = field(default_factory=dict)  # profile name -> budget
    precheck: bool = True  # skip the fine-tune of a plan whose latency misses a budget
    bn_recalibration: int = 0  # batches of adaptive-BN recalibration before evaluation (0: off)
    eval_every: int = 0  # report accuracy every N fine-tune steps (for an early-stopping scheduler)
    screen: bool = False  # report the adaptive-BN accuracy before fine-tuning (fidelity 1): a scheduler may stop there
    device: str = "cpu"  # where fine-tuning runs; latency is measured on the profiles regardless
    references: Mapping[str, Reference] = field(default_factory=dict)  # profile name -> what pooled figures divide by
    budget_rule: str = "upper"  # a budget is met when the CI's upper end (or, "p50", the estimate) is within it
    metric: str = "top1"  # what ranks plans (autoprune.train.task); evaluated on data.trial_val
    sense: MetricSense = ACCURACY  # which way the metric is better (the value an unscored plan is told)
    evaluate_infeasible: bool = False  # BN-recalibrate and evaluate plans over budget too (a GP models every value)
    landing_moves: int = 0  # re-measures along the trial's ladder to land on the budget (0: run the plan as given)


def quantization_inputs(data: DataSplits, profiles: Sequence[HardwareProfile]) -> torch.Tensor | None:
    """Training inputs for the profiles that quantize statically (the same ones in every trial)."""
    counts = [p.calibration_samples for p in profiles if p.quantization == "static"]
    if not counts:
        return None
    from autoprune.latency.quantize import calibration_samples

    return calibration_samples(data.train, count=max(counts), seed=0)


def deployed_accuracy(model: nn.Module, data: DataSplits, profiles: Sequence[HardwareProfile], *,
                      input_shape: tuple[int, ...], calibration: torch.Tensor | None,
                      workdir: str | Path | None = None) -> dict[str, float]:
    """Validation accuracy of the model as each profile whose numerics differ from torch's deploys it
    (INT8; OpenVINO below f32), run by the profile's runtime at this process's thread count."""
    import tempfile

    from autoprune.latency.measure import deployed_onnx
    from autoprune.latency.quantize import onnx_accuracy

    out = {}
    with tempfile.TemporaryDirectory(prefix="autoprune-int8-", dir=workdir) as tmp:
        for p in profiles:
            if not p.numerics_differ:
                continue
            path = deployed_onnx(model, p, Path(tmp) / f"{p.name}.onnx", input_shape=input_shape,
                                 calibration=calibration)
            settings = {**p.runtime_settings(), "intra_op_threads": torch.get_num_threads(), "inter_op_threads": 0}
            if p.runtime == "onnxruntime":  # the CPU provider scores what any provider runs (INT8 QDQ is exact there)
                settings["provider"] = "CPUExecutionProvider"
            out[p.name] = onnx_accuracy(path, data.trial_val, settings=settings)
    return out


def calibration_batch(dataset: Dataset, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``size`` training samples, in order: the same batch in every trial and in apply."""
    x, y = next(iter(DataLoader(dataset, batch_size=size, shuffle=False)))
    return x, y


def _land(plan: Plan, ladder: Ladder, *, first: tuple[nn.Module, dict[str, Any]],
          measure: Callable[[Plan], tuple[nn.Module, dict[str, Any]]],
          settings: TrialSettings) -> tuple[nn.Module, dict[str, Any]]:
    """Measure along the ladder until the plan sits within the budget's landing window (or the moves
    run out); the least-pruned plan measured within budget is kept. Every measurement is reported
    (``landing_probes``) so the driver's latency model learns from all of them."""
    budgets, rule = settings.budgets_ms, settings.budget_rule
    runs = {ladder.start: first}
    at = ladder.start
    for _ in range(settings.landing_moves):
        judged = {p: judged_ms(runs[at][1], p, rule=rule) for p in budgets}
        nxt = landing.next_rung(ladder, at=at, judged_ms=judged, budgets_ms=budgets, tried=list(runs))
        if nxt is None:
            break
        runs[nxt] = measure(plan.model_copy(update={"ratios": dict(ladder.rungs[nxt].ratios)}))
        at = nxt
    keep = landing.pick([(i, not over_budget(m, budgets, rule=rule)) for i, (_, m) in runs.items()])
    pruned, metrics = runs[keep]
    probes = [{"ratios": ladder.rungs[i].ratios,
               "measured_ms": {p: m[at_profile("latency_p50_ms", p)] for p in budgets},
               "judged_ms": {p: judged_ms(m, p, rule=rule) for p in budgets}} for i, (_, m) in runs.items()]
    metrics = {**metrics, "landing_moves": len(runs) - 1, "landing_probes": json.dumps(probes)}
    if keep != ladder.start:
        primary = next(iter(budgets))
        metrics["plan_run"] = json.dumps(ladder.rungs[keep].ratios)
        metrics["predicted_ms"] = ladder.rungs[keep].predicted_ms.get(primary)
    return pruned, metrics


class _Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def run(self, phase: str, fn, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        except AutopruneError as exc:  # already one line naming what was wrong (a user's function, say)
            raise TrialFailed(f"{phase}: {exc}") from exc
        except Exception as exc:
            raise TrialFailed(f"{phase}: {type(exc).__name__}: {exc}") from exc
        finally:
            self.seconds[f"{phase}_s"] = self.seconds.get(f"{phase}_s", 0.0) + time.perf_counter() - t0


def run_trial(model: nn.Module, data: DataSplits, plan: Plan, *, settings: TrialSettings,
              workdir: str | Path | None = None, ladder: Ladder | None = None,
              report: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run one plan; returns flat metrics (accuracy, latency per profile, MACs, params, phase times).

    ``finetuned`` is False for a plan the pre-check found over budget: its ``accuracy`` is then
    the one before fine-tuning (a ranking signal for the sampler, not a result). ``report`` receives
    interim metrics every ``settings.eval_every`` fine-tune steps (``final`` False), and with
    ``settings.screen`` once before fine-tuning (``fidelity`` 1, ``screen_accuracy``). With a ``ladder``
    (``plan`` is its start) and ``settings.landing_moves``, the plan is landed on the budget first
    (``autoprune.study.landing``): ``plan_run`` (JSON) then names the plan that was fine-tuned.
    """
    t_start = time.perf_counter()
    timer = _Timer()
    calib = calibration_batch(data.train, settings.calibration_size)
    quant_calib = quantization_inputs(data, settings.profiles)

    def prune_and_measure(plan: Plan) -> tuple[nn.Module, dict[str, Any]]:
        pruned = timer.run("prune", prune, model, plan, input_shape=settings.input_shape, calibration=calib,
                           loss=resolve_loss(settings.finetune.loss))
        pruned_fp = fingerprint(pruned)  # apply checks it rebuilds exactly these weights
        macs, params = timer.run("prune", count_macs_params, pruned, input_shape=settings.input_shape)
        arch = architecture_fingerprint(pruned)
        metrics: dict[str, Any] = {"macs": macs, "params": params, "arch_fingerprint": arch,
                                   "pruned_fingerprint": pruned_fp}
        for i, profile in enumerate(settings.profiles):
            stats = latency_for(pruned, profile, input_shape=settings.input_shape, arch_key=arch, cache=settings.cache,
                                workdir=workdir, reference=settings.references.get(profile.name), run=timer.run,
                                calibration=quant_calib, budget_ms=settings.budgets_ms.get(profile.name))
            metrics.update(ProfileLatency.from_stats(stats).columns(primary=i == 0))
        return pruned, metrics

    pruned, metrics = prune_and_measure(plan)
    if ladder is not None and settings.landing_moves > 0 and settings.budgets_ms:
        pruned, metrics = _land(plan, ladder, first=(pruned, metrics), measure=prune_and_measure, settings=settings)
    missed = over_budget(metrics, settings.budgets_ms, rule=settings.budget_rule)
    feasible = not (settings.precheck and missed)
    device = torch.device(settings.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    metrics["finetune_device"] = str(device)  # where this trial trained (latency: latency_node@PROFILE)
    pruned.to(device)
    if feasible or settings.evaluate_infeasible:
        if settings.bn_recalibration:
            timer.run("recalibrate", recalibrate_bn, pruned, data.train, batches=settings.bn_recalibration,
                      seed=settings.finetune.seed, device=device)
        metrics["accuracy_before_finetune"] = timer.run("evaluate", evaluate, pruned, data.trial_val, device=device,
                                                        metric=settings.metric)
        metrics["accuracy"] = metrics["accuracy_before_finetune"]
    else:
        # Over budget: Optuna ranks infeasible trials by their violation alone (TPE, NSGA-II), so the
        # metric is not computed; the sampler is told its worst value (an accuracy of 0, a perplexity
        # of inf) and trials.csv records none.
        metrics["accuracy_before_finetune"] = float("nan")
        metrics["accuracy"] = settings.sense.worst
    metrics["finetuned"] = False
    metrics["final"] = True

    def phase_times() -> dict[str, float]:
        return {f"{p}_s": timer.seconds.get(f"{p}_s", 0.0) for p in PHASES}

    if feasible and settings.screen and report is not None:
        # EagleEye's adaptive-BN score: on EfficientNet-Lite0 it ranks plans at one latency as well as
        # 20 or 60 fine-tune steps do (bench/bench_ranking.py), for the cost of a recalibration.
        report({**metrics, **phase_times(), "finetune_step": 0, "fidelity": 1,
                "screen_accuracy": metrics["accuracy_before_finetune"], "final": False})
    if feasible:
        on_step = None
        if report is not None and settings.eval_every > 0:
            def on_step(step: int, total: int, loss: float) -> None:
                if step % settings.eval_every == 0 and step < total:
                    acc = evaluate(pruned, data.trial_val, device=device, metric=settings.metric)
                    pruned.train()
                    report({**metrics, **phase_times(), "accuracy": acc, "finetune_step": step, "final": False})

        timer.run("finetune", finetune, pruned, data.train, config=settings.finetune,
                  step_guard=node_lock.training_step, device=device, on_step=on_step)
        if settings.bn_recalibration:
            # Again after the fine-tune: slow BN layers (momentum 0.01, TF-ported nets) lag behind the
            # weights after a short fine-tune, and the figure that ranks plans should not carry that lag.
            timer.run("recalibrate", recalibrate_bn, pruned, data.train, batches=settings.bn_recalibration,
                      seed=settings.finetune.seed + 1, device=device)
        metrics["accuracy"] = timer.run("evaluate", evaluate, pruned, data.trial_val, device=device,
                                        metric=settings.metric)
        metrics["finetuned"] = True
        if any(p.numerics_differ for p in settings.profiles):
            pruned.to("cpu")
            deployed = timer.run("evaluate", deployed_accuracy, pruned, data, settings.profiles,
                                 input_shape=settings.input_shape, calibration=quant_calib, workdir=workdir)
            metrics["accuracy_float"] = metrics["accuracy"]
            metrics.update({at_profile("accuracy", name): acc for name, acc in deployed.items()})
            # The search ranks what will be deployed: on an INT8 primary profile, the INT8 model's accuracy.
            metrics["accuracy"] = deployed.get(settings.profiles[0].name, metrics["accuracy"])
    metrics.update(phase_times())
    metrics["trial_s"] = time.perf_counter() - t_start
    return metrics
