"""The pruning engine: dependency-aware structural channel pruning on Torch-Pruning's DepGraph.

This is the only module that maps layer *names* to modules. Removed channels physically leave
the tensors; layers coupled by residual adds, BatchNorm or depthwise convs form one group and
are pruned together, so the pruned model stays consistent.
"""

from __future__ import annotations

import copy
import math
import warnings
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch_pruning as tp
from torch import nn
from torch_pruning.dependency import index_mapping as _tp_index_mapping

from autoprune.core.errors import AutopruneError
from autoprune.prune.criteria import get_criterion
from autoprune.prune.plan import Plan

_ROOT_TYPES = (nn.Conv2d, nn.Conv1d, nn.Linear)


@dataclass(frozen=True)
class PrunableGroup:
    """Layers whose output channels must be pruned together; ``name`` is the first of them.

    ``chunks`` > 1: the channels form that many equal chunks (a grouped convolution's groups, a
    GroupNorm's groups, attention heads sharing an embedding) and every chunk loses the same
    positions, so the chunks stay equal. ``unit == "heads"``: the group is an attention block's
    heads; ``channels`` counts heads and a ratio removes whole heads.
    """

    name: str
    members: tuple[str, ...]
    channels: int
    chunks: int = 1
    unit: str = "channels"


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
    x = example_input(input_shape)
    _CHANNEL_SPLITS.clear()
    try:
        with torch.no_grad(), _ChannelSplits():
            model.eval()(x)
    except Exception as exc:  # noqa: BLE001 - a forward pass that fails is the user's model/input mismatch
        raise AutopruneError(f"the model does not run on an input of shape {tuple(input_shape)} "
                             f"({type(exc).__name__}: {_first_line(exc)}); check that the data matches the model") from None
    # Position tables (Swin's, MaxViT's relative position bias: heads x offsets) are not channels.
    fixed = [p for n, p in model.named_parameters() if "relative_position" in n]
    try:
        # The trace needs the autograd graph's structure and its saved sizes, never its saved tensors
        # (nothing runs backward): dropping them keeps a big model's trace to its weights' memory.
        with warnings.catch_warnings(), torch.autograd.graph.saved_tensors_hooks(_drop, _dropped):
            warnings.simplefilter("ignore")  # Torch-Pruning's notes on unwrapped parameters, every build
            return tp.DependencyGraph().build_dependency(model, example_inputs=x, verbose=False, ignored_params=fixed)
    except Exception as exc:  # noqa: BLE001 - the model runs, so this is the engine's limit, not the data
        raise AutopruneError(f"the pruning engine cannot trace {type(model).__name__} "
                             f"({type(exc).__name__}: {_first_line(exc)}); report it with the model's name") from None


def _drop(_tensor: torch.Tensor) -> None:
    return None


def _dropped(_packed: None) -> torch.Tensor:
    raise RuntimeError("the dependency trace keeps no activations; nothing may run backward through it")


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else ""


