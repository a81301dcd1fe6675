"""Transformer blocks as the groups users mean: an attention block's heads and an MLP's hidden width.

Found by structure, not by class (Hugging Face's BERT-, GPT-2- and Llama-style blocks and their many
copies): separate ``q_proj/k_proj/v_proj`` + ``o_proj`` (or ``out_proj``, ``dense``; DistilBERT's
``q_lin/k_lin/v_lin/out_lin``), GPT-NeoX's ``query_key_value`` (q, k and v of one head side by side)
+ ``dense``, BERT's
``query/key/value`` + the sibling ``output.dense``, GPT-2's fused ``c_attn`` + ``c_proj`` (``Conv1D``:
weights stored in x out), and MLPs ``gate/up/down_proj``, ``c_fc/c_proj``, ``intermediate.dense/
output.dense``, ``fc1/fc2``. A head leaves whole: its rows of q, k and v and its columns of the output
projection. With grouped-query attention (GQA) the unit is a key/value head together with the query
heads that read it, so the ratio of query to key/value heads stays what the model's code assumes.

Torch-Pruning's dependency graph is not asked about these layers: it cannot see that heads are
indivisible (q/k widths cut inside a head run and then fail), has no pruner for ``Conv1D``, and its
search for a Llama projection's coupled layers did not return in 600 s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from autoprune.core.errors import AutopruneError
from autoprune.prune.graph import run_hooked


def is_conv1d(m: nn.Module) -> bool:
    """GPT-2's ``Conv1D``: a linear layer whose weight is stored (in, out)."""
    return type(m).__name__ == "Conv1D" and isinstance(getattr(m, "nf", None), int) and hasattr(m, "weight")


def _linear_like(m: object) -> bool:
    return isinstance(m, nn.Linear) or (isinstance(m, nn.Module) and is_conv1d(m))


def in_out(m: nn.Module) -> tuple[int, int]:
    if is_conv1d(m):
        return int(m.weight.shape[0]), int(m.weight.shape[1])
    return m.in_features, m.out_features


@dataclass(frozen=True)
class Side:
    """One layer's share of a unit: ``rows`` of its output (``out=True``) or columns of its input.
    ``parts`` > 1: the layer stacks that many equal parts (GPT-2's fused q|k|v), each indexed alike."""

    layer: str
    out: bool
    parts: int = 1


@dataclass(frozen=True)
class Block:
    """A transformer group of ``units`` units, each removed whole.

    For attention a unit is one key/value head: ``head_dim`` channels of k and v (``kv_layers``) and
    ``q_per_kv`` times that of q and of the output projection's inputs (``per_unit``)."""

    name: str  # the group's name: its first layer
    kind: str  # "heads" or "mlp"
    owner: str  # the attention module whose head counts follow (kind "heads"); the MLP's parent
    units: int
    head_dim: int  # channels per head (heads); 1 (mlp)
    q_per_kv: int  # query heads per key/value head (1 without GQA; mlp: 1)
    sides: tuple[Side, ...]
    kv_layers: tuple[str, ...] = ()  # layers indexed per key/value head (GQA's k and v)
    per_head_qkv: tuple[str, ...] = ()  # fused q|k|v laid out head by head (GPT-NeoX): 3 x head_dim per unit

    @property
    def members(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.layer for s in self.sides))

    def per_unit(self, layer: str) -> int:
        """How many channels (of one part) a unit owns in ``layer``."""
        if layer in self.per_head_qkv:
            return 3 * self.head_dim
        return self.head_dim * (1 if layer in self.kv_layers else self.q_per_kv)

    def indices(self, layer: str, units: Sequence[int], parts: int = 1, total: int | None = None) -> list[int]:
        """Channel indices of ``units`` in ``layer`` (each of its ``parts``)."""
        per = self.per_unit(layer)
        one = [u * per + j for u in units for j in range(per)]
        if parts == 1:
            return one
        size = total // parts  # type: ignore[operator]
        return [p * size + i for p in range(parts) for i in one]


def _child(m: nn.Module, *path: str) -> nn.Module | None:
    for p in path:
        m = getattr(m, p, None)
        if m is None:
            return None
    return m


def _heads_of(m: nn.Module) -> int | None:
    for attr in ("num_heads", "num_attention_heads", "n_head", "n_heads"):
        v = getattr(m, attr, None)
        if isinstance(v, int) and v > 0:
            return v
    config = getattr(m, "config", None)
    v = getattr(config, "num_attention_heads", None)
    return v if isinstance(v, int) else None


def _head_dim(m: nn.Module, q_out: int) -> int | None:
    for attr in ("head_dim", "attention_head_size"):
        v = getattr(m, attr, None)
        if isinstance(v, int) and v > 0:
            return v
    heads = _heads_of(m)
    return q_out // heads if heads and q_out % heads == 0 else None


def find_blocks(model: nn.Module) -> list[Block]:
    """Every attention block and MLP of ``model`` in module order (none: not a transformer)."""
    name_of = {m: n for n, m in model.named_modules()}
    blocks: list[Block] = []
    for name, m in model.named_modules():
        block = _attention(m, name_of) or _mlp(m, name_of)
        if block is not None:
            blocks.append(block)
    return blocks


