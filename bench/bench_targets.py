"""Does a cut in MACs become a cut in latency on each target, and which channel rounding makes it so?
(issue 25)

    python bench/bench_targets.py                                  # every target available here
    python bench/bench_targets.py --models demo --ratios 0.5 --targets cpu-1thread-b1

1. The width probe (``autoprune profile probe``) on each target: the time of a width rounded up to
   a multiple against the width, and the multiple it recommends.
2. For the demo, a MobileNetV2 and a ResNet-18 (torchvision, random weights, 224 px), uniform plans
   at ``--ratios`` pruned with ``round_to`` 1, 8, 16 and the target's recommended multiple, each timed
   on each target with the pooled method against the unpruned model (interleaved in worker
   processes, a 95 % CI): the speedup, the MAC cut and their ratio, side by side in one run.

Targets: ``cpu-1thread-b1`` (ONNX Runtime), ``openvino-cpu-b1`` (needs ``pip install
'autoprune[openvino]'``), and the NVIDIA profiles where this machine has them (``cuda-b1``,
``tensorrt-fp16-b1``); a target this machine lacks is named and skipped.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODELS = {  # name -> (model spec, input shape)
    "demo": ("builtin:demo", (1, 8, 8)),
    "mobilenet_v2": ("torchvision:mobilenet_v2", (3, 224, 224)),
    "resnet18": ("torchvision:resnet18", (3, 224, 224)),
}
TARGETS = ("cpu-1thread-b1", "openvino-cpu-b1", "cuda-b1", "tensorrt-fp16-b1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--ratios", default="0.25,0.5,0.75")
    parser.add_argument("--roundings", default="1,8,16", help="round_to values besides the target's own multiple")
    args = parser.parse_args()

    from autoprune.latency.measure import deployed_onnx, latency_for
    from autoprune.latency.profiles import resolve_profile
    from autoprune.latency.reference import Reference
    from autoprune.latency.runtimes import missing
    from autoprune.latency.widths import probe_widths
    from autoprune.load.models import architecture_fingerprint, load_model
    from autoprune.prune.engine import count_macs_params, prune
    from autoprune.prune.groups import find_groups
    from autoprune.prune.plan import Plan

    targets = []
    for name in args.targets.split(","):
        profile = resolve_profile(name)
        why = missing(profile.runtime_settings())
        if why is None:
            targets.append(profile)
        else:
            print(f"skipping {name}: it needs {why}")

    print("\n== width probe (ms of a width rounded up to a multiple / ms of the width; the multiple it recommends)")
    multiples = {}
    for profile in targets:
        t0 = time.perf_counter()
        for probe in probe_widths(profile):
            steps = "  ".join(f"{m}: {r:.2f}x" for m, r in probe.up_ratio.items())
            print(f"{profile.name:<18} {probe.layer:<7} {steps}  -> multiple {probe.multiple}")
            if probe.layer == "conv":
                multiples[profile.name] = probe.multiple
        print(f"{'':<18} ({time.perf_counter() - t0:.0f} s)")

    print("\n== uniform plans: speedup on the target against the MAC cut (pooled, vs the unpruned model)")
    print(f"{'model':<13} {'target':<18} {'ratio':>5} {'round':>5} {'M MACs':>9} {'MAC cut':>7} {'ms':>9} "
          f"{'95 % CI':>17} {'speedup':>7} {'÷ cut':>6}")
    for model_name in args.models.split(","):
        spec, shape = MODELS[model_name]
        model = load_model(spec).eval()
        groups = [g.name for g in find_groups(model, input_shape=shape)]
        base_macs, _ = count_macs_params(model, input_shape=shape)
        for profile in targets:
            with tempfile.TemporaryDirectory() as tmp:
                path = deployed_onnx(model, profile, Path(tmp) / "unpruned.onnx", input_shape=shape)
                base = latency_for(model, profile, input_shape=shape, arch_key=architecture_fingerprint(model))
                # every plan timed against the unpruned model, interleaved: the speedup is a ratio the
                # host's phase moves alike (a single-process profile has no reference)
                ref = Reference.measured(name="unpruned", onnx=path.read_bytes(), stats=base) if base.has_ci else None
                print(f"{model_name:<13} {profile.name:<18} {0:>5.2f} {'':>5} {base_macs / 1e6:>9.1f} {1:>7.2f} "
                      f"{base.p50_ms:>9.3f} [{base.ci_low_ms:>7.3f}, {base.ci_high_ms:>7.3f}]")
                roundings = sorted({int(r) for r in args.roundings.split(",")} | {multiples.get(profile.name, 8)})
                for ratio in (float(r) for r in args.ratios.split(",")):
                    for round_to in roundings:
                        pruned = prune(model, Plan(ratios=dict.fromkeys(groups, ratio), criterion="l1", round_to=round_to),
                                       input_shape=shape)
                        macs, _ = count_macs_params(pruned, input_shape=shape)
                        stats = latency_for(pruned, profile, input_shape=shape, reference=ref,
                                            arch_key=architecture_fingerprint(pruned))
                        speedup, cut = base.p50_ms / stats.p50_ms, base_macs / macs
                        own = "*" if round_to == multiples.get(profile.name) else ""
                        print(f"{model_name:<13} {profile.name:<18} {ratio:>5.2f} {str(round_to) + own:>5} "
                              f"{macs / 1e6:>9.1f} {cut:>7.2f} {stats.p50_ms:>9.3f} "
                              f"[{stats.ci_low_ms:>7.3f}, {stats.ci_high_ms:>7.3f}] {speedup:>7.2f} {speedup / cut:>6.2f}",
                              flush=True)
    print("\n* the target's own multiple, from the probe")


if __name__ == "__main__":
    main()
