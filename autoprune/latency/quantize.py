"""INT8 post-training quantization of an exported ONNX model (ONNX Runtime), and accuracy through ONNX Runtime."""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from autoprune.core.errors import AutopruneError

QUANTIZATION = ("none", "dynamic", "static")
_MODES = QUANTIZATION[1:]  # what quantize_onnx does; "none" means: do not call it
_DYNAMIC_CALIBRATION_BATCH = 64  # a dynamic-batch model has no batch of its own to calibrate with


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence ONNX Runtime's quantization tool for the duration: it logs through the root logger
    ("Please consider to run pre-processing", per-tensor notes) and its C++ sessions warn on stderr."""
    import onnxruntime as ort

    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    # Module-level logging.warning() calls basicConfig() when the root logger has no handler, which
    # would leave a stderr handler installed for the rest of the process; a NullHandler prevents that.
    added = logging.NullHandler() if not handlers else None
    if added is not None:
        root.addHandler(added)
    root.setLevel(logging.ERROR)
    # Process-wide and ORT has no getter to restore it from; 3 (error) is what autoprune's own
    # sessions use anyway (latency.py), so leaving it there changes nothing they would print.
    ort.set_default_logger_severity(3)
    try:
        yield
    finally:
        root.setLevel(level)
        if added is not None:
            root.removeHandler(added)


def _model_input(path: Path) -> tuple[str, list[int | None]]:
    """The graph input's name and shape (None for a symbolic dimension); initializers that old
    exporters also list as inputs are skipped."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {init.name for init in graph.initializer}
    inp = next(i for i in graph.input if i.name not in weights)
    dims = inp.type.tensor_type.shape.dim
    return inp.name, [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims]


