"""The inference runtimes a profile runs a model on: ONNX Runtime (any execution provider) and OpenVINO.

One ``open_session(path, settings)`` for both, so a figure is timed the same way whichever runtime
the target ships with. ``settings`` is the plain dict a timing job carries
(``HardwareProfile.runtime_settings``): this module imports nothing from autoprune, because the
timing worker loads it by file path (that process must not import torch).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

_OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
               "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


class Unavailable(RuntimeError):
    """This machine cannot run the session asked for; the message is what it would need (it reads
    after "needs": "OpenVINO, which is not installed here ...")."""


class Session:
    """A model ready to run on its target: ``run(x)`` returns the first output; ``x`` is the main (first)
    input's array, or a dict of every input by name. ``input_shape`` has the batch it was opened with
    where the file's batch axis is dynamic (``dynamic_batch``); ``companions``: the other inputs' names
    and dtypes (an attention mask beside the token ids)."""

    def __init__(self, run: Any, input_shape: list[int], *, dynamic_batch: bool, dtype: str = "float32",
                 high: int | None = None, name: str = "input",
                 companions: tuple[tuple[str, str], ...] = ()) -> None:
        self._run, self.input_shape, self.dynamic_batch = run, input_shape, dynamic_batch
        self.dtype, self.high, self.name, self.companions = dtype, high, name, companions

    def run(self, x: Any) -> Any:
        return self._run(x if isinstance(x, dict) else {self.name: x})

    def feed(self, *, seed: int = 0) -> Any:
        """An input to time with: normal noise for float inputs, token ids below the file's recorded
        bound (``autoprune.input_high``; else 2) for integer ones; beside them, a mask of ones and
        zeros for any other input (core.inputs.companion: this module imports nothing from autoprune)."""
        import numpy as np

        rng = np.random.default_rng(seed)
        if self.dtype.startswith("float"):
            main = rng.standard_normal(self.input_shape).astype(self.dtype)
        else:
            main = rng.integers(0, self.high or 2, size=self.input_shape).astype(self.dtype)
        if not self.companions:
            return main
        return {self.name: main, **{n: np.full(self.input_shape, 1 if "mask" in n else 0, dtype=t)
                                    for n, t in self.companions}}


def missing(settings: dict[str, Any]) -> str | None:
    """Why this machine cannot run ``settings``, as the end of a sentence; None when it can."""
    runtime = settings.get("runtime", "onnxruntime")
    if runtime == "openvino":
        try:
            import openvino
        except ImportError:
            return "OpenVINO, which is not installed here (pip install 'autoprune[openvino]')"
        devices = openvino.Core().available_devices
        device = settings.get("device", "CPU")
        if not any(d == device or d.startswith(f"{device}.") for d in devices):
            return f"OpenVINO device {device}, which this machine lacks; available: {', '.join(devices) or '(none)'}"
        return None
    import onnxruntime as ort

    available = ort.get_available_providers()
    if settings["provider"] not in available:
        return f"ONNX Runtime provider {settings['provider']}, which this machine lacks; available: {', '.join(available)}"
    return None


def open_session(path: str, settings: dict[str, Any], *, batch_size: int) -> Session:
    """The ONNX file at ``path`` compiled for the target ``settings`` describe, at ``batch_size``
    where the file's batch axis is dynamic. Raises ``Unavailable`` where this machine cannot run it."""
    why = missing(settings)
    if why is not None:
        raise Unavailable(why)
    if settings.get("runtime", "onnxruntime") == "openvino":
        return _openvino(path, settings, batch_size=batch_size)
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = settings["intra_op_threads"]
    so.inter_op_num_threads = settings["inter_op_threads"]
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _OPT_LEVELS[settings["graph_optimization"]])
    so.log_severity_level = 3
    session = ort.InferenceSession(str(path), so, providers=providers(settings))
    if session.get_providers()[0] != settings["provider"]:
        # ONNX Runtime falls back to the next provider (to the CPU) with only a warning when a
        # provider's libraries (CUDA, TensorRT) do not load: a figure from there would be the wrong target's.
        raise Unavailable(f"ONNX Runtime provider {settings['provider']}, which listed itself but did not load "
                          f"here (its libraries: CUDA, cuDNN, TensorRT); the session ran on {session.get_providers()[0]}")
    inp, *others = session.get_inputs()
    shape = [d if isinstance(d, int) else batch_size for d in inp.shape]
    high = session.get_modelmeta().custom_metadata_map.get(INPUT_HIGH_KEY)
    return Session(lambda x: session.run(None, x)[0], shape, dynamic_batch=not isinstance(inp.shape[0], int),
                   dtype=_ORT_TYPES.get(inp.type, "float32"), high=int(high) if high else None, name=inp.name,
                   companions=tuple((o.name, _ORT_TYPES.get(o.type, "int64")) for o in others))


