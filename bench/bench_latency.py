"""Latency you can trust: four benchmarks (issues 3 and 10). Prints its figures; measured side by side in one run.

    python bench/bench_latency.py [--part 1 2 3 4 5] [--quick]

1. Spread of repeated measurements of one model (the demo on cpu-default): the machine idle, and
   while a fine-tune runs on the same cores, with the node lock (autoprune's mechanism) and
   without it (what you would get otherwise). Goal <= 3 %.
2. Realised speedup / MAC reduction for torchvision ResNet-18, ResNet-50 and MobileNetV2 at
   uniform ratios 0.1-0.7, batch 1 and 8, one thread. Goal >= 0.9.
3. Latency-table prediction error over 30 random plans of the demo model and of ResNet-18.
   Goal: median <= 5 %.
4. Reproducibility across processes and runs, the pooled method against the single-process one,
   side by side (interleaved) on the demo and cpu-default:
   (a) five ONNX files, each timed by N separate `autoprune profile measure` processes:
       (max - min) / median of the reported figure per file. Goal <= 3 %.
   (b) one 4-plan list (initial_plans) through two separate searches: the largest difference of a
       plan's figure between the runs. Goal <= 3 %.
   (c) `apply` on the best plan of (b), 5 times in fresh processes: difference to the search's
       figure, and the verdicts. Goal <= 3 %, and no "missed" for a plan whose CI was within budget.
   (d) the cost: measurement seconds per trial and for the baseline, pooled against single.
5. Where the per-process bias comes from: one ONNX file timed in 10 fresh processes each way:
   plain ONNX Runtime; after a torch fine-tune burst in the same process (torch's OpenMP threads
   alive); the same with OMP_WAIT_POLICY=PASSIVE; ASLR off (setarch -R).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from autoprune.latency import node_lock
from autoprune.latency.onnx import export_onnx, measure_onnx
from autoprune.latency.profiles import resolve_profile
from autoprune.load.models import load_model
from autoprune.prune.engine import count_macs_params, prune
from autoprune.prune.groups import find_groups
from autoprune.prune.plan import Plan


def _spread(p50s: list[float]) -> float:
    """(max - min) / median of repeated p50 measurements."""
    return (max(p50s) - min(p50s)) / statistics.median(p50s)


def _finetune_forever(stop, use_lock: bool) -> None:
    import contextlib

    from autoprune.load.data import load_data
    from autoprune.load.demo import DemoResNet
    from autoprune.train.finetune import FinetuneConfig, finetune

    torch.set_num_threads(2)
    data = load_data("builtin:digits")
    guard = node_lock.training_step if use_lock else contextlib.nullcontext
    model = DemoResNet()
    while not stop.is_set():
        finetune(model, data.train, config=FinetuneConfig(steps=20, batch_size=64), step_guard=guard)


def part1(quick: bool) -> None:
    print("\n1. spread of repeated measurements: demo model, cpu-default (p50 of each of N measurements)")
    profile = resolve_profile("cpu-default").model_copy(update={"max_attempts": 1})
    model = load_model("builtin:demo")
    path = export_onnx(model, "/tmp/autoprune-bench-demo.onnx", input_shape=(1, 8, 8), batch_size=profile.batch_size)
    n = 5 if quick else 12
    rows = []
    idle = [measure_onnx(path, profile).p50_ms for _ in range(n)]
    rows.append(("idle", idle))
    ctx = mp.get_context("spawn")
    for use_lock in (True, False):
        stop = ctx.Event()
        proc = ctx.Process(target=_finetune_forever, args=(stop, use_lock))
        proc.start()
        time.sleep(8)  # let it import torch and start training
        rows.append((f"fine-tune running, {'with' if use_lock else 'WITHOUT'} node lock",
                     [measure_onnx(path, profile, exclusive=use_lock).p50_ms for _ in range(n)]))
        stop.set()
        proc.join()
    print(f"  {'condition':<40} {'median p50 ms':>14} {'spread':>8}   (goal <= 3 %)")
    for name, p50s in rows:
        s = _spread(p50s)
        print(f"  {name:<40} {statistics.median(p50s):14.2f} {s:8.1%}   {'ok' if s <= 0.03 else 'over'}")


def _uniform(model: torch.nn.Module, ratio: float, shape: tuple[int, ...]) -> torch.nn.Module:
    groups = find_groups(model, input_shape=shape)
    return prune(model, Plan(ratios={g.name: ratio for g in groups}, round_to=8), input_shape=shape)


def _latency(model: torch.nn.Module, profile, shape: tuple[int, ...]) -> float:
    path = export_onnx(model, "/tmp/autoprune-bench.onnx", input_shape=shape, batch_size=profile.batch_size)
    return measure_onnx(path, profile).p50_ms


def part2(quick: bool) -> None:
    print("\n2. realised speedup / MAC reduction, uniform ratios, cpu-1thread-b1 settings, input 3x224x224")
    shape = (3, 224, 224)
    base_profile = resolve_profile("cpu-1thread-b1").model_copy(update={"warmup": 2, "repeats": 7, "max_attempts": 1})
    ratios = (0.1, 0.4, 0.7) if quick else (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
    print(f"  {'model':<14}{'batch':>6}{'ratio':>7}{'MAC red.':>10}{'speedup':>9}{'ratio':>8}")
    for name in ("resnet18", "resnet50", "mobilenet_v2"):
        model = load_model(f"torchvision:{name}")
        macs0, _ = count_macs_params(model, input_shape=shape)
        pruned = {r: _uniform(model, r, shape) for r in ratios}
        for batch in (1, 8):
            profile = base_profile.model_copy(update={"batch_size": batch})
            lat0 = _latency(model, profile, shape)
            for r, m in pruned.items():
                macs, _ = count_macs_params(m, input_shape=shape)
                red, speed = macs0 / macs, lat0 / _latency(m, profile, shape)
                print(f"  {name:<14}{batch:>6}{r:>7.1f}{red:>10.2f}{speed:>9.2f}{speed / red:>8.2f}"
                      f"{'' if speed / red >= 0.9 else '  < 0.9'}")


def part3(quick: bool) -> None:
    from autoprune.latency.table_build import (
        build_table,
        prediction_error,
        random_plans,
    )
    from autoprune.space.space import init_space

    print("\n3. latency-table prediction error over random plans (predicted against measured p50)")
    n = 10 if quick else 30
    cases = [("builtin:demo", (1, 8, 8), resolve_profile("cpu-default")),
             ("torchvision:resnet18", (3, 224, 224),
              resolve_profile("cpu-1thread-b1").model_copy(update={"warmup": 3, "repeats": 15}))]
    for spec, shape, profile in cases:
        model = load_model(spec)
        space = init_space(model, input_shape=shape, high=0.7, step=0.1 if "resnet" in spec else 0.05)
        t0 = time.perf_counter()
        table = build_table(model, input_shape=shape, profile=profile, space=space)
        built = time.perf_counter() - t0
        plans = random_plans(space, n, seed=1)
        checks = prediction_error(table, [prune(model, p, input_shape=shape) for p in plans], profile=profile,
                                  input_shape=shape)
        err = np.asarray([abs(p - m) / m for p, m in checks])
        print(f"  {spec:<22} on {profile.name:<15} table built in {built:5.0f} s; error over {n} plans: "
              f"median {np.median(err):.1%}, p90 {np.percentile(err, 90):.1%}, max {err.max():.1%}"
              f"   (goal median <= 5 %: {'ok' if np.median(err) <= 0.05 else 'MISSED'})")


ROOT = Path(__file__).resolve().parent.parent
METHODS = ("single", "pooled")


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "autoprune.cli", *args], capture_output=True, text=True,
                          cwd=cwd, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"autoprune {' '.join(args)} failed: {proc.stderr.strip()[-500:]}")
    return proc


def _range(values: list[float]) -> float:
    return (max(values) - min(values)) / statistics.median(values)


def _profile_yaml(tmp: Path, method: str) -> Path:
    """cpu-default with ``method``: same name and settings, so the two differ only in how they time."""
    text = (ROOT / "hw_profiles" / "cpu-default.yaml").read_text()
    path = tmp / method / "cpu-default.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(re.sub(r"^method: \w+", f"method: {method}", text, flags=re.MULTILINE))
    return path


def _demo_plans() -> list[dict[str, float]]:
    from autoprune.space.space import init_space

    space = init_space(load_model("builtin:demo"), input_shape=(1, 8, 8))
    names = sorted(space.groups)
    mixed = {g: (0.6 if i % 2 else 0.1) for i, g in enumerate(names)}
    return [{g: 0.2 for g in names}, {g: 0.4 for g in names}, {g: 0.6 for g in names}, mixed]


def part4(quick: bool) -> None:
    print("\n4. reproducibility across processes and runs: demo model, cpu-default, single against pooled")
    tmp = Path(tempfile.mkdtemp(prefix="autoprune-bench4-"))
    profiles = {m: _profile_yaml(tmp, m) for m in METHODS}
    model = load_model("builtin:demo")
    plans = _demo_plans()
    files = {"unpruned": export_onnx(model, tmp / "unpruned.onnx", input_shape=(1, 8, 8), batch_size=384)}
    for i, plan in enumerate(plans):
        files[f"plan{i}"] = export_onnx(prune(model, Plan(ratios=plan, round_to=8), input_shape=(1, 8, 8)),
                                        tmp / f"plan{i}.onnx", input_shape=(1, 8, 8), batch_size=384)
    _cli("profile", "measure", "--model", str(files["unpruned"]), "--profile", str(profiles["pooled"]))  # calibrates once

    n = 4 if quick else 10
    print(f"  (a) {n} `autoprune profile measure` processes per file and method, interleaved (round-robin, "
          "methods in random order)")
    figures: dict[tuple[str, str], list[float]] = {}
    seconds: dict[str, list[float]] = {m: [] for m in METHODS}
    rng = random.Random(0)
    for _ in range(n):
        for name, path in files.items():
            for method in rng.sample(METHODS, len(METHODS)):
                t0 = time.perf_counter()
                out = _cli("profile", "measure", "--model", str(path), "--profile", str(profiles[method])).stdout
                seconds[method].append(time.perf_counter() - t0)
                figures.setdefault((name, method), []).append(float(re.match(r"p50 ([\d.]+) ms", out)[1]))
    print(f"  {'file':<10}" + "".join(f"{m + ' median':>16}{m + ' range':>14}" for m in METHODS) + "   (goal <= 3 %)")
    for name in files:
        cells = "".join(f"{statistics.median(figures[name, m]):16.2f}{_range(figures[name, m]):14.1%}" for m in METHODS)
        print(f"  {name:<10}{cells}   {'ok' if _range(figures[name, 'pooled']) <= 0.03 else 'over'}")
    print("  seconds per `profile measure` process: " + ", ".join(
        f"{m} {statistics.median(seconds[m]):.1f}" for m in METHODS))

    print("  (b) the same 4 plans through two separate searches per method (runs alternate between methods)")
    runs: dict[str, list[Path]] = {m: [] for m in METHODS}
    for _ in range(2):
        for method in METHODS:
            runs[method].append(_search_in_a_process(plans, profiles[method], tmp / f"runs-{method}"))
    import pandas as pd

    tables = {m: [pd.read_csv(r / "trials.csv").set_index("trial") for r in runs[m]] for m in METHODS}
    for method in METHODS:
        a, b = tables[method]
        diff = ((a["latency_p50_ms"] - b["latency_p50_ms"]).abs() / b["latency_p50_ms"])
        figs = ", ".join(f"{x:.2f}/{y:.2f}" for x, y in zip(a["latency_p50_ms"], b["latency_p50_ms"]))
        print(f"  {method:<7} largest difference {diff.max():6.1%}  (ms, run 1/run 2: {figs})"
              f"   {'ok' if diff.max() <= 0.03 else 'over'}")
        if method == "pooled":
            half = ((a["latency_ci_high_ms"] - a["latency_ci_low_ms"]) / 2 / a["latency_p50_ms"]).median()
            print(f"          median CI half-width {half:.1%}; processes per trial "
                  f"{a['latency_processes@cpu-default'].tolist()} / {b['latency_processes@cpu-default'].tolist()}")

    print("  (c) apply on the best plan of each method's first run, 5 times in fresh processes")
    for method in METHODS:
        run = runs[method][0]
        diffs, verdicts = [], []
        for k in range(5):
            _cli("apply", str(run), "--epochs", "0", "--out", str(run / f"apply-{k}"))
            report = yaml_load(run / f"apply-{k}" / "report.yaml")
            lat = report["latency"]["cpu-default"]
            diffs.append(lat["difference"])
            verdicts.append(lat["verdict"])
        row = tables[method][0].loc[report["trial"]]
        ci = f" [{row['latency_ci_low_ms']:.2f}, {row['latency_ci_high_ms']:.2f}]" if method == "pooled" else ""
        print(f"  {method:<7} {report['trial']}: search {row['latency_p50_ms']:.2f}{ci} ms, budget "
              f"{lat['budget_ms']:.2f} ms; apply - search: {', '.join(f'{d:+.1%}' for d in diffs)}; verdicts "
              f"{', '.join(verdicts)}   {'ok' if max(abs(d) for d in diffs) <= 0.03 else 'over'}")

    print("  (d) cost: seconds of measurement")
    for method in METHODS:
        measure = pd.concat([t["measure_s"] for t in tables[method]])
        baseline = [yaml_load(r / "summary.yaml")["timings_s"]["baseline_s"] for r in runs[method]]
        print(f"  {method:<7} per trial: median {measure.median():.2f} s, mean {measure.mean():.2f} s; "
              f"baseline (once per run) {statistics.mean(baseline):.1f} s")


def yaml_load(path: Path):
    import yaml

    return yaml.safe_load(path.read_text())


_SEARCH = """
import sys, json
from autoprune import search
r = search(budget="0.5x", profile=sys.argv[1], out=sys.argv[2], trials=4, finetune_steps=5, quiet=True,
           initial_plans=json.loads(sys.argv[3]), precheck=False)
