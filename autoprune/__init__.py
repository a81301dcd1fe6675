"""autoprune: search per-layer channel-prune ratios under a latency budget on real hardware profiles.

The Python API has the shape of the CLI: ``search``, ``apply``, ``sensitivity``, ``sparsify``, ``regularize``, ``space_init``,
``profile_measure``, ``profile_build_table``.
"""

from autoprune.commands.apply import ApplyResult, apply
from autoprune.commands.profile import profile_build_table, profile_measure
from autoprune.commands.regularize import RegularizeResult, regularize
from autoprune.commands.sensitivity import SensitivityResult, sensitivity
from autoprune.commands.space import space_init
from autoprune.commands.sparsify import SparsifyResult, sparsify
from autoprune.core.errors import AutopruneError, ConfigError, SearchInterrupted
from autoprune.latency.budget import Budget
from autoprune.latency.profiles import HardwareProfile, resolve_profile
from autoprune.load.models import load_model, save_checkpoint
from autoprune.prune.plan import Plan
from autoprune.space.space import SearchSpace, init_space
from autoprune.study.run import SearchResult, search

__all__ = ["ApplyResult", "AutopruneError", "Budget", "ConfigError", "HardwareProfile", "Plan", "RegularizeResult", "SearchInterrupted", "SearchResult",
           "SearchSpace", "SensitivityResult", "SparsifyResult", "apply", "init_space", "load_model", "profile_build_table", "profile_measure", "regularize",
           "resolve_profile", "save_checkpoint", "search", "sensitivity", "space_init", "sparsify"]
__version__ = "0.1.0"
