"""``autoprune sparsify``: unstructured magnitude pruning of a whole model, fine-tuned and measured.

The same masks ``apply --unstructured`` puts on a structurally pruned model, here on the model as
it is: for a user who wants a smaller file, and to show what a dense runtime makes of the zeros.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from autoprune.core import config as cfg
from autoprune.core.errors import AutopruneError
from autoprune.latency.onnx import export_onnx
from autoprune.latency.profiles import DEFAULT_PROFILE, resolve_profile
from autoprune.latency.sparse import latency_side_by_side, sparsity_report
from autoprune.load.models import save_checkpoint
from autoprune.prune.masks import check_sparsity, magnitude_masks, make_permanent
from autoprune.train.finetune import FinetuneConfig, evaluate, finetune


@dataclass(frozen=True)
class SparsifyResult:
    out_dir: Path
    model_path: Path
    onnx_path: Path
    report_path: Path
    report: dict[str, Any]


def sparsify(*, model: str = "builtin:demo", data: str = "builtin:digits", sparsity: float = 0.5,
             scope: str = "global", epochs: float = 1.0, lr: float = 0.01, profile: str | Path = DEFAULT_PROFILE,
             out: str | Path = "sparse", seed: int = 0, quiet: bool = False, weights: str | Path | None = None,
             device: str = "auto") -> SparsifyResult:
    """Zero the ``sparsity`` fraction of smallest conv/linear weights (one threshold, or per layer),
    fine-tune ``epochs`` with the zeros held, and write model.pt, model.onnx and report.yaml with
    accuracy, sparsity, sizes, and the latency of the dense and the sparsified model side by side."""
    from autoprune.core.device import resolve_device
    from autoprune.study.workload import load_workload

    check_sparsity(sparsity, scope)
    dev = resolve_device(device)
    if epochs < 0:
        raise AutopruneError(f"epochs is {epochs}; it must be >= 0")
    console = Console(quiet=quiet, highlight=False)
    hw = resolve_profile(profile)
    work = load_workload(model=model, data=data, space=None, profiles=[hw], weights=weights)
    dense = work.model
    acc_dense = evaluate(dense, work.data.val)
    sparse = magnitude_masks(copy.deepcopy(dense), sparsity=sparsity, scope=scope)
    acc_masked = evaluate(sparse, work.data.val)
    console.print(f"{model}: accuracy {acc_dense:.1%}; {sparsity:.0%} of weights zeroed ({scope} threshold): "
                  f"{acc_masked:.1%} before fine-tuning")
    ft = FinetuneConfig(epochs=epochs, lr=lr, seed=seed)
    with console.status(f"fine-tuning on {dev}") as status:
        finetune(sparse.to(dev), work.data.train, config=ft, device=dev,
                 on_step=lambda s, n, loss: status.update(f"fine-tuning on {dev} {s}/{n}, loss {loss:.3f}"))
    sparse.to("cpu")
    acc = evaluate(make_permanent(sparse), work.data.val)
    console.print(f"after fine-tuning with the zeros held: {acc:.1%}")
    with console.status(f"measuring dense and sparse side by side on {hw.name}"):
        lat = latency_side_by_side({"dense": dense, "sparse": sparse}, hw, input_shape=work.input_shape)
    sizes = {"dense": sparsity_report(dense, input_shape=work.input_shape, opset=hw.opset),
             "sparse": sparsity_report(sparse, input_shape=work.input_shape, opset=hw.opset)}

    out_dir = Path(out)
    model_path = save_checkpoint(sparse, out_dir / "model.pt", arch=model, plan=None, input_shape=work.input_shape)
    onnx_path = export_onnx(sparse, out_dir / "model.onnx", input_shape=work.input_shape, batch_size=1,
                            opset=hw.opset, dynamic_batch=True)
    report = {
        "model": model, "data": data, "device": str(dev),
        "unstructured": {"sparsity_requested": sparsity, "scope": scope, "criterion": "weight magnitude |w|"},
        "finetune": {"epochs": epochs, "steps": ft.total_steps(len(work.data.train)), "lr": lr,
                     "schedule": "warm-up + cosine", "zeros": "held by masks"},
        "accuracy": {"dense": acc_dense, "sparse_before_finetune": acc_masked, "sparse": acc},
        "size": {k: v.as_dict() for k, v in sizes.items()},
        "latency": {"profile": hw.name, "dense_p50_ms": lat["dense"].p50_ms, "sparse_p50_ms": lat["sparse"].p50_ms,
                    "speedup": lat["dense"].p50_ms / lat["sparse"].p50_ms,
                    "dense": lat["dense"].describe(), "sparse": lat["sparse"].describe(),
                    "note": "a dense runtime computes the zeros too: expect no speedup (1.0x within noise); "
                            "structured pruning (autoprune search/apply) is what cuts latency"},
        "files": {"model": str(model_path), "onnx": str(onnx_path)},
    }
    report_path = cfg.dump(report, out_dir / "report.yaml")
    s = sizes["sparse"]
    console.print(f"sparsity {s.sparsity:.1%} of {s.weights:,} conv/linear weights; dense {s.dense_bytes / 1e6:.2f} MB, "
                  f"sparse (CSR) {s.sparse_bytes / 1e6:.2f} MB, ONNX gzipped {sizes['dense'].onnx_gzip_bytes / 1e6:.2f}"
                  f" -> {s.onnx_gzip_bytes / 1e6:.2f} MB")
    console.print(f"latency on {hw.name}: dense {lat['dense'].p50_ms:.2f} ms, sparse {lat['sparse'].p50_ms:.2f} ms "
                  f"({report['latency']['speedup']:.2f}x): ONNX Runtime's dense kernels do not skip zeros")
    console.print(f"wrote {model_path}, {onnx_path} and {report_path}")
    return SparsifyResult(out_dir=out_dir, model_path=model_path, onnx_path=onnx_path, report_path=report_path,
                          report=report)
