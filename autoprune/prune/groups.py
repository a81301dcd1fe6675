"""Prunable groups: which layers lose channels together (residual adds, BatchNorm, depthwise and
grouped convs, attention heads), found on the dependency graph and named by their root layer.

This and ``engine`` are the only modules that map layer *names* to modules.
"""

from __future__ import annotations

import contextlib
import copy
import math
import signal
import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from autoprune.core.errors import AutopruneError
from autoprune.prune.graph import (
    crosses_barrier,
    dependency_graph,
    example_input,
    first_line,
    input_mismatch,
    run_hooked,
)
from autoprune.prune.tp import tp
from autoprune.prune.transformer import (
    Block,
    block_layers,
    find_blocks,
    in_out,
    is_conv1d,
)

ROOT_TYPES = (nn.Conv2d, nn.Conv1d, nn.Linear)


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


def output_layers(model: nn.Module, input_shape: Sequence[int]) -> list[str]:
    """Names of the last conv/linear layer run in forward: its channels are the model's outputs."""
    order: list[str] = []
    hooks = [m.register_forward_hook(lambda mod, i, o, n=name: order.append(n))
             for name, m in model.named_modules() if isinstance(m, ROOT_TYPES)]
    try:
        run_hooked(model, example_input(input_shape), hooks)
    except Exception as exc:  # noqa: BLE001 - the user's model and input do not fit: one line
        raise input_mismatch(exc, input_shape) from None
    return order[-1:]


def attention_blocks(model: nn.Module) -> dict[nn.Module, nn.Module]:
    """qkv projection -> its attention block, for blocks shaped like timm's ``Attention``: a ``num_heads``
    attribute, a fused ``qkv`` linear layer (3 x heads x head width) and an output ``proj``."""
    out = {}
    for m in model.modules():
        qkv, proj, heads = getattr(m, "qkv", None), getattr(m, "proj", None), getattr(m, "num_heads", None)
        if (isinstance(qkv, nn.Linear) and isinstance(proj, nn.Linear) and isinstance(heads, int) and heads > 1
                and qkv.out_features == 3 * proj.in_features and proj.in_features % heads == 0):
            out[qkv] = m
    return out


def chunks_of(group) -> int:
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


# Torch-Pruning's search for one group's coupled layers has never returned on some models (a small
# Llama: over 600 s): past this many seconds the group is left out, with the reason.
GROUP_ANALYSIS_LIMIT_S = 60.0
_TOO_SLOW: dict[tuple, str] = {}  # roots that ran out of time in this process: not analysed again


class _OutOfTime(BaseException):  # not an Exception: the engine's own ``except Exception`` must not swallow it
    pass


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block after ``seconds`` (SIGALRM: the main thread only; elsewhere, no limit)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def alarm(signum, frame):
        raise _OutOfTime

    before = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, before)


def _all_groups(dg: tp.DependencyGraph, ignored: list[nn.Module], name_of: Mapping[nn.Module, str],
                skipped: dict[str, str], only: Collection[str] | None = None):
    """Torch-Pruning's ``get_all_groups``, one root at a time: a group whose index mapping fails, or
    takes over ``GROUP_ANALYSIS_LIMIT_S``, is skipped with its reason instead of failing (or hanging)
    the whole model. ``only``: the groups wanted, by name; other roots are not analysed."""
    visited: set[nn.Module] = set()
    ignored_set = set(ignored) | set(dg.IGNORED_LAYERS_IN_TRACING)
    for m in list(dg.module2node):
        if m in ignored_set or m in visited or not isinstance(m, ROOT_TYPES):
            continue
        if only is not None and name_of.get(m) not in only:
            continue
        pruner = dg.get_pruner_of_module(m)
        if pruner is None or pruner.get_out_channels(m) is None:
            continue
        key = (name_of.get(m), type(m).__name__, tuple(getattr(m, "weight", torch.empty(0)).shape))
        try:
            if key in _TOO_SLOW:
                raise _OutOfTime
            with _time_limit(GROUP_ANALYSIS_LIMIT_S):
                group = dg.get_pruning_group(m, pruner.prune_out_channels, list(range(pruner.get_out_channels(m))))
        except _OutOfTime:
            _TOO_SLOW[key] = (f"the engine's search for its coupled layers took over {GROUP_ANALYSIS_LIMIT_S:g} s "
                              "and was stopped")
            if m in name_of:
                skipped[name_of[m]] = _TOO_SLOW[key]
            continue
        except Exception as exc:  # noqa: BLE001 - the engine's limit on this group, reported per group
            if m in name_of:
                skipped[name_of[m]] = f"the engine cannot map its channels ({type(exc).__name__}: {first_line(exc)[:120]})"
            continue
        outs = [dep.target.module for dep, _ in group if dg.is_out_channel_pruning_fn(dep.handler)]
        visited.update(outs)
        if not any(o in ignored_set for o in outs) and m in name_of:
            yield name_of[m], group


