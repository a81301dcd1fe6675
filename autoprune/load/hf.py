"""Hugging Face models as autoprune runs every model: one input tensor in (token ids, or pixel values
for a vision model: the model's ``main_input_name``), one tensor (logits) out. Their own forward
returns a ``ModelOutput`` and builds a key/value cache, which a loss, a metric and an ONNX export
cannot take."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from autoprune.prune.transformer import HEAD_ATTRS, in_out, is_conv1d


def is_hugging_face(model: nn.Module) -> bool:
    """A ``transformers`` model, recognised without importing ``transformers`` (seconds)."""
    return any(c.__name__ == "PreTrainedModel" for c in type(model).__mro__)


class Logits(nn.Module):
    """``model(**{main_input_name: x}).logits``, with the cache off (nothing generates; exports stay one
    graph). Token ids go with an attention mask of ones: the batches autoprune times and trains on are
    of one length, and without a mask a causal LM checks its positions for packed sequences with
    ``torch.diff``, which ONNX has no export for."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.input_name = getattr(model, "main_input_name", "input_ids")
        self.use_cache = getattr(model.config, "use_cache", None)  # what save_pretrained writes back
        if self.use_cache:
            model.config.use_cache = False

    def forward(self, x: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
        if isinstance(x, dict):  # the data's named inputs (input_ids with its own attention_mask)
            return self.model(**x).logits
        if self.input_name == "input_ids":
            return self.model(input_ids=x, attention_mask=torch.ones_like(x)).logits
        return self.model(**{self.input_name: x}).logits


# The layout a pruned model's config carries, and the code that rebuilds it before the weights load:
# a Hugging Face config holds one head count and one MLP width for all layers (and since transformers
# 5 no ``pruned_heads``), so a model pruned per layer cannot be described by its config alone.
LAYOUT_KEY = "autoprune_layout"
REMOTE_CODE = "modeling_autoprune.py"

_REMOTE_TEMPLATE = '''"""{cls}: a {base} pruned per layer by autoprune. Its config's ``{key}`` lists the
layers whose widths differ from what the config alone builds (a Hugging Face config holds one head count
and one MLP width for every layer); they are rebuilt at those widths before the weights load. Needs
only transformers and torch: AutoModel classes load it with ``trust_remote_code=True``."""

import transformers
from torch import nn


def shrink(model, layout):
    for name, (n_in, n_out) in layout.get("linear", {{}}).items():
        parent, _, attr = name.rpartition(".")
        owner = model.get_submodule(parent)
        old = getattr(owner, attr)
        w = old.weight
        if type(old).__name__ == "Conv1D":  # GPT-2's transposed linear: Conv1D(nf=out, nx=in)
            new = type(old)(n_out, n_in).to(device=w.device, dtype=w.dtype)
        else:
            new = nn.Linear(n_in, n_out, bias=old.bias is not None, device=w.device, dtype=w.dtype)
        setattr(owner, attr, new)
    for name, values in layout.get("attributes", {{}}).items():
        owner = model.get_submodule(name)
        for attr, value in values.items():
            setattr(owner, attr, value)


try:  # the weights were saved as the library saves {base} (some names converted): load them the same way
    from transformers.conversion_mapping import (
        get_checkpoint_conversion_mapping,
        register_checkpoint_conversion_mapping,
    )

    _renames = get_checkpoint_conversion_mapping("{base}") or get_checkpoint_conversion_mapping("{model_type}")
    if _renames:
        register_checkpoint_conversion_mapping("{cls}", _renames, overwrite=True)
except ImportError:  # transformers before 5 converts no names
    pass


class {cls}(transformers.{base}):
    def __init__(self, config, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        shrink(self, getattr(config, "{key}", None) or {{}})
'''


def _linear_shape(module: nn.Module) -> tuple[int, int] | None:
    """(in, out) of a Linear or GPT-2's Conv1D; None for anything else."""
    return in_out(module) if isinstance(module, nn.Linear) or is_conv1d(module) else None


def pruned_layout(model: nn.Module) -> dict[str, dict]:
    """What differs from the model its config builds: each Linear/Conv1D's (in, out) and each
    attention module's head counts, by module name."""
    inner = model.model if isinstance(model, Logits) else model
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        reference = type(inner)(inner.config)
    built = dict(reference.named_modules())
    linear, attributes = {}, {}
    for name, module in inner.named_modules():
        ref = built.get(name)
        if ref is None:
            continue
        shape = _linear_shape(module)
        if shape is not None and shape != _linear_shape(ref):
            linear[name] = list(shape)
        changed = {a: getattr(module, a) for a in HEAD_ATTRS
                   if hasattr(module, a) and getattr(module, a) != getattr(ref, a, None)}
        if changed:
            attributes[name] = changed
    return {"linear": linear, "attributes": attributes}


def _auto_classes(model: nn.Module) -> list[str]:
    """The ``transformers`` Auto classes that load this model's class for its model type."""
    import transformers

    found = []
    for name in dir(transformers):
        if not name.startswith("AutoModel"):
            continue
        mapping = getattr(getattr(transformers, name, None), "_model_mapping", None)
        names = getattr(mapping, "_model_mapping", {}).get(model.config.model_type)
        if names == type(model).__name__ or (isinstance(names, (list, tuple)) and type(model).__name__ in names):
            found.append(name)
    return found


def save_pretrained(model: nn.Module, path: str | Path) -> Path:
    """A pruned Hugging Face model as ``save_pretrained`` writes it (config.json, safetensors), loadable
    with the Auto class it came from: ``AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True)``.

    Layers whose widths differ from the config's are listed in the config (``autoprune_layout``) and
    rebuilt by ``modeling_autoprune.py`` beside it (transformers and torch only), the way models with
    architectures of their own ship on the Hub."""
    inner = model.model if isinstance(model, Logits) else model
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    layout = pruned_layout(inner)
    base = type(inner).__name__
    cls = f"Pruned{base}"
    config = inner.config
    missing = object()
    saved = {k: config.__dict__.get(k, missing) for k in (LAYOUT_KEY, "auto_map", "use_cache")}
    try:  # the written config says how to rebuild; the model in memory keeps its own
        setattr(config, LAYOUT_KEY, layout)
        config.auto_map = {auto: f"{REMOTE_CODE.removesuffix('.py')}.{cls}" for auto in _auto_classes(inner)}
        if isinstance(model, Logits) and model.use_cache is not None:
            config.use_cache = model.use_cache  # the cache was off only for autoprune's own forward passes
        inner.save_pretrained(out)
    finally:
        for k, v in saved.items():
            if v is missing:
                config.__dict__.pop(k, None)
            else:
                setattr(config, k, v)
    (out / REMOTE_CODE).write_text(_REMOTE_TEMPLATE.format(cls=cls, base=base, key=LAYOUT_KEY,
                                                                  model_type=config.model_type))
    return out


def auto_class(path: str | Path) -> str:
    """The ``transformers`` Auto class that loads what ``save_pretrained`` wrote at ``path``."""
    import json

    auto_map = json.loads((Path(path) / "config.json").read_text()).get("auto_map") or {}
    return next(iter(auto_map), "AutoModel")


def from_pretrained(path: str | Path) -> nn.Module:
    """A model ``save_pretrained`` wrote, rebuilt at its pruned widths (its own remote code), wrapped
    as autoprune runs it (``Logits``)."""
    import transformers

    auto = getattr(transformers, auto_class(path))
    return Logits(auto.from_pretrained(str(path), trust_remote_code=True)).eval()