print(r.run_dir)
"""


def _search_in_a_process(plans: list[dict[str, float]], profile: Path, out: Path) -> Path:
    proc = subprocess.run([sys.executable, "-c", _SEARCH, str(profile), str(out), json.dumps(plans)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"search failed: {proc.stderr[-800:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


_TIME_ONE = """
import json, os, sys, time
import numpy as np
if sys.argv[2] == "torch":  # a trial's process: torch imported, a fine-tune burst just ended
    import torch
    torch.set_num_threads(2)
    m = torch.nn.Sequential(torch.nn.Conv2d(1, 64, 3), torch.nn.ReLU(), torch.nn.Conv2d(64, 64, 3))
    opt = torch.optim.SGD(m.parameters(), lr=0.01)
    for _ in range(20):
        opt.zero_grad(); m(torch.randn(64, 1, 16, 16)).sum().backward(); opt.step()
import onnxruntime as ort
so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.inter_op_num_threads = 1
s = ort.InferenceSession(sys.argv[1], so, providers=["CPUExecutionProvider"])
x = {s.get_inputs()[0].name: np.random.default_rng(0).standard_normal((384, 1, 8, 8)).astype(np.float32)}
for _ in range(2):
    s.run(None, x)
t = []
for _ in range(10):
    t0 = time.perf_counter(); s.run(None, x); t.append((time.perf_counter() - t0) * 1e3)
