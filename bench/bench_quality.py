"""Does the search beat what users would run instead? A fair comparison at one latency budget.

    python bench/bench_quality.py [--workload resnet14|mobilenet|both] [--trials 32] [--seeds 3]

Per workload (Fashion-MNIST; `bench/profiles/bench-cpu.yaml`: ONNX Runtime, 1 thread, batch 64),
all in one run against one budget (0.5x of the unpruned latency, measured once, then given in ms):

- every method's candidates get the same fine-tune (``--finetune-steps`` + 10 batches of BN
  recalibration) and every search the same trial count;
- methods: the search in its budget formulation (TPE, and NetAdapt-style local moves), the old
  two-objective formulation (TPE), random search, and the cheap answers: uniform ratio, Torch-Pruning
  global pruning, greedy per-layer selection from a sensitivity table (AIMET-style), each put on
  the budget the same way;
- each method's chosen plan (best in-search accuracy within the budget) is then re-pruned and
  re-trained with ``--seeds`` fresh fine-tune seeds: mean ± sd, so that picking the luckiest of N
  noisy trials is not counted as quality. Loss is against the unpruned model after the same
  fine-tune with the same seeds;
- the room: ``--room`` random allocations put on the budget (each shifted by grid steps until it meets
  the budget as measured, and no further), each re-trained with the same fresh seeds; the best mean
  is what 20x the fine-tune cost finds. The cheap answers are put on the budget the same way;
- the share of each search's feasible trials within 90-100 % of the budget.

Needs `apt-get install dataset-fashion-mnist`. About 20 minutes per workload on 2 cores.
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

PROFILE = str(ROOT / "bench" / "profiles" / "bench-cpu.yaml")
WORKLOADS = {"resnet14": "bench.fashion:resnet", "mobilenet": "bench.fashion:mobilenet"}
FRESH_SEEDS = (101, 102, 103, 104, 105)


def chosen(trials, budget_ms: float):
    ok = trials[(trials["status"] == "completed") & trials["meets_budget"]]
    if ok.empty:
        return None
    best = ok.sort_values("accuracy", ascending=False).iloc[0]
    return {c.removeprefix("ratio."): float(best[c]) for c in trials.columns if c.startswith("ratio.")}, best


def near_share(trials, budget_ms: float) -> tuple[float, int]:
    ok = trials[trials["meets_budget"] & trials["status"].isin(["completed", "infeasible"])]
    if ok.empty:
        return float("nan"), 0
    near = ok["latency_ci_high_ms"].fillna(ok["latency_p50_ms"]) >= 0.9 * budget_ms
    return float(near.mean()), len(ok)


def run_workload(name: str, args) -> None:
    import numpy as np
    import pandas as pd

    from autoprune import search
    from autoprune.latency.measure import latency_for, run_references
    from autoprune.latency.profiles import resolve_profile
    from autoprune.load.data import load_data
    from autoprune.load.models import architecture_fingerprint, load_model
    from autoprune.prune.engine import prune
    from autoprune.prune.plan import Plan
    from autoprune.space.space import init_space
    from autoprune.study.repair import shifted
    from autoprune.study.run import budget_aim
    from autoprune.study.seeds import (
        global_seed,
        quick_sensitivity,
        sensitivity_seed,
        uniform_seed,
    )
    from autoprune.study.trial import TrialSettings, run_trial
    from autoprune.study.workload import Workload
    from autoprune.train.finetune import FinetuneConfig
    from bench.fashion import DATA

    model_spec = WORKLOADS[name]
    t_start = time.perf_counter()
    model = load_model(model_spec)
    data = load_data(DATA)
    space = init_space(model, input_shape=data.input_shape, model_name=model_spec, low=0.0, high=0.75, step=0.125,
                       round_to=args.round_to)
    out = Path(tempfile.mkdtemp(prefix=f"bench-quality-{name}-"))
    space_path = space.save(out / "space.yaml")
    common = {"model": model_spec, "data": DATA, "space": space_path, "profile": PROFILE,
              "finetune_steps": args.finetune_steps, "concurrency": args.concurrency, "seed": args.seed,
              "out": out, "quiet": True}
    print(f"\n=== {name}: {model_spec}, {len(space.groups)} groups, grid 0..0.75 step 0.125, round_to "
          f"{args.round_to}; {args.trials} trials per search, {args.finetune_steps} fine-tune steps each", flush=True)

    searches = {}
    t0 = time.perf_counter()
    first = search(budget=args.budget, trials=args.trials, sampler="tpe",
                   seed_plans="uniform,global,sensitivity", **common)
    budget_ms = first.budget_ms
    fixed = f"{budget_ms}ms"
    searches["search: budget, TPE"] = first
    print(f"budget {args.budget} = {budget_ms:.2f} ms (unpruned {first.baseline['latency_p50_ms']:.2f} ms); "
          f"first search {time.perf_counter() - t0:.0f} s", flush=True)
    searches["search: budget, local moves"] = search(budget=fixed, trials=args.trials, sampler="local",
                                                     seed_plans="uniform,global,sensitivity", **common)
    searches["search: front, TPE (old default)"] = search(budget=fixed, trials=args.trials, sampler="tpe",
                                                          formulation="front", **common)
    searches["random search"] = search(budget=fixed, trials=args.trials, sampler="random", formulation="front",
                                       initial_plans=[], **common)
    print(f"searches done in {time.perf_counter() - t0:.0f} s", flush=True)

    # The cheap answers, put on the budget exactly as the search's seeds are, then run as trials.
    profile = resolve_profile(PROFILE)
    work = Workload(model=model, data=data, input_shape=data.input_shape, space=space, profiles=(profile,))
    baseline = first.baseline
    aim = budget_aim(work, budgets_ms={profile.name: budget_ms}, baseline=baseline,
                     rows=first.trials.to_dict("records"))
    criterion, round_to, ignored = space.criterion, space.round_to, space.ignored
    refs = run_references(model, [profile], input_shape=data.input_shape, baseline=baseline)

    def judged(ratios: dict[str, float]) -> tuple[float, float]:
        pruned = prune(model, Plan(ratios=ratios, criterion=criterion, round_to=round_to, ignored=ignored),
                       input_shape=data.input_shape)
        stats = latency_for(pruned, profile, input_shape=data.input_shape, arch_key=architecture_fingerprint(pruned),
                            reference=refs.get(profile.name))
        return (stats.ci_high_ms if stats.has_ci else stats.p50_ms), stats.p50_ms

    def onto_budget(ratios: dict[str, float]) -> tuple[dict[str, float], float]:
        """The plan shifted by whole grid steps until it meets the budget as measured, and no further:
        every method's plan is judged at the budget, not where its predictor put it."""
        high, p50 = judged(ratios)
        for _ in range(6):
            if high <= budget_ms:
                break
            ratios = shifted(ratios, 0.125, space)
            high, p50 = judged(ratios)
        for _ in range(6):
            less = shifted(ratios, -0.125, space)
            if less == ratios:
                break
            h, p = judged(less)
            if h > budget_ms:
                break
            ratios, high, p50 = less, h, p
        return ratios, p50

    sens = quick_sensitivity(model, data, space=space, input_shape=data.input_shape)
    cheap = {"uniform": onto_budget(uniform_seed(aim))[0],
             "Torch-Pruning global": onto_budget(global_seed(aim, model, input_shape=data.input_shape))[0],
             "greedy from sensitivity": onto_budget(sensitivity_seed(aim, sens))[0]}
    cheap_run = search(budget=fixed, trials=len(cheap), initial_plans=list(cheap.values()), formulation="front",
                       **common).trials.sort_values("trial")
    plans = {}
    for (label, _), (_, row) in zip(cheap.items(), cheap_run.iterrows(), strict=True):
        ratios = {c.removeprefix("ratio."): float(row[c]) for c in cheap_run.columns if c.startswith("ratio.")}
        plans[label] = (ratios, row)
    empty = []
    for label, res in searches.items():
        pick = chosen(res.trials, budget_ms)
        if pick is not None:
            plans[label] = pick
        else:
            empty.append(label)

    # Fresh seeds: every chosen plan, and the unpruned model, re-trained the same way.
    seeds = FRESH_SEEDS[:args.seeds]

    def retrain(ratios: dict[str, float]) -> list[float]:
        plan = Plan(ratios=ratios, criterion=criterion, round_to=round_to, ignored=ignored)
        accs = []
        for s in seeds:
            settings = TrialSettings(input_shape=data.input_shape, profiles=(), bn_recalibration=10,
                                     finetune=FinetuneConfig(steps=args.finetune_steps, seed=s))
            accs.append(run_trial(model, data, plan, settings=settings)["accuracy"])
        return accs

    ref_accs = retrain(dict.fromkeys(space.groups, 0.0))
    ref = statistics.mean(ref_accs)

    # The room: random allocations, each put on the budget as measured.
    rng = np.random.default_rng(args.seed + 7)
    room = []
    for _ in range(args.room):
        raw = {g: float(rng.choice(r.choices())) for g, r in space.groups.items()}
        room.append(onto_budget(aim.repair(raw).ratios))
    tries = len(room)
    room_scores = []
    for ratios, ms in room:
        accs = retrain(ratios)
        room_scores.append((statistics.mean(accs), statistics.stdev(accs) if len(accs) > 1 else 0.0, ms))
    room_best = max(room_scores, default=(float("nan"), float("nan"), float("nan")))

    rows = []
    for label, (ratios, row) in plans.items():
        accs = retrain(ratios)
        rows.append({"method": label, "ms": float(row["latency_p50_ms"]),
                     "in_search": float(row["accuracy"]), "mean": statistics.mean(accs),
                     "sd": statistics.stdev(accs) if len(accs) > 1 else 0.0})
    table = pd.DataFrame(rows)
    table["loss"] = ref - table["mean"]
    uniform_loss = float(table.loc[table["method"] == "uniform", "loss"].iloc[0])
    print(f"\nunpruned after the same fine-tune ({len(seeds)} seeds): {ref:.2%} ± {statistics.stdev(ref_accs):.2%}; "
          f"budget {budget_ms:.2f} ms")
    print(f"{'method':<34} {'ms':>6} {'in-search':>9} {f'{len(seeds)} fresh seeds':>17} {'loss':>6} {'÷ uniform':>9}")
    for r in table.itertuples():
        print(f"{r.method:<34} {r.ms:>6.2f} {r.in_search:>9.2%} {r.mean:>9.2%} ± {r.sd:.2%} {r.loss:>6.2%} "
              f"{r.loss / uniform_loss if uniform_loss > 0 else float('nan'):>9.2f}")
    m, sd, ms = room_best
    room_label = f"room: best of {len(room_scores)} random on budget"
    print(f"{room_label:<34} {ms:>6.2f} {'':>9} {m:>9.2%} ± {sd:.2%} "
          f"{ref - m:>6.2%} {(ref - m) / uniform_loss if uniform_loss > 0 else float('nan'):>9.2f}")
    for label in empty:
        print(f"{label:<34} no completed plan within the budget in {args.trials} trials")
    if room_scores:
        means = [s[0] for s in room_scores]
        print(f"random on budget: median {statistics.median(means):.2%}, worst {min(means):.2%} "
              f"({tries} drawn, each shifted onto the budget as measured)")
    print("\nfeasible trials within 90-100 % of the budget (judged latency):")
    for label, res in searches.items():
        share, n = near_share(res.trials, budget_ms)
        print(f"  {label:<34} {share:>6.0%} of {n}")
    print(f"{name}: {time.perf_counter() - t_start:.0f} s; runs in {out}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=[*WORKLOADS, "both"], default="both")
    parser.add_argument("--trials", type=int, default=32)
    parser.add_argument("--round-to", type=int, default=8)
    parser.add_argument("--finetune-steps", type=int, default=60)
    parser.add_argument("--budget", default="0.5x")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--room", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import ray

    from autoprune.study.ray_backend import env_for_ray

    env_for_ray()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        for name in (WORKLOADS if args.workload == "both" else [args.workload]):
            run_workload(name, args)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
