"""``autoprune space init``: the search space of a model, derived from its prunable groups."""

from __future__ import annotations

from autoprune.core.errors import AutopruneError
from autoprune.space.space import GroupRange, SearchSpace, init_space


def space_init(*, model: str = "builtin:demo", data: str = "builtin:digits", input_shape: str | None = None,
               low: float = 0.0, high: float = 0.7, step: float = 0.05, round_to: int = 8) -> SearchSpace:
    """``autoprune space init``: load the model and derive its space (input shape from data or given)."""
    from autoprune.load.inputs import resolve_input_shape, within_vocabulary
    from autoprune.load.models import load_model

    shape = resolve_input_shape(data=data, input_shape=input_shape, model=model)
    try:
        GroupRange(low=low, high=high, step=step)
    except ValueError as exc:
        raise AutopruneError(f"ratio range low={low}, high={high}, step={step} is not valid; "
                             "use 0 <= low <= high < 1 and 0 < step < 1") from exc
    if round_to < 1:
        raise AutopruneError(f"round_to {round_to} is not valid; use a channel multiple of at least 1 "
                             "(autoprune profile probe recommends one for a target)")
    net = load_model(model)
    return init_space(net, input_shape=within_vocabulary(shape, net), model_name=model, low=low, high=high, step=step,
                      round_to=round_to)
