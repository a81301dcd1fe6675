"""autoprune: search per-layer channel-prune ratios under a latency budget on real hardware profiles.

The Python API has the shape of the CLI: ``search``, ``apply``, ``sensitivity``, ``sparsify``, ``regularize``, ``space_init``,
``profile_measure``, ``profile_build_table``.

Names are imported on first use (PEP 562): ``import autoprune.latency.cache`` in a Ray actor or a
worker process does not pay for torch, Optuna and Ray Tune.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name → module that defines it (keep in step with __all__; tests/test_architecture.py checks)
_EXPORTS = {
    "apply": "autoprune.commands.apply", "ApplyResult": "autoprune.commands.apply",
    "profile_build_table": "autoprune.commands.profile", "profile_measure": "autoprune.commands.profile",
    "regularize": "autoprune.commands.regularize", "RegularizeResult": "autoprune.commands.regularize",
    "sensitivity": "autoprune.commands.sensitivity", "SensitivityResult": "autoprune.commands.sensitivity",
    "runs": "autoprune.commands.runs", "compare_runs": "autoprune.commands.runs",
    "space_init": "autoprune.commands.space",
    "sparsify": "autoprune.commands.sparsify", "SparsifyResult": "autoprune.commands.sparsify",
    "AutopruneError": "autoprune.core.errors", "ConfigError": "autoprune.core.errors",
    "SearchInterrupted": "autoprune.core.errors", "TrialsFailed": "autoprune.core.errors",
    "UserCodeError": "autoprune.core.usercode",
    "Budget": "autoprune.latency.budget",
    "HardwareProfile": "autoprune.latency.profiles", "resolve_profile": "autoprune.latency.profiles",
    "load_model": "autoprune.load.models", "save_checkpoint": "autoprune.load.models",
    "Plan": "autoprune.prune.plan",
    "SearchSpace": "autoprune.space.space", "init_space": "autoprune.space.space",
    "search": "autoprune.study.run", "SearchResult": "autoprune.study.run",
}
__all__ = [
    "ApplyResult",
    "AutopruneError",
    "Budget",
    "ConfigError",
    "HardwareProfile",
    "Plan",
    "RegularizeResult",
    "SearchInterrupted",
    "SearchResult",
    "SearchSpace",
    "SensitivityResult",
    "SparsifyResult",
    "TrialsFailed",
    "UserCodeError",
    "apply",
    "compare_runs",
    "init_space",
    "load_model",
    "profile_build_table",
    "profile_measure",
    "regularize",
    "resolve_profile",
    "runs",
    "save_checkpoint",
    "search",
    "sensitivity",
    "space_init",
    "sparsify",
]

def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'autoprune' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, eagerly
    from autoprune.commands.apply import ApplyResult, apply
    from autoprune.commands.profile import profile_build_table, profile_measure
    from autoprune.commands.regularize import RegularizeResult, regularize
    from autoprune.commands.runs import compare_runs, runs
    from autoprune.commands.sensitivity import SensitivityResult, sensitivity
    from autoprune.commands.space import space_init
    from autoprune.commands.sparsify import SparsifyResult, sparsify
    from autoprune.core.errors import (
        AutopruneError,
        ConfigError,
        SearchInterrupted,
        TrialsFailed,
    )
    from autoprune.core.usercode import UserCodeError
    from autoprune.latency.budget import Budget
    from autoprune.latency.profiles import HardwareProfile, resolve_profile
    from autoprune.load.models import load_model, save_checkpoint
    from autoprune.prune.plan import Plan
    from autoprune.space.space import SearchSpace, init_space
    from autoprune.study.run import SearchResult, search
