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

    @classmethod
    def load(cls, path: str | Path) -> HardwareProfile:
        return config.load(cls, path)


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