print(float(np.median(t)))
"""


def part5(quick: bool) -> None:
    print("\n5. per-process bias: the demo's unpruned ONNX file, cpu-default settings, N fresh processes each way")
    tmp = Path(tempfile.mkdtemp(prefix="autoprune-bench5-"))
    path = export_onnx(load_model("builtin:demo"), tmp / "demo.onnx", input_shape=(1, 8, 8), batch_size=384)
    ways = {"ORT alone": ([], "plain", {}),
            "after torch fine-tune burst": ([], "torch", {}),
            "  + OMP_WAIT_POLICY=PASSIVE": ([], "torch", {"OMP_WAIT_POLICY": "PASSIVE"}),
            "ORT alone, ASLR off": (["setarch", os.uname().machine, "-R"], "plain", {})}
    n = 5 if quick else 10
    got: dict[str, list[float]] = {w: [] for w in ways}
    for _ in range(n):
        for way, (prefix, mode, env) in ways.items():  # interleaved: a slow phase of the host hits every way
            proc = subprocess.run([*prefix, sys.executable, "-c", _TIME_ONE, str(path), mode], capture_output=True,
                                  text=True, env={**os.environ, **env}, check=False)
            if proc.returncode == 0:
                got[way].append(float(proc.stdout.strip()))
    print(f"  {'way':<30}{'median ms':>10}{'range':>8}   per process")
    for way, vals in got.items():
        if vals:
            print(f"  {way:<30}{statistics.median(vals):10.2f}{_range(vals):8.1%}   "
                  + " ".join(f"{v:.1f}" for v in vals))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", type=int, nargs="*", default=[1, 2, 3, 4, 5])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and ratios (a smoke run)")
    args = parser.parse_args()
    for part in args.part:
        {1: part1, 2: part2, 3: part3, 4: part4, 5: part5}[part](args.quick)


if __name__ == "__main__":
    main()
