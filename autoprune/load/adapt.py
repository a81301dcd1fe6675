"""Models as the engine can prune them: rewrites applied when a model is loaded, each computing
exactly what the original computes (a test holds them to it), and applied the same way when a pruned
checkpoint is rebuilt, so a plan's layer names always mean the same layers.

- A Hugging Face model becomes ``hf.Logits``: token ids in, logits out.
- A CSP block that ``chunk``s one convolution's output in two (ultralytics' ``C2f``, and ``C3k2``
  that inherits its forward: every YOLOv8 and YOLO11 stage) gets two convolutions, one per half, as
  Torch-Pruning's YOLOv8 example does: the dependency graph cannot map indices through that chunk
  (an index error at any ratio), so these layers were left out of the space.
- YOLO11's ``C2PSA`` (``cv1`` ``split`` in two, the attention blocks on the second half) likewise.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def adapt(model: nn.Module) -> nn.Module:
    """``model`` rewritten for the engine (the same function), in eval mode."""
    from autoprune.load.hf import Logits, is_hugging_face

    if is_hugging_face(model):
        return Logits(model).eval()
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if _chunked_csp(child):
                setattr(parent, name, SplitCSP(child))
            elif _split_psa(child):
                setattr(parent, name, SplitPSA(child))
    return model.eval()


def _chunked_csp(m: nn.Module) -> bool:
    """ultralytics' C2f family: ``cv1`` (a Conv: conv + bn) of 2c channels chunked in two, ``m`` the
    bottlenecks fed the second half, ``cv2`` over the concatenation."""
    if not any(c.__name__ == "C2f" for c in type(m).__mro__) or isinstance(m, SplitCSP):
        return False
    if type(m).forward is not _c2f_forward(m):  # a subclass with its own forward (C2fAttn): not this shape
        return False
    cv1 = getattr(m, "cv1", None)
    conv, bn, c = getattr(cv1, "conv", None), getattr(cv1, "bn", None), getattr(m, "c", None)
    return (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and isinstance(c, int)
            and conv.out_channels == 2 * c and conv.groups == 1)


def _split_psa(m: nn.Module) -> bool:
    """ultralytics' C2PSA: ``cv1`` of 2c channels split in two, ``m`` (attention blocks) on the second half."""
    base = next((c for c in type(m).__mro__ if c.__name__ == "C2PSA"), None)
    if base is None or type(m).forward is not base.forward:
        return False
    cv1 = getattr(m, "cv1", None)
    conv, bn, c = getattr(cv1, "conv", None), getattr(cv1, "bn", None), getattr(m, "c", None)
    return (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and isinstance(c, int)
            and conv.out_channels == 2 * c and conv.groups == 1)


def _c2f_forward(m: nn.Module):
    base = next(c for c in type(m).__mro__ if c.__name__ == "C2f")
    return base.forward


def _half(conv_block: nn.Module, part: slice) -> nn.Module:
    out = copy.deepcopy(conv_block)
    conv, bn = out.conv, out.bn
    conv.weight = nn.Parameter(conv.weight.data[part].clone())
    if conv.bias is not None:
        conv.bias = nn.Parameter(conv.bias.data[part].clone())
    conv.out_channels = conv.weight.shape[0]
    for p in ("weight", "bias"):
        setattr(bn, p, nn.Parameter(getattr(bn, p).data[part].clone()))
    for b in ("running_mean", "running_var"):
        setattr(bn, b, getattr(bn, b)[part].clone())
    bn.num_features = conv.out_channels
    return out


class SplitCSP(nn.Module):
    """A C2f-family block with ``cv1`` split into ``cv0`` (the first half) and ``cv1`` (the second)."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        c = block.c
        self.c = c
        self.cv0 = _half(block.cv1, slice(0, c))
        self.cv1 = _half(block.cv1, slice(c, 2 * c))
        self.cv2, self.m = block.cv2, block.m
        for attr in ("f", "i", "type", "np"):  # ultralytics' graph bookkeeping (inputs, index)
            if hasattr(block, attr):
                setattr(self, attr, getattr(block, attr))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.cv0(x), self.cv1(x)]
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


class SplitPSA(SplitCSP):
    """YOLO11's C2PSA with ``cv1`` split into ``cv0`` (the half passed through) and ``cv1`` (the half
    the attention blocks ``m``, one Sequential, transform)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv2(torch.cat((self.cv0(x), self.m(self.cv1(x))), 1))
