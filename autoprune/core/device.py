"""Where training runs: ``auto`` (a GPU when torch sees one), ``cpu`` or ``cuda[:N]``."""

from __future__ import annotations

import torch

from autoprune.core.errors import AutopruneError

DEVICES = "auto, cpu or cuda[:N]"


def resolve_device(spec: str = "auto") -> torch.device:
    """The torch device a ``--device`` value names; ``cuda`` on a machine without one fails in one line."""
    spec = str(spec).strip().lower()
    if spec == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise AutopruneError(f"device {spec!r}: torch sees no CUDA GPU on this machine; use --device cpu or auto")
        index = spec.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise AutopruneError(f"device {spec!r}: no such GPU; this machine has {torch.cuda.device_count()} "
                                 f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
        return torch.device("cuda", int(index) if index else torch.cuda.current_device())
    raise AutopruneError(f"device {spec!r} is not understood; use {DEVICES}")
