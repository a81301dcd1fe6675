"""One sample's input: given (``3,224,224``, ``128:int64``) or read off the data as the model's
weights prepare it."""

from __future__ import annotations

from torch import nn

from autoprune.core.inputs import InputSpec, parse
from autoprune.load.data import load_data


def resolve_input_shape(*, data: str, input_shape: str | None = None, model: str | None = None) -> InputSpec:
    """One sample's shape and dtype: parsed from ``3,224,224`` (or ``128:int64``) when given, else read
    off the data (prepared as ``model``'s named weights prepare it, when it names some)."""
    if input_shape is None:
        from autoprune.load.models import model_preprocessing

        return load_data(data, preprocessing=model_preprocessing(model) if model else None).input_shape
    return parse(input_shape)


def within_vocabulary(spec: InputSpec, model: nn.Module) -> InputSpec:
    """Token ids given without data are drawn below the model's first embedding table's size (its
    vocabulary: the first ``nn.Embedding`` a Hugging Face model registers is its word embeddings)."""
    if not spec.is_integer or spec.high is not None:
        return spec
    table = next((m for m in model.modules() if isinstance(m, nn.Embedding)), None)
    return InputSpec(spec, dtype=spec.dtype, high=table.num_embeddings if table is not None else None, names=spec.names)
