"""What one sample fed to the model looks like: its shape, its dtype and, for integer inputs (token
ids), the bound of its values.

``InputSpec`` *is* the shape (a tuple of ints, like ``torch.Size``), so every caller that only needs
dimensions keeps reading it as a tuple; the dtype travels with it to where an example input is made
(``example``), exported (ONNX input types) and fed (timing feeds in the vocabulary's range).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from autoprune.core.errors import AutopruneError

if TYPE_CHECKING:  # torch is imported where an example is made: profiles load this module before any check
    import torch

FLOAT = "float32"
# dtypes an input may have: what a data loader yields for images/features (floats) and token ids (ints)
DTYPES = ("float32", "float16", "float64", "int64", "int32")


class InputSpec(tuple):
    """One sample's shape (the tuple's items) with ``dtype`` and ``high`` (integer inputs: values are
    drawn from ``[0, high)``; the vocabulary, or the range the data uses)."""

    dtype: str
    high: int | None

    def __new__(cls, dims: Iterable[int], *, dtype: str = FLOAT, high: int | None = None) -> InputSpec:  # noqa: PYI034
        dims = tuple(int(d) for d in dims)
        if dtype not in DTYPES:
            raise AutopruneError(f"input dtype {dtype!r} is not supported; use one of {', '.join(DTYPES)}")
        self = super().__new__(cls, dims)
        self.dtype = dtype
        self.high = None if high is None or dtype.startswith("float") else max(1, int(high))
        return self

    def __reduce__(self):  # keeps dtype and high through pickling (Ray, multiprocessing)
        return (_rebuild, (tuple(self), self.dtype, self.high))

    def __repr__(self) -> str:
        return f"{tuple(self)}" if self.dtype == FLOAT else f"{tuple(self)}:{self.dtype}"

    @property
    def is_integer(self) -> bool:
        return not self.dtype.startswith("float")

    def example(self, batch: int = 1, *, seed: int = 0) -> torch.Tensor:
        """An input batch to trace, export and check with: zeros for float inputs (deterministic, as
        before dtypes were known), seeded ids in ``[0, high)`` for integer ones (zeros would be one token)."""
        import torch

        if not self.is_integer:
            return torch.zeros(batch, *self, dtype=getattr(torch, self.dtype))
        g = torch.Generator().manual_seed(seed)
        return torch.randint(0, self.high or 2, (batch, *self), generator=g, dtype=getattr(torch, self.dtype))

    def record(self) -> dict[str, Any]:
        """The fields a run's config.yaml and a checkpoint keep (``from_record`` reads them back)."""
        return {"input_shape": list(self), "input_dtype": self.dtype, "input_high": self.high}


def _rebuild(dims: tuple[int, ...], dtype: str, high: int | None) -> InputSpec:
    return InputSpec(dims, dtype=dtype, high=high)


def as_spec(shape: Iterable[int]) -> InputSpec:
    """An ``InputSpec`` as given, or a plain shape read as a float input (what every shape meant before)."""
    return shape if isinstance(shape, InputSpec) else InputSpec(shape)


def from_record(record: dict[str, Any]) -> InputSpec:
    return InputSpec(record["input_shape"], dtype=record.get("input_dtype") or FLOAT, high=record.get("input_high"))


def of_sample(x: torch.Tensor, *, samples: Iterable[torch.Tensor] = ()) -> InputSpec:
    """The spec of one sample ``x`` (a data set's first); integer inputs get ``high`` from the largest
    id in ``x`` and ``samples`` (ids the data uses are ids the model accepts)."""
    dtype = str(x.dtype).removeprefix("torch.")
    if dtype not in DTYPES:
        raise AutopruneError(f"the data's inputs are {dtype}; autoprune takes {', '.join(DTYPES)}")
    spec = InputSpec(x.shape, dtype=dtype)
    if not spec.is_integer:
        return spec
    return InputSpec(x.shape, dtype=dtype, high=max([int(x.max())] + [int(s.max()) for s in samples]) + 1)


def parse(text: str) -> InputSpec:
    """``3,224,224`` (a float input) or ``128:int64`` (token ids); the error shows the form."""
    dims, _, dtype = text.partition(":")
    try:
        shape = tuple(int(d) for d in dims.split(","))
    except ValueError:
        raise AutopruneError(f"input shape {text!r} is not understood; write it like 3,224,224 "
                             "(or 128:int64 for token ids)") from None
    return InputSpec(shape, dtype=dtype.strip() or FLOAT)
