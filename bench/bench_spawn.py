"""Do measurement workers that start together read what workers started one after another read?

``pooled.spawn_workers`` starts a measurement's first ``min_processes`` worker processes at once
(they open their sessions together, then time one at a time). This times one plan (every group at
0.7) against the unpruned model both ways, alternated ``--repeats`` times in one run, so a slow
phase of the host moves both alike, and prints each ratio with its CI, processes and seconds.

    python bench/bench_spawn.py [--workload demo@cpu-default] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench.* beside autoprune, as bench_measure does

from autoprune.latency.onnx import export_onnx
from autoprune.latency.pooled import measure_pooled, spawn_workers
from autoprune.latency.reference import Reference
from autoprune.prune.engine import prune
from autoprune.prune.plan import Plan
from autoprune.space.space import init_space
from bench.bench_measure import _model, _profile


def one_by_one(jobs: list[dict]) -> list[dict]:
    """The way workers ran before: each started, timed and gone before the next one starts."""
    return [spawn_workers([job])[0] for job in jobs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", default="demo@cpu-default", help="MODEL@PROFILE: demo or resnet14, a profile")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    name, _, profile_name = args.workload.partition("@")
    model, shape = _model(name)
    profile = _profile(profile_name)
    space = init_space(model, input_shape=shape)
    with tempfile.TemporaryDirectory() as tmp:
        plan = Plan(ratios=dict.fromkeys(space.groups, 0.7), round_to=space.round_to)
        cand = export_onnx(prune(model, plan, input_shape=shape), Path(tmp) / "c.onnx", input_shape=shape,
                           batch_size=profile.batch_size)
        ref_path = export_onnx(model, Path(tmp) / "r.onnx", input_shape=shape, batch_size=profile.batch_size)
        ref = Reference(name="unpruned", onnx=ref_path.read_bytes(), ms=1.0)
        print(f"{args.workload}: every group at 0.7 against the unpruned model (ratio, 95 % CI)")
        for rep in range(args.repeats):
            for how, spawn in (("together", spawn_workers), ("one by one", one_by_one)):
                t0 = time.perf_counter()
                s = measure_pooled(cand, profile, reference=ref, spawn=spawn)
                print(f"  {rep} {how:<10} {s.ratio:.4f} [{s.ratio_low:.4f}, {s.ratio_high:.4f}]  "
                      f"{s.attempts} processes  {time.perf_counter() - t0:.2f} s", flush=True)


if __name__ == "__main__":
    main()
