"""A trial's measurement: its seconds, and whether two windows minutes apart agree (issue 22, deliverable 2).

For each workload (a model on a profile), three plans (uniform 0.5, the 0.7 corner, a random plan)
are measured as a trial measures them, against each reference side by side: the unpruned model
(what trials used before) and the run's thinned model (``reference.thinned_model``, what they use
now). Window 1 measures every plan against both, then the bench waits ``--gap`` seconds, and window 2
measures them again in fresh processes. Printed per workload and reference: seconds and processes
per measurement (median), the largest difference between the windows, and how many of the plans'
CIs cover the other window's estimate. Goal: within 3 %, every CI covering.

    python bench/bench_measure.py                      # demo on cpu-default, ResNet-14 on bench-cpu
    python bench/bench_measure.py --workloads demo@cpu-default,demo@cpu-1thread-b1 --gap 60
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autoprune.latency.anchor import stored_figure
from autoprune.latency.onnx import export_onnx
from autoprune.latency.pooled import measure_pooled
from autoprune.latency.profiles import resolve_profile
from autoprune.latency.reference import Reference, thinned_model
from autoprune.prune.engine import prune
from autoprune.prune.groups import find_groups
from autoprune.prune.plan import Plan

PROFILES_DIR = ROOT / "bench" / "profiles"


def _model(name: str) -> tuple[torch.nn.Module, tuple[int, ...]]:
    if name == "demo":
        from autoprune.load.demo import demo_model

        return demo_model(), (1, 8, 8)
    if name == "resnet14":  # bench.fashion's ResNet-14, random weights: latency depends on shapes only
        from bench.fashion import CifarResNet

        torch.manual_seed(0)
        return CifarResNet(n=2, widths=(16, 32, 64)).eval(), (1, 28, 28)
    raise SystemExit(f"unknown model {name!r}; choose demo or resnet14")


def _profile(name: str):
    local = PROFILES_DIR / f"{name}.yaml"
    return resolve_profile(local if local.is_file() else name)


class Workload:
    def __init__(self, spec: str, tmp: Path) -> None:
        model_name, profile_name = spec.split("@")
        self.name, self.profile = spec, _profile(profile_name)
        model, shape = _model(model_name)
        groups = [g.name for g in find_groups(model, input_shape=shape)]
        rng = random.Random(0)
        plans = {"uniform 0.5": {g: 0.5 for g in groups}, "corner 0.7": {g: 0.7 for g in groups},
                 "random": {g: rng.choice([0.0, 0.2, 0.4, 0.6]) for g in groups}}
        b = self.profile.batch_size
        self.plans = {k: export_onnx(prune(model, Plan(ratios=r, round_to=8), input_shape=shape), tmp / f"{spec}-{i}.onnx",
                                     input_shape=shape, batch_size=b) for i, (k, r) in enumerate(plans.items())}
        u = export_onnx(model, tmp / f"{spec}-unpruned.onnx", input_shape=shape, batch_size=b)
        t = export_onnx(thinned_model(model, groups=groups, input_shape=shape, round_to=8), tmp / f"{spec}-thin.onnx",
                        input_shape=shape, batch_size=b)
        # As a search sets them up: the unpruned figure against the anchor, the thinned one against it.
        unpruned = Reference.measured(name="unpruned", onnx=u.read_bytes(), stats=stored_figure(u, self.profile))
        thinned = Reference.measured(name="thinned", onnx=t.read_bytes(),
                                     stats=stored_figure(t, self.profile, against=unpruned))
        self.refs = {"unpruned": unpruned, "thinned": thinned}
        print(f"  {spec}: unpruned {unpruned.ms:.3f} ms, thinned {thinned.ms:.3f} ms", flush=True)

    def window(self) -> dict[tuple[str, str], tuple[float, float, float, float, int]]:
        out = {}
        for plan, path in self.plans.items():
            for ref_name in random.sample(list(self.refs), len(self.refs)):  # neither always goes first
                t0 = time.perf_counter()
                s = measure_pooled(path, self.profile, reference=self.refs[ref_name])
                out[(ref_name, plan)] = (s.p50_ms, s.ci_low_ms, s.ci_high_ms, time.perf_counter() - t0, s.attempts)
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", default="demo@cpu-default,resnet14@bench-cpu",
                    help="comma-separated MODEL@PROFILE (models: demo, resnet14; profiles: shipped or bench/profiles)")
    ap.add_argument("--gap", type=float, default=120.0, help="seconds between the two windows")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-measure-") as tmp:
        print("== set-up (stored figures: measured once per machine) ==")
        works = [Workload(s.strip(), Path(tmp)) for s in args.workloads.split(",")]
        first = [w.window() for w in works]
        print(f"== waiting {args.gap:.0f} s between the windows ==", flush=True)
        time.sleep(args.gap)
        second = [w.window() for w in works]
    print(f"\n{'workload':<24} {'reference':<9} {'s/measure':>9} {'processes':>9} {'max diff':>8} {'covered':>7}")
    for w, a, b in zip(works, first, second):
        for ref in w.refs:
            keys = [k for k in a if k[0] == ref]
            secs = [x[k][3] for x in (a, b) for k in keys]
            procs = [x[k][4] for x in (a, b) for k in keys]
            diff = max(abs(b[k][0] / a[k][0] - 1) for k in keys)
            covered = sum((a[k][1] <= b[k][0] <= a[k][2]) + (b[k][1] <= a[k][0] <= b[k][2]) for k in keys)
            print(f"{w.name:<24} {ref:<9} {statistics.median(secs):8.2f}s {statistics.median(procs):9.0f} "
                  f"{diff:8.1%} {covered:>4}/{2 * len(keys)}")
        for k in sorted(a):
            print(f"    {k[0]:<9} {k[1]:<12} {a[k][0]:8.3f} [{a[k][1]:.3f}, {a[k][2]:.3f}]  "
                  f"{b[k][0]:8.3f} [{b[k][1]:.3f}, {b[k][2]:.3f}] ms")


if __name__ == "__main__":
    main()
