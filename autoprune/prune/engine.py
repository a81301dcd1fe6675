"""The pruning engine: dependency-aware structural channel pruning on Torch-Pruning's DepGraph.

Removed channels physically leave the tensors; layers coupled by residual adds, BatchNorm or
depthwise convs form one group (``groups``) and are pruned together, so the pruned model stays
consistent. ``graph`` builds the dependency graph; this module scores channels and removes them.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from autoprune.core.errors import AutopruneError
from autoprune.prune.criteria import get_criterion
from autoprune.prune.graph import (
    dependency_graph,
    example_input,
    first_line,
    traced_inputs,
)
from autoprune.prune.groups import (
    PrunableGroup,
    attention_blocks,
    find_groups,
    group_map,
    output_layers,
    removed_units,
)
from autoprune.prune.plan import Plan
from autoprune.prune.tp import tp
from autoprune.prune.transformer import (
    Block,
    block_layers,
    block_scores,
    find_blocks,
    input_stats,
    prune_block,
)


def prune(model: nn.Module, plan: Plan, *, input_shape: Sequence[int],
          calibration: tuple[torch.Tensor, torch.Tensor] | None = None, inplace: bool = False,
          loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> nn.Module:
    """A pruned copy of ``model``; the original is left untouched unless ``inplace`` (big models: one copy).

    Every channel score is computed on the unpruned weights before any channel is removed,
    so the result does not depend on the order in which groups are visited. ``loss`` (default
    cross-entropy) is what gradient criteria differentiate.
    """
    model = (model if inplace else copy.deepcopy(model)).eval()
    ignored = output_layers(model, input_shape) if plan.ignored is None else list(plan.ignored)
    dg = dependency_graph(model, input_shape)
    groups = group_map(model, dg, ignored, only=set(plan.ratios))  # the plan's groups only
    modules_by_name = dict(model.named_modules())
    unknown = [n for n in plan.ratios if n not in groups]
    if unknown:
        raise AutopruneError(f"plan names group {unknown[0]!r}, which is not a prunable group of this model; "
                             f"prunable groups: {', '.join(group_map(model, dg, ignored))}")
    criterion = get_criterion(plan.criterion)
    if (criterion.needs_gradients or criterion.needs_activations) and calibration is None:
        raise AutopruneError(f"criterion {plan.criterion!r} needs a calibration batch "
                             f"({'gradients' if criterion.needs_gradients else 'activations'}); "
                             "pass calibration=(inputs, labels)")
    stats = None
    blocks = [g[1] for g in groups.values() if isinstance(g[1], Block)]
    if criterion.needs_activations:
        from autoprune.prune.criteria import activation_stats

        stats = activation_stats(model, calibration[0], criterion.activation_stat)
        if blocks:
            stats.update(input_stats(model, blocks, calibration[0], criterion.activation_stat))
    if criterion.needs_gradients:
        model.zero_grad(set_to_none=True)
        x, y = calibration
        (loss or nn.functional.cross_entropy)(model.train()(x), y).backward()
        _zero_missing_grads(model)
        model.eval()
    scorer = criterion.scorer(stats)
    selected = []
    attention = attention_blocks(model)
    heads_removed: dict[nn.Module, int] = {}
    units: list[tuple[Block, list[int]]] = []  # transformer blocks: units to remove, after the graph's groups
    with torch.random.fork_rng():
        torch.manual_seed(plan.seed)  # only the random criterion draws; keep it reproducible
        for name, ratio in plan.ratios.items():
            info, root, fn = groups[name]
            n_remove = removed_units(info, ratio, plan.round_to)
            if n_remove == 0:
                continue
            if isinstance(root, Block):
                scores = block_scores(root, model, plan.criterion, stats)
                units.append((root, torch.argsort(scores, stable=True)[:n_remove].tolist()))
                continue
            width = dg.get_in_channels(root) if info.unit == "heads" else info.channels
            scores = scorer(dg.get_pruning_group(root, fn, list(range(width))))
            if scores is None or len(scores) != width:
                raise AutopruneError(f"criterion {plan.criterion!r} gave no score for group {name!r}; "
                                     "choose a criterion that covers its layers (e.g. l1)")
            scores = scores.detach().cpu().float()
            if info.unit == "heads":
                # A head's score is the mean over its width; its whole slice of q, k, v leaves.
                per = width // info.channels
                heads = torch.argsort(scores.view(info.channels, per).mean(1), stable=True)[:n_remove].tolist()
                idxs = [h * per + j for h in heads for j in range(per)]
                heads_removed[attention[modules_by_name[name]]] = n_remove
            elif info.chunks > 1:
                # Same positions in every chunk (a grouped conv's groups stay equal): rank positions by
                # their mean score over the chunks, as Torch-Pruning does.
                per = info.channels // info.chunks
                pos = torch.argsort(scores.view(info.chunks, per).mean(0), stable=True)[: n_remove // info.chunks]
                idxs = [c * per + p for c in range(info.chunks) for p in pos.tolist()]
            else:
                idxs = torch.argsort(scores, stable=True)[:n_remove].tolist()
            selected.append((root, fn, sorted(idxs)))
    for root, fn, idxs in selected:
        dg.get_pruning_group(root, fn, idxs).prune()
    for block, remove in units:
        prune_block(model, block, remove)
    _sync_attributes(model, list(attention.values()), heads_removed)
    model.zero_grad(set_to_none=True)
    return model


def _sync_attributes(model: nn.Module, blocks: Sequence[nn.Module], heads_removed: Mapping[nn.Module, int]) -> None:
    """Attributes that forward passes read and pruning changed: head counts and widths of the
    attention ``blocks`` (found before pruning), torchvision ViT's ``hidden_dim``."""
    for block in blocks:
        block.num_heads -= heads_removed.get(block, 0)
        if isinstance(getattr(block, "head_dim", None), int):
            block.head_dim = block.qkv.out_features // (3 * block.num_heads)
        if isinstance(getattr(block, "attn_dim", None), int):  # timm >= 1.0 reshapes to it
            block.attn_dim = block.proj.in_features
    for m in model.modules():
        # torchvision's VisionTransformer reshapes its patches to ``hidden_dim`` channels.
        if isinstance(getattr(m, "hidden_dim", None), int) and isinstance(getattr(m, "conv_proj", None), nn.Conv2d):
            m.hidden_dim = m.conv_proj.out_channels


