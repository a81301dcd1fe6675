"""Model sources: ``builtin:demo``, ``torchvision:NAME[?weights=…]``, ``timm:NAME[?pretrained=true]``, an
autoprune checkpoint, or ``package.module:function``; ``weights=FILE`` loads a state_dict into any of them."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autoprune.core.errors import AutopruneError
from autoprune.core.inputs import as_spec, from_record

MODEL_HINT = ("use builtin:demo, torchvision:NAME[?weights=DEFAULT], timm:NAME[?pretrained=true], a checkpoint .pt "
              "path, or package.module:function")
CHECKPOINT_FORMAT = 1


def load_model(spec: str, *, trained: bool = True, weights: str | Path | None = None) -> nn.Module:
    """Build the model a spec names, in eval mode. Nothing is downloaded.

    ``trained=False`` builds the architecture only (rebuilding a pruned checkpoint whose weights
    come from the file): no demo training, no pretrained weights needed. ``weights``: a state_dict
    file (or a checkpoint holding one under ``state_dict`` or ``model``) loaded into the model.
    """
    from autoprune.load.adapt import adapt

    spec = str(spec)
    model = _build(spec, trained=trained)
    if weights is not None and trained:
        load_weights(model, weights, spec=spec)
    return adapt(model)  # after the weights: a state_dict names the original layers


def _build(spec: str, *, trained: bool) -> nn.Module:
    if spec.startswith("builtin:"):
        if spec != "builtin:demo":
            raise AutopruneError(f"model {spec!r}: unknown builtin model; the builtin model is builtin:demo")
        from autoprune.load.demo import demo_model

        return demo_model(trained=trained)
    if spec.startswith("torchvision:"):
        return _torchvision(spec, trained=trained)
    if spec.startswith("timm:"):
        return _timm(spec, trained=trained)
    if spec.endswith((".pt", ".pth")) or Path(spec).exists():
        return load_checkpoint(spec)
    if ":" in spec:
        from autoprune.core.imports import import_callable

        model = import_callable(spec, what="model")()
        if not isinstance(model, nn.Module):
            raise AutopruneError(f"model {spec!r}: the function returned {type(model).__name__}, not a torch nn.Module")
        return model.eval()
    raise AutopruneError(f"model {spec!r} is not understood; {MODEL_HINT}")


def _options(spec: str, allowed: dict[str, str]) -> tuple[str, dict[str, str]]:
    """``source:NAME?key=value&…`` -> (NAME, options); unknown keys fail naming the ones there are."""
    body = spec.split(":", 1)[1]
    name, _, query = body.partition("?")
    opts = {}
    for part in filter(None, query.split("&")):
        key, sep, value = part.partition("=")
        if key not in allowed or not sep or not value:
            known = ", ".join(f"{k}={v}" for k, v in allowed.items())
            raise AutopruneError(f"model {spec!r}: option {part!r} is not understood; options: {known}")
        opts[key] = value
    return name, opts


def _num_classes(spec: str, opts: dict[str, str]) -> int | None:
    if "num_classes" not in opts:
        return None
    value = opts["num_classes"]
    if not value.isdigit() or int(value) < 1:
        raise AutopruneError(f"model {spec!r}: num_classes={value!r} is not a positive integer")
    return int(value)


def torchvision_weights(spec: str):
    """The torchvision weights enum member a spec names (``?weights=DEFAULT|IMAGENET1K_V2|…``), or None."""
    import torchvision

    name, opts = _options(spec, {"weights": "DEFAULT|NAME", "num_classes": "N"})
    if name not in torchvision.models.list_models():
        raise AutopruneError(f"model {spec!r}: no such torchvision model; e.g. torchvision:resnet18")
    if "weights" not in opts:
        return None
    enum = torchvision.models.get_model_weights(name)
    choice = opts["weights"]
    try:
        return enum.DEFAULT if choice == "DEFAULT" else enum[choice]
    except KeyError:
        raise AutopruneError(f"model {spec!r}: torchvision has no weights {choice!r} for {name}; choose DEFAULT or "
                             f"one of: {', '.join(w.name for w in enum)}") from None


def model_preprocessing(spec: str) -> dict[str, Any] | None:
    """The preprocessing pretrained weights were trained with (resize, crop, mean, std), when the
    spec names weights: torchvision's ``weights.transforms()``, timm's ``resolve_data_config``."""
    spec = str(spec)
    if spec.startswith("torchvision:"):
        w = torchvision_weights(spec)
        if w is None:
            return None
        t = w.transforms()
        return {"size": int(t.resize_size[0]), "crop": int(t.crop_size[0]), "mean": [float(v) for v in t.mean],
                "std": [float(v) for v in t.std], "from": f"{w} transforms()"}
    if spec.startswith("timm:") and "pretrained=true" in spec.lower():
        import timm

        name = spec.split(":", 1)[1].partition("?")[0]
        conf = timm.data.resolve_data_config({}, model=timm.create_model(name, pretrained=False))
        crop = int(conf["input_size"][-1])
        return {"size": round(crop / conf.get("crop_pct", 1.0)), "crop": crop, "mean": list(conf["mean"]),
                "std": list(conf["std"]), "from": f"timm resolve_data_config({name})"}
    return None


def weights_file(w) -> Path:
    """Where torchvision keeps a weights file (``$TORCH_HOME/hub/checkpoints``): looked up, never fetched."""
    from urllib.parse import urlparse

    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(w.url).path).name


def _torchvision(spec: str, *, trained: bool) -> nn.Module:
    import torchvision

    name, opts = _options(spec, {"weights": "DEFAULT|NAME", "num_classes": "N"})
    w = torchvision_weights(spec)
    classes = _num_classes(spec, opts)
    if w is None:
        # No weights named: random initialisation, as torchvision builds it.
        return torchvision.models.get_model(name, weights=None, **({"num_classes": classes} if classes else {})).eval()
    path = weights_file(w)
    if trained and not path.is_file():
        raise AutopruneError(f"model {spec!r}: weights file {path} is not there, and autoprune downloads nothing; "
                             f"fetch {w.url} into {path.parent} (or set TORCH_HOME to where it is)")
    if trained:
        model = torchvision.models.get_model(name, weights=w)
    else:  # the architecture the weights imply, without reading them
        kwargs: dict[str, Any] = {"num_classes": len(w.meta["categories"])}
        if name.startswith("vit_"):
            kwargs["image_size"] = w.meta["min_size"][0]
        model = torchvision.models.get_model(name, weights=None, **kwargs)
    if classes is not None and classes != len(w.meta["categories"]):
        _new_head(model, classes, spec=spec)
    return model.eval()


def _new_head(model: nn.Module, classes: int, *, spec: str) -> None:
    """Transfer learning: the last linear layer becomes a freshly initialised one with ``classes`` outputs."""
    last = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not last:
        raise AutopruneError(f"model {spec!r}: num_classes needs a linear classifier, and this model has none")
    name, layer = last[-1]
    parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    setattr(parent, name.rpartition(".")[2], nn.Linear(layer.in_features, classes, bias=layer.bias is not None))


def _timm(spec: str, *, trained: bool) -> nn.Module:
    import os

    try:
        import timm
    except ImportError:
        raise AutopruneError(f"model {spec!r}: timm is not installed; pip install 'autoprune[timm]'") from None
    name, opts = _options(spec, {"pretrained": "true|false", "num_classes": "N"})
    if not timm.list_models(name):
        raise AutopruneError(f"model {spec!r}: timm has no model {name!r}; see timm.list_models()")
    pretrained = opts.get("pretrained", "false").lower()
    if pretrained not in ("true", "false"):
        raise AutopruneError(f"model {spec!r}: pretrained={pretrained!r}; use true or false")
    kwargs: dict[str, Any] = {}
    classes = _num_classes(spec, opts)
    if classes is not None:
        kwargs["num_classes"] = classes
    if pretrained == "false" or not trained:
        return timm.create_model(name, pretrained=False, **kwargs).eval()
    before = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"  # timm's own cache (Hugging Face hub), never the network
    # huggingface_hub reads the variable once, when it is imported: an import before this one (timm
    # imports it) would keep retrying the network. Its module constant is what every request checks.
    try:
        from huggingface_hub import constants as hub
    except ImportError:
        hub = None
    hub_before = getattr(hub, "HF_HUB_OFFLINE", None)
    if hub is not None:
        hub.HF_HUB_OFFLINE = True
    try:
        return timm.create_model(name, pretrained=True, **kwargs).eval()
    except Exception as exc:  # noqa: BLE001 - any failure to find cached weights is the same user step
        raise AutopruneError(f"model {spec!r}: timm's pretrained weights are not in its cache "
                             f"({type(exc).__name__}), and autoprune downloads nothing; run "
                             f"timm.create_model({name!r}, pretrained=True) once where there is network and "
                             "copy the Hugging Face cache (HF_HOME) here") from None
    finally:
        if hub is not None:
            hub.HF_HUB_OFFLINE = hub_before
        if before is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = before


def load_weights(model: nn.Module, path: str | Path, *, spec: str = "") -> nn.Module:
    """Load a state_dict file into ``model`` (strictly: every key, every shape); one-line errors."""
    p = Path(path)
    state = _torch_load(p, what="weights", missing="pass a state_dict saved with torch.save",
                        unreadable="save model.state_dict() with torch.save")
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    elif isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise AutopruneError(f"weights {str(p)!r}: holds a {type(state).__name__}, not a state_dict")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        raise AutopruneError(f"weights {str(p)!r} do not fit model {spec!r}: "
                             f"{lines[1] if len(lines) > 1 else lines[0]}") from None
    return model.eval()


def save_checkpoint(model: nn.Module, path: str | Path, *, arch: str, plan: dict[str, Any] | None,
                    input_shape: tuple[int, ...], weights: str | None = None,
                    extra: dict[str, Any] | None = None) -> Path:
    """Save weights plus what rebuilds the architecture, so loading needs only ``weights_only=True``.

    ``weights`` (the state_dict file the base model was loaded from) and ``extra`` (e.g. metric,
    loss, preprocessing) are recorded for the reader; rebuilding needs neither."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"autoprune_checkpoint": CHECKPOINT_FORMAT, "arch": arch, "plan": plan, "weights": weights,
                **as_spec(input_shape).record(), **(extra or {}), "state_dict": model.state_dict()}, p)
    return p


