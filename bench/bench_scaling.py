"""Orchestration overhead and trial throughput at 1, 2, 4 and 8 concurrent trials of fixed cost,
on a simulated Ray cluster (``ray.cluster_utils.Cluster``: one head and N worker nodes, one
process each, on this machine).

    python bench/bench_scaling.py [--trial-seconds 2] [--trials 16] [--nodes 4] [--cpus-per-node 2]

A trial of fixed cost holds its CPU for ``--trial-seconds`` (sleeping, so 8 of them fit a 2-core
machine) and reports metrics of the right shape. Everything else is the real search path: Ray Tune,
OptunaSearch with the budget constraint, the Recorder writing trials.csv after each trial.
Throughput is trials per second, of the whole tuning loop (set-up and the start of one actor per
concurrent trial included) and in steady state (first trial start to last trial end); "of linear"
compares it with concurrency x the 1-at-a-time figure. Overhead is (trial wall in the Recorder -
the trial's own time) / trial wall.
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


def fixed_cost_trial(model, data, plan, *, settings, report=None, ladder=None, seconds: float = 2.0):
    """Stands in for run_trial: a fixed cost, metrics derived from the plan so the sampler has a signal."""
    t0 = time.perf_counter()
    time.sleep(seconds)
    kept = 1.0 - sum(plan.ratios.values()) / len(plan.ratios)
    metrics = {"accuracy": 0.5 + 0.5 * kept, "accuracy_before_finetune": 0.5, "finetuned": True, "final": True,
               "macs": 1, "params": 1, "arch_fingerprint": "x", "pruned_fingerprint": "x"}
    for i, p in enumerate(settings.profiles):
        metrics.update({f"latency_p50_ms@{p.name}": 100 * kept ** 2, f"latency_p90_ms@{p.name}": 100 * kept ** 2,
                        f"latency_spread@{p.name}": 0.0, f"latency_source@{p.name}": "fixed",
                        f"latency_repeats@{p.name}": 0, f"latency_node@{p.name}": ""})
        if i == 0:
            metrics.update({"latency_p50_ms": 100 * kept ** 2, "latency_p90_ms": 100 * kept ** 2,
                            "latency_spread": 0.0})
    metrics.update({"prune_s": 0.0, "export_s": 0.0, "measure_s": 0.0, "recalibrate_s": 0.0, "evaluate_s": 0.0,
                    "finetune_s": time.perf_counter() - t0})
    metrics["trial_s"] = time.perf_counter() - t0
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trial-seconds", type=float, default=2.0)
    parser.add_argument("--trials", type=int, default=32, help="trials per concurrency level")
    parser.add_argument("--nodes", type=int, default=4, help="simulated worker nodes")
    parser.add_argument("--cpus-per-node", type=int, default=2)
    args = parser.parse_args()

    import functools

    import pandas as pd
    import ray
    from ray.cluster_utils import Cluster

    from autoprune.latency.profiles import resolve_profile
    from autoprune.load.data import load_data
    from autoprune.load.demo import DemoResNet
    from autoprune.report.progress import SearchProgress
    from autoprune.space.space import init_space
    from autoprune.study.options import RunOptions
    from autoprune.study.ray_backend import env_for_ray, run_trials
    from autoprune.study.storage import storage_url
    from autoprune.study.trial import TrialSettings
    from autoprune.study.workload import Workload
    from autoprune.train.finetune import FinetuneConfig

    env_for_ray()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    for _ in range(args.nodes):
        cluster.add_node(num_cpus=args.cpus_per_node)
    ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
    cluster.wait_for_nodes()
    model = DemoResNet().eval()
    work = Workload(model=model, data=load_data("builtin:digits"), input_shape=(1, 8, 8),
                    space=init_space(model, input_shape=(1, 8, 8)), profiles=(resolve_profile("cpu-default"),))
    settings = TrialSettings(input_shape=(1, 8, 8), profiles=work.profiles, finetune=FinetuneConfig(steps=1))
    trial_fn = functools.partial(fixed_cost_trial, seconds=args.trial_seconds)
    print(f"simulated cluster: {args.nodes} nodes x {args.cpus_per_node} CPUs; {args.trials} trials of "
          f"{args.trial_seconds:g} s per level")
    print(f"{'concurrent':>10} {'loop s':>7} {'trials/s':>9} {'of linear':>9} {'steady/s':>9} {'of linear':>9} "
          f"{'overhead':>9}")
    base = None
    for concurrency in (1, 2, 4, 8):
        with tempfile.TemporaryDirectory() as tmp:
            run_dir = Path(tmp)
            (run_dir / "plans").mkdir()
            opts = RunOptions(trials=args.trials, concurrency=concurrency, cpus_per_trial=1,
                              storage=storage_url(run_dir, None))
            t0 = time.perf_counter()
            rows, _, _ = run_trials(work=work, settings=settings, plan_fields={}, budgets_ms={"cpu-default": 50.0},
                                 opts=opts, run_dir=run_dir, progress=SearchProgress(total=args.trials, quiet=True),
                                 trial_fn=trial_fn)
            loop = time.perf_counter() - t0
        table = pd.DataFrame(rows)
        rate = len(table) / loop  # the whole tuning loop: setup and actor start-up included
        # steady state: from the first trial's start to the last one's end
        steady = len(table) / (table["finished_at"].max() - table["started_at"].min())
        base = base or (rate, steady)
        overhead = (table["wall_s"] - table["trial_s"]).sum() / table["wall_s"].sum()
        print(f"{concurrency:>10} {loop:>7.1f} {rate:>9.2f} {rate / (base[0] * concurrency):>9.0%} {steady:>9.2f} "
              f"{steady / (base[1] * concurrency):>9.0%} {overhead:>9.1%}")
    ray.shutdown()
    cluster.shutdown()


if __name__ == "__main__":
    main()
