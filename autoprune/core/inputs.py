"""What one sample fed to the model looks like: its shape, its dtype and, for integer inputs (token
ids), the bound of its values; for a model fed several named inputs of one shape (``input_ids`` with
its ``attention_mask``), their names, the main one first.

``InputSpec`` *is* the shape (a tuple of ints, like ``torch.Size``), so every caller that only needs
dimensions keeps reading it as a tuple; the dtype travels with it to where an example input is made
(``example``), exported (ONNX input types) and fed (timing feeds in the vocabulary's range).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from autoprune.core.errors import AutopruneError

if TYPE_CHECKING:  # torch is imported where an example is made: profiles load this module before any check
    import torch

FLOAT = "float32"
# dtypes an input may have: what a data loader yields for images/features (floats) and token ids (ints)
DTYPES = ("float32", "float16", "float64", "int64", "int32")


class InputSpec(tuple):
    """One sample's shape (the tuple's items) with ``dtype`` and ``high`` (integer inputs: values are
    drawn from ``[0, high)``; the vocabulary, or the range the data uses). ``names``: several inputs
    of this shape, given to the model as one dict (the data's samples are such dicts): ``names[0]`` is
    the main input (``dtype``, ``high``), the others its companions (``companion``)."""

    dtype: str
    high: int | None
    names: tuple[str, ...]

    def __new__(cls, dims: Iterable[int], *, dtype: str = FLOAT, high: int | None = None,  # noqa: PYI034
                names: Iterable[str] = ()) -> InputSpec:
        dims = tuple(int(d) for d in dims)
        if dtype not in DTYPES:
            raise AutopruneError(f"input dtype {dtype!r} is not supported; use one of {', '.join(DTYPES)}")
        self = super().__new__(cls, dims)
        self.dtype = dtype
        self.high = None if high is None or dtype.startswith("float") else max(1, int(high))
        self.names = tuple(names)
        return self

    def __reduce__(self):  # keeps dtype, high and names through pickling (Ray, multiprocessing)
        return (_rebuild, (tuple(self), self.dtype, self.high, self.names))

    def __repr__(self) -> str:
        text = f"{tuple(self)}" if self.dtype == FLOAT else f"{tuple(self)}:{self.dtype}"
        return f"{text} as {', '.join(self.names)}" if self.names else text

    @property
    def is_integer(self) -> bool:
        return not self.dtype.startswith("float")

    def example(self, batch: int = 1, *, seed: int = 0) -> torch.Tensor | dict[str, torch.Tensor]:
        """An input batch to trace, export and check with: zeros for float inputs (deterministic, as
        before dtypes were known), seeded ids in ``[0, high)`` for integer ones (zeros would be one token);
        with ``names``, a dict of the main input and its companions."""
        import torch

        if not self.is_integer:
            x = torch.zeros(batch, *self, dtype=getattr(torch, self.dtype))
        else:
            g = torch.Generator().manual_seed(seed)
            x = torch.randint(0, self.high or 2, (batch, *self), generator=g, dtype=getattr(torch, self.dtype))
        if not self.names:
            return x
        return {self.names[0]: x, **{n: torch.full_like(x, companion(n)) for n in self.names[1:]}}

    def record(self) -> dict[str, Any]:
        """The fields a run's config.yaml and a checkpoint keep (``from_record`` reads them back)."""
        return {"input_shape": list(self), "input_dtype": self.dtype, "input_high": self.high,
                "input_names": list(self.names) or None}


def companion(name: str) -> int:
    """The value an example (or a timing feed) gives a companion input: 1 for a mask (every token
    attended: a batch of full sequences), 0 for anything else (token type ids: one segment)."""
    return 1 if "mask" in name else 0


def _rebuild(dims: tuple[int, ...], dtype: str, high: int | None, names: tuple[str, ...] = ()) -> InputSpec:
    return InputSpec(dims, dtype=dtype, high=high, names=names)


def as_spec(shape: Iterable[int]) -> InputSpec:
    """An ``InputSpec`` as given, or a plain shape read as a float input (what every shape meant before)."""
    return shape if isinstance(shape, InputSpec) else InputSpec(shape)


def from_record(record: dict[str, Any]) -> InputSpec:
    return InputSpec(record["input_shape"], dtype=record.get("input_dtype") or FLOAT, high=record.get("input_high"),
                     names=record.get("input_names") or ())


MAIN_NAMES = ("input_ids", "pixel_values", "input_values", "inputs_embeds")  # what a model is mainly fed


def main_name(names: Iterable[str]) -> str:
    """Which of a sample's named inputs is the main one: Hugging Face's usual names first, else the first."""
    names = list(names)
    return next((n for n in MAIN_NAMES if n in names), names[0])


def of_sample(x: torch.Tensor | Mapping[str, torch.Tensor], *, samples: Iterable[Any] = ()) -> InputSpec:
    """The spec of one sample ``x`` (a data set's first); integer inputs get ``high`` from the largest
    id in ``x`` and ``samples`` (ids the data uses are ids the model accepts). A dict of named inputs of
    one shape (``input_ids``, ``attention_mask``) is read by its main input, the names kept."""
    if isinstance(x, Mapping):
        main = main_name(x)
        shapes = {n: tuple(v.shape) for n, v in x.items()}
        if len(set(shapes.values())) > 1:
            raise AutopruneError(f"the data's named inputs have different shapes {shapes}; autoprune takes named "
                                 "inputs of one shape (input_ids with its attention_mask)")
        spec = of_sample(x[main], samples=[s[main] for s in samples])
        return InputSpec(spec, dtype=spec.dtype, high=spec.high, names=[main, *(n for n in x if n != main)])
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


def to_device(x: Any, device: Any, **kwargs: Any) -> Any:
    """A batch's inputs on ``device``: one tensor, or each of a dict of named inputs."""
    if isinstance(x, Mapping):
        return {k: v.to(device, **kwargs) for k, v in x.items()}
    return x.to(device, **kwargs)