def group_map(model: nn.Module, dg: tp.DependencyGraph, ignored: Sequence[str], skipped: dict[str, str] | None = None,
              only: Collection[str] | None = None) -> dict[str, tuple[PrunableGroup, nn.Module, Any]]:
    """name -> (group, the module its pruning starts from, that module's pruning function).

    Groups the engine cannot prune safely go to ``skipped`` (name -> reason) instead. ``only``: just
    these groups (a plan's), so a layer the space left out is never analysed again."""
    skipped = {} if skipped is None else skipped
    modules = dict(model.named_modules())
    missing = [n for n in ignored if n not in modules]
    if missing:
        raise AutopruneError(f"ignored layer {missing[0]!r} does not exist in the model")
    order = {m: i for i, (_, m) in enumerate(model.named_modules())}
    name_of = {m: n for n, m in model.named_modules()}
    attention = attention_blocks(model)
    found: dict[str, tuple[PrunableGroup, nn.Module | Block, Any]] = {}
    # Transformer blocks' heads and MLP widths are groups of their own (``transformer``); the graph's
    # group search leaves their layers alone, and no graph group may prune through them.
    blocks = [b for b in find_blocks(model) if not set(b.members) & set(ignored)]
    for b in blocks:
        if only is None or b.name in only:
            found[b.name] = (PrunableGroup(name=b.name, members=b.members, channels=b.units,
                                           unit="heads" if b.kind == "heads" else "channels"), b, None)
    owned = [modules[n] for n in block_layers(blocks)]
    for root_name, group in _all_groups(dg, [modules[n] for n in ignored] + owned, name_of, skipped, only):
        if crosses_barrier(group):
            skipped[root_name] = ("its channels pass through a channel shuffle or a concatenation the engine cannot "
                                  "follow")
            continue
        outs = sorted({dep.target.module for dep, _ in group
                       if dg.is_out_channel_pruning_fn(dep.handler) and dep.target.module in name_of
                       and isinstance(dep.target.module, ROOT_TYPES)}, key=order.__getitem__)
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
        chunks = chunks_of(group)
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
    return [g for g, _, _ in group_map(model, dependency_graph(model, input_shape), ignored, skipped).values()]


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
    dg = dependency_graph(model, input_shape)
    groups = group_map(model, dg, ignored)
    name_of = {m: n for n, m in model.named_modules()}
    out_group: dict[str, str] = {}
    in_groups: dict[str, list[str]] = {}
    for gname, (_info, root, fn) in groups.items():
        if isinstance(root, Block):
            for side in root.sides:
                (out_group.setdefault(side.layer, gname) if side.out
                 else in_groups.setdefault(side.layer, []).append(gname))
            continue
        for dep, _ in dg.get_pruning_group(root, fn, [0]):
            target = dep.target.module
            if target not in name_of or not isinstance(target, ROOT_TYPES):
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

    def costed(m: nn.Module) -> bool:
        return isinstance(m, ROOT_TYPES) or is_conv1d(m)

    run_hooked(model, example_input(input_shape),
               [m.register_forward_hook(record(name)) for name, m in model.named_modules() if costed(m)])
    shapes = []
    for name, m in model.named_modules():
        if not costed(m) or name not in outputs:
            continue
        out = outputs[name]
        if not isinstance(m, nn.modules.conv._ConvNd):  # linear, or GPT-2's Conv1D (a linear layer)
            c_in, c_out = in_out(m)
            macs = c_in * c_out * math.prod(out[1:-1])
            depthwise = False
        else:
            spatial = math.prod(out[2:])
            macs = m.in_channels // m.groups * math.prod(m.kernel_size) * m.out_channels * spatial
            depthwise = m.groups > 1 and m.groups == m.in_channels
        og = out_group.get(name)
        ig = tuple(g for g in in_groups.get(name, []) if g != og or not depthwise)
        c_in, c_out = in_out(m) if not isinstance(m, nn.modules.conv._ConvNd) else (m.in_channels, m.out_channels)
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
