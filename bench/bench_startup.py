"""How long a user waits: the CLI's answer to ``--help`` and to a bad argument, and the seconds of each
phase of a search up to its first trial (issue 22).

Each figure is taken in fresh processes, ``--repeats`` times, and printed as median [min, max]:

1. ``autoprune --help``, ``autoprune search --help`` and ``autoprune search --budget 5parsecs``;
2. per workload, a one-trial search as a user starts it (``autoprune search … --trials 1``): the
   wall time of the command and the phases the run's ``summary.yaml`` recorded (load, baseline,
   latency-model calibration, seed plans, trials; ``first_trial_s`` from the search's start to its
   first trial's result), the seconds from the command's start until that result's line came out,
   then the first trial's own split (prune, export, measure, fine-tune, evaluate; the measurement's
   worker processes) from ``trials.csv``. The first repetition is shown apart: figures this machine
   stores (the unpruned model's, the calibration plans') are measured then and read back after.

    python bench/bench_startup.py                       # the CLI and the demo
    python bench/bench_startup.py --workloads demo,effnet --repeats 1
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
TRIAL_PHASES = ("prune", "export", "measure", "recalibrate", "finetune", "evaluate", "overhead", "trial")
WORKLOADS = {
    "demo": ["--budget", "50ms"],
    # bench_transfer's EfficientNet-Lite0 (ImageNet weights, Fashion-MNIST at 3x64x64)
    "effnet": ["--budget", "0.5x", "--model", "bench.effnet_lite:model", "--data", "bench.effnet_lite:data",
               "--profile", "cpu-1thread-b1"],
}


def _run(args: list[str], *, cwd: Path, mark: str | None = None) -> tuple[float, subprocess.CompletedProcess, float]:
    """The command's wall time, its result, and the seconds until a line starting with ``mark`` came out."""
    t0 = time.perf_counter()
    # stderr to a file: a pipe nobody reads while stdout is read could fill and stall the command
    with tempfile.TemporaryFile(mode="w+") as err:
        proc = subprocess.Popen([sys.executable, "-m", "autoprune.cli", *args], stdout=subprocess.PIPE, stderr=err,
                                text=True, cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)})
        seen, lines = float("nan"), []
        for line in proc.stdout:  # read as printed: the progress lines are flushed one by one
            lines.append(line)
            if mark and math.isnan(seen) and line.lstrip().startswith(mark):
                seen = time.perf_counter() - t0
        proc.wait()
        err.seek(0)
        done = subprocess.CompletedProcess(proc.args, proc.returncode, "".join(lines), err.read())
    return time.perf_counter() - t0, done, seen


def _figure(values: list[float]) -> str:
    # the first repetition apart: it measures what this machine has not stored yet (see README, stored figures)
    first = f"  (first: {values[0]:.2f})" if len(values) > 1 else ""
    return f"{statistics.median(values):6.2f} s [{min(values):.2f}, {max(values):.2f}]{first}"


def cli_answers(repeats: int) -> None:
    print("== the CLI's answer (fresh process each) ==")
    with tempfile.TemporaryDirectory() as tmp:
        for args in (["--help"], ["search", "--help"], ["search", "--budget", "5parsecs"]):
            times = []
            for _ in range(repeats):
                s, done, _ = _run(args, cwd=Path(tmp))
                times.append(s)
            print(f"  autoprune {' '.join(args):<32} {_figure(times)}  (exit {done.returncode})")


def first_trial(name: str, repeats: int, extra: list[str]) -> None:
    print(f"\n== {name}: a one-trial search, phase by phase ==")
    rows: dict[str, list[float]] = {}
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            wall, done, first = _run(["search", *WORKLOADS[name], *extra, "--trials", "1", "--confirm", "0",
                                      "--out", str(Path(tmp) / "runs")], cwd=ROOT, mark="[  1/1]")
            if done.returncode != 0:
                print(f"  failed (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
                return
            summary = yaml.safe_load(next(Path(tmp, "runs").glob("*/summary.yaml")).read_text())
            timings = {**summary.get("timings_s", {}), "command wall": wall, "first result (command)": first}
            for key, s in timings.items():
                rows.setdefault(key, []).append(float(s))
            with open(next(Path(tmp, "runs").glob("*/trials.csv"))) as fh:
                trial = next(csv.DictReader(fh))
            for phase in TRIAL_PHASES:
                if trial.get(f"{phase}_s"):
                    rows.setdefault(f"  trial: {phase}", []).append(float(trial[f"{phase}_s"]))
            procs = [v for k, v in trial.items() if k.startswith("latency_processes@") and v]
            if procs:  # the workloads here have one profile
                rows.setdefault("  trial: processes", []).append(float(procs[0]))
    for key, values in rows.items():
        print(f"  {key:<24} {_figure(values)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", default="demo", help="comma-separated: " + ", ".join(WORKLOADS))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--finetune-steps", type=int, default=None, help="passed to the searches (default: theirs)")
    args = ap.parse_args()
    cli_answers(args.repeats)
    extra = [] if args.finetune_steps is None else ["--finetune-steps", str(args.finetune_steps)]
    for name in args.workloads.split(","):
        first_trial(name.strip(), args.repeats, extra)


if __name__ == "__main__":
    main()
