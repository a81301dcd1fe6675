"""apply: prune the original model with a chosen plan, recover accuracy, export, and verify."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from rich.console import Console
from rich.table import Table

from autoprune import config as cfg
from autoprune.errors import AutopruneError
from autoprune.finetune import FinetuneConfig, evaluate, finetune
from autoprune.latency import export_onnx, measure_onnx, onnx_outputs
from autoprune.models import architecture_fingerprint, fingerprint, save_checkpoint
from autoprune.plan import Plan
from autoprune.profiles import HardwareProfile
from autoprune.pruning import count_macs_params, prune
from autoprune.search import load_workload
from autoprune.trial import calibration_batch


@dataclass(frozen=True)
class ApplyResult:
    out_dir: Path
    model_path: Path
    onnx_path: Path
    report_path: Path
    report: dict[str, Any]


def read_run(run_dir: str | Path) -> tuple[Path, dict[str, Any], pd.DataFrame]:
    run = Path(run_dir)
    if not (run / "config.yaml").is_file():
        raise AutopruneError(f"{run}: not an autoprune run directory (no config.yaml); "
                             "pass the runs/<run> directory that autoprune search printed")
    if not (run / "trials.csv").is_file():
        raise AutopruneError(f"{run}: no trials.csv yet; let the search finish at least one trial")
    return run, cfg.read_yaml(run / "config.yaml"), pd.read_csv(run / "trials.csv")


def pick_trial(trials: pd.DataFrame, pick: str, *, budget: str) -> pd.Series:
    """``best``: the most accurate completed plan within the budget; else a trial name or number."""
    done = trials[trials["status"] == "completed"]
    if pick == "best":
        ok = done[done["meets_budget"].astype(bool)]
        if ok.empty:
            raise AutopruneError(f"no completed trial meets the budget {budget}; pick one from pareto.csv "
                                 "with --pick TRIAL, or search again with more trials or a looser budget")
        return ok.sort_values(["accuracy", "latency_p50_ms"], ascending=[False, True]).iloc[0]
    name = f"trial-{int(pick):03d}" if pick.isdigit() else pick
    match = done[done["trial"] == name]
    if match.empty:
        known = ", ".join(done["trial"].head(8))
        raise AutopruneError(f"--pick {pick!r}: no completed trial of that name; use best or one of: {known}")
    return match.iloc[0]


def apply(run_dir: str | Path, *, pick: str = "best", epochs: float = 5.0, lr: float = 0.01,
          out: str | Path | None = None, quiet: bool = False) -> ApplyResult:
    """Apply a searched plan to the original model; writes model.pt, model.onnx and report.yaml."""
    if epochs < 0:
        raise AutopruneError(f"epochs is {epochs}; it must be >= 0")
    console = Console(quiet=quiet, highlight=False)
    run, conf, trials = read_run(run_dir)
    row = pick_trial(trials, str(pick), budget=conf["budget"])
    plan = Plan.load(run / row["plan"])
    work = load_workload(model=conf["model"], data=conf["data"], space=None,
                         profile=_profile_file(run, conf))
    plan.check_base(fingerprint(work.model), model=conf["model"])
    console.print(f"applying {row['trial']} ({row['plan']}) to {conf['model']}")

    calib = calibration_batch(work.data.train, 64)
    pruned = prune(work.model, plan, input_shape=work.input_shape, calibration=calib)
    same_weights = fingerprint(pruned) == row.get("pruned_fingerprint")
    same_arch = architecture_fingerprint(pruned) == row.get("arch_fingerprint")
    if not same_arch:
        raise AutopruneError(f"the plan rebuilt an architecture different from {row['trial']}'s; "
                             "the model or torch-pruning version changed since the search")
    acc_pruned = evaluate(pruned, work.data.val)
    ft = FinetuneConfig(epochs=epochs, lr=lr, seed=int(conf.get("seed", 0)))
    total = ft.total_steps(len(work.data.train))
    with console.status("fine-tuning") as status:
        finetune(pruned, work.data.train, config=ft,
                 on_step=lambda s, n, loss: status.update(f"fine-tuning: step {s}/{n}, loss {loss:.3f}"))
    accuracy = evaluate(pruned, work.data.val)
    console.print(f"fine-tuned {total} steps ({epochs:g} epochs): accuracy {acc_pruned:.1%} -> {accuracy:.1%}")

    out_dir = Path(out) if out is not None else run / f"apply-{row['trial']}"
    model_path = save_checkpoint(pruned, out_dir / "model.pt", arch=conf["model"], plan=plan.model_dump(mode="json"),
                                 input_shape=work.input_shape)
    onnx_path = export_onnx(pruned, out_dir / "model.onnx", input_shape=work.input_shape, batch_size=1,
                            opset=work.profile.opset, dynamic_batch=True)
    x = next(iter(torch.utils.data.DataLoader(work.data.val, batch_size=32)))[0]
    with torch.no_grad():
        max_diff = float(abs(onnx_outputs(onnx_path, x) - pruned(x).numpy()).max())
    stats = measure_onnx(onnx_path, work.profile)
    macs, params = count_macs_params(pruned, input_shape=work.input_shape)
    base = conf["baseline"]
    report = {
        "trial": row["trial"], "plan": str(run / row["plan"]), "profile": work.profile.name,
        "latency_method": stats.describe(), "budget": conf["budget"], "budget_ms": conf["budget_ms"],
        "same_pruned_weights_as_trial": bool(same_weights), "onnx_max_abs_diff": max_diff,
        "finetune": {"epochs": epochs, "steps": total, "lr": lr, "schedule": "warm-up + cosine"},
        "unpruned": {k: base[k] for k in ("accuracy", "latency_p50_ms", "latency_p90_ms", "macs", "params")},
        "trial_figures": {k: _num(row[k]) for k in ("accuracy", "latency_p50_ms", "latency_p90_ms", "macs", "params")},
        "applied": {"accuracy_before_finetune": acc_pruned, "accuracy": accuracy, "latency_p50_ms": stats.p50_ms,
                    "latency_p90_ms": stats.p90_ms, "macs": macs, "params": params,
                    "meets_budget": bool(stats.p50_ms <= conf["budget_ms"])},
        "files": {"model": str(model_path), "onnx": str(onnx_path)},
    }
    report_path = cfg.dump(report, out_dir / "report.yaml")
    _print_report(console, report)
    return ApplyResult(out_dir=out_dir, model_path=model_path, onnx_path=onnx_path, report_path=report_path,
                       report=report)


def _profile_file(run: Path, conf: dict[str, Any]) -> Path:
    # The run keeps its resolved profile: apply measures on exactly what the search measured on.
    path = run / "profile.yaml"
    if not path.is_file():
        cfg.dump(HardwareProfile.model_validate(conf["profile"]), path)
    return path


def _num(v: Any) -> float | int:
    return int(v) if float(v).is_integer() else float(v)


def _print_report(console: Console, report: dict[str, Any]) -> None:
    t = Table(title=f"{report['trial']} applied — latency per batch on {report['profile']}", title_justify="left")
    for col in ("", "unpruned", "in search", "applied"):
        t.add_column(col, justify="right")
    u, s, a = report["unpruned"], report["trial_figures"], report["applied"]
    t.add_row("accuracy", f"{u['accuracy']:.1%}", f"{s['accuracy']:.1%}", f"{a['accuracy']:.1%}")
    t.add_row("latency p50 ms", f"{u['latency_p50_ms']:.2f}", f"{s['latency_p50_ms']:.2f}", f"{a['latency_p50_ms']:.2f}")
    t.add_row("latency p90 ms", f"{u['latency_p90_ms']:.2f}", f"{s['latency_p90_ms']:.2f}", f"{a['latency_p90_ms']:.2f}")
    t.add_row("M MACs", f"{u['macs'] / 1e6:.2f}", f"{s['macs'] / 1e6:.2f}", f"{a['macs'] / 1e6:.2f}")
    t.add_row("params", f"{u['params']:,}", f"{s['params']:,}", f"{a['params']:,}")
    console.print(t)
    console.print(f"{report['latency_method']}; budget {report['budget']} "
                  f"({'met' if a['meets_budget'] else 'missed'}); ONNX vs torch max |diff| {report['onnx_max_abs_diff']:.1e}")
    console.print(f"wrote {report['files']['model']} and {report['files']['onnx']}")
