"""Hugging Face models as autoprune runs every model: one input tensor in (token ids, or pixel values
for a vision model: the model's ``main_input_name``), one tensor (logits) out. Their own forward
returns a ``ModelOutput`` and builds a key/value cache, which a loss, a metric and an ONNX export
cannot take."""

from __future__ import annotations

import torch
from torch import nn


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
        if getattr(model.config, "use_cache", None):
            model.config.use_cache = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_name == "input_ids":
            return self.model(input_ids=x, attention_mask=torch.ones_like(x)).logits
        return self.model(**{self.input_name: x}).logits