INPUT_HIGH_KEY = "autoprune.input_high"  # written by latency.onnx.export_onnx (token ids' bound)
_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
              "tensor(int64)": "int64", "tensor(int32)": "int32"}


def providers(settings: dict[str, Any]) -> list[Any]:
    """ONNX Runtime's provider list for ``settings``: the provider with its options; TensorRT with its
    engines cached (a build takes seconds to minutes: once per architecture, not per timing process)
    and CUDA behind it for the nodes TensorRT does not take."""
    name, options = settings["provider"], dict(settings.get("provider_options") or {})
    if name == "TensorrtExecutionProvider":
        # core.files.cache_dir's rule, written out: this module imports nothing from autoprune
        cache = Path(os.environ.get("AUTOPRUNE_CACHE", Path.home() / ".cache" / "autoprune")) / "tensorrt"
        options.setdefault("trt_engine_cache_enable", True)
        options.setdefault("trt_timing_cache_enable", True)
        options.setdefault("trt_engine_cache_path", str(cache))
        options.setdefault("trt_timing_cache_path", str(cache))
        Path(options["trt_engine_cache_path"]).mkdir(parents=True, exist_ok=True)
        return [(name, options), "CUDAExecutionProvider"]
    return [(name, options)] if options else [name]


def _openvino(path: str, settings: dict[str, Any], *, batch_size: int) -> Session:
    import openvino

    core = openvino.Core()
    model = core.read_model(str(path))
    partial = model.input(0).get_partial_shape()
    shape = [batch_size if d.is_dynamic else d.get_length() for d in partial]
    dynamic_batch = partial[0].is_dynamic
    if partial.is_dynamic:  # compiled for one static shape: what a deployed latency-bound model runs
        model.reshape({port: shape for port in model.inputs})  # named inputs share the main one's shape
    # LATENCY and one stream: one request at a time on the threads the profile gives (0: the
    # plugin's choice), as ONNX Runtime's intra-op threads do.
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
    if settings["intra_op_threads"]:
        config["INFERENCE_NUM_THREADS"] = settings["intra_op_threads"]
    if settings.get("precision"):
        config["INFERENCE_PRECISION_HINT"] = settings["precision"]
    compiled = core.compile_model(model, settings.get("device", "CPU"), config)
    request = compiled.create_infer_request()

    def run(x: dict[str, Any]) -> Any:
        request.infer(x)
        return request.get_output_tensor(0).data.copy()

    types = {"f32": "float32", "f16": "float16", "f64": "float64", "i64": "int64", "i32": "int32"}
    dtype = types.get(model.input(0).get_element_type().get_type_name(), "float32")
    key = ["framework", INPUT_HIGH_KEY]  # where OpenVINO's ONNX reader keeps the file's metadata
    high = int(model.get_rt_info(key).astype(str)) if dtype.startswith("int") and model.has_rt_info(key) else None
    companions = tuple((p.get_any_name(), types.get(p.get_element_type().get_type_name(), "int64"))
                       for p in model.inputs[1:])
    return Session(run, shape, dynamic_batch=dynamic_batch, dtype=dtype, high=high,
                   name=model.input(0).get_any_name(), companions=companions)
