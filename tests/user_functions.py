"""A user's own functions, each wrong in one way a user gets them wrong: what autoprune must say in one
line, naming the function and this file's line (tests/test_user_code.py)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import TensorDataset

from tests.helpers import TinyResNet


def model() -> nn.Module:
    torch.manual_seed(0)
    return TinyResNet().eval()


def model_that_raises() -> nn.Module:
    settings = {"depth": 3}
    return TinyResNet(settings["width"])  # KeyError: a typo in the user's config


class _BrokenForward(TinyResNet):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("this forward pass is broken")


def model_whose_forward_raises() -> nn.Module:
    return _BrokenForward().eval()


def data() -> tuple[TensorDataset, TensorDataset]:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(160, 1, 8, 8, generator=g), torch.randint(0, 10, (160,), generator=g)
    return TensorDataset(x[:128], y[:128]), TensorDataset(x[128:], y[128:])


def data_that_raises():
    raise FileNotFoundError("/datasets/train not found")


def data_one_dataset():
    return data()[0]


def data_of_other_shapes():
    train, _ = data()
    return train, TensorDataset(torch.randn(8, 1, 6, 6), torch.zeros(8, dtype=torch.long))


def metric_that_raises(model, loader):
    return sum((model(x).argmax(1) == y).sum() for x, y in loader) / undefined_total  # noqa: F821


def metric_nan(model, loader):
    return float("nan")


def metric_string(model, loader):
    return "high"


def metric_one_argument(model):
    return 0.5


def metric_nan_when_pruned(model, loader):
    """Fine on the unpruned model (16 stem channels), NaN once its stem is pruned: a failure in trials only."""
    return 0.5 if model.stem[0].out_channels == 16 else float("nan")


def loss_one_argument(outputs):
    return outputs.sum()


def loss_per_sample(outputs, targets):
    return nn.functional.cross_entropy(outputs, targets, reduction="none")


def loss_float(outputs, targets):
    return 1.0


def loss_that_raises(outputs, targets):
    return nn.functional.cross_entropy(outputs, targets.float().unsqueeze(0))


def error_rate(model: nn.Module, loader) -> float:
    """A metric whose lower value is better, declared as Optuna says it (``direction``)."""
    wrong = total = 0
    for x, y in loader:
        wrong += int((model(x).argmax(1) != y).sum())
        total += len(y)
    return wrong / max(1, total)


error_rate.direction = "minimize"


def bad_direction(model: nn.Module, loader) -> float:
    return 0.0


bad_direction.direction = "lower"
