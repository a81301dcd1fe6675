"""The pruning engine: dependency-aware structural channel pruning on Torch-Pruning's DepGraph.

This is the only module that maps layer *names* to modules. Removed channels physically leave
the tensors; layers coupled by residual adds, BatchNorm or depthwise convs form one group and
are pruned together, so the pruned model stays consistent.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from autoprune.criteria import get_criterion
from autoprune.errors import AutopruneError
from autoprune.plan import Plan

_ROOT_TYPES = (nn.Conv2d, nn.Conv1d, nn.Linear)


@dataclass(frozen=True)
class PrunableGroup:
    """Layers whose output channels must be pruned together; ``name`` is the first of them."""

    name: str
    members: tuple[str, ...]
    channels: int


def example_input(input_shape: Sequence[int], *, batch: int = 1) -> torch.Tensor:
    return torch.zeros(batch, *input_shape)


def output_layers(model: nn.Module, input_shape: Sequence[int]) -> list[str]:
    """Names of the last conv/linear layer run in forward: its channels are the model's outputs."""
    order: list[str] = []
    hooks = [m.register_forward_hook(lambda mod, i, o, n=name: order.append(n))
             for name, m in model.named_modules() if isinstance(m, _ROOT_TYPES)]
    try:
        with torch.no_grad():
            model.eval()(example_input(input_shape))
    finally:
        for h in hooks:
            h.remove()
    return order[-1:]


def _graph(model: nn.Module, input_shape: Sequence[int]) -> tp.DependencyGraph:
    try:
        return tp.DependencyGraph().build_dependency(model, example_inputs=example_input(input_shape),
                                                     verbose=False)
    except Exception as exc:  # noqa: BLE001 - tracing failures are the user's model/input mismatch
        raise AutopruneError(f"cannot trace the model with an input of shape {tuple(input_shape)} "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                             "check that the data matches the model") from None


def _find(model: nn.Module, dg: tp.DependencyGraph, ignored: Sequence[str]) -> dict[str, tuple[PrunableGroup, nn.Module]]:
    modules = dict(model.named_modules())
    missing = [n for n in ignored if n not in modules]
    if missing:
        raise AutopruneError(f"ignored layer {missing[0]!r} does not exist in the model")
    order = {m: i for i, (_, m) in enumerate(model.named_modules())}
    name_of = {m: n for n, m in model.named_modules()}
    found: dict[str, tuple[PrunableGroup, nn.Module]] = {}
    for group in dg.get_all_groups(ignored_layers=[modules[n] for n in ignored], root_module_types=_ROOT_TYPES):
        outs = sorted({dep.target.module for dep, _ in group
                       if dg.is_out_channel_pruning_fn(dep.handler) and dep.target.module in name_of
                       and isinstance(dep.target.module, _ROOT_TYPES)}, key=order.__getitem__)
        if not outs:
            continue
        root = outs[0]
        channels = dg.get_out_channels(root)
        if channels is None or channels < 2:
            continue
        info = PrunableGroup(name=name_of[root], members=tuple(name_of[m] for m in outs), channels=channels)
        found[info.name] = (info, root)
    return dict(sorted(found.items(), key=lambda kv: order[kv[1][1]]))  # forward order reads best


def find_groups(model: nn.Module, *, input_shape: Sequence[int], ignored: Sequence[str] | None = None) -> list[PrunableGroup]:
    """The prunable groups of ``model``, in forward order; ``ignored=None`` ignores the output layer."""
    ignored = output_layers(model, input_shape) if ignored is None else list(ignored)
    return [g for g, _ in _find(model, _graph(model, input_shape), ignored).values()]


@dataclass(frozen=True)
class LayerShape:
    """A conv or linear layer's unpruned cost and which groups set its widths (for cost models)."""

    name: str
    macs: int  # multiply-accumulates for one sample, unpruned
    out_group: str | None  # the group whose ratio sets its output width; None: fixed
    in_groups: tuple[str, ...]  # the groups whose ratios set its input width; () fixed
    depthwise: bool  # its cost scales with one width, not with input times output
    out_elems: int = 0  # output activations for one sample (memory traffic), unpruned
    in_elems: int = 0  # input activations for one sample, unpruned
    in_channels: int = 1  # unpruned widths (features, for a linear layer)
    out_channels: int = 1


