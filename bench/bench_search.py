"""Benchmark of the default search: wall time, per-trial phase split, orchestration overhead, peak memory.

    python bench/bench_search.py [--trials N] [--budget 50ms]

Targets (issue 2): default search <= 5 min on 2 cores; overhead <= 10 % of trial wall; peak <= 4 GB.
Peak memory is the sum of resident memory over this process and every descendant (Ray's
GCS, raylet and workers), sampled every 0.2 s: shared pages count once per process, so it errs high.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from typing import Self

import psutil


class PeakMemory:
    def __init__(self, interval: float = 0.2) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)

    def _run(self, interval: float) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for p in [me, *me.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(interval)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--budget", default="50ms")
    args = parser.parse_args()

    from autoprune import search
    from autoprune.core.config import read_yaml
    from autoprune.core.records import PHASES

    with tempfile.TemporaryDirectory() as out, PeakMemory() as mem:
        t0 = time.perf_counter()
        result = search(budget=args.budget, trials=args.trials, out=out, quiet=True)
        wall = time.perf_counter() - t0
        timings = read_yaml(result.run_dir / "summary.yaml")["timings_s"]
    done = result.trials[result.trials["status"] == "completed"]
    tune_s = timings["tune_s"]
    # Overhead seen from the driver, per trial: trial wall minus the five measured phases, plus the
    # gap before the next trial starts (Ray scheduling, Optuna ask/tell, result transport). The
    # tuner's start-up (first worker process importing torch) is a one-off, reported apart.
    order = result.trials.sort_values("started_at")
    gaps = (order["started_at"].iloc[1:].to_numpy() - order["finished_at"].iloc[:-1].to_numpy()).clip(min=0)
    startup = tune_s - float(order["finished_at"].max() - order["started_at"].min())
    overhead_in_trials = float(done["overhead_s"].sum())
    overhead_total = overhead_in_trials + float(gaps.sum())

    print(f"default search: {args.trials} trials, budget {args.budget}, {len(done)} completed")
    print(f"total wall time           {wall:7.1f} s   (target <= 300 s: {'ok' if wall <= 300 else 'MISSED'})")
    for key in ("load_s", "baseline_s", "ray_start_s", "tune_s"):
        print(f"  {key[:-2]:<22}  {timings.get(key, float('nan')):7.1f} s")
    print("per trial (seconds)        mean   median     max")
    for col in [*(f"{p}_s" for p in PHASES), "overhead_s", "wall_s"]:
        s = done[col]
        print(f"  {col[:-2]:<22} {s.mean():7.3f} {s.median():8.3f} {s.max():7.3f}")
    share_trial = overhead_in_trials / float(done["wall_s"].sum())
    share_total = overhead_total / (float(done["wall_s"].sum()) + float(gaps.sum()))
    print(f"gap between trials        {gaps.mean():7.3f} s mean, {gaps.max():.3f} s max")
    print(f"orchestration overhead    {share_trial:7.1%} of trial wall (inside trials)")
    print(f"                          {share_total:7.1%} with the gaps between trials "
          f"(target <= 10 %: {'ok' if share_total <= 0.10 else 'MISSED'})")
    print(f"tuner start-up (one-off)  {startup:7.1f} s (first Ray worker imports torch; outside the per-trial figure)")
    print(f"peak memory               {mem.peak / 2**30:7.2f} GB (target <= 4 GB: {'ok' if mem.peak <= 4 * 2**30 else 'MISSED'})")


if __name__ == "__main__":
    main()
