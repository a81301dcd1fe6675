"""One sample's input shape, given or read off the data as the model's weights prepare it."""

from __future__ import annotations

from autoprune.core.errors import AutopruneError
from autoprune.load.data import load_data


def resolve_input_shape(*, data: str, input_shape: str | None = None, model: str | None = None) -> tuple[int, ...]:
    """One sample's shape: parsed from ``3,224,224`` when given, else read off the data (prepared as
    ``model``'s named weights prepare it, when it names some)."""
    if input_shape is None:
        from autoprune.load.models import model_preprocessing

        return load_data(data, preprocessing=model_preprocessing(model) if model else None).input_shape
    try:
        return tuple(int(d) for d in input_shape.split(","))
    except ValueError:
        raise AutopruneError(f"input shape {input_shape!r} is not understood; write it like 3,224,224") from None