def _torch_load(p: Path, *, what: str, missing: str, unreadable: str) -> Any:
    """``torch.load(weights_only=True)`` with the two user errors (no file, not loadable) in one line."""
    if not p.is_file():
        raise AutopruneError(f"{what} {str(p)!r}: no such file; {missing}")
    try:
        return torch.load(p, weights_only=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is the same user error
        raise AutopruneError(f"{what} {str(p)!r}: not loadable with weights_only=True ({type(exc).__name__}); "
                             f"{unreadable}") from None


def load_checkpoint(path: str | Path) -> nn.Module:
    p = Path(path)
    ckpt = _torch_load(p, what="model", missing=MODEL_HINT,
                       unreadable="save {'arch': SPEC, 'state_dict': ...} with autoprune.save_checkpoint")
    if not isinstance(ckpt, dict) or "arch" not in ckpt or "state_dict" not in ckpt:
        raise AutopruneError(f"model {str(p)!r}: a checkpoint needs keys 'arch' (a model spec) and 'state_dict'; "
                             "a bare state_dict does not say which architecture it belongs to")
    model = load_model(ckpt["arch"], trained=False)
    if ckpt.get("plan"):
        from autoprune.prune.engine import prune
        from autoprune.prune.plan import Plan

        # The pruned shapes depend only on the ratios; the kept weights come from the file. Scoring
        # with l1 rebuilds them without the calibration data that taylor or activation would need.
        plan = Plan.from_dict(ckpt["plan"]).model_copy(update={"criterion": "l1"})
        model = prune(model, plan, input_shape=from_record(ckpt))
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
