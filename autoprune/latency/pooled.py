"""The pooled measurement: fresh ONNX-Runtime-only processes, each timing the candidate interleaved with a
reference, pooled until the ratio's 95 % CI is narrow enough.

One process's figure carries that process's bias (on this kind of machine the same file reads
≈ 47 or ≈ 60 ms depending on the process), so a figure is pooled over several short-lived worker
processes (pyperf's method), started one after another while this machine's measurement lock is
held. Inside each, candidate and reference alternate in random order (Google Benchmark's random
interleaving), and the figure is their ratio: a slow phase of the host moves both. Milliseconds
are the ratio times the reference's own pooled estimate, so every figure of a run shares one scale.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from autoprune.core.errors import AutopruneError
from autoprune.latency import node_lock
from autoprune.latency.onnx import LatencyStats
from autoprune.latency.pooling import Estimate, ProcessTiming, decided, enough, pool
from autoprune.latency.profiles import HardwareProfile
from autoprune.latency.reference import Reference

WORKER = Path(__file__).with_name("worker.py")
Spawn = Callable[[dict[str, Any]], dict[str, Any]]


def spawn_worker(job: dict[str, Any]) -> dict[str, Any]:
    """Run one worker process to completion; returns what it printed."""
    # PASSIVE: any OpenMP runtime a provider loads sleeps when idle instead of spinning on a core.
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(WORKER)], input=json.dumps(job), capture_output=True, text=True,
                          env=env, timeout=600, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise AutopruneError(f"latency worker failed on {', '.join(job['models'])}: {last}")
    return json.loads(proc.stdout)


def timing_job(profile: HardwareProfile, models: list[str], *, seed: int) -> dict[str, Any]:
    """What one worker process is asked: time ``models`` on ``profile``'s runtime, interleaved in its rounds."""
    return {"models": models, "runtime": profile.runtime_settings(),
            "batch_size": profile.batch_size, "warmup": profile.warmup, "rounds": profile.rounds, "seed": seed}


def _processes(profile: HardwareProfile, models: list[str], figure: Callable[[list[ProcessTiming]], Estimate], *,
               spawn: Spawn, exclusive: bool, precision: float,
               settled: Callable[[Estimate], bool] | None = None) -> list[ProcessTiming]:
    """Start worker processes one after another until ``figure`` of their timings is precise enough:
    ``precision`` × the profile's ``target_ci``, with the process cap raised by its inverse; or, after
    the profile's ``min_processes``, until ``settled`` says the figure is decided (a budget's verdict)."""
    target_ci, max_processes = profile.target_ci * precision, round(profile.max_processes / precision)
    timings: list[ProcessTiming] = []
    with node_lock.measuring() if exclusive else contextlib.nullcontext():
        while True:
            out = spawn(timing_job(profile, models, seed=len(timings)))
            if "error" in out:
                raise AutopruneError(f"profile {profile.name!r}: {out['error']}")
            per_model = [[ms for i, _, ms in out["samples"] if i == k] for k in range(len(models))]
            timings.append(ProcessTiming(tuple(per_model[0]), tuple(per_model[1]) if len(models) > 1 else ()))
            est = figure(timings)
            if enough(est, target_ci=target_ci, min_processes=profile.min_processes, max_processes=max_processes):
                return timings
            if settled is not None and len(timings) >= profile.min_processes and settled(est):
                return timings


def measure_pooled(path: str | Path, profile: HardwareProfile, *, reference: Reference, exclusive: bool = True,
                   spawn: Spawn = spawn_worker, precision: float = 1.0, budget_ms: float | None = None) -> LatencyStats:
    """The candidate's latency as ``ratio to reference × reference ms``, with a 95 % CI.

    ``precision`` < 1 tightens the profile's ``target_ci`` by that factor and raises the process cap
    by its inverse (for figures every other one is scaled by: a run's baseline, a calibration).
    The reported CI adds the profile's ``systematic_ci`` to the statistical one, in quadrature.
    ``budget_ms``: the plan's budget here; processes stop being added once the CI lies wholly on one
    side of it with ``target_ci`` to spare (a plan near its budget still gets the tight CI).
    """
    def ratio(ts: list[ProcessTiming]) -> Estimate:
        return pool([t.ratio for t in ts])

    def settled(est: Estimate) -> bool:
        ms_ = est.widened(profile.systematic_ci).scaled(reference.ms)
        return decided(ms_, budget=budget_ms, margin=profile.target_ci)

    timings = _processes(profile, [str(path), str(reference.path())], ratio, spawn=spawn, exclusive=exclusive,
                         precision=precision, settled=settled if budget_ms is not None else None)
    est = ratio(timings).widened(profile.systematic_ci)
    ms = est.scaled(reference.ms)
    raw = np.asarray([ms_ for t in timings for ms_ in t.candidate_ms])
    norm = ms.value / float(np.median(raw))  # raw samples onto the reference's scale
    return LatencyStats(profile=profile.name, batch_size=profile.batch_size, p50_ms=ms.value,
                        p90_ms=float(np.percentile(raw, 90)) * norm, mean_ms=float(raw.mean()) * norm,
                        min_ms=float(raw.min()) * norm, repeats=len(raw), warmup=profile.warmup,
                        node=socket.gethostname(), attempts=len(timings), method="pooled",
                        reference=reference.name, reference_ms=reference.ms, ratio=est.value, ratio_low=est.low,
                        ratio_high=est.high, ci_low_ms=ms.low, ci_high_ms=ms.high)


def calibrate(path: str | Path, profile: HardwareProfile, *, spawn: Spawn = spawn_worker,
              exclusive: bool = True, precision: float = 0.5) -> Estimate:
    """A lone model's milliseconds pooled over processes (no reference): how a reference gets its scale."""
    def alone(ts: list[ProcessTiming]) -> Estimate:
        return pool([t.candidate for t in ts])

    timings = _processes(profile, [str(path)], alone, spawn=spawn, exclusive=exclusive, precision=precision)
    return alone(timings)
