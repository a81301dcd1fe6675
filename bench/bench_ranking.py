"""Which figure inside a trial ranks plans the way their final accuracy does? (issue 21, ranking)

    python bench/bench_ranking.py                           # EfficientNet-Lite0 transfer, 0.5x, 10 plans
    python bench/bench_ranking.py --workload resnet14 --plans 12 --fresh 3

Plans at one latency (random allocations over the space ``autoprune search`` generates, each
repaired onto the budget by the search's own cost model, plus uniform) are scored by every fidelity
a trial could use, with the search's trial seed:

- ``bn``: adaptive BatchNorm only (EagleEye: BN statistics re-estimated, no training);
- ``ftS``: the trial as it runs (BN re-estimated, ``S`` fine-tune steps, BN again), for each ``--steps``;
- ``kdS``: the same with distillation from the unpruned model (``--kd-alpha``);

then re-trained with ``--fresh`` fresh seeds the way bench_quality recovers a plan (60 steps, no
distillation): the mean is the *final* accuracy. Printed: each fidelity's Spearman and Kendall rank
correlation with the final accuracy, and the *regret* of its pick (the best final accuracy minus that
of the plan the fidelity ranks first); for scale, the correlation between two single fresh seeds (how
well one seed of the final protocol ranks the others) and the spread of the plans against the seed
noise. Every figure is on the full validation set.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_quality import FRESH_SEEDS, WORKLOADS


def recover(work, ratios: dict[str, float], *, seed: int, steps: int, kd_alpha: float = 0.0) -> dict[str, float]:
    """Prune from the base model, BN re-estimated, ``steps`` fine-tune steps (distilled when
    ``kd_alpha``), BN again: accuracy before (``bn``) and after (``ft``) on the full validation set."""
    from autoprune.prune.engine import prune
    from autoprune.prune.plan import Plan
    from autoprune.train.finetune import (
        Distillation,
        FinetuneConfig,
        evaluate,
        finetune,
        recalibrate_bn,
    )
    from autoprune.train.task import resolve_loss

    t0 = time.perf_counter()
    space = work.space
    plan = Plan(ratios=ratios, criterion=space.criterion, round_to=space.round_to, ignored=space.ignored)
    pruned = prune(work.model, plan, input_shape=work.input_shape, loss=resolve_loss(work.loss))
    recalibrate_bn(pruned, work.data.train, batches=10, seed=seed)
    out = {"bn": evaluate(pruned, work.data.val, metric=work.metric), "bn_s": time.perf_counter() - t0}
    if steps:
        distill = Distillation(teacher=work.model, alpha=kd_alpha) if kd_alpha else None
        finetune(pruned, work.data.train, config=FinetuneConfig(steps=steps, seed=seed, loss=work.loss), distill=distill)
        recalibrate_bn(pruned, work.data.train, batches=10, seed=seed + 1)
        out["ft"] = evaluate(pruned, work.data.val, metric=work.metric)
    return out


def plans_on_budget(work, *, n: int, budget: float, seed: int) -> tuple[list[dict[str, float]], float, float]:
    """Uniform and ``n - 1`` random allocations, repaired onto ``budget`` × the unpruned latency by the
    search's cost model; the unpruned p50 and the budget in ms."""
    import numpy as np

    from autoprune.latency.measure import latency_for
    from autoprune.study.run import budget_aim

    profile = work.profiles[0]
    base_ms = latency_for(work.model, profile, input_shape=work.input_shape, arch_key="unpruned").p50_ms
    budget_ms = budget * base_ms
    aim = budget_aim(work, budgets_ms={profile.name: budget_ms},
                     baseline={"profiles": {profile.name: {"latency_p50_ms": base_ms}}})
    groups = list(work.space.groups)
    rng = np.random.default_rng(seed)
    plans = [aim.repair(dict.fromkeys(groups, 0.3)).ratios]
    while len(plans) < n:
        ratios = aim.repair({g: float(rng.choice(work.space.groups[g].choices())) for g in groups}).ratios
        if ratios not in plans:
            plans.append(ratios)
    return plans, base_ms, budget_ms


