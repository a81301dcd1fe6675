"""Data sources: ``builtin:digits``, an ImageFolder directory, or ``package.module:function``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from autoprune.core.errors import AutopruneError
from autoprune.core.imports import import_callable
from autoprune.core.inputs import InputSpec, main_name, of_sample

DATA_HINT = ("use builtin:digits, builtin:fashion-mnist, an ImageFolder directory (optionally "
             "DIR?size=N&crop=N&mean=R,G,B&std=R,G,B&augment=false&workers=N), or package.module:function")


@dataclass(frozen=True)
class DataSplits:
    """Training and held-out validation datasets, with the shape of one input sample."""

    train: Dataset
    val: Dataset
    source: str
    search_val: Dataset | None = None  # a fixed subset of val that trials evaluate on (``with_val_samples``)
    workers: int = 0  # DataLoader worker processes that decode it (ImageFolder ``?workers=N``)
    preprocessing: dict | None = None  # how images are resized, cropped and normalised (recorded in config.yaml)

    @property
    def input_shape(self) -> InputSpec:
        """The first validation sample's shape and dtype (token ids: bounded by the largest id in the
        first samples of both splits)."""
        first = self.val[0][0]
        main = first[main_name(first)] if isinstance(first, Mapping) else first
        if main.dtype.is_floating_point:
            return of_sample(first)
        more = [self.val[i][0] for i in range(1, min(len(self.val), 256))]  # type: ignore[arg-type]
        more += [self.train[i][0] for i in range(min(len(self.train), 256))]  # type: ignore[arg-type]
        return of_sample(first, samples=more)

    @property
    def trial_val(self) -> Dataset:
        """What trials and the sensitivity analysis evaluate on: the subset when one is set, else val."""
        return self.val if self.search_val is None else self.search_val

    def with_val_samples(self, n: int | None, *, seed: int = 0) -> DataSplits:
        """Trials evaluate on a fixed, seeded subset of ``n`` validation samples (None or >= len: all)."""
        if n is None or n >= len(self.val):  # type: ignore[arg-type]
            return self
        if n < 1:
            raise AutopruneError(f"val_samples is {n}; it must be a positive number of samples")
        keep = torch.randperm(len(self.val), generator=torch.Generator().manual_seed(seed))[:n].tolist()  # type: ignore[arg-type]
        return replace(self, search_val=Subset(self.val, sorted(keep)))


def load_data(spec: str, *, seed: int = 0, preprocessing: dict | None = None) -> DataSplits:
    """Resolve a data spec into train and validation datasets (nothing is downloaded).

    ``preprocessing`` (``models.model_preprocessing``: the named weights' resize, crop, mean and std)
    is how an ImageFolder's images are prepared unless the spec's own options say otherwise."""
    spec = str(spec)
    if spec.startswith("builtin:"):
        name, _, query = spec.removeprefix("builtin:").partition("?")
        if name == "digits" and not query:
            return _digits(seed=seed)
        if name == "fashion-mnist":
            return _fashion_mnist(query=query, seed=seed, spec=spec)
        raise AutopruneError(f"data {spec!r}: unknown builtin dataset; use builtin:digits or "
                             "builtin:fashion-mnist[?train=N&val=N]")
    path, _, query = spec.partition("?")
    if Path(path).is_dir():
        return _image_folder(Path(path), query=query, seed=seed, spec=spec, preprocessing=preprocessing)
    if ":" in spec and not Path(path).exists():
        return _from_function(spec)
    raise AutopruneError(f"data {spec!r}: no such directory or function; {DATA_HINT}")


def _split(ds: Dataset, *, seed: int, val_fraction: float = 0.2) -> tuple[Subset, Subset]:
    n = len(ds)  # type: ignore[arg-type]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = max(1, round(n * val_fraction))
    return Subset(ds, perm[n_val:]), Subset(ds, perm[:n_val])


def _digits(*, seed: int) -> DataSplits:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = (x - 0.3) / 0.4  # roughly zero mean, unit variance
    y = torch.tensor(bunch.target, dtype=torch.long)
    train, val = _split(TensorDataset(x, y), seed=seed)
    return DataSplits(train=train, val=val, source="builtin:digits")


FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # Debian package dataset-fashion-mnist


def _idx(path: Path) -> torch.Tensor:
    """An idx file (gzip) as a uint8 tensor: the format MNIST and Fashion-MNIST ship in."""
    import gzip

    import numpy as np

    raw = gzip.decompress(path.read_bytes())
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return torch.from_numpy(np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims).copy())


def _fashion_mnist(*, query: str, seed: int, spec: str) -> DataSplits:
    """Fashion-MNIST from its Debian package (offline): a seeded subset of the 60k training images
    for training, of the 10k test images for validation (``?train=N&val=N``; default all)."""
    sizes = {"train": 60000, "val": 10000}
    for part in filter(None, query.split("&")):
        key, _, value = part.partition("=")
        if key not in sizes or not value.isdigit() or int(value) <= 0:
            raise AutopruneError(f"data {spec!r}: option {part!r} is not understood; use ?train=N&val=N "
                                 "(positive sample counts)")
        sizes[key] = int(value)
    root = Path(os.environ.get("AUTOPRUNE_FASHION_MNIST", FASHION_MNIST_DIR))
    names = {"train": "train", "val": "t10k"}
    splits = []
    gen = torch.Generator().manual_seed(seed)
    for split, prefix in names.items():
        images, labels = root / f"{prefix}-images-idx3-ubyte.gz", root / f"{prefix}-labels-idx1-ubyte.gz"
        if not images.is_file() or not labels.is_file():
            raise AutopruneError(f"data {spec!r}: {images} not found; install it with `apt-get install "
                                 "dataset-fashion-mnist`, or set AUTOPRUNE_FASHION_MNIST to its directory")
        x = _idx(images).unsqueeze(1).float() / 255.0
        x = (x - 0.286) / 0.353  # the training set's mean and standard deviation
        y = _idx(labels).long()
        keep = torch.randperm(len(y), generator=gen)[: sizes[split]]
        splits.append(TensorDataset(x[keep], y[keep]))
    return DataSplits(train=splits[0], val=splits[1], source=spec)


def _image_options(query: str, spec: str, preprocessing: dict | None) -> dict:
    opts: dict = {"size": 32, "crop": None, "mean": None, "std": None, "augment": True, "workers": 0, "from": "defaults"}
    if preprocessing:
        opts.update(preprocessing)
    usage = "options: size=N, crop=N, mean=R,G,B, std=R,G,B, augment=true|false, workers=N"
    for part in filter(None, query.split("&")):
        key, _, value = part.partition("=")
        try:
            if key in ("size", "crop", "workers"):
                opts[key] = int(value)
                if opts[key] < (0 if key == "workers" else 1):
                    raise ValueError
            elif key in ("mean", "std"):
                opts[key] = [float(v) for v in value.split(",")]
                if len(opts[key]) not in (1, 3) or (key == "std" and min(opts[key]) <= 0):
                    raise ValueError
            elif key == "augment" and value.lower() in ("true", "false"):
                opts[key] = value.lower() == "true"
            else:
                raise ValueError
        except ValueError:
            raise AutopruneError(f"data {spec!r}: option {part!r} is not understood; {usage}") from None
        opts["from"] = "data options" if opts["from"] == "defaults" else f"{opts['from']}, data options"
    opts["crop"] = opts["crop"] or opts["size"]
    return opts


def _image_folder(root: Path, *, query: str, seed: int, spec: str, preprocessing: dict | None = None) -> DataSplits:
    """Validation: resize, centre crop, normalise. Training adds a random resized crop and a flip
    (``augment=false`` turns them off). A model with named weights brings its own size and statistics."""
    from torchvision import datasets, transforms

    o = _image_options(query, spec, preprocessing)
    tail = [transforms.ToTensor()]
    if o["mean"] is not None and o["std"] is not None:
        tail.append(transforms.Normalize(o["mean"], o["std"]))
    val_tf = transforms.Compose([transforms.Resize(o["size"] if o["crop"] != o["size"] else (o["size"], o["size"])),
                                 transforms.CenterCrop(o["crop"]), *tail])
    train_tf = (transforms.Compose([transforms.RandomResizedCrop(o["crop"], scale=(0.35, 1.0)),
                                    transforms.RandomHorizontalFlip(), *tail]) if o["augment"] else val_tf)
    info = {k: o[k] for k in ("size", "crop", "mean", "std", "augment", "from")}
    try:
        if (root / "train").is_dir() and (root / "val").is_dir():
            return DataSplits(train=datasets.ImageFolder(str(root / "train"), transform=train_tf),
                              val=datasets.ImageFolder(str(root / "val"), transform=val_tf),
                              source=spec, workers=o["workers"], preprocessing=info)
        full_train = datasets.ImageFolder(str(root), transform=train_tf)
        full_val = datasets.ImageFolder(str(root), transform=val_tf)
    except (FileNotFoundError, RuntimeError) as exc:
        raise AutopruneError(f"data {spec!r}: not an ImageFolder ({exc}); use DIR/CLASS/IMAGE files") from None
    # One split, two views: training images augmented, validation images not.
    train, _ = _split(full_train, seed=seed)
    _, val = _split(full_val, seed=seed)
    return DataSplits(train=train, val=val, source=spec, workers=o["workers"], preprocessing=info)


def _from_function(spec: str) -> DataSplits:
    from autoprune.core.usercode import described

    result = import_callable(spec, what="data")()
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        got = f"{len(result)} values" if isinstance(result, (tuple, list)) else described(result)
        raise AutopruneError(f"data {spec!r}: the function returned {got}; it must return two datasets, "
                             "(train_dataset, val_dataset)")
    splits = DataSplits(train=result[0], val=result[1], source=spec)
    check_splits(splits)
    return splits


def check_splits(splits: DataSplits) -> None:
    """Each split a non-empty dataset of ``(input tensor, target)`` samples, both of one input shape:
    what every trial, fine-tune and measurement reads."""
    from autoprune.core.usercode import described

    spec, shapes = splits.source, {}
    for name, ds in (("train", splits.train), ("validation", splits.val)):
        try:
            n = len(ds)  # type: ignore[arg-type]
            sample = ds[0] if n else None
        except Exception as exc:  # the user's dataset's own __len__ or __getitem__
            from autoprune.core.usercode import UserCodeError, describe_exception

            raise UserCodeError(f"data {spec!r}: reading the {name} dataset's first sample raised "
                                f"{describe_exception(exc)}") from exc
        if not n:
            raise AutopruneError(f"data {spec!r}: the {name} dataset is empty; it needs samples")
        if not (isinstance(sample, (tuple, list)) and len(sample) == 2 and _inputs(sample[0])):
            raise AutopruneError(f"data {spec!r}: a {name} sample is {described(sample)}; each sample must be "
                                 "(input tensor, target), as a TensorDataset or ImageFolder gives, or (dict of "
                                 "named input tensors, target) for a model fed several (input_ids, attention_mask)")
        shapes[name] = _shape(sample[0])
    if shapes["train"] != shapes["validation"]:
        raise AutopruneError(f"data {spec!r}: train inputs have shape {shapes['train']} but validation inputs "
                             f"{shapes['validation']}; both splits must give inputs of one shape")


def _inputs(x: Any) -> bool:
    """A sample's input: one tensor, or a dict of named tensors."""
    return isinstance(x, torch.Tensor) or (isinstance(x, Mapping) and bool(x)
                                            and all(isinstance(v, torch.Tensor) for v in x.values()))


def _shape(x: Any) -> tuple:
    return tuple(x.shape) if isinstance(x, torch.Tensor) else tuple((k, tuple(v.shape)) for k, v in x.items())
