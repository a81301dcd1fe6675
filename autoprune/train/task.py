"""What the model is for: the metric that ranks plans and the loss that trains them.

Both are named by spec strings (so they travel to Ray workers and into config.yaml): built-in
``top1`` / ``top5`` / ``next_token_top1`` / ``perplexity`` metrics and the ``cross_entropy`` /
``lm_cross_entropy`` losses, or ``package.module:function`` for any other task. A metric is
``fn(model, loader) -> float``, where the loader yields ``(inputs, targets)`` already on the model's
device; higher is better unless the function says ``fn.direction = "minimize"`` (perplexity, an error
rate), and it is shown as a percentage unless ``fn.percent = False`` (a minimised metric never is).
A loss is ``fn(outputs, targets) -> tensor``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from autoprune.core.errors import AutopruneError
from autoprune.core.inputs import to_device
from autoprune.core.metric import DIRECTIONS, MetricSense

Metric = Callable[[nn.Module, Any], float]
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _topk(k: int) -> Metric:
    def metric(model: nn.Module, loader: Any) -> float:
        correct = total = 0
        for x, y in loader:
            out = model(x)
            top = out.topk(min(k, out.shape[1]), dim=1).indices
            correct += (top == y.unsqueeze(1)).any(1).sum().item()
            total += y.numel()
        return correct / max(1, total)
    metric.__name__ = f"top{k}"
    return metric


def next_token_top1(model: nn.Module, loader: Any) -> float:
    """A causal language model's next-token accuracy: logits (N, T, V) at position t against token t+1
    of the inputs (the data's targets are the input ids themselves)."""
    correct = total = 0
    for x, y in loader:
        pred = model(x)[:, :-1].argmax(-1)
        correct += (pred == y[:, 1:]).sum().item()
        total += y[:, 1:].numel()
    return correct / max(1, total)


def lm_cross_entropy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy of a causal language model (the loss it was trained with): logits
    (N, T, V) at position t against token t+1 of ``targets`` (N, T)."""
    return nn.functional.cross_entropy(outputs[:, :-1].reshape(-1, outputs.shape[-1]), targets[:, 1:].reshape(-1))


def perplexity(model: nn.Module, loader: Any) -> float:
    """A causal language model's perplexity: exp of the mean next-token cross-entropy over every
    predicted token (the data's targets are the input ids). Lower is better."""
    total_nll, tokens = 0.0, 0
    for x, y in loader:
        logits = model(x)[:, :-1]
        total_nll += nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y[:, 1:].reshape(-1),
                                                 reduction="sum").item()
        tokens += y[:, 1:].numel()
    return float(torch.exp(torch.tensor(total_nll / max(1, tokens))))


perplexity.direction = "minimize"  # type: ignore[attr-defined]


METRICS: dict[str, Metric] = {"top1": _topk(1), "top5": _topk(5), "next_token_top1": next_token_top1,
                              "perplexity": perplexity}
LOSSES: dict[str, Loss] = {"cross_entropy": nn.functional.cross_entropy, "lm_cross_entropy": lm_cross_entropy}


def resolve_metric(spec: str) -> Metric:
    """A built-in metric's name, or ``package.module:function``; the error names what exists."""
    return _resolve(spec, METRICS, what="metric")


def resolve_loss(spec: str) -> Loss:
    return _resolve(spec, LOSSES, what="loss")


METRIC_RETURNS = ("a metric returns one number, higher is better (e.g. accuracy in [0, 1]) unless the function "
                  "sets direction = 'minimize'")


def metric_sense(spec: str) -> MetricSense:
    """Which way ``spec``'s metric is better and how it reads, from the function's ``direction`` and
    ``percent`` attributes; a wrong value is one line naming the function."""
    fn = resolve_metric(spec)
    fn = getattr(fn, "fn", fn)  # a user's function, not the guard around it (core.usercode)
    direction = getattr(fn, "direction", "maximize")
    if direction not in DIRECTIONS:
        raise AutopruneError(f"metric {spec!r} has direction = {direction!r}; use 'maximize' or 'minimize'")
    percent = getattr(fn, "percent", direction == "maximize")
    if not isinstance(percent, bool):
        raise AutopruneError(f"metric {spec!r} has percent = {percent!r}; use True (a fraction shown as %) or False")
    return MetricSense(name=spec, direction=direction, percent=percent and direction == "maximize")


def metric_value(value: Any, *, spec: str) -> float:
    """What a metric returned, as a finite float; anything else is a one-line error saying what came back."""
    from autoprune.core.usercode import as_number

    return as_number(value, what="metric", spec=spec, expected=METRIC_RETURNS)


def check_arity(fn: Callable, *, what: str, spec: str, call: str) -> None:
    """A function autoprune calls with two positional arguments must accept them."""
    import inspect

    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without a signature: its call will tell
        return
    try:
        sig.bind(None, None)
    except TypeError:
        from autoprune.core.usercode import UserCodeError

        raise UserCodeError(f"{what} {spec!r} has the signature {getattr(fn, '__name__', spec)}{sig}, but autoprune "
                            f"calls it as {call}; take those two arguments") from None


def _resolve(spec: str, registry: dict[str, Callable], *, what: str) -> Callable:
    if spec in registry:
        return registry[spec]
    if ":" not in spec:
        raise AutopruneError(f"{what} {spec!r} is unknown; use {' or '.join(registry)}, or package.module:function")
    from autoprune.core.imports import import_callable

    return import_callable(spec, what=what)


class OnDevice:
    """A DataLoader whose batches arrive on ``device`` (what a metric function receives)."""

    def __init__(self, loader: DataLoader, device: str | torch.device) -> None:
        self.loader, self.device = loader, device

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in self.loader:
            yield to_device(x, self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def __len__(self) -> int:
        return len(self.loader)
