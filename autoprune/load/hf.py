"""Hugging Face models as autoprune runs every model: one input tensor (token ids) in, one tensor
(logits) out. Their own forward returns a ``ModelOutput`` and builds a key/value cache, which a
loss, a metric and an ONNX export cannot take."""

from __future__ import annotations

import torch
from torch import nn


def is_hugging_face(model: nn.Module) -> bool:
    """A ``transformers`` model, recognised without importing ``transformers`` (seconds)."""
    return any(c.__name__ == "PreTrainedModel" for c in type(model).__mro__)


class Logits(nn.Module):
    """``model(input_ids=x, attention_mask=1).logits``, with the cache off (nothing generates; exports
    stay one graph). Every token is attended: the batches autoprune times and trains on are of one
    length. The mask is passed, not left out: without one, a causal LM checks its positions for packed
    sequences with ``torch.diff``, which ONNX has no export for."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        if getattr(model.config, "use_cache", None):
            model.config.use_cache = False

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).logits
