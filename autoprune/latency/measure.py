"""Latency of a (pruned) model on a profile: cached by architecture, measured where the profile says.

Latency depends only on the architecture and the profile, so a figure is cached under
(architecture fingerprint, profile) and a repeated architecture is not measured again. A profile
with ``ray_resources`` is measured as a Ray task on the node holding that resource (the real
target device in a cluster); a profile with a ``latency_table`` is predicted, not measured.
"""

from __future__ import annotations

import math
import socket
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autoprune.core.errors import AutopruneError
from autoprune.latency.anchor import anchor_reference, stored_figure
from autoprune.latency.cache import LatencyCache
from autoprune.latency.onnx import (
    LatencyStats,
    export_onnx,
    measure_onnx,
)
from autoprune.latency.pooled import measure_pooled
from autoprune.latency.profiles import HardwareProfile, check_provider
from autoprune.latency.reference import THIN_RATIO, Reference, thinned_model


def _measure_here(path: str | Path, profile: HardwareProfile, reference: Reference | None,
                  stored: bool, budget_ms: float | None = None, precision: float = 0.5) -> LatencyStats:
    if profile.method == "single":
        return measure_onnx(path, profile)
    check_provider(profile)
    if stored:
        return stored_figure(path, profile, against=reference, precision=precision)
    return measure_pooled(path, profile, reference=reference or anchor_reference(profile), budget_ms=budget_ms)


def _measure_bytes(data: bytes, profile: HardwareProfile, reference: Reference | None,
                   stored: bool, budget_ms: float | None = None, precision: float = 0.5) -> LatencyStats:
    """Runs on the target node: write the model locally, measure under that node's lock."""
    import ray

    with tempfile.TemporaryDirectory(prefix="autoprune-remote-") as tmp:
        path = Path(tmp) / "model.onnx"
        path.write_bytes(data)
        stats = _measure_here(path, profile, reference, stored, budget_ms, precision)
    return replace(stats, node=f"{socket.gethostname()} ray-node:{ray.get_runtime_context().get_node_id()}")


_remote_measure: Any = None


def measure_on_profile(path: str | Path, profile: HardwareProfile, *, reference: Reference | None = None,
                       stored: bool = False, budget_ms: float | None = None, precision: float = 0.5) -> LatencyStats:
    """Measure an ONNX file here, or on the Ray node holding ``profile.ray_resources``.

    A pooled profile times it against ``reference`` (default: the shipped anchor, calibrated on the
    measuring machine); ``stored``: once per machine, model and reference, then reused (see
    ``anchor.stored_figure``), to ``precision`` × the profile's ``target_ci`` (0.5: a figure that others
    are scaled by). A single-process profile ignores these. ``budget_ms``: the budget the
    figure decides; a pooled measurement stops once it has (see ``pooled.measure_pooled``).
    """
    if not profile.ray_resources:
        return _measure_here(path, profile, reference, stored, budget_ms, precision)
    import ray

    global _remote_measure
    if not ray.is_initialized():
        raise AutopruneError(f"profile {profile.name!r} measures on Ray resource {profile.ray_resources}; "
                             "run it inside a Ray cluster (autoprune search starts or joins one)")
    missing = [r for r in profile.ray_resources if r not in ray.cluster_resources()]
    if missing:
        raise AutopruneError(f"profile {profile.name!r} needs Ray resource {missing[0]!r}, which no node of this "
                             "cluster has; start the target's node with --resources='{\"%s\": 1}'" % missing[0])
    if _remote_measure is None:
        _remote_measure = ray.remote(num_cpus=0)(_measure_bytes)
    # "DEFAULT": not captured by the calling trial's placement group, which lacks the target's resource.
    task = _remote_measure.options(resources=dict(profile.ray_resources), scheduling_strategy="DEFAULT")
    return ray.get(task.remote(Path(path).read_bytes(), profile, reference, stored, budget_ms, precision))


