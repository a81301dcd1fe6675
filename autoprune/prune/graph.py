"""Torch-Pruning's dependency graph of a model, with autoprune's fixes to its index mappings.

Reshapes that only look like flattens (channels-last windows, channel shuffles) and concats it
cannot infer become *barriers* no group prunes through, instead of wrong indices or a failed trace.
"""

from __future__ import annotations

import math
import warnings
import weakref
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from autoprune.core.errors import AutopruneError
from autoprune.core.inputs import as_spec
from autoprune.prune.tp import tp


def example_input(input_shape: Sequence[int], *, batch: int = 1) -> torch.Tensor | dict[str, torch.Tensor]:
    """A batch to trace, export and check with, of the input's dtype (``core.inputs.InputSpec``); a
    dict for a model fed several named inputs."""
    return as_spec(input_shape).example(batch)


def traced_inputs(x: torch.Tensor | dict[str, torch.Tensor]) -> Any:
    """``x`` as Torch-Pruning passes example inputs on: it would spread a dict into keyword arguments,
    and the model takes the dict as its one argument."""
    return (x,) if isinstance(x, dict) else x


def dependency_graph(model: nn.Module, input_shape: Sequence[int]) -> tp.DependencyGraph:
    x = example_input(input_shape)
    _CHANNEL_SPLITS.clear()
    try:
        with torch.no_grad(), _ChannelSplits():
            model.eval()(x)
    except Exception as exc:  # noqa: BLE001 - a forward pass that fails is the user's model/input mismatch
        raise input_mismatch(exc, input_shape) from None
    # Position tables (Swin's, MaxViT's relative position bias: heads x offsets) are not channels.
    fixed = [p for n, p in model.named_parameters() if "relative_position" in n]
    try:
        # The trace needs the autograd graph's structure and its saved sizes, never its saved tensors
        # (nothing runs backward): dropping them keeps a big model's trace to its weights' memory.
        # enable_grad: a caller inside torch.no_grad() (e.g. loading a checkpoint there) still traces.
        with warnings.catch_warnings(), torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(_drop, _dropped):
            warnings.simplefilter("ignore")  # Torch-Pruning's notes on unwrapped parameters, every build
            return tp.DependencyGraph().build_dependency(model, example_inputs=traced_inputs(x), verbose=False, ignored_params=fixed)
    except Exception as exc:  # noqa: BLE001 - the model runs, so this is the engine's limit, not the data
        raise AutopruneError(f"the pruning engine cannot trace {type(model).__name__} "
                             f"({type(exc).__name__}: {first_line(exc)}); report it with the model's name") from None


def input_mismatch(exc: BaseException, input_shape: Sequence[int]) -> AutopruneError:
    """The one line for a model that does not run on the example input; token-id models given a float
    shape are told how to say ids."""
    spec = as_spec(input_shape)
    hint = "check that the data matches the model"
    if not spec.is_integer and "indices" in str(exc) and ("Long" in str(exc) or "Int" in str(exc)):
        hint = (f"the model takes token ids: give --input-shape {','.join(map(str, spec))}:int64, or data whose "
                "inputs are integer ids")
    return AutopruneError(f"the model does not run on an input of shape {spec!r} "
                          f"({type(exc).__name__}: {first_line(exc)[:160]}); {hint}")


def run_hooked(model: nn.Module, x: torch.Tensor, handles: Sequence[torch.utils.hooks.RemovableHandle]) -> None:
    """One forward pass of ``model`` on ``x`` (eval mode, no gradients) for the hooks ``handles`` belong
    to, which are removed afterwards whatever happens: how the engine reads shapes and statistics."""
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        for h in handles:
            h.remove()


def first_output(out) -> torch.Tensor:
    """A model's first output tensor (of a tuple, list or dict): what is exported as ``output``, timed and
    compared with ONNX Runtime. YOLO's Detect returns its feature maps beside the prediction."""
    if isinstance(out, torch.Tensor):
        return out
    return next(t for t in tp.utils.flatten_as_list(out) if isinstance(t, torch.Tensor))


def _drop(_tensor: torch.Tensor) -> None:
    return None


def _dropped(_packed: None) -> torch.Tensor:
    raise RuntimeError("the dependency trace keeps no activations; nothing may run backward through it")


def first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else ""


def _reshape_mapping(graph: tp.DependencyGraph, node) -> None:
    """Torch-Pruning's reshape index mapping, limited to reshapes that really flatten channels.

    Its rule (channels in versus channels out, as a stride) is right for ``flatten`` before a
    linear layer, and wrong for reshapes that keep channels last (Swin's window partition: the
    mapping multiplies indices until the graph never closes) or split them (ShuffleNet's channel
    shuffle: a division by zero). The latter is marked: no channel passes through it.
    """
    shape_infer = tp.dependency.shape_infer

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
    mapping = tp.dependency.index_mapping._FlattenIndexMapping
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


_CHANNEL_SPLITS: set[tuple[int, ...]] = set()  # input shapes of reshapes that split channels (see dependency_graph)


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


tp.dependency.index_mapping.update_reshape_index_mapping = _reshape_mapping


_tp_concat_mapping = tp.dependency.index_mapping.update_concat_index_mapping


def _concat_mapping(graph: tp.DependencyGraph, node) -> None:
    """Torch-Pruning's concat mapping; where it cannot infer an input's channels (deep channels-last
    stacks: Swin-S/B's patch merging) no channel may pass, instead of the whole trace failing."""
    try:
        _tp_concat_mapping(graph, node)
    except TypeError:
        _BARRIERS.add(node)


tp.dependency.index_mapping.update_concat_index_mapping = _concat_mapping


_tp_update_index_mapping = tp.dependency.index_mapping.update_index_mapping


def _update_index_mapping(graph: tp.DependencyGraph) -> None:
    """Torch-Pruning's update of every concat/split/reshape mapping, skipped while the widths it was
    computed from are unchanged. Torch-Pruning runs it at each ``get_pruning_group``: listing and
    scoring DenseNet-121's 120 groups redid 15 000 concat mappings to the same result, 6 of a prune's
    10 s. The mappings depend only on the layers' widths, which only pruning changes."""
    widths = tuple(tuple(p.shape) for p in graph.model.parameters())
    if getattr(graph, "_autoprune_mapped_widths", None) == widths:
        return
    _tp_update_index_mapping(graph)
    graph._autoprune_mapped_widths = widths


tp.dependency.index_mapping.update_index_mapping = _update_index_mapping


def crosses_barrier(group) -> bool:
    """Whether a Torch-Pruning group passes through a reshape or concat no channel may cross."""
    return any(dep.source in _BARRIERS or dep.target in _BARRIERS for dep, _ in group)
