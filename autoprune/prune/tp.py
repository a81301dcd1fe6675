"""Torch-Pruning, imported without the timm it loads for an operation counter autoprune never calls.

``torch_pruning.utils.op_counter`` imports timm when it is installed, and timm imports torchvision's
ops and, through them, ``torch._dynamo``: 2 s of the 5 s that a Ray trial's process spent importing
before its first step. Hidden during that one import, timm stays importable for user models.
"""

from __future__ import annotations

import sys
from types import ModuleType


def _load() -> ModuleType:
    if "torch_pruning" in sys.modules or "timm" in sys.modules:
        import torch_pruning

        return torch_pruning
    sys.modules["timm"] = None  # type: ignore[assignment]  # `import timm` raises ImportError: has_timm = False
    try:
        import torch_pruning
    finally:
        del sys.modules["timm"]
    return torch_pruning


tp = _load()
