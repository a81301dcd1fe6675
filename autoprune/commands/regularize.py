"""Sparsity regularisation: train with a penalty that drives whole channels towards zero, so that
pruning them later costs little accuracy.

The penalties are Torch-Pruning's, applied to the gradients after each backward pass:

- ``bn_l1``: L1 on BatchNorm scales (network slimming, Liu et al. 2017); prune with ``bn_scale``.
- ``bn_group_lasso``: group lasso over the BatchNorm scales of each coupled group (a residual
  stage's channels shrink together); prune with ``bn_scale``.
- ``group_norm``: DepGraph's group-level sparsity (Fang et al. 2023) on every weight of a coupled
  group, stronger on the weaker channels; prune with ``l2``.

``regularize`` measures what it bought: the input model and the regularised one are both pruned
uniformly at ``probe_ratio`` with the matching criterion, BN-recalibrated and evaluated.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from torch import nn

from autoprune.core import config as cfg
from autoprune.core.errors import AutopruneError
from autoprune.load.models import save_checkpoint
from autoprune.prune.penalties import bn_scales, get_regularizer, penalty_hook
from autoprune.report.plots import plot_bn_scales
from autoprune.train.finetune import FinetuneConfig, evaluate, finetune, recalibrate_bn


@dataclass(frozen=True)
class RegularizeResult:
    model_path: Path
    report_path: Path
    plot: Path
    report: dict[str, Any]


def probe_accuracy(model: nn.Module, data, *, input_shape: tuple[int, ...], ratio: float, criterion: str,
                   bn_batches: int = 10) -> float:
    """Accuracy after pruning every group at ``ratio`` with ``criterion`` and recalibrating BN."""
    from autoprune.prune.engine import prune
    from autoprune.prune.groups import find_groups
    from autoprune.prune.plan import Plan
    from autoprune.study.trial import calibration_batch

    plan = Plan(ratios={g.name: ratio for g in find_groups(model, input_shape=input_shape)}, criterion=criterion)
    pruned = prune(model, plan, input_shape=input_shape, calibration=calibration_batch(data.train, 64))
    recalibrate_bn(pruned, data.train, batches=bn_batches)
    return evaluate(pruned, data.val)


def regularize(*, model: str = "builtin:demo", data: str = "builtin:digits", method: str = "bn_l1",
               strength: float | None = None, epochs: float = 2.0, lr: float = 0.05, probe_ratio: float = 0.5,
               out: str | Path = "regularized", seed: int = 0, quiet: bool = False,
               weights: str | Path | None = None, device: str = "auto") -> RegularizeResult:
    """Train ``model`` for ``epochs`` with ``method``'s sparsity penalty; writes model.pt (search or
    apply it with ``--model``), report.yaml and a plot of the BatchNorm scales before and after.
    ``device``: where training runs (``auto``: a GPU when there is one)."""
    from autoprune.core.device import resolve_device
    from autoprune.study.workload import load_workload

    reg = get_regularizer(method)
    if epochs <= 0:
        raise AutopruneError(f"epochs is {epochs}; regularisation needs training, give epochs > 0 (e.g. 2)")
    if not 0 < probe_ratio < 1:
        raise AutopruneError(f"probe_ratio is {probe_ratio}; it is the uniform prune ratio of the check, in (0, 1)")
    console = Console(quiet=quiet, highlight=False)
    dev = resolve_device(device)
    work = load_workload(model=model, data=data, space=None, profiles=[], weights=weights)
    base = work.model
    trained = copy.deepcopy(base).to(dev)
    strength = reg.default_strength if strength is None else strength
    hook = penalty_hook(trained, method, input_shape=work.input_shape, strength=strength)
    ft = FinetuneConfig(epochs=epochs, lr=lr, seed=seed)
    with console.status("training with the sparsity penalty") as status:
        finetune(trained, work.data.train, config=ft, after_backward=hook, device=dev,
                 on_step=lambda s, n, loss: status.update(f"{method}: step {s}/{n}, loss {loss:.3f} on {dev}"))
    trained.to("cpu")
    before, after = bn_scales(base), bn_scales(trained)
    small = 1e-2
    acc = {"input": evaluate(base, work.data.val), "regularized": evaluate(trained, work.data.val)}
    probe = {name: probe_accuracy(m, work.data, input_shape=work.input_shape, ratio=probe_ratio, criterion=reg.criterion)
             for name, m in (("input", base), ("regularized", trained))}
    out_dir = Path(out)
    model_path = save_checkpoint(trained, out_dir / "model.pt", arch=model, plan=None, input_shape=work.input_shape)
    plot = plot_bn_scales(before.numpy(), after.numpy(), out_dir / "bn_scales.png",
                          title=f"{model}: {method}, strength {strength:g}")
    report = {
        "model": model, "data": data, "method": method, "device": str(dev), "description": reg.description, "strength": strength,
        "training": {"epochs": epochs, "steps": ft.total_steps(len(work.data.train)), "lr": lr,
                     "schedule": "warm-up + cosine"},
        "accuracy": acc,
        "bn_scale_mean": {"input": float(before.mean()) if len(before) else None,
                          "regularized": float(after.mean()) if len(after) else None},
        "bn_scales_below_1e-2": {"input": float((before < small).float().mean()) if len(before) else None,
                                 "regularized": float((after < small).float().mean()) if len(after) else None},
        "after_pruning": {"ratio": probe_ratio, "criterion": reg.criterion, "bn_recalibration_batches": 10,
                          "accuracy": probe},
        "next": f"autoprune search --model {model_path} --data {data} --criterion {reg.criterion}",
        "files": {"model": str(model_path), "plot": str(plot)},
    }
    report_path = cfg.dump(report, out_dir / "report.yaml")
    console.print(f"{method} ({reg.description}), strength {strength:g}, {epochs:g} epochs: accuracy "
                  f"{acc['input']:.1%} -> {acc['regularized']:.1%}")
    if len(after):
        console.print(f"BatchNorm scales below 1e-2: {report['bn_scales_below_1e-2']['input']:.1%} -> "
                      f"{report['bn_scales_below_1e-2']['regularized']:.1%}")
    console.print(f"every group pruned {probe_ratio:.0%} by {reg.criterion} (+ BN recalibration): accuracy "
                  f"{probe['input']:.1%} from the input model, {probe['regularized']:.1%} from the regularised one")
    console.print(f"wrote {model_path}, {report_path} and {plot}; next: {report['next']}")
    return RegularizeResult(model_path=model_path, report_path=report_path, plot=plot, report=report)