def layer_shapes(model: nn.Module, *, input_shape: Sequence[int], ignored: Sequence[str] | None = None
                 ) -> list[LayerShape]:
    """Every conv/linear layer with its unpruned MACs and the groups that set its widths, read from
    the dependency graph (no pruning): what ``cost.CostModel`` needs to price a plan in microseconds."""
    model = copy.deepcopy(model).eval()
    ignored = output_layers(model, input_shape) if ignored is None else list(ignored)
    dg = _graph(model, input_shape)
    groups = _find(model, dg, ignored)
    name_of = {m: n for n, m in model.named_modules()}
    out_group: dict[str, str] = {}
    in_groups: dict[str, list[str]] = {}
    for gname, (info, root) in groups.items():
        fn = dg.get_pruner_of_module(root).prune_out_channels
        for dep, _ in dg.get_pruning_group(root, fn, [0]):
            target = dep.target.module
            if target not in name_of or not isinstance(target, _ROOT_TYPES):
                continue
            lname = name_of[target]
            if dg.is_out_channel_pruning_fn(dep.handler):
                out_group.setdefault(lname, gname)
            elif dg.is_in_channel_pruning_fn(dep.handler) and gname not in in_groups.setdefault(lname, []):
                in_groups[lname].append(gname)
    outputs: dict[str, tuple[int, ...]] = {}

    inputs: dict[str, tuple[int, ...]] = {}

    def record(name: str):
        def hook(mod: nn.Module, inp: Any, out: torch.Tensor) -> None:  # returning a value would replace out
            outputs.setdefault(name, tuple(out.shape))
            inputs.setdefault(name, tuple(inp[0].shape))
        return hook

    hooks = [m.register_forward_hook(record(name)) for name, m in model.named_modules() if isinstance(m, _ROOT_TYPES)]
    try:
        with torch.no_grad():
            model(example_input(input_shape))
    finally:
        for h in hooks:
            h.remove()
    shapes = []
    for name, m in model.named_modules():
        if not isinstance(m, _ROOT_TYPES) or name not in outputs:
            continue
        out = outputs[name]
        if isinstance(m, nn.Linear):
            macs = m.in_features * m.out_features * math.prod(out[1:-1])
            depthwise = False
        else:
            spatial = math.prod(out[2:])
            macs = m.in_channels // m.groups * math.prod(m.kernel_size) * m.out_channels * spatial
            depthwise = m.groups > 1 and m.groups == m.in_channels
        og = out_group.get(name)
        ig = tuple(g for g in in_groups.get(name, []) if g != og or not depthwise)
        c_in, c_out = (m.in_features, m.out_features) if isinstance(m, nn.Linear) else (m.in_channels, m.out_channels)
        shapes.append(LayerShape(name=name, macs=int(macs), out_group=og, in_groups=ig, depthwise=depthwise,
                                 out_elems=math.prod(out[1:]), in_elems=math.prod(inputs[name][1:]),
                                 in_channels=c_in, out_channels=c_out))
    return shapes


def channels_to_remove(channels: int, ratio: float, round_to: int = 1) -> int:
    """How many channels a ratio removes: the kept count is rounded to a multiple of ``round_to``, at least 1."""
    keep = max(1, round(channels * (1.0 - ratio)))
    if round_to > 1:
        keep = min(channels, max(round_to, round_to * round(keep / round_to)))
    return channels - keep