def regret(scores: list[float], final: list[float]) -> float:
    return max(final) - final[max(range(len(scores)), key=scores.__getitem__)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=list(WORKLOADS), default="effnet")
    parser.add_argument("--budget", type=float, default=0.5, help="fraction of the unpruned latency")
    parser.add_argument("--plans", type=int, default=10)
    parser.add_argument("--steps", default="20,60", help="fine-tune steps of the trial fidelities")
    parser.add_argument("--kd-alpha", type=float, default=0.5, help="distillation weight of the kd fidelity (0: none)")
    parser.add_argument("--fresh", type=int, default=2, help="fresh seeds of the final accuracy")
    parser.add_argument("--final-steps", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch
    from scipy.stats import kendalltau, spearmanr

    from autoprune.latency.profiles import resolve_profile
    from autoprune.study.workload import load_workload

    torch.set_num_threads(max(1, torch.get_num_threads()))
    model_spec, data_spec, profile_spec = WORKLOADS[args.workload]
    work = load_workload(model=model_spec, data=data_spec, space=None, profiles=[resolve_profile(profile_spec)])
    steps = [int(s) for s in args.steps.split(",") if s]
    t0 = time.perf_counter()
    plans, base_ms, budget_ms = plans_on_budget(work, n=args.plans, budget=args.budget, seed=args.seed)
    print(f"{args.workload}: {len(work.space.groups)} groups, unpruned {base_ms:.4g} ms on {profile_spec}, "
          f"plans at {args.budget}x = {budget_ms:.4g} ms (cost model), {len(plans)} plans", flush=True)

    fid: dict[str, list[float]] = {}
    fresh: list[list[float]] = []
    timing: dict[str, float] = {}
    for i, ratios in enumerate(plans):
        for s in steps:
            t = time.perf_counter()
            r = recover(work, ratios, seed=args.seed, steps=s)
            timing[f"ft{s}"] = timing.get(f"ft{s}", 0.0) + time.perf_counter() - t
            if s == steps[0]:
                fid.setdefault("bn", []).append(r["bn"])
                timing["bn"] = timing.get("bn", 0.0) + r["bn_s"]  # prune, recalibrate, evaluate
            fid.setdefault(f"ft{s}", []).append(r["ft"])
            if args.kd_alpha and s == steps[-1]:
                t = time.perf_counter()
                fid.setdefault(f"kd{s}", []).append(recover(work, ratios, seed=args.seed, steps=s,
                                                            kd_alpha=args.kd_alpha)["ft"])
                timing[f"kd{s}"] = timing.get(f"kd{s}", 0.0) + time.perf_counter() - t
        fresh.append([recover(work, ratios, seed=f, steps=args.final_steps)["ft"] for f in FRESH_SEEDS[:args.fresh]])
        shown = "  ".join(f"{k} {v[-1]:.2%}" for k, v in fid.items())
        print(f"plan {i:>2}: {shown}  final {statistics.fmean(fresh[-1]):.2%} "
              f"({', '.join(f'{a:.2%}' for a in fresh[-1])})  [{time.perf_counter() - t0:.0f} s]", flush=True)

    final = [statistics.fmean(f) for f in fresh]
    print(f"\nfinal accuracy over plans: {min(final):.2%} .. {max(final):.2%} (sd {statistics.stdev(final):.2%}); "
          f"seed noise (mean sd within a plan) {statistics.fmean(statistics.stdev(f) for f in fresh):.2%}"
          if args.fresh > 1 else "")
    print(f"{'fidelity':<10} {'spearman':>9} {'kendall':>8} {'regret':>8} {'s/plan':>7}")
    for name, scores in fid.items():
        rho, tau = spearmanr(scores, final)[0], kendalltau(scores, final)[0]
        per = timing.get(name, float("nan")) / len(plans)
        print(f"{name:<10} {rho:>9.2f} {tau:>8.2f} {regret(scores, final):>8.2%} {per:>7.1f}")
    if args.fresh > 1:
        a, b = [f[0] for f in fresh], [f[1] for f in fresh]
        print(f"{'one fresh seed vs another':<10}: spearman {spearmanr(a, b)[0]:.2f}, kendall {kendalltau(a, b)[0]:.2f} "
              f"(the ceiling a single run of the final protocol reaches)")
    print(f"wall {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