class _Calibration:
    """ORT CalibrationDataReader over a tensor of samples: batches of exactly ``batch`` rows, the
    samples repeated cyclically to fill the last one (a fixed-batch model accepts no other size;
    repeating real samples, unlike zero padding, does not widen the activation ranges MinMax records)."""

    def __init__(self, name: str, samples: np.ndarray, batch: int) -> None:
        n = len(samples)
        total = -(-n // batch) * batch  # ceil to a multiple of the batch; at least one batch when n < batch
        rows = np.resize(samples, (total, *samples.shape[1:]))  # np.resize repeats cyclically
        self._feeds = iter([{name: rows[i:i + batch]} for i in range(0, total, batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def _calibration_array(calibration: torch.Tensor, shape: list[int | None]) -> np.ndarray:
    arr = np.ascontiguousarray(calibration.detach().cpu().numpy(), dtype=np.float32)
    want = shape[1:]
    if arr.ndim != len(shape) or any(w is not None and w != a for w, a in zip(want, arr.shape[1:])) or not len(arr):
        expected = "(N, " + ", ".join("?" if w is None else str(w) for w in want) + ")"
        raise AutopruneError(f"calibration samples have shape {tuple(arr.shape)}; the model needs {expected} "
                             "with N >= 1")
    return arr


def quantize_onnx(src: str | Path, dst: str | Path, *, mode: str, calibration: torch.Tensor | None = None) -> Path:
    """Write an INT8 version of the float ONNX model ``src`` to ``dst`` and return ``dst``.

    ``dynamic``: int8 weights, activations quantized at run time (no calibration). ``static``: QDQ
    format with activation ranges from ``calibration``, a float tensor of input samples (N, *input_shape).
    """
    if mode not in _MODES:
        raise AutopruneError(f"quantization mode {mode!r} is not one quantize_onnx performs; use one of "
                             f"{', '.join(_MODES)} ({QUANTIZATION[0]!r} means leave the model in float)")
    if mode == "static" and calibration is None:
        raise AutopruneError("static quantization needs calibration samples (a tensor of inputs, e.g. from "
                             "calibration_samples(dataset)); or use mode 'dynamic', which needs none")
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise AutopruneError(f"ONNX model {str(src)!r} not found; export it first (latency.export_onnx)")
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    dst.parent.mkdir(parents=True, exist_ok=True)
    with _quiet(), tempfile.TemporaryDirectory(prefix="autoprune-quant-") as tmp:
        model = src
        # Shape inference and graph optimisation (BN folding, constant folding) first, as ORT
        # recommends: a tensor of unknown shape is left unquantized. Optional: if it fails for any
        # reason, the model is quantized as exported.
        with contextlib.suppress(Exception):
            quant_pre_process(str(src), str(Path(tmp) / "pre.onnx"))
            model = Path(tmp) / "pre.onnx"
        out = Path(tmp) / "int8.onnx"  # written in full before dst is touched
        if mode == "dynamic":
            # Conv becomes ConvInteger and Gemm/MatMul MatMulInteger, with uint8 activations quantized
            # at run time (the only activation type dynamic mode has); Relu and pooling stay float.
            # ConvInteger with int8 weights has a CPU kernel in ORT 1.32 (older releases had none).
            quantize_dynamic(str(model), str(out), per_channel=True, weight_type=QuantType.QInt8)
        else:
            name, shape = _model_input(model)
            arr = _calibration_array(calibration, shape)  # type: ignore[arg-type] - checked above
            batch = shape[0] or min(len(arr), _DYNAMIC_CALIBRATION_BATCH)
            # QUInt8 activations with QInt8 weights (U8S8): what quantize_static's own guide (ORT 1.32,
            # "Choosing parameters for CPU inference") names for x86-64 CPUs, with or without VNNI;
            # symmetric QInt8 activations are its advice for ARM and for GPU/TensorRT. reduce_range
            # (7-bit weights) stays off: the guide suggests it only on pre-VNNI x86, against a risk of
            # saturation, and it costs weight precision everywhere else.
            quantize_static(str(model), str(out), _Calibration(name, arr, batch), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax)
        shutil.move(str(out), str(dst))
    return dst


def onnx_accuracy(path: str | Path, dataset: Dataset, *, batch_size: int = 256,
                  provider: str = "CPUExecutionProvider", threads: int = 0,
                  settings: dict | None = None) -> float:
    """Top-1 accuracy in [0, 1] of the ONNX model on ``dataset`` (pairs (x, y)), run with ONNX Runtime
    (``provider``, ``threads``; 0 lets it pick), or on the runtime ``settings`` name
    (``HardwareProfile.runtime_settings``: OpenVINO, say, at the target's precision).

    A model exported with a fixed batch gets exactly that many rows per run: the last one is padded
    with zeros and the padded rows' outputs are dropped.
    """
    from autoprune.latency.runtimes import Unavailable, open_session

    settings = settings or {"runtime": "onnxruntime", "provider": provider, "intra_op_threads": threads,
                            "inter_op_threads": 0, "graph_optimization": "all"}
    try:
        probe = open_session(str(path), settings, batch_size=1)
    except Unavailable as exc:
        raise AutopruneError(f"evaluating {Path(path).name} needs {exc}") from None
    fixed = None if probe.dynamic_batch else probe.input_shape[0]
    sessions: dict[int, Any] = {probe.input_shape[0]: probe}

    def session(rows: int):  # OpenVINO compiles one static shape: one session per batch size met
        if rows not in sessions:
            sessions[rows] = open_session(str(path), settings, batch_size=rows)
        return sessions[rows]

    # A loader batch that is a whole number of fixed batches, so each one splits into runs evenly.
    step = max(fixed, batch_size // fixed * fixed) if fixed else max(1, batch_size)
    correct = total = 0
    for x, y in DataLoader(dataset, batch_size=step):
        xs = np.ascontiguousarray(x.numpy(), dtype=np.float32)
        n = len(xs)
        chunk = fixed or n
        padded = -(-n // chunk) * chunk
        if padded > n:
            xs = np.concatenate([xs, np.zeros((padded - n, *xs.shape[1:]), dtype=np.float32)])
        logits = np.concatenate([session(chunk).run(xs[i:i + chunk]) for i in range(0, padded, chunk)])
        correct += int((logits[:n].argmax(1) == y.numpy()).sum())
        total += n
    return correct / max(1, total)


def calibration_samples(dataset: Dataset, *, count: int = 256, seed: int = 0) -> torch.Tensor:
    """``count`` inputs drawn without replacement from ``dataset`` (all of it if smaller), the same
    ones for the same seed, stacked into one tensor (count, *input_shape)."""
    if count < 1:
        raise AutopruneError(f"calibration sample count {count} is not valid; use at least 1 (256 is typical)")
    n = len(dataset)  # type: ignore[arg-type]
    if n == 0:
        raise AutopruneError("the dataset to draw calibration samples from is empty")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:count].tolist()
    return torch.stack([torch.as_tensor(dataset[i][0]) for i in order])
