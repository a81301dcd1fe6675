"""Model sources: ``builtin:demo``, ``torchvision:NAME``, an autoprune checkpoint, or ``package.module:function``."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autoprune.errors import AutopruneError

MODEL_HINT = "use builtin:demo, torchvision:NAME, a checkpoint .pt path, or package.module:function"
CHECKPOINT_FORMAT = 1


def load_model(spec: str, *, trained: bool = True) -> nn.Module:
    """Build the model a spec names, in eval mode. Nothing is downloaded.

    ``trained=False`` only matters for ``builtin:demo``: it skips training when just the
    architecture is needed (rebuilding a pruned checkpoint whose weights come from the file).
    """
    spec = str(spec)
    if spec.startswith("builtin:"):
        if spec != "builtin:demo":
            raise AutopruneError(f"model {spec!r}: unknown builtin model; the builtin model is builtin:demo")
        from autoprune.demo import demo_model

        return demo_model(trained=trained)
    if spec.startswith("torchvision:"):
        return _torchvision(spec.removeprefix("torchvision:"))
    if spec.endswith((".pt", ".pth")) or Path(spec).exists():
        return load_checkpoint(spec)
    if ":" in spec:
        from autoprune.data import import_callable

        model = import_callable(spec, what="model")()
        if not isinstance(model, nn.Module):
            raise AutopruneError(f"model {spec!r}: the function returned {type(model).__name__}, not a torch nn.Module")
        return model.eval()
    raise AutopruneError(f"model {spec!r} is not understood; {MODEL_HINT}")


def _torchvision(name: str) -> nn.Module:
    import torchvision

    available = torchvision.models.list_models()
    if name not in available:
        raise AutopruneError(f"model 'torchvision:{name}': no such torchvision model; e.g. torchvision:resnet18")
    # weights=None: pretrained weights would be a download, which this tool never does.
    return torchvision.models.get_model(name, weights=None).eval()


def save_checkpoint(model: nn.Module, path: str | Path, *, arch: str, plan: dict[str, Any] | None,
                    input_shape: tuple[int, ...]) -> Path:
    """Save weights plus what rebuilds the architecture, so loading needs only ``weights_only=True``."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"autoprune_checkpoint": CHECKPOINT_FORMAT, "arch": arch, "plan": plan,
                "input_shape": list(input_shape), "state_dict": model.state_dict()}, p)
    return p


def load_checkpoint(path: str | Path) -> nn.Module:
    p = Path(path)
    if not p.is_file():
        raise AutopruneError(f"model {str(p)!r}: no such file; {MODEL_HINT}")
    try:
        ckpt = torch.load(p, weights_only=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is the same user error
        raise AutopruneError(f"model {str(p)!r}: not loadable with weights_only=True ({type(exc).__name__}); "
                             "save {'arch': SPEC, 'state_dict': ...} with autoprune.save_checkpoint") from None
    if not isinstance(ckpt, dict) or "arch" not in ckpt or "state_dict" not in ckpt:
        raise AutopruneError(f"model {str(p)!r}: a checkpoint needs keys 'arch' (a model spec) and 'state_dict'; "
                             "a bare state_dict does not say which architecture it belongs to")
    model = load_model(ckpt["arch"], trained=False)
    if ckpt.get("plan"):
        from autoprune.plan import Plan
        from autoprune.pruning import prune

        # The pruned shapes depend only on the ratios; the kept weights come from the file. Scoring
        # with l1 rebuilds them without the calibration data that taylor or activation would need.
        plan = Plan.from_dict(ckpt["plan"]).model_copy(update={"criterion": "l1"})
        model = prune(model, plan, input_shape=tuple(ckpt["input_shape"]))
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise AutopruneError(f"model {str(p)!r}: weights do not fit architecture {ckpt['arch']!r} "
                             f"({str(exc).splitlines()[0]})") from None
    return model.eval()


def fingerprint(model: nn.Module) -> str:
    """A short hash of every parameter and buffer: names, shapes and values."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()[:16]


def architecture_fingerprint(model: nn.Module) -> str:
    """A short hash of parameter names and shapes only: equal for equally pruned models."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(f"{name}:{tuple(tensor.shape)};".encode())
    return h.hexdigest()[:16]
