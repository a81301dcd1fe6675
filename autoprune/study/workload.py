"""The workload: model, data, space, profiles, metric and loss, loaded and cross-checked once.

Every user error about the inputs surfaces here, before Ray starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from autoprune.core.errors import AutopruneError
from autoprune.core.metric import ACCURACY, MetricSense
from autoprune.latency.profiles import HardwareProfile
from autoprune.load.data import DataSplits, load_data
from autoprune.load.models import load_model
from autoprune.prune.graph import example_input
from autoprune.space.space import SearchSpace, init_space


@dataclass(frozen=True)
class Workload:
    """What every trial needs, loaded and checked once in the driver."""

    model: torch.nn.Module
    data: DataSplits
    input_shape: tuple[int, ...]
    space: SearchSpace
    profiles: tuple[HardwareProfile, ...]  # the primary profile first
    metric: str = "top1"  # what ranks plans (autoprune.train.task)
    loss: str = "cross_entropy"  # what fine-tuning minimises
    sense: MetricSense = ACCURACY  # which way the metric is better


def load_workload(*, model: str, data: str, space: str | Path | None, profiles: Sequence[HardwareProfile],
                  criterion: str | None = None, weights: str | Path | None = None, metric: str = "top1",
                  loss: str = "cross_entropy", val_samples: int | None = None) -> Workload:
    """Resolve and cross-check model, data, space, metric and loss: every user error surfaces here."""
    from autoprune.train.task import metric_sense, resolve_loss

    sense = metric_sense(metric)
    resolve_loss(loss)
    loaded_space = SearchSpace.load(space) if space is not None else None
    from autoprune.load.models import model_preprocessing

    splits = load_data(data, preprocessing=model_preprocessing(model)).with_val_samples(val_samples)
    net = load_model(model, weights=weights)
    input_shape = splits.input_shape
    try:
        with torch.no_grad():
            out = net(example_input(input_shape, batch=2))
    except Exception as exc:  # any failure here means model and data do not fit
        from autoprune.core.usercode import UserCodeError, describe_exception

        raise UserCodeError(f"model {model!r} failed on inputs of shape {input_shape} from data {data!r}: "
                            f"{describe_exception(exc)}; pass --data that matches the model") from exc
    if loss == "cross_entropy" and isinstance(out, torch.Tensor) and out.ndim == 2:
        check_labels(splits, classes=int(out.shape[1]), model=model, data=data)
    check_task(net, splits.train, splits.trial_val, metric=metric, loss=loss)
    if loaded_space is None:
        # widths rounded to what the primary target computes in, where known (its profile, profile probe)
        from autoprune.latency.widths import channel_multiple

        block = channel_multiple(profiles[0]) if profiles else None
        loaded_space = init_space(net, input_shape=input_shape, model_name=model, round_to=block or 8)
    else:
        loaded_space.check_against(net, input_shape=input_shape, source=str(space))
        loaded_space = _with_channels(loaded_space, net, input_shape)
    if criterion is not None:
        from autoprune.prune.criteria import get_criterion

        get_criterion(criterion)
        loaded_space = loaded_space.model_copy(update={"criterion": criterion})
    return Workload(model=net, data=splits, input_shape=input_shape, space=loaded_space, profiles=tuple(profiles),
                    metric=metric, loss=loss, sense=sense)


def check_task(model: torch.nn.Module, train: Dataset, val: Dataset, *, metric: str, loss: str, samples: int = 32) -> None:
    """Run a user's metric and loss once on a few samples of the unpruned model, before any work, so
    a wrong signature or a wrong kind of result is said in one line now, not as failed trials later:
    the metric gives a finite number, the loss a scalar tensor autograd can differentiate."""
    from torch.utils.data import DataLoader, Subset

    from autoprune.core.usercode import UserCodeError, described
    from autoprune.train.finetune import evaluate
    from autoprune.train.task import check_arity, resolve_loss, resolve_metric

    for what, spec, fn, call in (("metric", metric, resolve_metric(metric), "fn(model, loader)"),
                                 ("loss", loss, resolve_loss(loss), "fn(outputs, targets)")):
        check_arity(getattr(fn, "fn", fn), what=what, spec=spec, call=call)  # the user's own, not the guard
    if ":" in metric:
        evaluate(model, Subset(val, range(min(samples, len(val)))), metric=metric)
    if ":" in loss:
        x, y = next(iter(DataLoader(Subset(train, range(min(samples, len(train)))), batch_size=samples)))
        with torch.enable_grad():
            value = resolve_loss(loss)(model(x), y)
        grads = any(p.requires_grad for p in model.parameters())
        if not (isinstance(value, torch.Tensor) and value.numel() == 1 and value.is_floating_point()
                and (value.requires_grad or not grads)):
            raise UserCodeError(f"loss {loss!r} returned {described(value)}; a loss returns a scalar tensor that "
                                "autograd can differentiate (reduce a per-sample loss with .mean())")
        if not torch.isfinite(value):
            raise UserCodeError(f"loss {loss!r} returned {value.item()} on the unpruned model; a loss is finite")


def _labels(dataset, limit: int = 256) -> torch.Tensor | None:
    """Class labels of a dataset: all of a TensorDataset's or an ImageFolder's (``targets``), else its
    first ``limit`` samples' (decoding every image would cost more than the check is worth)."""
    tensors = getattr(dataset, "tensors", None)
    if tensors is not None and len(tensors) >= 2:
        return tensors[1]
    targets = getattr(dataset, "targets", None)
    if isinstance(targets, torch.Tensor):
        return targets
    if isinstance(targets, list) and targets and all(isinstance(t, int) for t in targets):
        return torch.as_tensor(targets)
    ys = [dataset[i][1] for i in range(min(limit, len(dataset)))]
    if not ys or not all(isinstance(y, int) or (isinstance(y, torch.Tensor) and y.ndim == 0) for y in ys):
        return None
    return torch.as_tensor([int(y) for y in ys])


def check_labels(splits: DataSplits, *, classes: int, model: str, data: str) -> None:
    """Labels a classifier with ``classes`` outputs can score: 0 .. classes-1. Others would give an
    unpruned accuracy of a few percent and fine-tunes that fail ("Target out of bounds")."""
    for name, dataset in (("train", splits.train), ("validation", splits.val)):
        y = _labels(dataset)
        if y is None or y.numel() == 0 or y.is_floating_point():
            continue
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= classes:
            raise AutopruneError(
                f"data {data!r}: {name} labels run {lo}..{hi}, but model {model!r} outputs {classes} classes "
                f"(labels 0..{classes - 1}); give the model {hi + 1} outputs (e.g. ?num_classes={hi + 1}, or a "
                "new head) or data whose labels fit")


def _with_channels(space: SearchSpace, model: torch.nn.Module, input_shape: tuple[int, ...]) -> SearchSpace:
    """A hand-written space may leave out each group's channels and members: the run's copy has them."""
    if all(g.channels for g in space.groups.values()):
        return space
    from autoprune.prune.groups import find_groups

    found = {g.name: g for g in find_groups(model, input_shape=input_shape, ignored=space.ignored)}
    groups = {name: g if g.channels else g.model_copy(update={"channels": found[name].channels,
                                                               "members": g.members or list(found[name].members)})
              for name, g in space.groups.items()}
    return space.model_copy(update={"groups": groups})
