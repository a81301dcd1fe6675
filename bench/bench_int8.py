"""Pruning × INT8: what each step buys at one latency budget, and the joint search's best.

    python bench/bench_int8.py [--trials 16] [--finetune-steps 60] [--budget 0.5x] [--seeds 3]

ResNet-14 on Fashion-MNIST; `bench-cpu` (float) and `bench-cpu-int8` (the same target deploying
ONNX Runtime's static QDQ INT8), one process, one Ray:

1. float unpruned and INT8 unpruned: accuracy (INT8 through ONNX Runtime) and latency;
2. pruned float at the budget: the float search's best plan, re-trained with fresh seeds;
3. that plan + INT8: the same re-trained models quantized, accuracy through ONNX Runtime;
4. the joint search: the same budget in milliseconds, searched on the INT8 target, so the plan is
   chosen for what is deployed (INT8 prunes less for the same milliseconds); its best plan
   re-trained with the same fresh seeds and quantized.

Latencies are the searches' pooled figures. Needs `apt-get install dataset-fashion-mnist`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])

MODEL = "bench.fashion:resnet"
FLOAT = str(ROOT / "bench" / "profiles" / "bench-cpu.yaml")
INT8 = str(ROOT / "bench" / "profiles" / "bench-cpu-int8.yaml")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--finetune-steps", type=int, default=60)
    parser.add_argument("--budget", default="0.5x")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()

    import ray

    from autoprune import search
    from autoprune.latency.measure import deployed_onnx
    from autoprune.latency.profiles import resolve_profile
    from autoprune.latency.quantize import calibration_samples, onnx_accuracy
    from autoprune.load.data import load_data
    from autoprune.load.models import load_model
    from autoprune.prune.engine import prune
    from autoprune.prune.plan import Plan
    from autoprune.space.space import init_space
    from autoprune.study.ray_backend import env_for_ray
    from autoprune.study.trial import calibration_batch
    from autoprune.train.finetune import (
        FinetuneConfig,
        evaluate,
        finetune,
        recalibrate_bn,
    )
    from bench.fashion import DATA

    t0 = time.perf_counter()
    env_for_ray()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    model = load_model(MODEL)
    data = load_data(DATA)
    int8 = resolve_profile(INT8)
    calib_q = calibration_samples(data.train, count=int8.calibration_samples, seed=0)
    space = init_space(model, input_shape=data.input_shape, model_name=MODEL, low=0.0, high=0.75, step=0.125)
    out = Path(tempfile.mkdtemp(prefix="bench-int8-"))
    space_path = space.save(out / "space.yaml")
    common = {"model": MODEL, "data": DATA, "space": space_path, "finetune_steps": args.finetune_steps,
              "concurrency": args.concurrency, "trials": args.trials, "out": out, "quiet": True}
    # Float search; its baseline also times the unpruned model on the INT8 target.
    fl = search(budget=args.budget, profile=[FLOAT, INT8], seed_plans="uniform,global", **common)
    budget_ms = fl.budget_ms
    joint = search(budget=f"{budget_ms}ms@bench-cpu-int8", profile=[INT8, FLOAT], seed_plans="uniform,global",
                   **common)
    base = fl.baseline["profiles"]

    def best(result, acc="accuracy"):
        t = result.trials
        ok = t[(t["status"] == "completed") & t["meets_budget"]]
        row = ok.sort_values(acc, ascending=False).iloc[0]
        return {c.removeprefix("ratio."): float(row[c]) for c in t.columns if c.startswith("ratio.")}, row

    def retrained(ratios):
        """(float accuracies, INT8 accuracies) over fresh seeds: prune, BN recal, fine-tune, quantize."""
        plan = Plan(ratios=ratios, criterion=space.criterion, round_to=space.round_to, ignored=space.ignored)
        fa, qa = [], []
        for s in range(101, 101 + args.seeds):
            pruned = prune(model, plan, input_shape=data.input_shape, calibration=calibration_batch(data.train, 64))
            recalibrate_bn(pruned, data.train, batches=10, seed=s)
            finetune(pruned, data.train, config=FinetuneConfig(steps=args.finetune_steps, seed=s))
            fa.append(evaluate(pruned, data.val))
            with tempfile.TemporaryDirectory() as tmp:
                path = deployed_onnx(pruned, int8, Path(tmp) / "m.onnx", input_shape=data.input_shape,
                                     calibration=calib_q)
                qa.append(onnx_accuracy(path, data.val))
        return fa, qa

    def ms(xs):
        return f"{statistics.mean(xs):.2%} ± {statistics.stdev(xs) if len(xs) > 1 else 0:.2%}"

    fplan, frow = best(fl)
    jplan, jrow = best(joint)
    f_fa, f_qa = retrained(fplan)
    j_fa, j_qa = retrained(jplan)
    print(f"\nResNet-14 / Fashion-MNIST; budget {args.budget} of the float model = {budget_ms:.2f} ms per batch of 64; "
          f"{args.trials} trials per search, {args.finetune_steps} fine-tune steps; {args.seeds} fresh seeds")
    print(f"{'':<38} {'accuracy':>17} {'ms':>7}")
    print(f"{'float, unpruned':<38} {fl.baseline['accuracy']:>17.2%} {base['bench-cpu']['latency_p50_ms']:>7.2f}")
    print(f"{'INT8, unpruned':<38} {base['bench-cpu-int8'].get('accuracy', float('nan')):>17.2%} "
          f"{base['bench-cpu-int8']['latency_p50_ms']:>7.2f}")
    print(f"{'pruned float at the budget':<38} {ms(f_fa):>17} {frow['latency_p50_ms@bench-cpu']:>7.2f}")
    print(f"{'pruned (float search) + INT8':<38} {ms(f_qa):>17} {frow['latency_p50_ms@bench-cpu-int8']:>7.2f}")
    print(f"{'joint search on INT8: best plan, INT8':<38} {ms(j_qa):>17} {jrow['latency_p50_ms@bench-cpu-int8']:>7.2f}")
    print(f"{'  (its float model)':<38} {ms(j_fa):>17} {jrow['latency_p50_ms@bench-cpu']:>7.2f}")
    print(f"\n{time.perf_counter() - t0:.0f} s; runs in {out}")
    ray.shutdown()


if __name__ == "__main__":
    main()
