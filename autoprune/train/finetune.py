"""Fine-tuning with linear warm-up and cosine annealing, and accuracy on a held-out split."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from autoprune.core.inputs import as_spec, to_device


@dataclass(frozen=True, kw_only=True)
class FinetuneConfig:
    """How long and how hard to fine-tune: ``steps`` wins over ``epochs`` when both are set."""

    steps: int | None = None
    epochs: float = 1.0
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64
    warmup_fraction: float = 0.1
    seed: int = 0
    loss: str = "cross_entropy"  # a spec (autoprune.train.task): what the fine-tune minimises
    workers: int = 0  # DataLoader worker processes (decoding image files)

    def total_steps(self, n_samples: int) -> int:
        if self.steps is not None:
            return self.steps
        return max(1, math.ceil(self.epochs * math.ceil(n_samples / self.batch_size)))


def warmup_cosine(total: int, warmup_fraction: float) -> Callable[[int], float]:
    """LR multiplier: linear warm-up to 1, then cosine decay to 0 by ``total`` steps."""
    warmup = int(total * warmup_fraction)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


@dataclass(frozen=True, kw_only=True)
class Distillation:
    """Knowledge distillation (Hinton et al. 2015): loss = (1 - alpha) * CE(labels)
    + alpha * T² * KL(teacher's softened outputs || student's), T the temperature.

    ``features`` names layers whose feature maps are matched too, by attention transfer
    (Zagoruyko & Komodakis 2017): each map is reduced to its normalised spatial energy
    mean_c(f²), which does not depend on the channel count, so a pruned student can match an
    unpruned teacher layer by layer with no adapter; weighted by ``beta``.
    """

    teacher: nn.Module
    alpha: float = 0.5
    temperature: float = 4.0
    features: tuple[str, ...] = ()
    beta: float = 1000.0

    def loss(self, student_out: torch.Tensor, x: torch.Tensor, ce: torch.Tensor,
             student_maps: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        with torch.no_grad(), _capture(self.teacher, self.features) as teacher_maps:
            teacher_out = self.teacher(x)
        t = self.temperature
        # Over the class dimension (1): logits (N, C) or dense predictions (N, C, H, W) alike.
        kd = nn.functional.kl_div(nn.functional.log_softmax(student_out / t, 1),
                                  nn.functional.softmax(teacher_out / t, 1), reduction="sum") * t * t
        kd = kd / (student_out.numel() / student_out.shape[1])
        loss = (1.0 - self.alpha) * ce + self.alpha * kd
        if self.features and student_maps is not None:
            at = sum((_attention(student_maps[n]) - _attention(teacher_maps[n])).pow(2).mean() for n in self.features)
            loss = loss + self.beta / 2 * at
        return loss

    def student_maps(self, student: nn.Module) -> AbstractContextManager[dict[str, torch.Tensor]]:
        """While open, the student's matched feature maps of its latest forward pass."""
        return _capture(student, self.features)


def _attention(f: torch.Tensor) -> torch.Tensor:
    return nn.functional.normalize(f.pow(2).mean(1).flatten(1), dim=1)


@contextlib.contextmanager
def _capture(model: nn.Module, names: tuple[str, ...]):
    modules = dict(model.named_modules())
    maps: dict[str, torch.Tensor] = {}
    hooks = [modules[n].register_forward_hook(lambda m, i, o, n=n: maps.__setitem__(n, o)) for n in names]
    try:
        yield maps
    finally:
        for h in hooks:
            h.remove()


def feature_layers(model: nn.Module, names: str, *, input_shape: tuple[int, ...]) -> tuple[str, ...]:
    """Resolve ``--kd-features``: comma-separated layer names, or ``auto`` for every top-level
    child whose output is a feature map (N, C, H, W) — in a ResNet, the stem and each stage."""
    from autoprune.core.errors import AutopruneError

    modules = dict(model.named_modules())
    with torch.no_grad(), _capture(model, tuple(n for n, _ in model.named_children())) as maps:
        model.eval()(as_spec(input_shape).example(2))
    spatial = [n for n, _ in model.named_children() if n in maps and isinstance(maps[n], torch.Tensor)
               and maps[n].dim() == 4 and maps[n].shape[-2] * maps[n].shape[-1] > 1]  # not a pooled vector
    if names.strip() == "auto":
        if not spatial:
            raise AutopruneError("--kd-features auto found no top-level layer with a (N, C, H, W) output; "
                                 "name the layers to match, e.g. --kd-features layer1,layer2")
        return tuple(spatial)
    chosen = tuple(n.strip() for n in names.split(",") if n.strip())
    for n in chosen:
        if n not in modules:
            raise AutopruneError(f"--kd-features names layer {n!r}, which the model lacks; use auto or some of: "
                                 f"{', '.join(spatial) or ', '.join(list(modules)[1:6])}")
    return chosen


