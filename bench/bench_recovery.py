"""Accuracy recovery and importance criteria at 50 % channel pruning, on Fashion-MNIST with a
CIFAR-style ResNet-14 trained to convergence (the shape of the classic ResNet-56/CIFAR-10 table: unpruned → pruned →
fine-tuned → fine-tuned with distillation → progressive).

    python bench/bench_recovery.py [--epochs 2] [--ratio 0.5] [--criterion-steps 100] [--seeds 3]

1. recovery: one plan (every group at --ratio, l1), fine-tuned --epochs with warm-up + cosine;
   with knowledge distillation from the unpruned model (logits; logits + attention transfer on
   every stage); progressively in 3 steps (same epochs). Each --seeds times (data order), mean ± sd:
   the differences between modes are of the size of the seed-to-seed spread.
2. criteria at equal latency: the same plan (hence the same architecture and latency) scored by
   every registered criterion, each fine-tuned --criterion-steps steps.
3. unstructured magnitude pruning of the unpruned model (global threshold) at several sparsities:
   accuracy, sizes, and ONNX Runtime latency of the dense and the sparse model side by side.
Needs `apt-get install dataset-fashion-mnist`.
"""

from __future__ import annotations

import argparse
import dataclasses
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
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--model", default="bench.fashion:resnet_converged",
                        help="the unpruned model (default: ResNet-14 trained 20 epochs; bench.fashion:resnet is 4)")
    args = parser.parse_args()

    import torch

    from autoprune.commands.apply import progressive_plans
    from autoprune.latency.onnx import export_onnx, measure_onnx
    from autoprune.latency.profiles import resolve_profile
    from autoprune.load.data import load_data
    from autoprune.load.models import load_model
    from autoprune.prune.criteria import list_criteria
    from autoprune.prune.engine import count_macs_params, prune
    from autoprune.prune.groups import find_groups
    from autoprune.prune.plan import Plan
    from autoprune.study.trial import calibration_batch
    from autoprune.train.finetune import (
        Distillation,
        FinetuneConfig,
        evaluate,
        feature_layers,
        finetune,
        recalibrate_bn,
    )
    from bench.fashion import DATA

    t0 = time.perf_counter()
    model = load_model(args.model)
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
    print(f"{args.model} (ResNet-14) on Fashion-MNIST ({len(data.train)} train / {len(data.val)} val); every group at "
          f"{args.ratio:.0%} of its channels removed (l1): {macs0 / 1e6:.1f} -> {macs1 / 1e6:.1f} M MACs, "
          f"{latency(model):.2f} -> {latency(pruned):.2f} ms p50 on bench-cpu", flush=True)

    rows = [("unpruned", base_acc), ("pruned, no fine-tune", evaluate(pruned, data.val))]
    recalibrate_bn(pruned, data.train, batches=10)
    rows.append(("pruned, BN recalibrated", evaluate(pruned, data.val)))
    features = feature_layers(model, "auto", input_shape=shape)

    def one_shot(seed: int, distill: Distillation | None = None) -> float:
        net = prune(model, plan, input_shape=shape, calibration=calib)
        finetune(net, data.train, config=dataclasses.replace(ft, seed=seed), distill=distill)
        return evaluate(net, data.val)

    def progressive(seed: int) -> float:
        net = model
        step_ft = FinetuneConfig(epochs=args.epochs / 3, lr=0.05, batch_size=64, seed=seed)
        for build in progressive_plans(model, plan, steps=3, input_shape=shape):
            net = prune(net, build(net), input_shape=shape, calibration=calibration_batch(data.train, 64))
            finetune(net, data.train, config=step_ft)
        return evaluate(net, data.val)

    modes = {f"fine-tuned {args.epochs:g} epochs": lambda s: one_shot(s),
             "+ distillation (logits)": lambda s: one_shot(s, Distillation(teacher=model, alpha=0.5, temperature=4.0)),
             "+ distillation + attention": lambda s: one_shot(s, Distillation(teacher=model, alpha=0.5, temperature=4.0,
                                                                              features=features)),
             "progressive, 3 steps": progressive}
    print(f"\n1. recovery (seeds 0..{args.seeds - 1}; attention transfer on {', '.join(features)})")
    for name, acc in rows:
        print(f"{name:<28} {acc:>7.2%}", flush=True)
    for name, fn in modes.items():
        accs = torch.tensor([fn(seed) for seed in range(args.seeds)])
        sd = float(accs.std()) if len(accs) > 1 else 0.0
        print(f"{name:<28} {float(accs.mean()):>7.2%} ± {sd:.2%}   ({', '.join(f'{a:.2%}' for a in accs)})", flush=True)

    print(f"\n2. criteria at equal latency (same architecture), {args.criterion_steps} fine-tune steps each")
    print(f"{'criterion':<12} {'no fine-tune':>12} {'BN recal.':>10} {'fine-tuned':>10}")
    short = FinetuneConfig(steps=args.criterion_steps, lr=0.05, batch_size=64)
    for name in list_criteria():
        net = prune(model, plan.model_copy(update={"criterion": name}), input_shape=shape, calibration=calib)
        before = evaluate(net, data.val)
        recalibrate_bn(net, data.train, batches=10)
        recal = evaluate(net, data.val)
        finetune(net, data.train, config=short)
        print(f"{name:<12} {before:>12.2%} {recal:>10.2%} {evaluate(net, data.val):>10.2%}", flush=True)
    print("\n3. unstructured magnitude pruning (global threshold), fine-tuned 1 epoch with the zeros held;"
          " latency dense and sparse measured side by side on bench-cpu")
    from autoprune.latency.sparse import latency_side_by_side, sparsity_report
    from autoprune.prune.masks import magnitude_masks, make_permanent

    dense_size = sparsity_report(model, input_shape=shape)
    print(f"{'sparsity':>8} {'no fine-tune':>12} {'fine-tuned':>10} {'CSR MB':>7} {'gzip MB':>8} {'dense ms':>9} "
          f"{'sparse ms':>9} {'speed-up':>8}")
    print(f"{0:>8.0%} {base_acc:>12.2%} {base_acc:>10.2%} {dense_size.sparse_bytes / 1e6:>7.3f} "
          f"{dense_size.onnx_gzip_bytes / 1e6:>8.3f}")
    for sparsity in (0.5, 0.7, 0.9):
        net = magnitude_masks(load_model(args.model), sparsity=sparsity, scope="global")
        before = evaluate(net, data.val)
        finetune(net, data.train, config=FinetuneConfig(epochs=1, lr=0.05, batch_size=64))
        make_permanent(net)
        size = sparsity_report(net, input_shape=shape)
        lat = latency_side_by_side({"dense": model, "sparse": net}, profile, input_shape=shape)
        print(f"{size.sparsity:>8.0%} {before:>12.2%} {evaluate(net, data.val):>10.2%} {size.sparse_bytes / 1e6:>7.3f} "
              f"{size.onnx_gzip_bytes / 1e6:>8.3f} {lat['dense'].p50_ms:>9.2f} {lat['sparse'].p50_ms:>9.2f} "
              f"{lat['dense'].p50_ms / lat['sparse'].p50_ms:>7.2f}x", flush=True)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