def _call(phase: str, fn: Callable, *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


def deployed_onnx(model: nn.Module, profile: HardwareProfile, path: str | Path, *, input_shape: Sequence[int],
                  calibration: torch.Tensor | None = None, run: Callable[..., Any] = _call) -> Path:
    """Export what runs on ``profile``: the float model, or its INT8 version when the profile quantizes
    (static quantization takes its activation ranges from ``calibration``, training inputs)."""
    path = Path(path)
    shape = profile.sample(input_shape)
    float_path = path.with_name(path.stem + ".float.onnx") if profile.quantized else path
    run("export", export_onnx, model, float_path, input_shape=shape, batch_size=profile.batch_size,
        opset=profile.opset)
    if not profile.quantized:
        return path
    if profile.quantization == "static" and calibration is None:
        raise AutopruneError(f"profile {profile.name!r} quantizes statically and needs calibration inputs; "
                             "pass calibration= (training samples), or use quantization: dynamic")
    from autoprune.latency.quantize import quantize_onnx

    return run("export", quantize_onnx, float_path, path, mode=profile.quantization, calibration=calibration)


def latency_for(model: nn.Module, profile: HardwareProfile, *, input_shape: Sequence[int], arch_key: str,
                cache: LatencyCache | None = None, workdir: str | Path | None = None,
                reference: Reference | None = None, run: Callable[..., Any] = _call,
                calibration: torch.Tensor | None = None, budget_ms: float | None = None,
                stored: bool = False) -> LatencyStats:
    """The model's latency on ``profile``: from the cache, the profile's table, or a measurement.

    ``reference``: what a pooled profile times the model against (see ``measure_on_profile``).
    ``run(phase, fn, *args)`` wraps each step, so a caller can time "export" and "measure" apart.
    ``calibration``: training inputs for a profile that quantizes statically (see ``deployed_onnx``).
    ``budget_ms``: the plan's budget on ``profile``; a pooled measurement stops once its verdict is decided.
    ``stored``: a pooled figure kept on this machine across runs, at the profile's own precision and
    whatever the budget (``anchor.stored_figure``): for plans every run of a model measures alike.
    """
    key = f"{arch_key}|{profile.timing_key()}|{reference.digest if reference is not None else 'anchor'}"
    hit = cache.get(key) if cache is not None else None
    if hit is not None:
        return replace(LatencyStats(**hit), source="cached")
    shape = profile.sample(input_shape)
    if profile.latency_table:
        from autoprune.latency.table import LatencyTable

        stats = run("measure", LatencyTable.load(profile.latency_table).predict, model, profile=profile)
    else:
        check_provider(profile)  # before an export or a quantization that could not be timed here anyway
        with tempfile.TemporaryDirectory(prefix="autoprune-", dir=workdir) as tmp:
            path = deployed_onnx(model, profile, Path(tmp) / "model.onnx", input_shape=shape, calibration=calibration,
                                 run=run)
            if stored:
                stats = run("measure", measure_on_profile, path, profile, reference=reference, stored=True,
                            precision=1.0)
            else:
                stats = run("measure", measure_on_profile, path, profile, reference=reference, budget_ms=budget_ms)
    if cache is not None:
        cache.put(key, stats.as_dict())
    return stats


def _pooled(profile: HardwareProfile) -> bool:
    return profile.method == "pooled" and not profile.latency_table


def _unpruned_onnx(model: nn.Module, profile: HardwareProfile, input_shape: Sequence[int], tmp: str,
                   calibration: torch.Tensor | None) -> Path:
    return deployed_onnx(model, profile, Path(tmp) / "unpruned.onnx", input_shape=input_shape,
                         calibration=calibration)


def thinned_reference(profile: HardwareProfile) -> bool:
    """Whether trials on ``profile`` are timed against a run's thinned model (else its unpruned model).

    Float models on one CPU thread, where it was measured to hold (bench/bench_measure.py): there the
    thinned model's ratio to the unpruned one is steady, so the chain candidate/thinned x
    thinned/unpruned loses nothing. With several threads on a small machine that ratio moved by up to
    20 % between windows (cpu-allcores-b1 on 2 cores), and on other providers it is not measured.
    """
    return (_pooled(profile) and not profile.quantized and profile.intra_op_threads == 1
            and profile.runtime == "onnxruntime" and profile.provider == "CPUExecutionProvider")


def baseline_latency(model: nn.Module, profile: HardwareProfile, *, input_shape: Sequence[int], arch_key: str,
                     cache: LatencyCache | None = None, calibration: torch.Tensor | None = None,
                     reference_model: nn.Module | None = None) -> tuple[LatencyStats, Reference | None]:
    """The unpruned model's figure on ``profile``, and (pooled profiles) the reference that pruned models
    are timed against there: ``reference_model`` (a run's thinned model, see ``reference.thinned_model``)
    where ``thinned_reference`` holds, else the unpruned model itself (as deployed there: INT8 on a quantizing
    profile), at its stored figure."""
    if not _pooled(profile):
        return latency_for(model, profile, input_shape=input_shape, arch_key=arch_key, cache=cache,
                           calibration=calibration), None
    with tempfile.TemporaryDirectory(prefix="autoprune-") as tmp:
        path = _unpruned_onnx(model, profile, input_shape, tmp, calibration)
        # Every trial's milliseconds are scaled by the reference's figure: taken once per machine,
        # precisely, and reused, so two runs of one model share one scale.
        stats = measure_on_profile(path, profile, stored=True)
        if reference_model is None or not thinned_reference(profile):
            return stats, Reference.measured(name="unpruned", onnx=path.read_bytes(), stats=stats)
        unpruned = Reference.measured(name="unpruned", onnx=path.read_bytes(), stats=stats)
        thin = deployed_onnx(reference_model, profile, Path(tmp) / "thinned.onnx", input_shape=input_shape)
        # Its figure is its ratio to the unpruned model, so a relative budget stays decided on ratios
        # to the unpruned model (candidate/thinned x thinned/unpruned), not on two stored figures.
        return stats, Reference.measured(name="thinned", onnx=thin.read_bytes(),
                                         stats=measure_on_profile(thin, profile, reference=unpruned, stored=True))


def reference_record(ref: Reference, *, groups: Sequence[str], round_to: int, ignored: Sequence[str] | None
                     ) -> dict[str, Any]:
    """What a run's baseline keeps of a thinned reference: enough to rebuild it (resume, apply) and its scale."""
    return {"name": ref.name, "ratio": THIN_RATIO, "groups": list(groups), "round_to": round_to,
            "ignored": None if ignored is None else list(ignored), "digest": ref.digest, "ms": ref.ms,
            "ms_low": ref.ms_low, "ms_high": ref.ms_high}


def run_references(model: nn.Module, profiles: Sequence[HardwareProfile], *, input_shape: Sequence[int],
                   baseline: Mapping[str, Any], calibration: torch.Tensor | None = None) -> dict[str, Reference]:
    """The references of a run already measured (resume, apply), at the run's own figures: its thinned
    model where the run recorded one, else its unpruned model."""
    refs = {}
    for p in filter(_pooled, profiles):
        fig = baseline["profiles"][p.name]
        rec = fig.get("reference")
        with tempfile.TemporaryDirectory(prefix="autoprune-") as tmp:
            unpruned = Reference(name="unpruned", onnx=_unpruned_onnx(model, p, input_shape, tmp, calibration).read_bytes(),
                                 ms=fig["latency_p50_ms"], ms_low=fig.get("latency_ci_low_ms", math.nan),
                                 ms_high=fig.get("latency_ci_high_ms", math.nan))
            refs[p.name] = unpruned
            if not rec:
                continue
            thin = thinned_model(model, groups=rec["groups"], input_shape=input_shape, round_to=rec["round_to"],
                                 ignored=rec["ignored"], ratio=rec["ratio"])
            path = deployed_onnx(thin, p, Path(tmp) / "thinned.onnx", input_shape=input_shape)
            ref = Reference(name=rec["name"], onnx=path.read_bytes(), ms=rec["ms"], ms_low=rec["ms_low"],
                            ms_high=rec["ms_high"])
            if ref.digest != rec["digest"]:
                # Not the bytes the run timed against (another exporter): their own figure, on the run's scale.
                ref = Reference.measured(name=rec["name"], onnx=ref.onnx,
                                         stats=measure_on_profile(path, p, reference=unpruned, stored=True))
            refs[p.name] = ref
    return refs
