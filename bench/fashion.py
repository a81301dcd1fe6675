"""The benchmark workload: a CIFAR-style ResNet (He et al. 2016, section 4.2) on Fashion-MNIST.

``resnet()`` is the model spec the benchmarks search (``bench.fashion:resnet``): trained once on the
training subset below and cached, like the demo model. Fashion-MNIST comes from the Debian package
``dataset-fashion-mnist`` (offline).
"""

from __future__ import annotations

import torch
from torch import nn

from autoprune.load.demo import BasicBlock, trained_once

DATA = "builtin:fashion-mnist?train=12000&val=2000"
VERSION = 1


class CifarResNet(nn.Module):
    """3x3 stem, three stages of ``n`` basic blocks (16, 32, 64 channels; stride 1, 2, 2), pool, fc."""

    def __init__(self, *, n: int = 1, widths: tuple[int, int, int] = (16, 32, 64), num_classes: int = 10) -> None:
        super().__init__()
        w1, w2, w3 = widths
        self.stem = nn.Sequential(nn.Conv2d(1, w1, 3, 1, 1, bias=False), nn.BatchNorm2d(w1), nn.ReLU(inplace=True))
        self.layer1 = nn.Sequential(*[BasicBlock(w1, w1, 1) for _ in range(n)])
        self.layer2 = nn.Sequential(BasicBlock(w1, w2, 2), *[BasicBlock(w2, w2, 1) for _ in range(n - 1)])
        self.layer3 = nn.Sequential(BasicBlock(w2, w3, 2), *[BasicBlock(w3, w3, 1) for _ in range(n - 1)])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(w3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def _trainer(epochs: int):
    def train(model: nn.Module) -> None:
        from autoprune.load.data import load_data
        from autoprune.train.finetune import FinetuneConfig, finetune

        finetune(model, load_data(DATA).train, config=FinetuneConfig(epochs=epochs, lr=0.1, batch_size=128, seed=0))
    return train


def resnet() -> nn.Module:
    """ResNet-14 (n=2; 16/32/64 channels), trained on the Fashion-MNIST subset (once; cached)."""
    torch.manual_seed(0)
    return trained_once(CifarResNet(n=2, widths=(16, 32, 64)), f"fashion-resnet14-v{VERSION}.pt", _trainer(4),
                        what="the benchmark ResNet on Fashion-MNIST")


def resnet_converged() -> nn.Module:
    """The same ResNet-14 trained 20 epochs (once; cached): a teacher worth distilling from.

    The 4-epoch ``resnet`` is what the search benchmarks use (cheap to train), but its pruned and
    fine-tuned students overtake it within a few epochs, and distilling from a weaker teacher hurts
    (bench_recovery measured it); the recovery table, like the literature's, starts from a converged model.
    """
    torch.manual_seed(0)
    return trained_once(CifarResNet(n=2, widths=(16, 32, 64)), f"fashion-resnet14-e20-v{VERSION}.pt", _trainer(20),
                        what="the converged benchmark ResNet on Fashion-MNIST")


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expand, 3x3 depthwise, 1x1 project; residual when shapes allow."""

    def __init__(self, c_in: int, c_out: int, *, stride: int, expand: int) -> None:
        super().__init__()
        hidden = c_in * expand
        self.block = nn.Sequential(
            nn.Conv2d(c_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


class MobileNetLike(nn.Module):
    """A MobileNetV2-style network for 28x28 inputs: depthwise/pointwise mixes, whose latency per
    channel differs from layer to layer far more than a plain ResNet's (where allocation should matter)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        cfg = [(16, 24, 2), (24, 24, 1), (24, 40, 2), (40, 40, 1), (40, 80, 2), (80, 80, 1)]
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(inplace=True))
        self.blocks = nn.Sequential(*[InvertedResidual(a, b, stride=s, expand=4) for a, b, s in cfg])
        self.head = nn.Sequential(nn.Conv2d(80, 256, 1, bias=False), nn.BatchNorm2d(256), nn.ReLU6(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(256, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.head(self.blocks(self.stem(x)))), 1))


def mobilenet() -> nn.Module:
    """The MobileNet-style network, trained on the Fashion-MNIST subset (once; cached)."""
    torch.manual_seed(0)
    return trained_once(MobileNetLike(), f"fashion-mobilenet-v{VERSION}.pt", _trainer(4),
                        what="the benchmark MobileNet-style network on Fashion-MNIST")
