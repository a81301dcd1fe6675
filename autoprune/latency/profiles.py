"""HardwareProfile: where and how latency is measured (ONNX Runtime or OpenVINO), loaded from ``hw_profiles/*.yaml``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from autoprune.core import config
from autoprune.core.config import StrictModel
from autoprune.core.errors import AutopruneError
from autoprune.core.inputs import InputSpec, as_spec
from autoprune.core.registry import Registry

DEFAULT_PROFILE = "cpu-default"


class HardwareProfile(StrictModel):
    name: str
    description: str = ""
    # What runs the model on the target (latency/runtimes.py): ONNX Runtime with an execution
    # provider, or OpenVINO on a device (``pip install 'autoprune[openvino]'``).
    runtime: Literal["onnxruntime", "openvino"] = "onnxruntime"
    provider: str = "CPUExecutionProvider"  # onnxruntime: the execution provider
    # onnxruntime: the provider's options (TensorRT: trt_fp16_enable, trt_int8_enable, ...). TensorRT
    # engines are cached per architecture under the autoprune cache unless trt_engine_cache_path says where.
    provider_options: dict[str, Any] | None = None
    device: str = "CPU"  # openvino: the device plugin
    # openvino: the inference precision (INFERENCE_PRECISION_HINT); None: the device's default, which
    # on a CPU with bf16 instructions is bf16. Anything but f32 changes outputs: trials then score the
    # model as the runtime runs it.
    precision: Literal["f32", "bf16", "f16"] | None = None
    intra_op_threads: int = Field(default=1, ge=0)  # 0: ONNX Runtime picks (all cores)
    inter_op_threads: int = Field(default=1, ge=0)
    batch_size: int = Field(default=1, ge=1)
    input_shape: list[int] | None = None  # one sample, without batch; None: taken from the data
    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"
    warmup: int = Field(default=5, ge=0)
    repeats: int = Field(default=20, ge=3)
    opset: int = Field(default=17, ge=11)
    # How a figure is taken. pooled (default): fresh ONNX-Runtime-only worker processes, each timing
    # the model interleaved with a reference (the unpruned model, else the shipped anchor), pooled
    # until the 95 % CI of the ratio is within ±target_ci; reproducible across processes and runs.
    # single: one timing in the calling process (fast; its figure carries that process's bias).
    method: Literal["pooled", "single"] = "pooled"
    rounds: int = Field(default=3, ge=1)  # pooled: interleaved rounds per process, one timed run of each model
    target_ci: float = Field(default=0.02, gt=0.0)  # pooled: stop when the CI's relative half-width is under this
    min_processes: int = Field(default=4, ge=2)  # pooled: at least this many worker processes
    max_processes: int = Field(default=10, ge=2)  # pooled: at most this many (the CI may then be wider)
    # pooled: added in quadrature to the CI's half-width. Processes in one window share that window's
    # phase of the host; what drifts between windows (minutes apart) they cannot see. On the 2-core
    # CI machine two windows differed by about 1-2 % (bench/bench_latency.py part 4).
    systematic_ci: float = Field(default=0.01, ge=0.0)
    # single: ``repeats`` timed runs after ``warmup``; re-measure while (p90 - p50) / p50 is above max_spread.
    max_spread: float = Field(default=0.05, gt=0.0)
    max_attempts: int = Field(default=3, ge=1)
    # Where to measure: a Ray resource only the target node has (e.g. {edge_arm: 1}); None: where the trial runs.
    ray_resources: dict[str, float] | None = None
    # A latency table (autoprune profile build-table): predict instead of measuring. Relative to this file.
    latency_table: str | None = None
    # What is deployed on this target: the float model (none), or INT8 from ONNX Runtime's quantizer,
    # dynamic (int8 weights, activations quantized at run time) or static (QDQ, per-channel int8
    # weights, activation ranges from calibration_samples training inputs). With INT8 a trial times
    # the quantized model and evaluates the quantized model's accuracy through ONNX Runtime.
    quantization: Literal["none", "dynamic", "static"] = "none"
    # The channel block the target's kernels compute in (a width is padded up to a multiple): the
    # budget formulation's latency model counts widths that way. None: 16 for the CPU provider on an
    # AVX-512 machine, else 8.
    channel_block: int | None = Field(default=None, ge=1)
    calibration_samples: int = Field(default=128, ge=1)

    @model_validator(mode="after")
    def _processes_ordered(self) -> HardwareProfile:
        if self.max_processes < self.min_processes:
            raise ValueError(f"max_processes ({self.max_processes}) is below min_processes ({self.min_processes}); "
                             "make it at least as large")
        return self

    @model_validator(mode="after")
    def _table_is_float(self) -> HardwareProfile:
        if self.latency_table and self.quantization != "none":
            raise ValueError("a latency table predicts the float model; set quantization: none, or remove "
                             "latency_table to measure the INT8 model")
        return self

    @model_validator(mode="after")
    def _runtime_fields(self) -> HardwareProfile:
        if self.runtime == "onnxruntime" and self.precision is not None:
            raise ValueError(f"precision ({self.precision}) is an OpenVINO setting; set runtime: openvino, or "
                             "remove precision (ONNX Runtime runs a float model in f32)")
        if self.runtime == "openvino" and (self.provider != "CPUExecutionProvider" or self.provider_options):
            raise ValueError(f"provider ({self.provider}) and provider_options are ONNX Runtime settings; an "
                             "OpenVINO profile names its device (device: CPU)")
        return self

    @property
    def quantized(self) -> bool:
        return self.quantization != "none"

    @property
    def numerics_differ(self) -> bool:
        """Whether the target's outputs differ from the float model's (INT8, or OpenVINO below f32):
        its accuracy is then taken through the runtime, not from torch."""
        return self.quantized or (self.runtime == "openvino" and self.precision != "f32")

    @property
    def on_cpu(self) -> bool:
        """Whether the target computes on this kind of machine's CPU (ONNX Runtime's CPU provider, OpenVINO's CPU)."""
        return self.device == "CPU" if self.runtime == "openvino" else self.provider == "CPUExecutionProvider"

    def sample(self, input_shape: Sequence[int]) -> InputSpec:
        """What one sample looks like on this target: the profile's own shape where it sets one, with the
        data's dtype and id range (a profile fixes a sequence length, not what a token is)."""
        spec = as_spec(input_shape)
        return spec if self.input_shape is None else InputSpec(self.input_shape, dtype=spec.dtype, high=spec.high,
                                                               names=spec.names)

    def runtime_settings(self) -> dict[str, Any]:
        """What ``runtimes.open_session`` needs, as plain data (a timing worker's job carries it)."""
        return {"runtime": self.runtime, "provider": self.provider, "provider_options": self.provider_options,
                "device": self.device, "precision": self.precision,
                "intra_op_threads": self.intra_op_threads, "inter_op_threads": self.inter_op_threads,
                "graph_optimization": self.graph_optimization}

    @classmethod
    def load(cls, path: str | Path) -> HardwareProfile:
        profile = config.load(cls, path)
        if profile.latency_table and not Path(profile.latency_table).is_absolute():
            resolved = (Path(path).parent / profile.latency_table).resolve()
            profile = profile.model_copy(update={"latency_table": str(resolved)})
        return profile

    def timing_key(self) -> str:
        """What a latency figure depends on besides the architecture: the cache key of this profile."""
        # The CI settings change how sure a figure is, not what it measures. The other runtime's
        # fields are left out (an ONNX Runtime profile's key is what it was before OpenVINO came).
        other = {"provider", "provider_options"} if self.runtime == "openvino" else {"runtime", "device", "precision"}
        if self.runtime == "onnxruntime" and not self.provider_options:
            other.add("provider_options")
        fields = self.model_dump(exclude={"name", "description", "max_spread", "max_attempts", "latency_table",
                                          "rounds", "target_ci", "min_processes", "max_processes",
                                          "systematic_ci", "calibration_samples", "channel_block", *other})
        return f"{self.name}:{sorted(fields.items())}"


