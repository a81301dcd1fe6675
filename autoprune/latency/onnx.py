"""ONNX export, and timing on a hardware profile's runtime in this process: warm-up, repeats, median and p90."""

from __future__ import annotations

import contextlib
import math
import socket
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from autoprune.core.errors import AutopruneError
from autoprune.core.inputs import as_spec
from autoprune.latency import node_lock
from autoprune.latency.profiles import HardwareProfile
from autoprune.latency.runtimes import (
    INPUT_HIGH_KEY,
    Session,
    Unavailable,
    open_session,
)


def fmt_ms(ms: float) -> str:
    """Milliseconds to about four significant digits: 54.21, 2.406, 0.1193."""
    return f"{ms:.2f}" if ms >= 10 else f"{ms:.3f}" if ms >= 1 else f"{ms:.4f}"


@dataclass(frozen=True)
class LatencyStats:
    """Milliseconds per batch of ``batch_size`` on ``profile``, over ``repeats`` timed runs."""

    profile: str
    batch_size: int
    p50_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    repeats: int
    warmup: int
    source: str = "measured"  # measured | cached (this run) | stored (this machine, see anchor.py) | table
    node: str = ""  # where it was measured (a hostname, or a Ray node id for remote profiles)
    attempts: int = 1  # single: measurements until the spread was under max_spread; pooled: worker processes
    method: str = "single"  # pooled | single | table (see HardwareProfile.method)
    reference: str = ""  # pooled: what the figure is a ratio to (unpruned | anchor)
    reference_ms: float = math.nan  # pooled: that reference's milliseconds, the scale of this figure
    ratio: float = math.nan  # pooled: candidate ÷ reference, pooled over processes, with its 95 % CI
    ratio_low: float = math.nan
    ratio_high: float = math.nan
    ci_low_ms: float = math.nan  # pooled: the 95 % CI of p50_ms (the ratio's CI on the reference's scale)
    ci_high_ms: float = math.nan

    @property
    def spread(self) -> float:
        """(p90 - p50) / p50: how noisy the measurement was."""
        return (self.p90_ms - self.p50_ms) / self.p50_ms if self.p50_ms > 0 else float("inf")

    def rescaled(self, reference_ms: float) -> LatencyStats:
        """The same ratio on another scale: the reference's milliseconds as they are now."""
        f = reference_ms / self.reference_ms
        return replace(self, p50_ms=self.p50_ms * f, p90_ms=self.p90_ms * f, mean_ms=self.mean_ms * f,
                       min_ms=self.min_ms * f, ci_low_ms=self.ci_low_ms * f, ci_high_ms=self.ci_high_ms * f,
                       reference_ms=reference_ms)

    @property
    def has_ci(self) -> bool:
        return not math.isnan(self.ci_low_ms)

    def describe(self) -> str:
        head = f"{self.p50_ms:.2f} ms p50 / {self.p90_ms:.2f} ms p90 per batch of {self.batch_size} on {self.profile}"
        if self.source == "table":
            return f"{head} (predicted from the profile's latency table, not measured)"
        if self.method == "pooled":
            head = (f"{fmt_ms(self.p50_ms)} ms [95 % CI {fmt_ms(self.ci_low_ms)}, {fmt_ms(self.ci_high_ms)}] per "
                    f"batch of {self.batch_size} on {self.profile}")
            how = (f"{self.ratio:.4f}x the {self.reference} model ({fmt_ms(self.reference_ms)} ms), pooled over "
                   f"{self.attempts} worker processes, {self.repeats} runs interleaved with it")
        else:
            how = f"median of {self.repeats} runs after {self.warmup} warm-up, one process"
        if self.method == "single" and self.attempts > 1:
            how += f", steadiest of {self.attempts} measurements"
        if self.node:
            how += f", on {self.node}"
        if self.source == "cached":
            how += "; reused: same architecture measured earlier in this run"
        if self.source == "stored":
            how += "; this machine's stored figure for this model (autoprune profile calibrate measures again)"
        return f"{head} ({how})"

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def export_onnx(model: nn.Module, path: str | Path, *, input_shape: Sequence[int], batch_size: int,
                opset: int = 17, dynamic_batch: bool = False) -> Path:
    """Export for ONNX Runtime; trials use a fixed batch (the static shape they are timed on)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    spec = as_spec(input_shape)
    with warnings.catch_warnings(), torch.no_grad(), _mha_fastpath_off(), _eager_attention(model):
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice, every call
        # dynamo=False: the TorchScript exporter is seconds faster per trial on small CNNs.
        x = spec.example(batch_size)
        # Named inputs go in as the model's one dict argument: the trailing {} keeps the exporter from
        # reading the dict as keyword arguments; the graph's inputs are then the dict's values, in order.
        args, names = ((x, {}), list(x)) if isinstance(x, dict) else ((x,), ["input"])
        torch.onnx.export(model, args, str(p), dynamo=False,
                          opset_version=opset, input_names=names, output_names=["output"],
                          dynamic_axes={**{n: {0: "batch"} for n in names}, "output": {0: "batch"}}
                          if dynamic_batch else None)
    if spec.high is not None:
        _set_input_high(p, spec.high)
    return p


def _set_input_high(path: Path, high: int) -> None:
    """Token ids in the vocabulary's range travel with the file, so whatever times it feeds real ids
    (a Gather of ids all zero reads one row: not what a deployed model does)."""
    import onnx

    m = onnx.load(str(path))
    onnx.helper.set_model_props(m, {**{p.key: p.value for p in m.metadata_props}, INPUT_HIGH_KEY: str(high)})
    onnx.save(m, str(path))


@contextlib.contextmanager
def _eager_attention(model: nn.Module):
    """Hugging Face models export with their eager attention: the TorchScript exporter has no
    conversion of ``scaled_dot_product_attention`` with grouped-query heads (Llama's GQA), and eager
    attention computes the same (ONNX Runtime fuses it again where it can)."""
    configs = {id(c): c for m in model.modules() if (c := getattr(m, "config", None)) is not None
               and getattr(c, "_attn_implementation", None) not in (None, "eager")}
    before = {k: c._attn_implementation for k, c in configs.items()}
    try:
        for c in configs.values():
            c._attn_implementation = "eager"
        yield
    finally:
        for k, c in configs.items():
            c._attn_implementation = before[k]


@contextlib.contextmanager
def _mha_fastpath_off():
    """nn.MultiheadAttention's inference fast path is one fused op ONNX has no export for."""
    backend = getattr(torch.backends, "mha", None)
    if backend is None:
        yield
        return
    before = backend.get_fastpath_enabled()
    backend.set_fastpath_enabled(False)
    try:
        yield
    finally:
        backend.set_fastpath_enabled(before)


def _time_once(session: Session, x: np.ndarray, profile: HardwareProfile, *, exclusive: bool) -> np.ndarray:
    times = []
    with node_lock.measuring() if exclusive else contextlib.nullcontext():
        for _ in range(profile.warmup):
            session.run(x)
        for _ in range(profile.repeats):
            t0 = time.perf_counter()
            session.run(x)
            times.append((time.perf_counter() - t0) * 1000.0)
    return np.asarray(times)


def measure_onnx(path: str | Path, profile: HardwareProfile, *, exclusive: bool = True) -> LatencyStats:
    """Time ``profile.repeats`` runs of the ONNX file after ``profile.warmup`` untimed ones.

    Holds this machine's measurement lock (no other measurement, no fine-tune step meanwhile)
    unless ``exclusive=False``; measures again, up to ``max_attempts``, while the spread is above
    ``max_spread``, and keeps the steadiest measurement.
    """
    try:
        session = open_session(str(path), profile.runtime_settings(), batch_size=profile.batch_size)
    except Unavailable as exc:
        raise AutopruneError(f"profile {profile.name!r} needs {exc}") from None
    shape = session.input_shape
    x = session.feed(seed=0)
    best: LatencyStats | None = None
    taken = 0
    while taken < profile.max_attempts and (best is None or best.spread > profile.max_spread):
        arr = _time_once(session, x, profile, exclusive=exclusive)
        taken += 1
        stats = LatencyStats(profile=profile.name, batch_size=shape[0], p50_ms=float(np.median(arr)),
                             p90_ms=float(np.percentile(arr, 90)), mean_ms=float(arr.mean()),
                             min_ms=float(arr.min()), repeats=profile.repeats, warmup=profile.warmup,
                             node=socket.gethostname())
        if best is None or stats.spread < best.spread:
            best = stats
    return replace(best, attempts=taken)  # type: ignore[arg-type] - max_attempts >= 1


def onnx_outputs(path: str | Path, x: torch.Tensor | dict[str, torch.Tensor]) -> np.ndarray:
    """Run an ONNX file on ``x`` (a dict: the named inputs) with the default CPU session (for checking an export)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    if isinstance(x, dict):
        return session.run(None, {k: v.numpy() for k, v in x.items()})[0]
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