class NonFiniteLoss(RuntimeError):
    """Training diverged; the trial that hit it is recorded as failed."""


def finetune(model: nn.Module, dataset: Dataset, *, config: FinetuneConfig,
             on_step: Callable[[int, int, float], None] | None = None,
             step_guard: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
             device: str | torch.device = "cpu", distill: Distillation | None = None,
             after_backward: Callable[[nn.Module], None] | None = None) -> float:
    """Train ``model`` in place; returns the mean loss of the last steps (or nan for zero steps).

    ``distill`` adds knowledge distillation from its teacher (kept in eval mode, on ``device``).
    ``after_backward(model)`` runs between backward and the optimiser step: a sparsity penalty's
    gradient (``autoprune.prune.penalties``).

    Each step runs inside ``step_guard()``: trials pass the node lock, so no step overlaps a
    latency measurement on the same machine. ``model`` must already be on ``device``.
    """
    total = config.total_steps(len(dataset))  # type: ignore[arg-type]
    if total <= 0:
        return float("nan")
    gen = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True, generator=gen, drop_last=False,
                        num_workers=config.workers)
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                          weight_decay=config.weight_decay, nesterov=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total, config.warmup_fraction))
    from autoprune.train.task import resolve_loss

    loss_fn = resolve_loss(config.loss)
    if distill is not None:
        distill.teacher.to(device).eval()
    model.train()
    step, recent = 0, []
    with contextlib.ExitStack() as stack:
        # the student's matched feature maps, refreshed by every forward pass (empty without --kd-features)
        maps = stack.enter_context(distill.student_maps(model)) if distill is not None else {}
        while step < total:
            for x, y in loader:
                x, y = to_device(x, device, non_blocking=True), y.to(device, non_blocking=True)
                with step_guard():
                    out = model(x)
                    loss = loss_fn(out, y)
                    if distill is not None:
                        loss = distill.loss(out, x, loss, maps)
                    if not torch.isfinite(loss):
                        raise NonFiniteLoss(f"loss became {loss.item()} at fine-tune step {step}")
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    if after_backward is not None:
                        after_backward(model)
                    opt.step()
                    sched.step()
                recent = (recent + [loss.item()])[-10:]
                step += 1
                if on_step is not None:
                    on_step(step, total, recent[-1])
                if step >= total:
                    break
    model.eval()
    return sum(recent) / len(recent)


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, *, batch_size: int = 256, device: str | torch.device = "cpu",
             metric: str = "top1", workers: int = 0) -> float:
    """The ``metric`` (a spec, see ``autoprune.train.task``; default top-1 accuracy in [0, 1]) on ``dataset``."""
    from autoprune.train.task import OnDevice, metric_value, resolve_metric

    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    return metric_value(resolve_metric(metric)(model, OnDevice(loader, device)), spec=metric)


@torch.no_grad()
def recalibrate_bn(model: nn.Module, dataset: Dataset, *, batches: int, batch_size: int = 64, seed: int = 0,
                   device: str | torch.device = "cpu") -> int:
    """Adaptive BatchNorm (EagleEye): re-estimate every BN layer's running statistics from a few
    training batches. Pruning leaves the old statistics describing channels that now see other
    inputs; fresh ones make a pruned model's accuracy before fine-tuning a better ranking signal.
    Returns the number of BN layers recalibrated."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or batches <= 0:
        return 0
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches, not an exponential one
    model.train()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
    for i, (x, _) in enumerate(loader):
        if i >= batches:
            break
        model(to_device(x, device))
    for m, momentum in zip(bns, momenta, strict=True):
        m.momentum = momentum
    model.eval()
    return len(bns)