def profiles_dir() -> Path:
    """The shipped profiles: ``hw_profiles/`` beside the package (an editable or source install)."""
    return Path(__file__).resolve().parents[2] / "hw_profiles"


def _shipped(registry: Registry[Path]) -> None:
    for path in sorted(profiles_dir().glob("*.yaml")):
        registry.register(path.stem, path)


# Name → YAML file: the shipped profiles, found on first use; ``PROFILES.register(name, path)`` adds one.
PROFILES: Registry[Path] = Registry("profile", discover=_shipped)


def list_profiles() -> list[str]:
    return PROFILES.names()


def resolve_profile(spec: str | Path) -> HardwareProfile:
    """A profile by registered name (``cpu-default``) or by YAML path."""
    path = Path(spec)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return HardwareProfile.load(path)
    if str(spec) not in PROFILES:
        raise AutopruneError(f"profile {str(spec)!r} is neither a file nor a shipped profile; "
                             f"shipped profiles: {', '.join(list_profiles()) or '(none found)'}")
    return HardwareProfile.load(PROFILES.get(str(spec)))


def check_provider(profile: HardwareProfile) -> None:
    """A profile this machine cannot run (its runtime, provider or device missing) is refused in one
    line, before anything is timed (only the runtime is imported: the CLI calls it before torch or Ray)."""
    from autoprune.latency.runtimes import missing

    why = missing(profile.runtime_settings())
    if why is not None:
        raise AutopruneError(f"profile {profile.name!r} needs {why}")
