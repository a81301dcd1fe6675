"""The NVIDIA targets (cuda-b1, tensorrt-fp16-b1, tensorrt-int8-b1): what their ONNX Runtime sessions
are asked for, here; their figures on a machine that has the GPU and onnxruntime-gpu (skipped elsewhere)."""

from __future__ import annotations

import pytest
import torch

from autoprune.latency.measure import latency_for
from autoprune.latency.profiles import resolve_profile
from autoprune.latency.runtimes import missing, providers
from tests.helpers import tiny_resnet

GPU_PROFILES = ("cuda-b1", "tensorrt-fp16-b1", "tensorrt-int8-b1")


def test_tensorrt_engines_are_cached_and_cuda_takes_the_rest(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOPRUNE_CACHE", str(tmp_path))
    (trt, options), cuda = providers(resolve_profile("tensorrt-int8-b1").runtime_settings())
    assert trt == "TensorrtExecutionProvider" and cuda == "CUDAExecutionProvider"
    assert options["trt_int8_enable"] and options["trt_fp16_enable"] and options["trt_engine_cache_enable"]
    assert options["trt_engine_cache_path"] == str(tmp_path / "tensorrt") and (tmp_path / "tensorrt").is_dir()
    mine = resolve_profile("tensorrt-fp16-b1").model_copy(
        update={"provider_options": {"trt_fp16_enable": True, "trt_engine_cache_path": str(tmp_path / "mine")}})
    assert providers(mine.runtime_settings())[0][1]["trt_engine_cache_path"] == str(tmp_path / "mine")
    assert providers(resolve_profile("cpu-1thread-b1").runtime_settings()) == ["CPUExecutionProvider"]


def test_provider_options_are_part_of_what_a_figure_depends_on():
    fp16, int8 = resolve_profile("tensorrt-fp16-b1"), resolve_profile("tensorrt-int8-b1")
    assert "trt_fp16_enable" in fp16.timing_key() and "trt_int8_enable" in int8.timing_key()
    assert fp16.channel_block == 8 and int8.channel_block == 32


@pytest.mark.parametrize("name", GPU_PROFILES)
def test_a_gpu_profile_times_on_its_provider(name):
    profile = resolve_profile(name)
    if missing(profile.runtime_settings()) is not None or not torch.cuda.is_available():
        pytest.skip(f"{name} needs an NVIDIA GPU and onnxruntime-gpu (with TensorRT for tensorrt-*)")
    quick = profile.model_copy(update={"repeats": 5, "warmup": 3, "rounds": 5, "min_processes": 2,
                                       "max_processes": 2})
    calibration = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(0)) if profile.quantized else None
    stats = latency_for(tiny_resnet(), quick, input_shape=(1, 8, 8), arch_key=f"gpu-{name}", calibration=calibration)
    assert stats.profile == name and 0 < stats.min_ms <= stats.p50_ms
    assert stats.ci_low_ms <= stats.p50_ms <= stats.ci_high_ms