def _reshape_mapping(graph: tp.DependencyGraph, node) -> None:
    """Torch-Pruning's reshape index mapping, limited to reshapes that really flatten channels.

    Its rule (channels in versus channels out, as a stride) is right for ``flatten`` before a
    linear layer, and wrong for reshapes that keep channels last (Swin's window partition: the
    mapping multiplies indices until the graph never closes) or split them (ShuffleNet's channel
    shuffle: a division by zero). The latter is marked: no channel passes through it.
    """
    from torch_pruning.dependency import shape_infer

    # torch 2 names the saved input shape ``_saved_self_sym_sizes``; Torch-Pruning looks for the old name,
    # misses it and maps every reshape.
    size = getattr(node.grad_fn, "_saved_self_sizes", None) or getattr(node.grad_fn, "_saved_self_sym_sizes", None)
    if size is None and not getattr(graph, "_2d_4d", False) or size is not None and len(size) not in (1, 4):
        return
    c_out = c_in = None
    for n in node.outputs:
        c_out = shape_infer.infer_in_channels_recursively(graph, n, [0])
        if c_out is not None:
            break
    for n in node.inputs:
        c_in = shape_infer.infer_out_channels_recursively(graph, n, [0])
        if c_in is not None:
            break
    if size is not None and tuple(size) in _CHANNEL_SPLITS:
        _BARRIERS.add(node)  # a channel shuffle: no group may prune through it
        return
    if not c_out or not c_in or c_out == c_in:
        return  # unknown (0: fed by an input or a parameter) or unchanged: channels pass through
    if size is not None and len(size) == 4 and size[1] != c_in:
        return  # channels-last (N, H, W, C): the reshape moves spatial positions, not channels
    if max(c_out, c_in) % min(c_out, c_in):
        _BARRIERS.add(node)
        return
    if c_out > c_in and size is not None and len(size) == 4 and math.prod(size[1:]) != c_out:
        return  # not a flatten of (C, H, W) into features
    # From here on as Torch-Pruning: flatten (C -> C*H*W features) or its reverse.
    mapping = _tp_index_mapping._FlattenIndexMapping
    # Flatten: the reshape's inputs hold the channels; its reverse: its outputs do.
    ends, stride = (node.inputs, c_out // c_in) if c_out > c_in else (node.outputs, c_in // c_out)
    for end in ends:
        for dep in node.dependencies:
            if dep.target == end:
                dep.index_mapping[0] = mapping(stride=stride, reverse=True)
        for dep in end.dependencies:
            if dep.target == node:
                dep.index_mapping[0] = mapping(stride=stride, reverse=False)


_BARRIERS: weakref.WeakSet = weakref.WeakSet()
_CHANNEL_SPLITS: set[tuple[int, ...]] = set()  # input shapes of reshapes that split channels (see _graph)


class _ChannelSplits(torch.overrides.TorchFunctionMode):
    """Records reshapes of (N, C, H, W) into (N, g, C/g, H, W): the first half of a channel shuffle,
    which the dependency graph would otherwise pass channels straight through."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in (torch.Tensor.view, torch.Tensor.reshape, torch.reshape) and isinstance(out, torch.Tensor):
            src = tuple(args[0].shape)
            if (len(src) == 4 and out.dim() == 5 and tuple(out.shape[-2:]) == src[-2:]
                    and out.shape[1] * out.shape[2] == src[1] and out.shape[1] > 1):
                _CHANNEL_SPLITS.add(src)
        return out
_tp_index_mapping.update_reshape_index_mapping = _reshape_mapping
_tp_concat_mapping = _tp_index_mapping.update_concat_index_mapping


def _concat_mapping(graph: tp.DependencyGraph, node) -> None:
    """Torch-Pruning's concat mapping; where it cannot infer an input's channels (deep channels-last
    stacks: Swin-S/B's patch merging) no channel may pass, instead of the whole trace failing."""
    try:
        _tp_concat_mapping(graph, node)
    except TypeError:
        _BARRIERS.add(node)


_tp_index_mapping.update_concat_index_mapping = _concat_mapping


def _attention_blocks(model: nn.Module) -> dict[nn.Module, nn.Module]:
    """qkv projection -> its attention block, for blocks shaped like timm's ``Attention``: a ``num_heads``
    attribute, a fused ``qkv`` linear layer (3 x heads x head width) and an output ``proj``."""
    out = {}
    for m in model.modules():
        qkv, proj, heads = getattr(m, "qkv", None), getattr(m, "proj", None), getattr(m, "num_heads", None)
        if (isinstance(qkv, nn.Linear) and isinstance(proj, nn.Linear) and isinstance(heads, int) and heads > 1
                and qkv.out_features == 3 * proj.in_features and proj.in_features % heads == 0):
            out[qkv] = m
    return out


def _chunks(group) -> int:
    """How many equal chunks the group's channels form (1: none); see ``PrunableGroup``."""
    n = 1
    for dep, _ in group:
        m = dep.target.module
        if isinstance(m, nn.MultiheadAttention):
            n = max(n, m.num_heads)  # its embedding is split into heads of equal width
        elif isinstance(m, (nn.Conv1d, nn.Conv2d)) and m.groups > 1 and not m.groups == m.in_channels == m.out_channels:
            n = max(n, m.groups)  # grouped, not depthwise (whose channels prune one by one)
        elif isinstance(m, nn.GroupNorm):
            n = max(n, m.num_groups)
    return n


def _all_groups(dg: tp.DependencyGraph, ignored: list[nn.Module], name_of: Mapping[nn.Module, str],
                skipped: dict[str, str]):
    """Torch-Pruning's ``get_all_groups``, one root at a time: a group whose index mapping fails is
    skipped with its reason instead of failing the whole model."""
    visited: set[nn.Module] = set()
    ignored_set = set(ignored) | set(dg.IGNORED_LAYERS_IN_TRACING)
    for m in list(dg.module2node):
        if m in ignored_set or m in visited or not isinstance(m, _ROOT_TYPES):
            continue
        pruner = dg.get_pruner_of_module(m)
        if pruner is None or pruner.get_out_channels(m) is None:
            continue
        try:
            group = dg.get_pruning_group(m, pruner.prune_out_channels, list(range(pruner.get_out_channels(m))))
        except Exception as exc:  # noqa: BLE001 - the engine's limit on this group, reported per group
            if m in name_of:
                skipped[name_of[m]] = f"the engine cannot map its channels ({type(exc).__name__}: {_first_line(exc)[:120]})"
            continue
        outs = [dep.target.module for dep, _ in group if dg.is_out_channel_pruning_fn(dep.handler)]
        visited.update(outs)
        if not any(o in ignored_set for o in outs) and m in name_of:
            yield name_of[m], group


def _find(model: nn.Module, dg: tp.DependencyGraph, ignored: Sequence[str], skipped: dict[str, str] | None = None
          ) -> dict[str, tuple[PrunableGroup, nn.Module, Any]]:
    """name -> (group, the module its pruning starts from, that module's pruning function).

    Groups the engine cannot prune safely go to ``skipped`` (name -> reason) instead."""
    skipped = {} if skipped is None else skipped
    modules = dict(model.named_modules())
    missing = [n for n in ignored if n not in modules]
    if missing:
        raise AutopruneError(f"ignored layer {missing[0]!r} does not exist in the model")
    order = {m: i for i, (_, m) in enumerate(model.named_modules())}
    name_of = {m: n for n, m in model.named_modules()}
    attention = _attention_blocks(model)
    found: dict[str, tuple[PrunableGroup, nn.Module, Any]] = {}
    for root_name, group in _all_groups(dg, [modules[n] for n in ignored], name_of, skipped):
        if any(dep.source in _BARRIERS or dep.target in _BARRIERS for dep, _ in group):
            skipped[root_name] = ("its channels pass through a channel shuffle or a concatenation the engine cannot "
                                  "follow")
            continue
        outs = sorted({dep.target.module for dep, _ in group
                       if dg.is_out_channel_pruning_fn(dep.handler) and dep.target.module in name_of
                       and isinstance(dep.target.module, _ROOT_TYPES)}, key=order.__getitem__)
        if not outs:
            continue
        root = outs[0]
        if root in attention:
            # Heads leave whole: pruned from the output projection's inputs, which index q, k and v alike.
            block = attention[root]
            info = PrunableGroup(name=name_of[root], members=(name_of[root], name_of[block.proj]),
                                 channels=block.num_heads, unit="heads")
            found[info.name] = (info, block.proj, dg.get_pruner_of_module(block.proj).prune_in_channels)
            continue
        channels = dg.get_out_channels(root)
        if channels is None or channels < 2:
            continue
        chunks = _chunks(group)
        if chunks > 1 and (channels % chunks or channels // chunks < 2):
            continue
        info = PrunableGroup(name=name_of[root], members=tuple(name_of[m] for m in outs), channels=channels,
                             chunks=chunks)
        found[info.name] = (info, root, dg.get_pruner_of_module(root).prune_out_channels)
    return dict(sorted(found.items(), key=lambda kv: order[modules[kv[0]]]))  # forward order reads best


def find_groups(model: nn.Module, *, input_shape: Sequence[int], ignored: Sequence[str] | None = None,
                skipped: dict[str, str] | None = None) -> list[PrunableGroup]:
    """The prunable groups of ``model``, in forward order; ``ignored=None`` ignores the output layer.

    ``skipped``, when given, receives the groups the engine cannot follow: layer name -> reason."""
    ignored = output_layers(model, input_shape) if ignored is None else list(ignored)
    return [g for g, _, _ in _find(model, _graph(model, input_shape), ignored, skipped).values()]


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
    for gname, (_info, root, fn) in groups.items():
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


def channels_to_remove(channels: int, ratio: float, round_to: int = 1, *, chunks: int = 1) -> int:
    """How many channels a ratio removes: the kept count is rounded to a multiple of ``round_to``, at least 1.

    With ``chunks`` > 1 every chunk keeps the same count (at least 1), and the total kept is a
    multiple of ``round_to`` where a whole number of channels per chunk allows it.
    """
    if chunks > 1:
        per = channels // chunks
        keep = max(1, round(per * (1.0 - ratio)))
        step = round_to // math.gcd(chunks, round_to) if round_to > 1 else 1
        if step > 1:
            keep = min(per, max(step, step * round(keep / step)))
        return channels - chunks * keep
    keep = max(1, round(channels * (1.0 - ratio)))
    if round_to > 1:
        keep = min(channels, max(round_to, round_to * round(keep / round_to)))
    return channels - keep


def removed_units(group: PrunableGroup, ratio: float, round_to: int = 1) -> int:
    """How many of the group's units (channels, or heads) a ratio removes; heads are never rounded."""
    if group.unit == "heads":
        return channels_to_remove(group.channels, ratio)
    return channels_to_remove(group.channels, ratio, round_to, chunks=group.chunks)


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
    dg = _graph(model, input_shape)
    groups = _find(model, dg, ignored)
    modules_by_name = dict(model.named_modules())
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
        from autoprune.prune.criteria import activation_stats

        stats = activation_stats(model, calibration[0], criterion.activation_stat)
    if criterion.needs_gradients:
        model.zero_grad(set_to_none=True)
        x, y = calibration
        (loss or nn.functional.cross_entropy)(model.train()(x), y).backward()
        model.eval()
    scorer = criterion.scorer(stats)
    selected = []
    attention = _attention_blocks(model)
    heads_removed: dict[nn.Module, int] = {}
    with torch.random.fork_rng():
        torch.manual_seed(plan.seed)  # only the random criterion draws; keep it reproducible
        for name, ratio in plan.ratios.items():
            info, root, fn = groups[name]
            n_remove = removed_units(info, ratio, plan.round_to)
            if n_remove == 0:
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


def _output_shapes(out: Any) -> list[tuple[int, ...]]:
    return [tuple(t.shape) for t in tp.utils.flatten_as_list(out) if isinstance(t, torch.Tensor)]


def unprunable_groups(model: nn.Module, groups: Sequence[PrunableGroup], *, input_shape: Sequence[int],
                      ignored: Sequence[str] | None = None, round_to: int = 1, ratio: float = 0.5) -> dict[str, str]:
    """Groups whose pruning breaks the model, each with the reason: group name -> one line.

    The dependency graph can miss a coupling that the forward pass relies on (a width read from an
    attribute, a reshape to fixed sizes, a position table): such a group prunes without error and
    then fails to run, or changes the output's shape. Prunes all groups at ``ratio`` at once (one
    copy, the usual case) and bisects only when that fails.
    """
    x = example_input(input_shape)
    with torch.no_grad():
        want = _output_shapes(model.eval()(x))

    def breaks(names: Sequence[str]) -> str | None:
        try:
            plan = Plan(ratios={n: ratio for n in names}, round_to=round_to, ignored=None if ignored is None else list(ignored))
            pruned = prune(model, plan, input_shape=input_shape)
            with torch.no_grad():
                got = _output_shapes(pruned(x))
        except Exception as exc:  # noqa: BLE001 - any failure is the reason this group is left out
            return f"pruning it breaks the model ({type(exc).__name__}: {_first_line(exc)[:160]})"
        return None if got == want else f"pruning it changes the output's shape ({want} -> {got})"

    bad: dict[str, str] = {}

    def bisect(names: list[str]) -> None:
        reason = breaks(names) if names else None
        if reason is None:
            return
        if len(names) == 1:
            bad[names[0]] = reason
            return
        bisect(names[: len(names) // 2])
        bisect(names[len(names) // 2:])

    bisect([g.name for g in groups])
    good = [g.name for g in groups if g.name not in bad]
    if bad and good and breaks(good):  # fine alone, broken together: add them one at a time
        kept: list[str] = []
        for name in good:
            reason = breaks([*kept, name])
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
