"""Accuracy recovery and importance criteria at 50 % channel pruning, on Fashion-MNIST with a
CIFAR-style ResNet-14 (the shape of the classic ResNet-56/CIFAR-10 table: unpruned → pruned →
fine-tuned → fine-tuned with distillation → progressive).

    python bench/bench_recovery.py [--epochs 2] [--ratio 0.5] [--criterion-steps 100]

1. recovery: one plan (every group at --ratio, l1), fine-tuned --epochs with warm-up + cosine;
   with knowledge distillation from the unpruned model; progressively in 3 steps (same epochs).
2. criteria at equal latency: the same plan (hence the same architecture and latency) scored by
   every registered criterion, each fine-tuned --criterion-steps steps.
Needs `apt-get install dataset-fashion-mnist`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--criterion-steps", type=int, default=100)
    args = parser.parse_args()

    import torch

    from autoprune.apply import progressive_plans
    from autoprune.criteria import CRITERIA
    from autoprune.data import load_data
    from autoprune.finetune import (
        Distillation,
        FinetuneConfig,
        evaluate,
        finetune,
        recalibrate_bn,
    )
    from autoprune.latency import export_onnx, measure_onnx
    from autoprune.models import load_model
    from autoprune.plan import Plan
    from autoprune.profiles import resolve_profile
    from autoprune.pruning import count_macs_params, find_groups, prune
    from autoprune.trial import calibration_batch
    from bench.fashion import DATA

    t0 = time.perf_counter()
    model = load_model("bench.fashion:resnet")
    data = load_data(DATA)
    shape = data.input_shape
    calib = calibration_batch(data.train, 64)
    groups = find_groups(model, input_shape=shape)
    plan = Plan(ratios={g.name: args.ratio for g in groups}, criterion="l1", round_to=8)
    ft = FinetuneConfig(epochs=args.epochs, lr=0.05, batch_size=64)
    profile = resolve_profile(ROOT / "bench" / "profiles" / "bench-cpu.yaml")

    def latency(net: torch.nn.Module) -> float:
        path = export_onnx(net, Path("/tmp/bench-recovery.onnx"), input_shape=shape, batch_size=profile.batch_size)
        return measure_onnx(path, profile).p50_ms

    base_acc = evaluate(model, data.val)
    pruned = prune(model, plan, input_shape=shape, calibration=calib)
    macs0, _ = count_macs_params(model, input_shape=shape)
    macs1, _ = count_macs_params(pruned, input_shape=shape)
    print(f"ResNet-14 on Fashion-MNIST ({len(data.train)} train / {len(data.val)} val); every group at "
          f"{args.ratio:.0%} of its channels removed (l1): {macs0 / 1e6:.1f} -> {macs1 / 1e6:.1f} M MACs, "
          f"{latency(model):.2f} -> {latency(pruned):.2f} ms p50 on bench-cpu", flush=True)

    rows = [("unpruned", base_acc), ("pruned, no fine-tune", evaluate(pruned, data.val))]
    recalibrate_bn(pruned, data.train, batches=10)
    rows.append(("pruned, BN recalibrated", evaluate(pruned, data.val)))
    tuned = prune(model, plan, input_shape=shape, calibration=calib)
    finetune(tuned, data.train, config=ft)
    rows.append((f"fine-tuned {args.epochs:g} epochs", evaluate(tuned, data.val)))
    kd = prune(model, plan, input_shape=shape, calibration=calib)
    finetune(kd, data.train, config=ft, distill=Distillation(teacher=model, alpha=0.5, temperature=4.0))
    rows.append(("fine-tuned + distillation", evaluate(kd, data.val)))
    prog = model
    step_ft = FinetuneConfig(epochs=args.epochs / 3, lr=0.05, batch_size=64)
    for build in progressive_plans(model, plan, steps=3, input_shape=shape):
        prog = prune(prog, build(prog), input_shape=shape, calibration=calibration_batch(data.train, 64))
        finetune(prog, data.train, config=step_ft)
    rows.append(("progressive, 3 steps", evaluate(prog, data.val)))
    print("\n1. recovery")
    for name, acc in rows:
        print(f"{name:<28} {acc:>7.2%}")

    print(f"\n2. criteria at equal latency (same architecture), {args.criterion_steps} fine-tune steps each")
    print(f"{'criterion':<12} {'no fine-tune':>12} {'BN recal.':>10} {'fine-tuned':>10}")
    short = FinetuneConfig(steps=args.criterion_steps, lr=0.05, batch_size=64)
    for name in sorted(CRITERIA):
        net = prune(model, plan.model_copy(update={"criterion": name}), input_shape=shape, calibration=calib)
        before = evaluate(net, data.val)
        recalibrate_bn(net, data.train, batches=10)
        recal = evaluate(net, data.val)
        finetune(net, data.train, config=short)
        print(f"{name:<12} {before:>12.2%} {recal:>10.2%} {evaluate(net, data.val):>10.2%}", flush=True)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
