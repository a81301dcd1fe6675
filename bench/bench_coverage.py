"""Coverage sweep: which models autoprune's engine prunes, exports and runs correctly.

For every model: derive the search space (``init_space``), prune a uniform plan (every group at
``--ratio``), export ONNX and run it with ONNX Runtime; the pruned model's ONNX outputs must match
its torch outputs. Each model runs in its own process (peak memory is that process's own) and the
table prints pass/fail with the reason, groups found and left out, MACs and parameters before and
after, peak memory and seconds.

    python bench/bench_coverage.py                       # every torchvision classification model
    python bench/bench_coverage.py --models resnet18,vit_b_16 --ratio 0.4
    python bench/bench_coverage.py --source timm --models resnet50,vit_small_patch16_224
    python bench/bench_coverage.py --family transformers   # Hugging Face families, tiny random configs
    python bench/bench_coverage.py --family detection      # ultralytics YOLO families at 320 px

Transformers are built offline from tiny random-init configs (hidden 64, 2 layers, 4 heads, vocabulary
128, 16 tokens; ``*_gqa``: 2 key/value heads), given token ids and checked the same way; the table
also counts the attention-head and MLP groups found.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

MEMORY_LIMIT_GB = 8.0
AS_LIMIT_GB = 14.0


def input_shape_for(name: str) -> tuple[int, int, int]:
    return (3, 299, 299) if name.startswith("inception") else (3, 224, 224)


# model_type -> the head it is built with (causal LMs and encoders people prune most)
TRANSFORMERS = {"bert": "seq", "roberta": "seq", "distilbert": "seq", "electra": "seq", "gpt2": "lm",
                "gpt_neox": "lm", "opt": "lm", "llama": "lm", "llama_gqa": "lm", "mistral_gqa": "lm",
                "qwen2_gqa": "lm", "phi": "lm", "gemma_gqa": "lm"}
VOCAB, SEQ = 128, 16


DETECTION = ["yolov8n", "yolov8s", "yolo11n", "yolov5n", "yolov6n", "yolov10n"]


def detector(name: str):
    """An ultralytics detector of ``name``'s family, random weights, adapted as autoprune loads one."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics.nn.tasks import DetectionModel

    from autoprune.load.adapt import adapt

    return adapt(DetectionModel(f"{name}.yaml", verbose=False))


def transformer(name: str):
    """A tiny random-init Hugging Face model of ``name``'s family, wrapped as autoprune loads one."""
    import transformers as T

    from autoprune.load.hf import Logits

    kind = name.removesuffix("_gqa")
    extra = {"num_key_value_heads": 2} if name.endswith("_gqa") else {}
    config = T.AutoConfig.for_model(kind, vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2,
                                    num_attention_heads=4, intermediate_size=128, max_position_embeddings=64,
                                    num_labels=3, pad_token_id=0, bos_token_id=0, eos_token_id=0, **extra)
    if kind == "gemma":
        config.head_dim = 16
    auto = T.AutoModelForSequenceClassification if TRANSFORMERS[name] == "seq" else T.AutoModelForCausalLM
    return Logits(auto.from_config(config)).eval()


def check_one(source: str, name: str, ratio: float) -> dict:
    """Prune one model uniformly and compare torch with ONNX Runtime; one JSON line out."""
    import numpy as np
    import torch

    from autoprune.core.inputs import InputSpec
    from autoprune.latency.onnx import export_onnx, onnx_outputs
    from autoprune.load.models import load_model
    from autoprune.prune.engine import count_macs_params, prune
    from autoprune.prune.plan import Plan
    from autoprune.space.space import init_space

    torch.manual_seed(0)
    row: dict = {"model": name}
    t0 = time.perf_counter()
    spec = f"{source}:{name}"
    model = {"transformers": transformer, "detection": detector}.get(source, lambda _n: load_model(spec))(name)
    with torch.no_grad():  # zero-initialised heads (ViT's) would make every output 0 and the comparison empty
        for p in model.parameters():
            if p.dim() >= 2 and not p.any():
                p.normal_(std=0.02)
    shape = (InputSpec((SEQ,), dtype="int64", high=VOCAB) if source == "transformers"
             else (3, 320, 320) if source == "detection" else input_shape_for(name))
    row["macs_before"], row["params_before"] = count_macs_params(model, input_shape=shape)
    space = init_space(model, input_shape=shape, model_name=spec)
    row["groups"] = len(space.groups)
    row["left_out"] = len(space.left_out)
    row["heads_groups"] = sum(g.unit == "heads" for g in space.groups.values())
    plan = Plan(ratios={g: ratio for g in space.groups}, round_to=space.round_to, ignored=space.ignored)
    pruned = prune(model, plan, input_shape=shape, inplace=True)
    del model
    row["macs_after"], row["params_after"] = count_macs_params(pruned, input_shape=shape)
    x = shape.example(1, seed=1) if source == "transformers" else torch.randn(1, *shape)
    with torch.no_grad():
        want = pruned(x)
    want = want[0] if isinstance(want, (tuple, list)) else want
    reload_err = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(pruned, os.path.join(tmp, "m.onnx"), input_shape=shape, batch_size=1)
        got = onnx_outputs(path, x)
        if source == "transformers":  # save_pretrained, then the model's Auto class loads it back
            from autoprune.load.hf import from_pretrained, save_pretrained

            with torch.no_grad():
                again = from_pretrained(save_pretrained(pruned, os.path.join(tmp, "hf")))(x)
            reload_err = float((again - want).abs().max() / (want.abs().max() + 1e-12))
            row["reload_error"] = reload_err
    err = float(np.abs(got - want.numpy()).max() / (np.abs(want.numpy()).max() + 1e-12))
    row["rel_error"] = err
    row["ok"] = bool(err < 1e-3 and reload_err < 1e-5 and row["params_after"] < row["params_before"])
    if not row["ok"]:
        row["reason"] = (f"ONNX output differs from torch (relative {err:.1e})" if err >= 1e-3
                         else f"reloaded with from_pretrained, it differs (relative {reload_err:.1e})"
                         if reload_err >= 1e-5 else "nothing pruned")
    row["seconds"] = time.perf_counter() - t0
    return row


