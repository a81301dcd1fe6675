"""apply: prune the original model with a chosen plan, recover accuracy, export, and verify."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from autoprune.core import config as cfg
from autoprune.core.errors import AutopruneError
from autoprune.core.location import Location, local_path
from autoprune.core.metric import ACCURACY, MetricSense
from autoprune.core.mirror import local_copy_dir, push_tree, readable_run
from autoprune.core.records import RunConfig, Status, at
from autoprune.latency.budget import budget_verdicts, over_budget
from autoprune.latency.measure import latency_for, run_references
from autoprune.latency.onnx import LatencyStats, export_onnx, onnx_outputs
from autoprune.latency.pooling import describe_rule
from autoprune.latency.profiles import HardwareProfile
from autoprune.latency.sparse import latency_side_by_side, sparsity_report
from autoprune.load.models import architecture_fingerprint, fingerprint, save_checkpoint
from autoprune.prune.engine import count_macs_params, prune
from autoprune.prune.graph import first_output
from autoprune.prune.groups import channels_to_remove, find_groups
from autoprune.prune.masks import check_sparsity, magnitude_masks, make_permanent
from autoprune.prune.plan import Plan
from autoprune.report.frames import best_within_budget
from autoprune.study.trial import calibration_batch, quantization_inputs
from autoprune.study.workload import load_workload
from autoprune.train.finetune import (
    Distillation,
    FinetuneConfig,
    evaluate,
    feature_layers,
    finetune,
    recalibrate_bn,
)
from autoprune.train.task import resolve_loss

BN_BATCHES = 20  # batches of BatchNorm re-estimation in apply, after pruning and after fine-tuning


@dataclass(frozen=True)
class ApplyResult:
    out_dir: Path
    model_path: Path
    onnx_path: Path
    report_path: Path
    report: dict[str, Any]
    location: str = ""  # where the outputs are kept: ``out_dir``, or the URL they were pushed to


def read_run(run_dir: str | Path) -> tuple[Path, str, RunConfig, pd.DataFrame]:
    """The run's local directory (for a run at a URL: a refreshed local copy), its location as
    given, its config and its trials."""
    run, location = readable_run(run_dir, what="apply")
    if local_path(location) is None and not (run / "config.yaml").is_file():  # the URL, not the local copy
        raise AutopruneError(f"apply {location}: not an autoprune run (no config.yaml); pass the run that "
                             "autoprune search printed (a directory or URL)")
    conf = RunConfig.read(run, what="apply")
    if not (run / "trials.csv").is_file():
        raise AutopruneError(f"{location}: no trials.csv yet; let the search finish at least one trial")
    return run, location, conf, pd.read_csv(run / "trials.csv")


def _output_place(out: str | Path | None, *, run: Path, location: str, trial: str) -> tuple[Path, Location | None]:
    """Where apply writes (a local directory) and the URL it then pushes that to, if any: default
    ``apply-<trial>`` inside the run, wherever the run is kept. Decided (and a URL ``out`` checked)
    before the work, so a bad ``--out`` costs no fine-tune."""
    if out is None:
        if local_path(location) is not None:
            return run / f"apply-{trial}", None
        return run / f"apply-{trial}", Location.parse(location, what="apply").child(f"apply-{trial}")
    path = local_path(out)
    if path is not None:
        return path, None
    remote = Location.parse(str(out), what="--out")
    remote.check(what="--out")
    return local_copy_dir(remote), remote


def pick_trial(trials: pd.DataFrame, pick: str, *, budget: str, rule: str = "upper",
               sense: MetricSense = ACCURACY) -> pd.Series:
    """``best``: the completed plan within the budget (decided by the run's ``rule``) with the best
    metric; else a trial name or number."""
    if pick == "best":
        best = best_within_budget(trials, sense=sense)
        if best is None:
            raise AutopruneError(f"no completed trial meets the budget {budget} ({describe_rule(rule, short=True)}); "
                                 "pick one from pareto.csv "
                                 "with --pick TRIAL, or search again with more trials or a looser budget")
        return best
    name = f"trial-{int(pick):03d}" if pick.isdigit() else pick
    # An infeasible or early-stopped plan may still be applied by name: apply fine-tunes it fully.
    usable = trials[trials["status"] != Status.FAILED]
    match = usable[usable["trial"] == name]
    if match.empty:
        known = ", ".join(usable["trial"].head(8))
        raise AutopruneError(f"--pick {pick!r}: no finished trial of that name; use best or one of: {known}")
    return match.iloc[0]


def progressive_plans(model: nn.Module, plan: Plan, *, steps: int, input_shape: tuple[int, ...]
                      ) -> list[Callable[[nn.Module], Plan]]:
    """``steps`` plans that together remove what ``plan`` removes, a ``1/steps`` share of each group's
    channels at a time. Each is built against the model as it is at that step (whose channel counts
    the earlier steps reduced), so that scores are taken on the fine-tuned weights of that step."""
    total = {g.name: (g.channels, channels_to_remove(g.channels, plan.ratios.get(g.name, 0.0), plan.round_to))
             for g in find_groups(model, input_shape=input_shape, ignored=plan.ignored)}

    def step_plan(k: int) -> Callable[[nn.Module], Plan]:
        def build(current: nn.Module) -> Plan:
            now = {g.name: g.channels for g in find_groups(current, input_shape=input_shape, ignored=plan.ignored)}
            ratios = {}
            for name, (c0, removed) in total.items():
                target = c0 - round(removed * k / steps)  # channels kept after step k
                if name in now and now[name] > target:
                    ratios[name] = (now[name] - target) / now[name]
            # round_to 1: the counts above are exact; the last step lands on the plan's rounding
            return plan.model_copy(update={"ratios": ratios, "round_to": 1})
        return build

    return [step_plan(k) for k in range(1, steps + 1)]


def apply(run_dir: str | Path, *, pick: str = "best", epochs: float = 5.0, lr: float = 0.01,
          out: str | Path | None = None, quiet: bool = False, distill: bool = False, kd_alpha: float = 0.5,
          kd_temperature: float = 4.0, kd_features: str | None = None, kd_beta: float = 1000.0,
          progressive: int = 1, unstructured: float = 0.0,
          unstructured_scope: str = "global", device: str = "auto") -> ApplyResult:
    """Apply a searched plan to the original model; writes model.pt, model.onnx and report.yaml.

    Recovery: ``epochs`` of fine-tuning with warm-up and cosine annealing; ``distill`` adds knowledge
    distillation from the unpruned model (weight ``kd_alpha``, temperature ``kd_temperature``;
    ``kd_features``: layers, comma-separated or ``auto``, matched by attention transfer, weight ``kd_beta``);
    ``progressive`` > 1 prunes in that many steps, fine-tuning ``epochs / progressive`` after each.
    ``unstructured`` > 0 also zeros that fraction of the remaining weights by magnitude before the
    last fine-tune (``unstructured_scope``: global or layer threshold); the zeros shrink the
    compressed model, not the dense latency, and the report shows both. ``device``: where
    fine-tuning runs (``auto``: a GPU when there is one); the metric is the run's, on the full
    validation set.
    """
    _check_options(epochs=epochs, progressive=progressive, kd_alpha=kd_alpha, kd_temperature=kd_temperature,
                   distill=distill, kd_features=kd_features, unstructured=unstructured,
                   unstructured_scope=unstructured_scope)
    from autoprune.core.device import resolve_device

    dev = resolve_device(device)
    console = Console(quiet=quiet, highlight=False)
    chosen = _choose(run_dir, pick=str(pick), out=out, console=console)
    conf, sense = chosen.conf, chosen.conf.sense
    work = load_workload(model=conf.model, data=conf.data, space=None, profiles=chosen.profiles,
                         weights=conf.weights, metric=conf.metric, loss=conf.loss)
    chosen.plan.check_base(fingerprint(work.model), model=conf.model)
    # The figures apply compares with: the unpruned model and the trial, on the full validation set.
    with console.status(f"evaluating the unpruned model ({work.metric}, full validation set)"):
        acc_unpruned = evaluate(work.model.to(dev), work.data.val, device=dev, metric=work.metric)
    work.model.to("cpu")
    warnings_: list[str] = []
    kd = _distillation(work, acc_unpruned, chosen, distill=distill, alpha=kd_alpha, temperature=kd_temperature,
                       features=kd_features, beta=kd_beta, warnings=warnings_, console=console)
    ft = FinetuneConfig(epochs=epochs / progressive, lr=lr, seed=conf.seed, loss=work.loss, workers=work.data.workers)
    recovered = _prune_and_recover(work, chosen, ft=ft, kd=kd, progressive=progressive, unstructured=unstructured,
                                   unstructured_scope=unstructured_scope, device=dev, console=console)
    files = _write_models(recovered, work, chosen, console=console)
    report = _report(work, chosen, recovered, files, acc_unpruned=acc_unpruned, kd=kd, epochs=epochs, lr=lr,
                     device=dev, warnings=warnings_, console=console)
    report_path = _publish(report, chosen)
    _print_report(console, report, sense=sense)
    return ApplyResult(out_dir=chosen.out_dir, model_path=files.model, onnx_path=files.onnx, report_path=report_path,
                       report=report, location=report.get("location") or str(chosen.out_dir))


def _check_options(*, epochs: float, progressive: int, kd_alpha: float, kd_temperature: float, distill: bool,
                   kd_features: str | None, unstructured: float, unstructured_scope: str) -> None:
    """Every option apply can judge alone, before any work."""
    if epochs < 0:
        raise AutopruneError(f"epochs is {epochs}; it must be >= 0")
    if not isinstance(progressive, int) or progressive < 1:
        raise AutopruneError(f"progressive is {progressive!r}; it must be an integer >= 1 (1: prune in one step)")
    if not 0.0 <= kd_alpha <= 1.0 or kd_temperature <= 0:
        raise AutopruneError(f"kd_alpha {kd_alpha} / kd_temperature {kd_temperature} are not valid; use "
                             "0 <= kd_alpha <= 1 and kd_temperature > 0")
    if kd_features and not distill:
        raise AutopruneError("kd_features matches feature maps during distillation; add --distill")
    check_sparsity(unstructured, unstructured_scope)


@dataclass(frozen=True)
class _Chosen:
    """The run, the trial picked from it, its plan, and where the outputs go."""

    run: Path
    conf: RunConfig
    row: pd.Series
    plan: Plan
    profiles: list[HardwareProfile]
    out_dir: Path
    remote_out: Location | None


def _choose(run_dir: str | Path, *, pick: str, out: str | Path | None, console: Console) -> _Chosen:
    run, location, conf, trials = read_run(run_dir)
    rule = conf.budget_confidence
    row = pick_trial(trials, pick, budget=conf.budget, rule=rule, sense=conf.sense)
    out_dir, remote_out = _output_place(out, run=run, location=location, trial=str(row["trial"]))
    console.print(f"applying {row['trial']} ({row['plan']}) to {conf.model}"
                  + (f", the best within budget by {describe_rule(rule)}" if pick == "best" else ""))
    return _Chosen(run=run, conf=conf, row=row, plan=Plan.load(run / row["plan"]),
                   profiles=[HardwareProfile.model_validate(p) for p in conf.profiles], out_dir=out_dir,
                   remote_out=remote_out)


def _distillation(work, acc_unpruned: float, chosen: _Chosen, *, distill: bool, alpha: float, temperature: float,
                  features: str | None, beta: float, warnings: list[str], console: Console) -> Distillation | None:
    """The unpruned model as the teacher (with the feature maps matched by attention transfer), and a
    warning when it scores worse than the trial's student."""
    if not distill:
        return None
    sense, trial_acc = chosen.conf.sense, _num(chosen.row["accuracy"])
    if trial_acc is not None and sense.better(trial_acc, acc_unpruned):
        warnings.append(f"the teacher (unpruned, {sense.fmt(acc_unpruned)}) scores worse than the trial's fine-tuned "
                        f"student ({sense.fmt(trial_acc)}): distillation pulls the student toward a weaker model; "
                        "fine-tune without --distill, or fine-tune the unpruned model on this data first")
        console.print(f"[yellow]warning:[/] {warnings[-1]}")
    layers = feature_layers(work.model, features, input_shape=work.input_shape) if features else ()
    return Distillation(teacher=work.model, alpha=alpha, temperature=temperature, features=layers, beta=beta)


@dataclass
class _Recovered:
    """The pruned, recovered model and what happened on the way."""

    pruned: nn.Module
    steps: list[dict[str, float]]  # per pruning step: the metric pruned, then fine-tuned
    measured: dict[str, LatencyStats]  # per profile, timed before any training
    same_weights: bool  # the pruned weights are the trial's (one shot, no zeros added)
    finetune_steps: int
    sparse: dict[str, Any]  # unstructured zeros: what was added and the sizes
    calibration: torch.Tensor | None  # the inputs a static-INT8 profile quantizes with


def _prune_and_recover(work, chosen: _Chosen, *, ft: FinetuneConfig, kd: Distillation | None, progressive: int,
                       unstructured: float, unstructured_scope: str, device, console: Console) -> _Recovered:
    """Prune by the plan (in ``progressive`` steps), time the final architecture, and after each step
    re-estimate BatchNorm, fine-tune and re-estimate again, scoring before and after."""
    conf, row, plan, profiles, sense = chosen.conf, chosen.row, chosen.plan, chosen.profiles, chosen.conf.sense
    # Timed as the search timed it: against the run's reference, on the run's own scale.
    quant_calib = quantization_inputs(work.data, profiles)
    references = run_references(work.model, profiles, input_shape=work.input_shape, baseline=conf.baseline,
                                calibration=quant_calib)
    calib = calibration_batch(work.data.train, 64)
    total, steps, sparse, measured, same_weights = 0, [], {}, {}, False
    pruned = work.model
    # One shot is the trial's own plan, so the pruned weights can be checked against the trial's.
    builds = ([lambda _: plan] if progressive == 1
              else progressive_plans(work.model, plan, steps=progressive, input_shape=work.input_shape))
    for k, build in enumerate(builds):
        pruned = prune(pruned.to("cpu"), build(pruned), input_shape=work.input_shape, calibration=calib,
                       loss=resolve_loss(work.loss))
        if k == 0:
            same_weights = fingerprint(pruned) == row.get("pruned_fingerprint")
        if k == progressive - 1:  # the final architecture: check it, and time it before any training
            arch = architecture_fingerprint(pruned)
            if arch != row.get("arch_fingerprint"):
                raise AutopruneError(f"the plan rebuilt an architecture different from {row['trial']}'s; "
                                     "the model or torch-pruning version changed since the search")
            # Latency depends only on shapes; timed here, not after fine-tuning, whose torch threads
            # would still compete with ONNX Runtime in this process (the trials time before training too).
            measured = {p.name: latency_for(pruned, p, input_shape=work.input_shape, arch_key=arch,
                                            reference=references.get(p.name), calibration=quant_calib)
                        for p in profiles}
            if unstructured > 0:
                sparse = _add_zeros(pruned, unstructured, unstructured_scope, profiles, work.input_shape, console)
        pruned.to(device)
        # BatchNorm statistics re-estimated after pruning, as the trials did, and again after the
        # fine-tune: a model whose BN layers move slowly (momentum 0.01, TF-ported nets) otherwise
        # keeps statistics of channels that are gone (measured: 15 % instead of 40 %+ on EfficientNet-Lite0).
        bn_batches = max(conf.bn_recalibration, BN_BATCHES)
        recalibrate_bn(pruned, work.data.train, batches=bn_batches, seed=ft.seed, device=device)
        before = evaluate(pruned, work.data.val, device=device, metric=work.metric)
        with console.status(f"fine-tuning on {device}") as status:
            finetune(pruned, work.data.train, config=ft, distill=kd, device=device,
                     on_step=lambda s, n, loss, k=k: status.update(
                         f"step {k + 1}/{progressive}: fine-tuning on {device} {s}/{n}, loss {loss:.3f}"))
        total += ft.total_steps(len(work.data.train))
        recalibrate_bn(pruned, work.data.train, batches=bn_batches, seed=ft.seed + 1, device=device)
        after = evaluate(pruned, work.data.val, device=device, metric=work.metric)
        steps.append({"accuracy_pruned": before, "accuracy_finetuned": after})
        console.print(f"pruning step {k + 1}/{progressive}: {sense.label} {sense.fmt(before)} -> {sense.fmt(after)} "
                      f"after fine-tuning{' with distillation' if kd else ''}")
    pruned.to("cpu")
    work.model.to("cpu")
    make_permanent(pruned)
    if unstructured > 0:
        size = sparsity_report(pruned, input_shape=work.input_shape, opset=profiles[0].opset)
        sparse["size"] = size.as_dict()
        console.print(f"sparsity {size.sparsity:.1%} of the conv/linear weights; {size.dense_bytes / 1e6:.2f} MB dense, "
                      f"{size.sparse_bytes / 1e6:.2f} MB as CSR, ONNX {size.onnx_gzip_bytes / 1e6:.2f} MB gzipped")
    return _Recovered(pruned=pruned, steps=steps, measured=measured, finetune_steps=total, sparse=sparse,
                      same_weights=same_weights and progressive == 1 and unstructured == 0, calibration=quant_calib)


@dataclass(frozen=True)
class _Files:
    model: Path
    onnx: Path
    onnx_max_abs_diff: float  # ONNX Runtime against torch on a validation batch
    channels: Path | None
    hf: Path | None  # a Hugging Face model as save_pretrained writes it
    int8: dict[str, Any] | None


def _write_models(recovered: _Recovered, work, chosen: _Chosen, *, console: Console) -> _Files:
    """model.pt (rebuildable by the plan), hf/ for a Hugging Face model, model.onnx checked against
    torch on a validation batch, the INT8 model a quantizing profile deploys, and channels.png."""
    conf, out_dir, profiles, pruned = chosen.conf, chosen.out_dir, chosen.profiles, recovered.pruned
    model_path = save_checkpoint(pruned, out_dir / "model.pt", arch=conf.model,
                                 plan=chosen.plan.model_dump(mode="json"), input_shape=work.input_shape,
                                 weights=conf.weights, extra={"metric": work.metric, "loss": work.loss, "data": conf.data})
    hf_dir = _save_pretrained(pruned, out_dir / "hf")
    onnx_path = export_onnx(pruned, out_dir / "model.onnx", input_shape=work.input_shape, batch_size=1,
                            opset=profiles[0].opset, dynamic_batch=True)
    x = next(iter(torch.utils.data.DataLoader(work.data.val, batch_size=32)))[0]
    with torch.no_grad():
        max_diff = float(abs(onnx_outputs(onnx_path, x) - first_output(pruned(x)).numpy()).max())
    int8 = _write_int8(pruned, profiles, onnx_path, out_dir, data=work.data, calibration=recovered.calibration,
                       measured=recovered.measured, base=conf.baseline, console=console)
    return _Files(model=model_path, onnx=onnx_path, onnx_max_abs_diff=max_diff, hf=hf_dir, int8=int8,
                  channels=_plot_plan(conf, chosen.plan, chosen.row, out_dir / "channels.png"))


def _report(work, chosen: _Chosen, recovered: _Recovered, files: _Files, *, acc_unpruned: float,
            kd: Distillation | None, epochs: float, lr: float, device, warnings: list[str],
            console: Console) -> dict[str, Any]:
    """report.yaml: the unpruned model, the trial and the applied model side by side (metric, MACs,
    parameters, latency per profile with the budget's verdict), how it was recovered, and the files."""
    conf, row, sense, rule = chosen.conf, chosen.row, chosen.conf.sense, chosen.conf.budget_confidence
    pruned, steps = recovered.pruned, recovered.steps
    accuracy, trial_acc = steps[-1]["accuracy_finetuned"], _num(row["accuracy"])
    applied_on_subset = (evaluate(pruned, work.data.with_val_samples(conf.val_samples).trial_val,
                                  metric=work.metric) if conf.val_samples else accuracy)
    shortfall = _shortfall(applied=applied_on_subset, trial=trial_acc, unpruned=acc_unpruned, distilled=kd is not None,
                           warnings=warnings, trial_steps=conf.finetune.steps, apply_steps=recovered.finetune_steps,
                           subset=conf.val_samples, sense=sense)
    if shortfall:
        console.print(f"[yellow]note:[/] {shortfall}")
    int8 = files.int8
    macs, params = count_macs_params(pruned, input_shape=work.input_shape)
    base, budgets = conf.baseline, conf.budgets_ms
    latency = {name: _latency_entry(stats, row=row, base=base["profiles"][name],
                                    budget_ms=budgets.get(name), rule=rule)
               for name, stats in recovered.measured.items()}
    mac_cut = base["macs"] / macs if macs else float("nan")
    for name, lat in latency.items():
        lat["speedup"] = lat["unpruned_p50_ms"] / lat["applied"]["p50_ms"]
        lat["speedup_per_mac_cut"] = lat["speedup"] / mac_cut
        note = _little_gain(name, speedup=lat["speedup"], mac_cut=mac_cut)
        if note is not None:
            warnings.append(note)
            console.print(f"[yellow]note:[/] {note}")
    features = list(kd.features) if kd is not None else []
    report = {
        "trial": row["trial"], "plan": str(chosen.run / row["plan"]), "budget": conf.budget,
        "same_pruned_weights_as_trial": bool(recovered.same_weights), "onnx_max_abs_diff": files.onnx_max_abs_diff,
        "finetune": {"epochs": epochs, "steps": recovered.finetune_steps, "lr": lr, "schedule": "warm-up + cosine"},
        "recovery": {"distillation": {"alpha": kd.alpha, "temperature": kd.temperature,
                                      "attention_transfer": {"layers": features, "beta": kd.beta} if features
                                      else None} if kd is not None else None,
                     "progressive_steps": len(steps), "steps": steps,
                     "unstructured": recovered.sparse or None},
        "finetune_device": str(device),  # where apply trained; latency.<profile>.applied.node: where it was timed
        "metric": work.metric, "metric_direction": sense.direction, "warnings": warnings, "shortfall": shortfall,
        "trial_ran_on": {"node": _str(row.get("node")), "finetune_device": _str(row.get("finetune_device"))},
        "budget_confidence": rule,
        "accuracy": {"unpruned": acc_unpruned, "unpruned_in_search": base["accuracy"], "trial": trial_acc,
                     "applied_on_trial_samples": applied_on_subset,
                     "applied_before_finetune": steps[0]["accuracy_pruned"], "applied": accuracy},
        "macs": {"unpruned": base["macs"], "trial": _num(row["macs"]), "applied": macs, "cut": mac_cut},
        "params": {"unpruned": base["params"], "trial": _num(row["params"]), "applied": params},
        "latency": latency,
        "meets_budget": all(v["meets_budget"] for v in latency.values() if v["meets_budget"] is not None),
        "budget_verdict": _overall([v["verdict"] for v in latency.values() if v["verdict"] is not None]),
        "int8": int8,
        "files": {"model": str(files.model), "onnx": str(files.onnx), "channels": str(files.channels),
                  **({"int8_onnx": int8["file"]} if int8 else {}), **({"hf": str(files.hf)} if files.hf else {})},
    }
    if chosen.remote_out is not None:
        report["location"] = chosen.remote_out.url
    return report


def _publish(report: dict[str, Any], chosen: _Chosen) -> Path:
    """report.yaml beside the models, and everything pushed to the run's URL when it has one."""
    report_path = cfg.dump(report, chosen.out_dir / "report.yaml")
    if chosen.remote_out is not None:
        try:
            push_tree(chosen.out_dir, chosen.remote_out)
        except Exception as exc:  # noqa: BLE001 - the outputs are safe locally: say where
            raise AutopruneError(f"apply: could not write the outputs to {chosen.remote_out.url} ({exc}); they are "
                                 f"in {chosen.out_dir}") from None
    return report_path


def _little_gain(profile: str, *, speedup: float, mac_cut: float) -> str | None:
    """A line when ``profile`` gains less than half of what the MAC cut promises (its speedup's gain
    under half the cut's), else None."""
    if not (mac_cut > 1.05 and math.isfinite(speedup)) or speedup - 1 >= 0.5 * (mac_cut - 1):
        return None
    return (f"on {profile} the plan is {speedup:.2f}x as fast as the unpruned model for a {mac_cut:.2f}x MAC cut: "
            "this target gains less than half the cut (memory-bound layers, or widths off its channel multiple: "
            f"autoprune profile probe --profile {profile})")


def _shortfall(*, applied: float, trial: float | None, unpruned: float, distilled: bool, warnings: list[str],
               trial_steps: int, apply_steps: int, subset: int | None, sense: MetricSense = ACCURACY) -> str | None:
    """Why the applied model scores worse than the trial's figure, when it does (None when it does not).
    ``applied`` is scored on the samples the trial was scored on (``subset`` of them, or all)."""
    tolerance = 0.005 if sense.percent else 0.005 * abs(trial or 0.0)  # half a point, or 0.5 % of the value
    if trial is None or sense.drop(trial, applied) <= tolerance:
        return None
    why = []
    if distilled and sense.better(trial, unpruned):
        why.append(f"the distillation teacher scores {sense.fmt(unpruned)}, worse than the trial")
    if apply_steps < trial_steps:
        why.append(f"apply fine-tuned {apply_steps} steps, fewer than the trial's {trial_steps}")
    if not why:
        why.append("the trial's figure is the best of many noisy trials (selection lifts it); train longer "
                   "(--epochs) or with --distill from a stronger teacher")
    where = f" on the trial's {subset} validation samples" if subset else ""
    return f"applied {sense.fmt(applied)}{where} is worse than the trial's {sense.fmt(trial)}: " + "; ".join(why)


def _save_pretrained(pruned: nn.Module, path: Path) -> Path | None:
    """A Hugging Face model also as ``save_pretrained`` writes it (with the code that rebuilds its
    per-layer widths); None for any other model."""
    from autoprune.load.hf import Logits

    if not isinstance(pruned, Logits):
        return None
    from autoprune.load.hf import save_pretrained

    return save_pretrained(pruned, path)


def _write_int8(pruned: nn.Module, profiles: list[HardwareProfile], onnx_path: Path, out_dir: Path, *, data,
                calibration: torch.Tensor | None, measured: dict[str, LatencyStats], base: dict[str, Any],
                console: Console) -> dict[str, Any] | None:
    """``model.int8.onnx`` beside the float model, as the first quantizing profile deploys it: its
    accuracy through ONNX Runtime and its latency on every quantizing profile, beside the float's."""
    quantizing = [p for p in profiles if p.quantized]
    if not quantizing:
        return None
    from autoprune.latency.quantize import onnx_accuracy, quantize_onnx

    mode = quantizing[0].quantization
    path = quantize_onnx(onnx_path, out_dir / "model.int8.onnx", mode=mode, calibration=calibration)
    acc_int8 = onnx_accuracy(path, data.val)
    acc_float = onnx_accuracy(onnx_path, data.val)
    info = {"file": str(path), "quantization": mode, "accuracy": acc_int8, "accuracy_float": acc_float,
            "size_bytes": path.stat().st_size, "float_size_bytes": onnx_path.stat().st_size,
            "latency": {p.name: {"p50_ms": measured[p.name].p50_ms, "unpruned_p50_ms":
                                 base["profiles"][p.name]["latency_p50_ms"]} for p in quantizing}}
    console.print(f"INT8 ({mode}): accuracy {acc_int8:.1%} (float {acc_float:.1%}), "
                  f"{info['size_bytes'] / 1e6:.2f} MB (float {info['float_size_bytes'] / 1e6:.2f} MB); wrote {path}")
    return info


def _plot_plan(conf: RunConfig, plan: Plan, row: pd.Series, path: Path) -> Path | None:
    """The picked plan's kept vs original channels per group (the figure pruning papers show)."""
    from autoprune.report.channels import channels_of, plot_channels
    from autoprune.space.space import SearchSpace

    space = SearchSpace.model_validate(conf.space)
    channels = channels_of(space)
    ratios = {g: r for g, r in plan.ratios.items() if g in channels}
    if not channels or not ratios:
        return None
    return plot_channels({f"{row['trial']} (applied)": ratios}, channels=channels, round_to=plan.round_to, path=path,
                         title=f"{conf.model}: channels kept by {row['trial']}")


def _add_zeros(pruned: nn.Module, sparsity: float, scope: str, profiles: list[HardwareProfile],
               input_shape: tuple[int, ...], console: Console) -> dict[str, Any]:
    """Mask ``pruned`` in place; time it with and without the zeros, side by side, on every profile."""
    structured = copy.deepcopy(pruned)
    magnitude_masks(pruned, sparsity=sparsity, scope=scope)
    info: dict[str, Any] = {"sparsity": sparsity, "scope": scope, "latency": {},
                            "note": "dense ONNX Runtime kernels compute the zeros too; only the size shrinks"}
    for p in profiles:
        if p.latency_table:  # a table predicts from shapes; the zeros change no shape
            info["latency"][p.name] = "not measured: the profile predicts from its latency table"
            continue
        lat = latency_side_by_side({"structured": structured, "with_zeros": pruned}, p, input_shape=input_shape)
        info["latency"][p.name] = {"structured_p50_ms": lat["structured"].p50_ms,
                                   "with_zeros_p50_ms": lat["with_zeros"].p50_ms}
        console.print(f"{sparsity:.0%} of the remaining weights zeroed ({scope}); on {p.name}: "
                      f"{lat['structured'].p50_ms:.2f} ms without the zeros, {lat['with_zeros'].p50_ms:.2f} ms with")
    return info


def _latency_entry(stats: LatencyStats, *, row: pd.Series, base: dict[str, Any], budget_ms: float | None,
                   rule: str) -> dict[str, Any]:
    """The search's figure and apply's, side by side, and the budget decided on apply's."""
    p = stats.profile

    def col(name: str) -> float:
        v = row.get(at(name, p))
        return float(v) if v is not None and not pd.isna(v) else math.nan

    search = {"p50_ms": col("latency_p50_ms"), "ci_low_ms": col("latency_ci_low_ms"),
              "ci_high_ms": col("latency_ci_high_ms")}
    applied = {"p50_ms": stats.p50_ms, "ci_low_ms": stats.ci_low_ms, "ci_high_ms": stats.ci_high_ms,
               "p90_ms": stats.p90_ms, "method": stats.method, "node": stats.node}
    entry: dict[str, Any] = {
        "unpruned_p50_ms": base["latency_p50_ms"], "trial_p50_ms": search["p50_ms"],
        "applied_p50_ms": stats.p50_ms, "applied_p90_ms": stats.p90_ms, "applied_spread": stats.spread,
        "search": search, "applied": applied, "difference": stats.p50_ms / search["p50_ms"] - 1.0,
        "cis_overlap": bool(stats.has_ci and search["ci_low_ms"] <= stats.ci_high_ms
                            and stats.ci_low_ms <= search["ci_high_ms"]),
        "method": stats.describe(), "budget_ms": budget_ms, "verdict": None, "meets_budget": None}
    if budget_ms is not None:  # decided as the search decides a trial's row
        fig = {at("latency_p50_ms", p): stats.p50_ms, at("latency_ci_low_ms", p): stats.ci_low_ms,
               at("latency_ci_high_ms", p): stats.ci_high_ms}
        entry["verdict"] = budget_verdicts(fig, {p: budget_ms})[p]
        entry["meets_budget"] = not over_budget(fig, {p: budget_ms}, rule=rule)
    return entry


def _str(v: Any) -> str | None:
    return None if v is None or pd.isna(v) else str(v)


def _num(v: Any) -> float | int:
    return int(v) if float(v).is_integer() else float(v)


def _overall(verdicts: list[str]) -> str | None:
    """missed if any profile missed, else inconclusive if any was, else met (None: no budget)."""
    for v in ("missed", "inconclusive", "met"):
        if v in verdicts:
            return v
    return None


def _ms(fig: dict[str, Any]) -> str:
    if math.isnan(fig["ci_low_ms"]):
        return f"{fig['p50_ms']:.2f}"
    return f"{fig['p50_ms']:.2f} [{fig['ci_low_ms']:.2f}, {fig['ci_high_ms']:.2f}]"


def _print_report(console: Console, report: dict[str, Any], *, sense: MetricSense = ACCURACY) -> None:
    t = Table(title=f"{report['trial']} applied", title_justify="left")
    for col in ("", "unpruned", "in search", "applied"):
        t.add_column(col, justify="right")
    a, m, p = report["accuracy"], report["macs"], report["params"]
    t.add_row(sense.label, sense.fmt(a["unpruned"]), sense.fmt(a["trial"]), sense.fmt(a["applied"]))
    for name, lat in report["latency"].items():
        t.add_row(f"ms on {name}", f"{lat['unpruned_p50_ms']:.2f}", _ms(lat["search"]), _ms(lat["applied"]))
    t.add_row("M MACs", f"{m['unpruned'] / 1e6:.2f}", f"{m['trial'] / 1e6:.2f}", f"{m['applied'] / 1e6:.2f}")
    t.add_row("params", f"{p['unpruned']:,}", f"{p['trial']:,}", f"{p['applied']:,}")
    console.print(t)
    for name, lat in report["latency"].items():
        console.print(f"{name}: {lat['method']}; {lat['speedup']:.2f}x as fast as unpruned for a "
                      f"{m['cut']:.2f}x MAC cut")
        if lat["verdict"] is not None:
            words = {"met": "budget met: the whole CI is within", "missed": "budget MISSED: the whole CI is over",
                     "inconclusive": "budget inconclusive: the CI straddles"}[lat["verdict"]]
            console.print(f"  {words} {lat['budget_ms']:.2f} ms; search {_ms(lat['search'])}, apply "
                          f"{_ms(lat['applied'])} ({lat['difference']:+.1%})")
    console.print(f"ONNX vs torch max |diff| {report['onnx_max_abs_diff']:.1e}")
    console.print(f"wrote {report['files']['model']} and {report['files']['onnx']}")
    if report["files"].get("hf"):
        from autoprune.load.hf import auto_class

        hf = report["files"]["hf"]
        auto = auto_class(hf)
        console.print(f"and {hf}: transformers.{auto}.from_pretrained({hf!r}, trust_remote_code=True) loads it "
                      "at its pruned widths")
    if report.get("location"):
        console.print(f"and pushed them with report.yaml to {report['location']}")
