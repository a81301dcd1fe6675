"""Latency of a (pruned) model on a profile: cached by architecture, measured where the profile says.

Latency depends only on the architecture and the profile, so a figure is cached under
(architecture fingerprint, profile) and a repeated architecture is not measured again. A profile
with ``ray_resources`` is measured as a Ray task on the node holding that resource (the real
target device in a cluster); a profile with a ``latency_table`` is predicted, not measured.
"""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from torch import nn

from autoprune.errors import AutopruneError
from autoprune.latency import LatencyStats, export_onnx, measure_onnx
from autoprune.latency_cache import LatencyCache
from autoprune.profiles import HardwareProfile


def _measure_bytes(data: bytes, profile: HardwareProfile) -> LatencyStats:
    """Runs on the target node: write the model locally, measure under that node's lock."""
    import ray

    with tempfile.TemporaryDirectory(prefix="autoprune-remote-") as tmp:
        path = Path(tmp) / "model.onnx"
        path.write_bytes(data)
        stats = measure_onnx(path, profile)
    return replace(stats, node=f"{socket.gethostname()} ray-node:{ray.get_runtime_context().get_node_id()}")


_remote_measure: Any = None


def measure_on_profile(path: str | Path, profile: HardwareProfile) -> LatencyStats:
    """Measure an ONNX file here, or on the Ray node holding ``profile.ray_resources``."""
    if not profile.ray_resources:
        return measure_onnx(path, profile)
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
    return ray.get(task.remote(Path(path).read_bytes(), profile))


def _call(phase: str, fn: Callable, *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


def latency_for(model: nn.Module, profile: HardwareProfile, *, input_shape: Sequence[int], arch_key: str,
                cache: LatencyCache | None = None, workdir: str | Path | None = None,
                run: Callable[..., Any] = _call) -> LatencyStats:
    """The model's latency on ``profile``: from the cache, the profile's table, or a measurement.

    ``run(phase, fn, *args)`` wraps each step, so a caller can time "export" and "measure" apart.
    """
    key = f"{arch_key}|{profile.timing_key()}"
    hit = cache.get(key) if cache is not None else None
    if hit is not None:
        return replace(LatencyStats(**hit), source="cached")
    shape = profile.input_shape or list(input_shape)
    if profile.latency_table:
        from autoprune.latency_table import LatencyTable

        stats = run("measure", LatencyTable.load(profile.latency_table).predict, model, profile=profile)
    else:
        with tempfile.TemporaryDirectory(prefix="autoprune-", dir=workdir) as tmp:
            path = run("export", export_onnx, model, Path(tmp) / "model.onnx", input_shape=shape,
                       batch_size=profile.batch_size, opset=profile.opset)
            stats = run("measure", measure_on_profile, path, profile)
    if cache is not None:
        cache.put(key, stats.as_dict())
    return stats