def prune(model: nn.Module, plan: Plan, *, input_shape: Sequence[int],
          calibration: tuple[torch.Tensor, torch.Tensor] | None = None) -> nn.Module:
    """A pruned copy of ``model``; the original is left untouched.

    Every channel score is computed on the unpruned weights before any channel is removed,
    so the result does not depend on the order in which groups are visited.
    """
    model = copy.deepcopy(model).eval()
    ignored = output_layers(model, input_shape) if plan.ignored is None else list(plan.ignored)
    dg = _graph(model, input_shape)
    groups = _find(model, dg, ignored)
    unknown = [n for n in plan.ratios if n not in groups]
    if unknown:
        raise AutopruneError(f"plan names group {unknown[0]!r}, which is not a prunable group of this model; "
                             f"prunable groups: {', '.join(groups)}")
    criterion = get_criterion(plan.criterion)
    if (criterion.needs_gradients or criterion.needs_activations) and calibration is None:
        raise AutopruneError(f"criterion {plan.criterion!r} needs a calibration batch "
                             f"({'gradients' if criterion.needs_gradients else 'activations'}); "
                             "pass calibration=(inputs, labels)")
    stats = None
    if criterion.needs_activations:
        from autoprune.criteria import activation_stats

        stats = activation_stats(model, calibration[0], criterion.activation_stat)
    if criterion.needs_gradients:
        model.zero_grad(set_to_none=True)
        x, y = calibration
        nn.functional.cross_entropy(model.train()(x), y).backward()
        model.eval()
    scorer = criterion.scorer(stats)
    selected = []
    with torch.random.fork_rng():
        torch.manual_seed(plan.seed)  # only the random criterion draws; keep it reproducible
        for name, ratio in plan.ratios.items():
            info, root = groups[name]
            n_remove = channels_to_remove(info.channels, ratio, plan.round_to)
            if n_remove == 0:
                continue
            fn = dg.get_pruner_of_module(root).prune_out_channels
            scores = scorer(dg.get_pruning_group(root, fn, list(range(info.channels))))
            if scores is None or len(scores) != info.channels:
                raise AutopruneError(f"criterion {plan.criterion!r} gave no score for group {name!r}; "
                                     "choose a criterion that covers its layers (e.g. l1)")
            idxs = torch.argsort(scores.detach().cpu(), stable=True)[:n_remove].tolist()
            selected.append((root, fn, sorted(idxs)))
    for root, fn, idxs in selected:
        dg.get_pruning_group(root, fn, idxs).prune()
    model.zero_grad(set_to_none=True)
    return model


def count_macs_params(model: nn.Module, *, input_shape: Sequence[int]) -> tuple[int, int]:
    """MACs for one input sample, and the parameter count."""
    macs, params = tp.utils.count_ops_and_params(model, example_input(input_shape))
    return int(macs), int(params)


def global_ratios(model: nn.Module, *, input_shape: Sequence[int], ratio: float, ignored: Sequence[str] | None = None,
                  round_to: int = 1) -> dict[str, float]:
    """The per-group ratios Torch-Pruning's global pruning picks for an overall ``ratio``.

    Global pruning (``MetaPruner(global_pruning=True)``, group L1 magnitude normalised per group)
    ranks every channel of every group on one scale and removes the lowest: the allocation a user
    gets from Torch-Pruning without a search. Read off the pruned copy as group -> removed fraction.
    """
    model = copy.deepcopy(model).eval()
    ignored = output_layers(model, input_shape) if ignored is None else list(ignored)
    modules = dict(model.named_modules())
    groups = find_groups(model, input_shape=input_shape, ignored=ignored)
    pruner = tp.pruner.MetaPruner(model, example_input(input_shape), importance=tp.importance.GroupMagnitudeImportance(p=1),
                                  global_pruning=True, pruning_ratio=ratio, ignored_layers=[modules[n] for n in ignored],
                                  round_to=round_to if round_to > 1 else None)
    pruner.step()
    after = dict(model.named_modules())
    out = {}
    for g in groups:
        m = after[g.name]
        kept = m.out_channels if isinstance(m, (nn.Conv2d, nn.Conv1d)) else m.out_features
        out[g.name] = 1.0 - kept / g.channels
    return out
