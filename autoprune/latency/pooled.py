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
import select
import socket
import subprocess
import sys
import tempfile
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
# Runs one worker process per job, one timing at a time; returns what each printed, in job order.
Spawn = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]
WORKER_TIMEOUT_S = 600  # a guard against a worker that never answers, not a timing


class _Worker:
    """One worker process, its job, and a file for what it says on stderr (a pipe could fill and stall it)."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        self.err = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close(), after the process has ended
        # PASSIVE: any OpenMP runtime a provider loads sleeps when idle instead of spinning on a core.
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen([sys.executable, str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.err, text=True, env=env)
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()

    def _error(self, what: str) -> AutopruneError:
        self.err.seek(0)
        last = (self.err.read().decode(errors="replace").strip().splitlines() or ["(no output)"])[-1]
        return AutopruneError(f"latency worker {what} on {', '.join(self.job['models'])}: {last}")

    def ready(self) -> dict[str, Any] | None:
        """Wait until the sessions are open; what the worker printed instead when it could not (an error)."""
        if not select.select([self.proc.stdout], [], [], WORKER_TIMEOUT_S)[0]:
            raise self._error(f"did not start in {WORKER_TIMEOUT_S} s")
        line = self.proc.stdout.readline()
        if line.strip() == "ready":
            return None
        self.proc.wait(timeout=WORKER_TIMEOUT_S)
        if self.proc.returncode != 0 or not line.strip():
            raise self._error("failed")
        return json.loads(line)

    def time(self) -> dict[str, Any]:
        """Let it time its models; what it printed."""
        try:
            stdout, _ = self.proc.communicate("go\n", timeout=WORKER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise self._error(f"did not finish in {WORKER_TIMEOUT_S} s") from None
        if self.proc.returncode != 0:
            raise self._error("failed")
        return json.loads(stdout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.err.close()


def spawn_workers(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One worker process per job. They start and open their sessions together, which the machine's
    idle cores absorb (the caller holds the measurement lock: nothing else is timed meanwhile); then
    they time one at a time, each released after the one before it has finished. Starting a worker
    (Python, ONNX Runtime, two sessions) took 0.16 s of a 0.74 s process on the demo."""
    workers = []
    try:
        for job in jobs:
            workers.append(_Worker(job))
        early = [w.ready() for w in workers]
        return [said if said is not None else w.time() for w, said in zip(workers, early)]
    finally:
        for w in workers:
            w.close()


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
    pending: list[dict[str, Any]] = []
    with node_lock.measuring() if exclusive else contextlib.nullcontext():
        while True:
            if not pending:  # no figure is judged before min_processes: those start together
                count = max(1, min(profile.min_processes, max_processes)) if not timings else 1
                pending = spawn([timing_job(profile, models, seed=len(timings) + i) for i in range(count)])
            out = pending.pop(0)
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
                   spawn: Spawn = spawn_workers, precision: float = 1.0, budget_ms: float | None = None) -> LatencyStats:
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


def calibrate(path: str | Path, profile: HardwareProfile, *, spawn: Spawn = spawn_workers,
              exclusive: bool = True, precision: float = 0.5) -> Estimate:
    """A lone model's milliseconds pooled over processes (no reference): how a reference gets its scale."""
    def alone(ts: list[ProcessTiming]) -> Estimate:
        return pool([t.candidate for t in ts])

    timings = _processes(profile, [str(path)], alone, spawn=spawn, exclusive=exclusive, precision=precision)
    return alone(timings)
