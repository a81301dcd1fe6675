"""The embedded default: a small residual CNN trained on scikit-learn's bundled digits.

It has BatchNorm and identity/projection skip connections, so pruning must keep the layers
coupled by residual adds consistent. Training takes seconds and the weights are cached.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from autoprune.core.files import atomic_path, cache_dir

DEMO_VERSION = 1  # bump when the architecture or training recipe changes: invalidates the cache


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class DemoResNet(nn.Module):
    """ResNet-style CNN for 1x8x8 digits: stem, three stages of two blocks, global pool, classifier."""

    def __init__(self, *, widths: tuple[int, int, int] = (48, 96, 192), num_classes: int = 10) -> None:
        super().__init__()
        w1, w2, w3 = widths
        self.stem = nn.Sequential(nn.Conv2d(1, w1, 3, 1, 1, bias=False), nn.BatchNorm2d(w1), nn.ReLU(inplace=True))
        self.layer1 = nn.Sequential(BasicBlock(w1, w1, 1), BasicBlock(w1, w1, 1))
        self.layer2 = nn.Sequential(BasicBlock(w1, w2, 2), BasicBlock(w2, w2, 1))
        self.layer3 = nn.Sequential(BasicBlock(w2, w3, 2), BasicBlock(w3, w3, 1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(w3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def trained_once(model: nn.Module, name: str, train: Callable[[nn.Module], None], *, what: str) -> nn.Module:
    """``model`` with weights from the cache file ``name``; trained by ``train`` and cached the first time."""
    path = cache_dir() / name
    if path.is_file():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()
    from rich.console import Console

    Console(stderr=True, highlight=False).print(f"[dim]training {what} (once; cached in {path.parent})[/]")
    train(model)
    with atomic_path(path) as tmp:  # a concurrent reader never sees half a file
        torch.save(model.state_dict(), tmp)
    return model.eval()


def demo_model(*, trained: bool = True) -> nn.Module:
    """The demo model; trained on digits once (about 20 s), then loaded from the cache."""
    model = DemoResNet()
    if not trained:
        return model.eval()
    return trained_once(model, f"demo-resnet-v{DEMO_VERSION}.pt", _train, what="the demo model on digits")


def _train(model: nn.Module) -> None:
    from autoprune.load.data import load_data
    from autoprune.train.finetune import FinetuneConfig, finetune

    data = load_data("builtin:digits")
    torch.manual_seed(0)
    finetune(model, data.train, config=FinetuneConfig(epochs=8, lr=0.05, batch_size=64, warmup_fraction=0.1, seed=0))