def _child(source: str, name: str, ratio: float) -> None:
    # Address space, not resident memory: a model that needs more dies here with MemoryError
    # instead of taking the machine down; the table reports resident peak against 8 GB.
    resource.setrlimit(resource.RLIMIT_AS, (int(AS_LIMIT_GB * 2**30), int(AS_LIMIT_GB * 2**30)))
    try:
        row = check_one(source, name, ratio)
    except BaseException as exc:  # noqa: BLE001 - the sweep reports every failure as a row
        msg = str(exc).splitlines()[0] if str(exc) else ""
        row = {"model": name, "ok": False, "reason": f"{type(exc).__name__}: {msg}"[:300]}
    row["peak_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print("ROW " + json.dumps(row), flush=True)


def list_models(source: str) -> list[str]:
    if source == "transformers":
        return list(TRANSFORMERS)
    if source == "detection":
        return DETECTION
    if source == "torchvision":
        import torchvision

        return torchvision.models.list_models(module=torchvision.models)
    import timm  # noqa: F401 - the families people prune most, small variants

    return ["resnet50", "efficientnet_b0", "mobilenetv3_large_100", "convnext_tiny", "regnety_016",
            "vit_small_patch16_224", "deit_small_patch16_224", "swin_tiny_patch4_window7_224"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default="torchvision", choices=["torchvision", "timm", "transformers", "detection"])
    ap.add_argument("--family", default="", choices=["", "transformers", "detection"],
                    help="same as --source")
    ap.add_argument("--models", default="", help="comma-separated names (default: all of the source)")
    ap.add_argument("--ratio", type=float, default=0.4)
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per model")
    ap.add_argument("--out", default="", help="also write the table as CSV here")
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.family:
        args.source = args.family
    if args.child:
        _child(args.source, args.child, args.ratio)
        return 0
    names = [m for m in args.models.split(",") if m] or list_models(args.source)
    rows = []
    for i, name in enumerate(names, 1):
        cmd = [sys.executable, __file__, "--source", args.source, "--ratio", str(args.ratio), "--child", name]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, check=False)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("ROW ")]
            row = json.loads(lines[-1][4:]) if lines else {
                "model": name, "ok": False, "reason": f"process died (exit {proc.returncode}): "
                + (proc.stderr.strip().splitlines() or [""])[-1][:200]}
        except subprocess.TimeoutExpired:
            row = {"model": name, "ok": False, "reason": f"over {args.timeout:.0f} s"}
        if row.get("ok") and row.get("peak_gb", 0) > MEMORY_LIMIT_GB:
            row["ok"], row["reason"] = False, f"peak memory {row['peak_gb']:.1f} GB > {MEMORY_LIMIT_GB:.0f} GB"
        rows.append(row)
        mark = "pass" if row["ok"] else "FAIL"
        heads = (f" ({row['heads_groups']} of heads, reloads)" if args.source == "transformers" and row["ok"]
                 else "")
        detail = (f"groups {row.get('groups')}{heads} (+{row.get('left_out')} left out)  MACs {row['macs_before'] / 1e9:.2f}G"
                  f"->{row['macs_after'] / 1e9:.2f}G  params {row['params_before'] / 1e6:.1f}M->"
                  f"{row['params_after'] / 1e6:.1f}M  err {row['rel_error']:.0e}" if row["ok"] else row.get("reason", ""))
        print(f"[{i}/{len(names)}] {mark} {name:24s} {detail}  {row.get('peak_gb', 0):.1f} GB "
              f"{row.get('seconds', 0):.0f} s", flush=True)
    passed = sum(r["ok"] for r in rows)
    print(f"\n{passed} of {len(rows)} pass ({100 * passed / max(1, len(rows)):.0f} %) at a uniform {args.ratio} plan")
    if args.out:
        import pandas as pd

        pd.DataFrame(rows).to_csv(args.out, index=False)
    return 0 if passed == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
