"""autoprune: search per-layer channel-prune ratios under a latency budget on real hardware profiles.

The Python API has the shape of the CLI: ``search``, ``apply``, ``sensitivity``, ``sparsify``, ``regularize``, ``space_init``,
``profile_measure``, ``profile_build_table``.
"""

from autoprune.apply import ApplyResult, apply
from autoprune.budget import Budget
from autoprune.errors import AutopruneError, ConfigError, SearchInterrupted
from autoprune.models import load_model, save_checkpoint
from autoprune.plan import Plan
from autoprune.profiles import HardwareProfile, resolve_profile
from autoprune.profiling import profile_build_table, profile_measure
from autoprune.regularize import RegularizeResult, regularize
from autoprune.search import SearchResult, search
from autoprune.sensitivity import SensitivityResult, sensitivity
from autoprune.space import SearchSpace, init_space, space_init
from autoprune.sparsify import SparsifyResult, sparsify

__all__ = ["ApplyResult", "AutopruneError", "Budget", "ConfigError", "HardwareProfile", "Plan", "RegularizeResult", "SearchInterrupted", "SearchResult",
           "SearchSpace", "SensitivityResult", "SparsifyResult", "apply", "init_space", "load_model", "profile_build_table", "profile_measure", "regularize",
           "resolve_profile", "save_checkpoint", "search", "sensitivity", "space_init", "sparsify"]
__version__ = "0.1.0"
