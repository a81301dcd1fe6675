"""Latency you can trust: three benchmarks (issue 3). Prints its figures; measured side by side in one run.

    python bench/bench_latency.py [--part 1 2 3] [--quick]

1. Spread of repeated measurements of one model (the demo on cpu-default): the machine idle, and
   while a fine-tune runs on the same cores, with the node lock (autoprune's mechanism) and
   without it (what you would get otherwise). Goal <= 3 %.
2. Realised speedup / MAC reduction for torchvision ResNet-18, ResNet-50 and MobileNetV2 at
   uniform ratios 0.1-0.7, batch 1 and 8, one thread. Goal >= 0.9.
3. Latency-table prediction error over 30 random plans of the demo model and of ResNet-18.
   Goal: median <= 5 %.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import time

import numpy as np
import torch

from autoprune import node_lock
from autoprune.latency import export_onnx, measure_onnx
from autoprune.models import load_model
from autoprune.plan import Plan
from autoprune.profiles import resolve_profile
from autoprune.pruning import count_macs_params, find_groups, prune


def _spread(p50s: list[float]) -> float:
    """(max - min) / median of repeated p50 measurements."""
    return (max(p50s) - min(p50s)) / statistics.median(p50s)


def _finetune_forever(stop, use_lock: bool) -> None:
    import contextlib

    from autoprune.data import load_data
    from autoprune.demo import DemoResNet
    from autoprune.finetune import FinetuneConfig, finetune

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
    from autoprune.latency_table import build_table, prediction_error, random_plans
    from autoprune.space import init_space

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", type=int, nargs="*", default=[1, 2, 3])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and ratios (a smoke run)")
    args = parser.parse_args()
    for part in args.part:
        {1: part1, 2: part2, 3: part3}[part](args.quick)


if __name__ == "__main__":
    main()