def taylor_scores(model: nn.Module, batches: Sequence[tuple[torch.Tensor, torch.Tensor]], *,
                  input_shape: Sequence[int], ignored: Sequence[str] | None = None,
                  loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Group name -> the first-order Taylor loss of removing each of its units (channels, or heads).

    Summed over every layer of the group and not normalised per group (``GroupTaylorImportance``
    with ``normalizer=None``), so that scores of different groups are on one scale: the change in
    loss a removal costs. Gradients are accumulated over ``batches`` in eval mode (BN statistics
    stay the pretrained ones). The model is not changed.
    """
    model = copy.deepcopy(model).eval()
    ignored = output_layers(model, input_shape) if ignored is None else list(ignored)
    dg = dependency_graph(model, input_shape)
    groups = group_map(model, dg, ignored)
    model.zero_grad(set_to_none=True)
    for x, y in batches:
        (loss or nn.functional.cross_entropy)(model(x), y).backward()
    _zero_missing_grads(model)
    scorer = tp.importance.GroupTaylorImportance(group_reduction="sum", normalizer=None)
    out: dict[str, torch.Tensor] = {}
    for name, (info, root, fn) in groups.items():
        if isinstance(root, Block):
            try:
                out[name] = block_scores(root, model, "taylor")
            except AutopruneError:
                pass  # no gradient reaches it: the seed leaves it unpruned
            continue
        width = dg.get_in_channels(root) if info.unit == "heads" else info.channels
        scores = scorer(dg.get_pruning_group(root, fn, list(range(width))))
        if scores is None or len(scores) != width:
            continue  # no gradient reaches this group: the seed leaves it unpruned
        scores = scores.detach().cpu().float().abs()
        if info.unit == "heads":
            scores = scores.view(info.channels, -1).sum(1)
        elif info.chunks > 1:  # a position leaves every chunk: its cost is the sum over chunks
            scores = scores.view(info.chunks, -1).sum(0).repeat(info.chunks) / info.chunks
        out[name] = scores
    return out


def _zero_missing_grads(model: nn.Module) -> None:
    """A frozen weight (YOLO's DFL projection) has no gradient: its first-order Taylor term is zero,
    not an error in Torch-Pruning's scorer."""
    for p in model.parameters():
        if p.grad is None and not p.requires_grad:
            p.grad = torch.zeros_like(p)


def _output_shapes(out: Any) -> list[tuple[int, ...]]:
    """The shape of the model's first output tensor: the one autoprune exports, times and scores.
    Later ones may be intermediate feature maps a model returns beside its prediction (YOLO's Detect
    returns its inputs in eval mode), whose widths pruning is meant to change."""
    return [tuple(t.shape) for t in tp.utils.flatten_as_list(out) if isinstance(t, torch.Tensor)][:1]


def unprunable_groups(model: nn.Module, groups: Sequence[PrunableGroup], *, input_shape: Sequence[int],
                      ignored: Sequence[str] | None = None, round_to: int = 1,
                      ratios: Sequence[float] = (0.5,)) -> dict[str, str]:
    """Groups whose pruning breaks the model at any of ``ratios``, each with the reason and the ratio:
    group name -> one line.

    The dependency graph can miss a coupling that the forward pass relies on (a width read from an
    attribute, a reshape to fixed sizes, a head size, a position table): such a group prunes without
    error and then fails to run, or changes the output's shape, and often only at some widths (a
    q/k projection cut to a multiple of its head size runs; others do not). At each ratio (ratios
    that give every group a width already checked are skipped), all groups still good are
    pruned at once (one copy, the usual case); only a failure bisects.
    """
    x = example_input(input_shape)
    with torch.no_grad():
        want = _output_shapes(model.eval()(x))

    def breaks(names: Sequence[str], ratio: float) -> str | None:
        try:
            plan = Plan(ratios={n: ratio for n in names}, round_to=round_to, ignored=None if ignored is None else list(ignored))
            pruned = prune(model, plan, input_shape=input_shape)
            with torch.no_grad():
                got = _output_shapes(pruned(x))
        except Exception as exc:  # noqa: BLE001 - any failure is the reason this group is left out
            return f"pruning it at {ratio:g} breaks the model ({type(exc).__name__}: {first_line(exc)[:160]})"
        return None if got == want else f"pruning it at {ratio:g} changes the output's shape ({want} -> {got})"

    bad: dict[str, str] = {}

    def bisect(names: list[str], ratio: float) -> None:
        reason = breaks(names, ratio) if names else None
        if reason is None:
            return
        if len(names) == 1:
            bad[names[0]] = reason
            return
        bisect(names[: len(names) // 2], ratio)
        bisect(names[len(names) // 2:], ratio)

    checked: dict[str, set[int]] = {g.name: {0} for g in groups}  # group -> units removed in a probe that ran
    for ratio in ratios:
        removed = {g.name: removed_units(g, ratio, round_to) for g in groups}
        if all(n in checked[name] for name, n in removed.items()):
            continue  # every group's width here was already checked
        for name, n in removed.items():
            checked[name].add(n)
        before = len(bad)
        bisect([g.name for g in groups if g.name not in bad], ratio)
        good = [g.name for g in groups if g.name not in bad]
        # Only when the bisection left groups out is the rest unprobed as a whole (else its first probe was it)
        if len(bad) > before and good and breaks(good, ratio):  # fine alone, broken together: one at a time
            kept: list[str] = []
            for name in good:
                reason = breaks([*kept, name], ratio)
                if reason:
                    bad[name] = reason
                else:
                    kept.append(name)
    return bad


def count_macs_params(model: nn.Module, *, input_shape: Sequence[int]) -> tuple[int, int]:
    """MACs for one input sample, and the parameter count.

    Counted by ``torch.utils.flop_counter`` on the operations that run (convolutions, matrix
    products, attention), so a subclass of ``nn.Conv2d`` or a functional call counts like any
    other: a module-type counter misses them (EfficientNet-Lite's ``Conv2dStaticSamePadding``).
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.eval()(example_input(input_shape))
    params = sum(p.numel() for p in model.parameters())
    return int(counter.get_total_flops()) // 2, int(params)


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
    blocks = {b.name: b for b in find_blocks(model) if b.name in {g.name for g in groups}}
    out = _global_block_ratios(model, list(blocks.values()), ratio)
    rest = [g for g in groups if g.name not in blocks]
    if not rest:
        return out
    # Torch-Pruning's own search never meets transformer layers: it cannot see heads, and on a
    # Llama its group search does not return.
    pruner = tp.pruner.MetaPruner(model, traced_inputs(example_input(input_shape)), importance=tp.importance.GroupMagnitudeImportance(p=1),
                                  global_pruning=True, pruning_ratio=ratio,
                                  ignored_layers=[modules[n] for n in [*ignored, *block_layers(blocks.values())]],
                                  round_to=round_to if round_to > 1 else None)
    pruner.step()
    after = dict(model.named_modules())
    for g in rest:
        m = after[g.name]
        kept = m.out_channels if isinstance(m, (nn.Conv2d, nn.Conv1d)) else m.out_features
        out[g.name] = 1.0 - kept / g.channels
    return out


def _global_block_ratios(model: nn.Module, blocks: Sequence[Block], ratio: float) -> dict[str, float]:
    """Global pruning of transformer blocks, as Torch-Pruning ranks groups: each unit's L1 norm per
    channel, normalised by its block's mean, all units on one scale, the lowest ``ratio`` of them
    removed; every block keeps at least one unit. Heads and MLP widths are ranked apart (a head's
    norm and a hidden unit's are not one quantity)."""
    out: dict[str, float] = {}
    for kind in ("heads", "mlp"):
        of_kind = [b for b in blocks if b.kind == kind]
        scores = {}
        for b in of_kind:
            s = block_scores(b, model, "l1")
            scores[b.name] = s / s.mean().clamp_min(1e-12)
        if not scores:
            continue
        pooled = torch.cat(list(scores.values()))
        n = int(ratio * pooled.numel())
        threshold = torch.sort(pooled).values[n - 1] if n > 0 else -math.inf
        for b in of_kind:
            removed = min(int((scores[b.name] <= threshold).sum()), b.units - 1)
            out[b.name] = removed / b.units
    return out
