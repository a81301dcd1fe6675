"""Sparsity regularisation before pruning, on Fashion-MNIST with the CIFAR-style ResNet-14.

    python bench/bench_regularize.py [--epochs 2] [--ratio 0.5] [--finetune-steps 100]

The trained benchmark model is trained --epochs more, once without a penalty (the control: the
same extra training, so only the penalty differs) and once per (method, strength). Each result is
pruned at --ratio in every group with the criterion the penalty shapes (bn_scale for the BatchNorm
penalties, l2 for group_norm; the control with both), then BN-recalibrated and fine-tuned
--finetune-steps steps. Needs `apt-get install dataset-fashion-mnist`.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SETTINGS = [("bn_l1", 1e-3), ("bn_l1", 3e-3), ("bn_l1", 1e-2), ("bn_group_lasso", 3e-3), ("bn_group_lasso", 1e-2),
            ("group_norm", 1e-3), ("group_norm", 3e-3), ("group_norm", 1e-2)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--finetune-steps", type=int, default=100)
    args = parser.parse_args()

    from autoprune.load.data import load_data
    from autoprune.load.models import load_model
    from autoprune.prune.engine import prune
    from autoprune.prune.groups import find_groups
    from autoprune.prune.penalties import (
        bn_scales,
        get_regularizer,
        penalty_hook,
    )
    from autoprune.prune.plan import Plan
    from autoprune.study.trial import calibration_batch
    from autoprune.train.finetune import (
        FinetuneConfig,
        evaluate,
        finetune,
        recalibrate_bn,
    )
    from bench.fashion import DATA

    t0 = time.perf_counter()
    base = load_model("bench.fashion:resnet")
    data = load_data(DATA)
    shape = data.input_shape
    calib = calibration_batch(data.train, 64)
    groups = find_groups(base, input_shape=shape)
    train = FinetuneConfig(epochs=args.epochs, lr=0.05, batch_size=64)
    short = FinetuneConfig(steps=args.finetune_steps, lr=0.05, batch_size=64)

    def after_pruning(model, criterion: str) -> tuple[float, float]:
        plan = Plan(ratios={g.name: args.ratio for g in groups}, criterion=criterion, round_to=8)
        net = prune(model, plan, input_shape=shape, calibration=calib)
        recalibrate_bn(net, data.train, batches=10)
        recal = evaluate(net, data.val)
        finetune(net, data.train, config=short)
        return recal, evaluate(net, data.val)

    print(f"ResNet-14 on Fashion-MNIST ({len(data.train)} train / {len(data.val)} val), unpruned "
          f"{evaluate(base, data.val):.2%}; each model trained {args.epochs:g} more epochs, then every group pruned "
          f"{args.ratio:.0%}, BN-recalibrated, fine-tuned {args.finetune_steps} steps", flush=True)
    print(f"{'penalty':<16} {'strength':>8} {'trained':>8} {'|γ|<1e-2':>9} {'criterion':>9} {'pruned+BN':>10} "
          f"{'+fine-tune':>10}")
    control = copy.deepcopy(base)
    finetune(control, data.train, config=train)
    acc = evaluate(control, data.val)
    for criterion in ("bn_scale", "l2"):
        recal, tuned = after_pruning(control, criterion)
        small = float((bn_scales(control) < 1e-2).float().mean())
        print(f"{'none (control)':<16} {0:>8g} {acc:>8.2%} {small:>9.1%} {criterion:>9} {recal:>10.2%} {tuned:>10.2%}",
              flush=True)
    for method, strength in SETTINGS:
        net = copy.deepcopy(base)
        hook = penalty_hook(net, method, input_shape=shape, strength=strength)
        finetune(net, data.train, config=train, after_backward=hook)
        criterion = get_regularizer(method).criterion
        recal, tuned = after_pruning(net, criterion)
        small = float((bn_scales(net) < 1e-2).float().mean())
        print(f"{method:<16} {strength:>8g} {evaluate(net, data.val):>8.2%} {small:>9.1%} {criterion:>9} "
              f"{recal:>10.2%} {tuned:>10.2%}", flush=True)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