def _attention(m: nn.Module, name_of: dict[nn.Module, str]) -> Block | None:
    q, k, v = (_child(m, n) for n in ("q_proj", "k_proj", "v_proj"))
    if not _linear_like(q):  # DistilBERT
        q, k, v = (_child(m, n) for n in ("q_lin", "k_lin", "v_lin"))
    o = next((c for c in (_child(m, n) for n in ("o_proj", "out_proj", "dense", "out_lin")) if _linear_like(c)), None)
    owner = m
    if not all(_linear_like(x) for x in (q, k, v)):  # BERT: self.query/key/value, output.dense beside it
        sa = _child(m, "self")
        q, k, v = (_child(sa, n) for n in ("query", "key", "value")) if sa is not None else (None, None, None)
        o, owner = _child(m, "output", "dense"), sa
    if all(_linear_like(x) for x in (q, k, v, o)):
        d = _head_dim(owner, in_out(q)[1])
        if not d or in_out(q)[1] % d or in_out(k)[1] % d or in_out(k)[1] != in_out(v)[1]:
            return None
        heads, kv = in_out(q)[1] // d, in_out(k)[1] // d
        if kv < 2 or heads % kv or in_out(o)[0] != in_out(q)[1]:
            return None
        qn, kn, vn, on = (name_of[x] for x in (q, k, v, o))
        return Block(name=qn, kind="heads", owner=name_of[owner], units=kv, head_dim=d, q_per_kv=heads // kv,
                     sides=(Side(qn, True), Side(kn, True), Side(vn, True), Side(on, False)), kv_layers=(kn, vn))
    qkv, dense = _child(m, "query_key_value"), _child(m, "dense")  # GPT-NeoX: q|k|v fused per head
    if isinstance(qkv, nn.Linear) and isinstance(dense, nn.Linear) and isinstance(getattr(m, "head_size", None), int):
        d = m.head_size
        if qkv.out_features % (3 * d) or dense.in_features * 3 != qkv.out_features or qkv.out_features // (3 * d) < 2:
            return None
        qn, dn = name_of[qkv], name_of[dense]
        return Block(name=qn, kind="heads", owner=name_of[m], units=qkv.out_features // (3 * d), head_dim=d,
                     q_per_kv=1, sides=(Side(qn, True), Side(dn, False)), per_head_qkv=(qn,))
    c_attn, c_proj = _child(m, "c_attn"), _child(m, "c_proj")  # GPT-2: q|k|v fused in one Conv1D
    if is_conv1d(c_attn) if c_attn is not None else False:
        if not _linear_like(c_proj) or getattr(m, "is_cross_attention", False):
            return None
        total = in_out(c_attn)[1]
        d = _head_dim(m, total // 3)
        if not d or total % 3 or (total // 3) % d or (total // 3) // d < 2 or in_out(c_proj)[0] != total // 3:
            return None
        an, pn = name_of[c_attn], name_of[c_proj]
        return Block(name=an, kind="heads", owner=name_of[m], units=(total // 3) // d, head_dim=d, q_per_kv=1,
                     sides=(Side(an, True, parts=3), Side(pn, False)))
    return None


def _mlp(m: nn.Module, name_of: dict[nn.Module, str]) -> Block | None:
    for ups, down in ((("gate_proj", "up_proj"), "down_proj"), (("c_fc",), "c_proj"), (("fc1",), "fc2"),
                      ((("intermediate", "dense"),), ("output", "dense"))):
        up_mods = [_child(m, *((u,) if isinstance(u, str) else u)) for u in ups]
        dn = _child(m, *((down,) if isinstance(down, str) else down))
        if not all(_linear_like(u) for u in up_mods) or not _linear_like(dn):
            continue
        width = in_out(up_mods[0])[1]
        if any(in_out(u)[1] != width for u in up_mods) or in_out(dn)[0] != width or width < 2:
            continue
        if ups == ("c_fc",) and getattr(m, "c_attn", None) is not None:
            continue  # GPT-2's attention also has a c_proj
        names = [name_of[u] for u in up_mods]
        return Block(name=names[0], kind="mlp", owner=name_of[m], units=width, head_dim=1, q_per_kv=1,
                     sides=(*(Side(n, True) for n in names), Side(name_of[dn], False)))
    return None


def block_layers(blocks: Sequence[Block]) -> set[str]:
    """Every layer some block owns: the dependency graph's group search leaves them alone."""
    return {s.layer for b in blocks for s in b.sides}


# --- scoring -------------------------------------------------------------------------------------------


def _slices(block: Block, modules: dict[str, nn.Module], values: Callable[[nn.Module], torch.Tensor]
            ) -> torch.Tensor:
    """Per unit, the sum of ``values(layer)`` (a tensor shaped like the weight) over the unit's rows and
    columns in every side."""
    total = torch.zeros(block.units)
    for side in block.sides:
        m = modules[side.layer]
        w = values(m).detach().float()
        if is_conv1d(m):
            w = w.t()  # (out, in), as a Linear's
        per_channel = w.sum(1) if side.out else w.sum(0)  # (out,) or (in,)
        n = per_channel.numel() // side.parts
        per_channel = per_channel.view(side.parts, n).sum(0)
        total += per_channel.view(block.units, -1).sum(1)
    return total


def block_scores(block: Block, model: nn.Module, criterion: str,
                 stats: dict[nn.Module, torch.Tensor] | None = None) -> torch.Tensor:
    """A score per unit (low leaves first) for the built-in criteria that apply to weights of linear
    layers: l1, l2, taylor (needs gradients on the weights), random; activation criteria read the
    output projection's input (``stats``)."""
    modules = dict(model.named_modules())
    if criterion in ("l1", "magnitude"):
        return _slices(block, modules, lambda m: m.weight.abs())
    if criterion == "l2":
        return _slices(block, modules, lambda m: m.weight.pow(2)).sqrt()
    if criterion == "taylor":
        missing = [s.layer for s in block.sides if modules[s.layer].weight.grad is None]
        if missing:
            raise AutopruneError(f"no gradient reached layer {missing[0]!r}; the taylor criterion needs the loss to "
                                 "depend on it")
        return _slices(block, modules, lambda m: (m.weight * m.weight.grad).abs())
    if criterion == "random":
        return torch.rand(block.units)
    if stats is not None:
        down = next(s for s in block.sides if not s.out)
        stat = stats.get(modules[down.layer])
        if stat is not None:
            return stat.float().view(block.units, -1).mean(1)
    raise AutopruneError(f"criterion {criterion!r} cannot score {block.kind} of transformer blocks; "
                         "use l1, l2, taylor, random or an activation criterion")


def input_stats(model: nn.Module, blocks: Sequence[Block], x: torch.Tensor,
                stat: Callable[[torch.Tensor], torch.Tensor]) -> dict[nn.Module, torch.Tensor]:
    """``stat`` per channel of each block's output projection's input: what the heads (or the MLP's
    hidden units) hand on. Token dimensions are averaged like spatial ones."""
    modules = dict(model.named_modules())
    out: dict[nn.Module, torch.Tensor] = {}

    def hook(m: nn.Module, inp: tuple[torch.Tensor, ...]) -> None:
        a = inp[0].detach()
        out[m] = stat(a.reshape(-1, a.shape[-1]))  # (tokens, channels): every token a sample

    run_hooked(model, x, [modules[s.layer].register_forward_pre_hook(hook) for b in blocks for s in b.sides if not s.out])
    return out


# --- pruning -------------------------------------------------------------------------------------------


def _keep(m: nn.Module, idx: list[int], *, out: bool) -> None:
    keep = torch.tensor(idx, dtype=torch.long, device=m.weight.device)
    conv1d = is_conv1d(m)
    dim = (1 if conv1d else 0) if out else (0 if conv1d else 1)
    m.weight = nn.Parameter(m.weight.data.index_select(dim, keep).clone(), requires_grad=m.weight.requires_grad)
    if out and getattr(m, "bias", None) is not None:
        m.bias = nn.Parameter(m.bias.data.index_select(0, keep).clone(), requires_grad=m.bias.requires_grad)
    if conv1d:
        m.nx, m.nf = int(m.weight.shape[0]), int(m.weight.shape[1])
    else:
        m.out_features, m.in_features = int(m.weight.shape[0]), int(m.weight.shape[1])


def prune_block(model: nn.Module, block: Block, remove: Sequence[int]) -> None:
    """Remove units ``remove`` of ``block`` from ``model`` in place, and keep the head counts its
    attention code reads in step."""
    if not remove:
        return
    modules = dict(model.named_modules())
    kept = [u for u in range(block.units) if u not in set(remove)]
    if not kept:
        raise AutopruneError(f"pruning would remove every unit of {block.name!r}; at least one must stay")
    for side in block.sides:
        m = modules[side.layer]
        total = in_out(m)[1] if side.out else in_out(m)[0]
        _keep(m, block.indices(side.layer, kept, side.parts, total), out=side.out)
    if block.kind == "heads":
        _sync_heads(modules[block.owner], block, len(kept))


# The attributes attention code reads: head counts and the widths derived from them (Llama's
# ``view(..., -1, head_dim)`` needs none; BERT's ``all_head_size`` and GPT-2's ``split_size`` do). The
# pruning keeps them in step; ``load.hf.save_pretrained`` writes down those that changed.
HEAD_ATTRS = ("num_heads", "num_attention_heads", "n_head", "n_heads", "num_key_value_heads", "all_head_size",
              "split_size")


def _sync_heads(owner: nn.Module, block: Block, kv_kept: int) -> None:
    heads = kv_kept * block.q_per_kv
    values = (heads, heads, heads, heads, kv_kept, heads * block.head_dim, heads * block.head_dim)
    for attr, value in zip(HEAD_ATTRS, values, strict=True):
        if isinstance(getattr(owner, attr, None), int):
            setattr(owner, attr, value)
