"""HardwareProfile: where and how latency is measured (ONNX Runtime), loaded from ``hw_profiles/*.yaml``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from autoprune import config
from autoprune.config import StrictModel
from autoprune.errors import AutopruneError

DEFAULT_PROFILE = "cpu-default"


class HardwareProfile(StrictModel):
    name: str
    description: str = ""
    provider: str = "CPUExecutionProvider"
    intra_op_threads: int = Field(default=1, ge=0)  # 0: ONNX Runtime picks (all cores)
    inter_op_threads: int = Field(default=1, ge=0)
    batch_size: int = Field(default=1, ge=1)
    input_shape: list[int] | None = None  # one sample, without batch; None: taken from the data
    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"
    warmup: int = Field(default=5, ge=0)
    repeats: int = Field(default=20, ge=3)
    opset: int = Field(default=17, ge=11)
    max_spread: float = Field(default=0.05, gt=0.0)  # re-measure while (p90 - p50) / p50 is above this
    max_attempts: int = Field(default=3, ge=1)
    # Where to measure: a Ray resource only the target node has (e.g. {edge_arm: 1}); None: where the trial runs.
    ray_resources: dict[str, float] | None = None
    # A latency table (autoprune profile build-table): predict instead of measuring. Relative to this file.
    latency_table: str | None = None

    @classmethod
    def load(cls, path: str | Path) -> HardwareProfile:
        profile = config.load(cls, path)
        if profile.latency_table and not Path(profile.latency_table).is_absolute():
            resolved = (Path(path).parent / profile.latency_table).resolve()
            profile = profile.model_copy(update={"latency_table": str(resolved)})
        return profile

    def timing_key(self) -> str:
        """What a latency figure depends on besides the architecture: the cache key of this profile."""
        fields = self.model_dump(exclude={"name", "description", "max_spread", "max_attempts", "latency_table"})
        return f"{self.name}:{sorted(fields.items())}"


def profiles_dir() -> Path:
    """The shipped profiles: ``hw_profiles/`` beside the package (an editable or source install)."""
    return Path(__file__).resolve().parent.parent / "hw_profiles"


def available_profiles() -> dict[str, Path]:
    """The registry of shipped profiles: name → YAML file."""
    return {p.stem: p for p in sorted(profiles_dir().glob("*.yaml"))}


def resolve_profile(spec: str | Path) -> HardwareProfile:
    """A profile by shipped name (``cpu-default``) or by YAML path."""
    path = Path(spec)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return HardwareProfile.load(path)
    shipped = available_profiles()
    if str(spec) not in shipped:
        raise AutopruneError(f"profile {str(spec)!r} is neither a file nor a shipped profile; "
                             f"shipped profiles: {', '.join(shipped) or '(none found)'}")
    return HardwareProfile.load(shipped[str(spec)])
