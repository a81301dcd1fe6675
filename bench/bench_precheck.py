"""The latency pre-check, GP and ASHA, and BN recalibration as a ranking signal (issue 4), on Fashion-MNIST.

    python bench/bench_precheck.py [--trials 16] [--finetune-steps 60] [--budget 0.5x]

All in one run, on one Ray, against one budget (measured once, then given in ms to every method):
1. best accuracy within the budget for per-layer search (TPE, seeded with uniform plans), random
   search (same trial count) and uniform ratios (every single ratio of the grid), at equal
   per-trial fine-tune steps. Loss is against the unpruned model after the same fine-tune.
   Goal (issue 4): per-layer loss <= half of uniform's.
2. share of fine-tune time spent on plans over budget, per-layer search with and without the
   latency pre-check. Goal: <= 10 % with it.
   Also: per-layer with the GP sampler, and with ASHA early stopping (fine-tune seconds beside).
3. adaptive BN recalibration as a ranking signal: Spearman correlation between a plan's accuracy
   before fine-tuning (with and without recalibration) and its accuracy after.
Needs `apt-get install dataset-fashion-mnist`. Takes about 12 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])

MODEL = "bench.fashion:resnet"
PROFILE = str(ROOT / "bench" / "profiles" / "bench-cpu.yaml")


def best_within(trials, budget_ms: float) -> tuple[float, float, int]:
    done = trials[(trials["status"] == "completed") & (trials["latency_p50_ms"] <= budget_ms)]
    if done.empty:
        return float("nan"), float("nan"), 0
    best = done.sort_values("accuracy", ascending=False).iloc[0]
    return float(best["accuracy"]), float(best["latency_p50_ms"]), len(done)


def infeasible_share(trials, budget_ms: float) -> float:
    ft = trials["finetune_s"].fillna(0)
    over = trials["latency_p50_ms"] > budget_ms
    return float(ft[over].sum() / ft.sum()) if ft.sum() > 0 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--round-to", type=int, default=8)
    parser.add_argument("--finetune-steps", type=int, default=60)
    parser.add_argument("--budget", default="0.5x")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import pandas as pd
    import ray
    from scipy.stats import spearmanr

    from autoprune import search
    from autoprune.load.data import load_data
    from autoprune.load.models import load_model
    from autoprune.prune.engine import prune
    from autoprune.prune.plan import Plan
    from autoprune.space.space import init_space
    from autoprune.study.ray_backend import env_for_ray
    from autoprune.study.trial import TrialSettings, calibration_batch, run_trial
    from autoprune.train.finetune import FinetuneConfig, evaluate, recalibrate_bn
    from bench.fashion import DATA

    t_start = time.perf_counter()
    model = load_model(MODEL)  # trains and caches the base model the first time
    data = load_data(DATA)
    space = init_space(model, input_shape=data.input_shape, model_name=MODEL, low=0.0, high=0.75, step=0.125,
                       round_to=args.round_to)
    env_for_ray()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    out = Path(tempfile.mkdtemp(prefix="bench-quality-"))
    space_path = space.save(out / "space.yaml")
    common = {"model": MODEL, "data": DATA, "space": space_path, "profile": PROFILE,
              "finetune_steps": args.finetune_steps, "concurrency": args.concurrency, "seed": args.seed,
              "out": out, "quiet": True, "formulation": "front"}  # what issue 4 measured

    runs: dict[str, pd.DataFrame] = {}
    t0 = time.perf_counter()
    per_layer = search(budget=args.budget, trials=args.trials, **common)
    budget_ms = per_layer.budget_ms
    runs["per-layer (TPE)"] = per_layer.trials
    print(f"budget {args.budget} = {budget_ms:.2f} ms on bench-cpu (unpruned {per_layer.baseline['latency_p50_ms']:.2f} ms); "
          f"{len(space.groups)} groups; per-layer search took {time.perf_counter() - t0:.0f} s", flush=True)
    fixed = f"{budget_ms}ms"
    runs["per-layer (GP)"] = search(budget=fixed, trials=args.trials, sampler="gp", **common).trials
    runs["random"] = search(budget=fixed, trials=args.trials, sampler="random", initial_plans=[], **common).trials
    grid = next(iter(space.groups.values())).choices()
    uniform = [dict.fromkeys(space.groups, r) for r in grid]
    runs["uniform"] = search(budget=fixed, trials=len(uniform), initial_plans=uniform, **common).trials
    runs["per-layer (TPE+ASHA)"] = search(budget=fixed, trials=args.trials, early_stop="asha", **common).trials
    # every plan fine-tuned, and accuracy before fine-tuning without BN recalibration (for part 3)
    unchecked = search(budget=fixed, trials=args.trials, precheck=False, bn_recalibration=0, **common)
    no_precheck = unchecked.trials
    print(f"searches done in {time.perf_counter() - t0:.0f} s", flush=True)

    # The reference: the unpruned model after the same fine-tune as every trial.
    settings = TrialSettings(input_shape=data.input_shape, profiles=(), finetune=FinetuneConfig(
        steps=args.finetune_steps, seed=args.seed))
    ref = run_trial(model, data, Plan(ratios=dict.fromkeys(space.groups, 0.0), criterion=space.criterion,
                                      round_to=space.round_to), settings=settings)["accuracy"]
    print(f"\n1. best accuracy within {budget_ms:.2f} ms; unpruned after the same {args.finetune_steps}-step "
          f"fine-tune: {ref:.2%}")
    print(f"{'method':<21} {'trials':>6} {'within':>6} {'best acc':>9} {'loss':>7} {'latency ms':>10} "
          f"{'fine-tune s':>11}")
    losses = {}
    for name, table in runs.items():
        acc, lat, n = best_within(table, budget_ms)
        losses[name] = ref - acc
        print(f"{name:<21} {len(table):>6} {n:>6} {acc:>9.2%} {ref - acc:>7.2%} {lat:>10.2f} "
              f"{table['finetune_s'].fillna(0).sum():>11.0f}")
    ratio = losses["per-layer (TPE)"] / losses["uniform"] if losses["uniform"] > 0 else float("nan")
    print(f"per-layer (TPE) loss / uniform loss = {ratio:.2f} (goal <= 0.5)")
    if losses["uniform"] > 0:
        print(f"per-layer (GP) loss / uniform loss = {losses['per-layer (GP)'] / losses['uniform']:.2f}")

    print("\n2. fine-tune time spent on plans over budget (per-layer search)")
    for name, table in (("with pre-check", per_layer.trials), ("without", no_precheck)):
        over = int((table["latency_p50_ms"] > budget_ms).sum())
        print(f"{name:<16} {infeasible_share(table, budget_ms):>6.1%} of {table['finetune_s'].fillna(0).sum():.0f} s "
              f"fine-tuning; {over} of {len(table)} plans over budget")

    # 3. Rank the no-pre-check run's plans (all fine-tuned) by accuracy before fine-tuning, with and
    # without BN recalibration, against their accuracy after.
    done = no_precheck[no_precheck["status"] == "completed"]
    calib = calibration_batch(data.train, 64)
    recal = []
    for plan_path in done["plan"]:
        plan = Plan.load(unchecked.run_dir / plan_path)
        pruned = prune(model, plan, input_shape=data.input_shape, calibration=calib)
        recalibrate_bn(pruned, data.train, batches=10, seed=args.seed)
        recal.append(evaluate(pruned, data.val))
    plain_rho = spearmanr(done["accuracy_before_finetune"], done["accuracy"]).statistic
    recal_rho = spearmanr(recal, done["accuracy"]).statistic
    print(f"\n3. Spearman rank correlation with accuracy after fine-tuning, over {len(done)} plans")
    print(f"accuracy before fine-tuning, plain:             {plain_rho:+.2f}")
    print(f"accuracy before fine-tuning, BN recalibrated:   {recal_rho:+.2f}")
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s; runs in {out}")
    ray.shutdown()


if __name__ == "__main__":
    main()
