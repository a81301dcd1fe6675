"""The anchor: a fixed small model shipped with the package, the reference where no unpruned model is at hand,
and the figures of fixed models stored against it, per machine.

As SPEC normalises by a reference machine, a lone ONNX file (``autoprune profile measure``) and a
run's unpruned model are timed against the anchor, and their milliseconds are the ratio times the
anchor's nominal time. That nominal time is calibrated once per machine and profile (many worker
processes) and cached, so figures taken on this machine on different days share one scale, and a
slow phase of the host moves the anchor and the model alike. ``autoprune profile calibrate``
measures it again.

A run's unpruned model is such a fixed model: its figure against the anchor is measured once per
machine and profile, to twice the profile's precision, and stored as a ratio to the anchor, so that
every run of that model on this machine shares one scale (two runs of one plan then differ only by
the plan's own measurement).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import os
import platform
import socket
import tempfile
from dataclasses import replace
from pathlib import Path

from autoprune.core import config
from autoprune.core.files import cache_dir
from autoprune.latency.onnx import LatencyStats
from autoprune.latency.pooled import Spawn, calibrate, measure_pooled, spawn_workers
from autoprune.latency.profiles import HardwareProfile
from autoprune.latency.reference import Reference

ANCHOR_VERSION = 1  # bump when the anchor's architecture changes: every calibration is then redone
ANCHOR_INPUT = (1, 8, 8)


@functools.cache
def anchor_onnx(batch_size: int, *, opset: int = 17) -> bytes:
    """The anchor at ``batch_size``: the demo's architecture at a quarter of its widths, fixed weights.
    Exported once per process and shape (the export is deterministic; every measurement against the
    anchor needs it)."""
    import torch

    from autoprune.latency.onnx import export_onnx
    from autoprune.load.demo import DemoResNet

    torch.manual_seed(0)
    model = DemoResNet(widths=(16, 32, 64)).eval()
    with tempfile.TemporaryDirectory(prefix="autoprune-anchor-") as tmp:
        return export_onnx(model, Path(tmp) / "anchor.onnx", input_shape=ANCHOR_INPUT, batch_size=batch_size,
                           opset=opset).read_bytes()


def machine_key() -> str:
    """This machine, for the calibration cache: host name, CPU model and core count."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{socket.gethostname()}-{hashlib.sha256(cpu.encode()).hexdigest()[:8]}-{os.cpu_count()}c"


def _cache_file(profile: HardwareProfile, onnx: bytes, *, kind: str = "anchor") -> Path:
    key = hashlib.sha256(f"{ANCHOR_VERSION}|{profile.timing_key()}|".encode() + onnx).hexdigest()[:16]
    return cache_dir() / "latency-anchor" / machine_key() / f"{profile.name}-{kind}-{key}.yaml"


def anchor_reference(profile: HardwareProfile, *, recalibrate: bool = False,
                     spawn: Spawn = spawn_workers) -> Reference:
    """The anchor with its nominal milliseconds on ``profile``: from this machine's cache, or calibrated now."""
    onnx = anchor_onnx(profile.batch_size, opset=profile.opset)
    path = _cache_file(profile, onnx)
    if path.is_file() and not recalibrate:
        cal = config.read_yaml(path)
        return Reference(name="anchor", onnx=onnx, ms=cal["ms"], ms_low=cal["ms_low"], ms_high=cal["ms_high"])
    ref = Reference(name="anchor", onnx=onnx, ms=1.0)
    est = calibrate(ref.path(), profile, spawn=spawn)
    config.dump({"ms": est.value, "ms_low": est.low, "ms_high": est.high, "processes": est.n,
                 "profile": profile.name, "machine": machine_key(),
                 "calibrated_at": dt.datetime.now().isoformat(timespec="seconds")}, path,
                header="# autoprune: the anchor model's pooled latency on this machine and profile\n")
    return Reference(name="anchor", onnx=onnx, ms=est.value, ms_low=est.low, ms_high=est.high)


def forget_stored(profile: HardwareProfile) -> int:
    """Drop this machine's stored model figures on ``profile`` (measured again when next needed)."""
    files = list((cache_dir() / "latency-anchor" / machine_key()).glob(f"{profile.name}-model-*.yaml"))
    for f in files:
        f.unlink()
    return len(files)


def stored_figure(path: str | Path, profile: HardwareProfile, *, spawn: Spawn = spawn_workers,
                  against: Reference | None = None, precision: float = 0.5) -> LatencyStats:
    """A fixed model's pooled figure against the anchor (or ``against``, a reference whose own figure is
    stored: a run's thinned model against its unpruned one): measured once per machine and profile (to
    ``precision`` × the profile's ``target_ci``: twice as precisely by default), then read back, on that
    reference's current scale."""
    onnx = Path(path).read_bytes()
    ref = against if against is not None else anchor_reference(profile, spawn=spawn)
    key = onnx if against is None else onnx + b"|against|" + against.digest.encode()
    if precision != 0.5:  # the figures stored before precision was a choice keep their keys
        key += f"|precision|{precision:g}".encode()
    file = _cache_file(profile, key, kind="model")
    if file.is_file():
        stats = LatencyStats(**config.read_yaml(file)["figure"])
        return replace(stats.rescaled(ref.ms), source="stored")
    stats = measure_pooled(path, profile, reference=ref, spawn=spawn, precision=precision)
    config.dump({"figure": stats.as_dict(), "machine": machine_key(),
                 "measured_at": dt.datetime.now().isoformat(timespec="seconds")}, file,
                header="# autoprune: a model's pooled latency against a reference on this machine and profile\n")
    return stats
