"""Contract every shipped hardware profile must meet, and profile validation."""

import pytest
import torch

from autoprune.core.errors import AutopruneError, ConfigError
from autoprune.latency.measure import latency_for
from autoprune.latency.profiles import (
    DEFAULT_PROFILE,
    HardwareProfile,
    list_profiles,
    resolve_profile,
)
from tests.helpers import tiny_resnet


def test_registry_has_the_default():
    assert DEFAULT_PROFILE in list_profiles()


@pytest.mark.parametrize("name", list_profiles())
def test_profile_contract(name):
    profile = resolve_profile(name)
    assert profile.name == name  # the file name is the registry key
    assert profile.description
    quick = profile.model_copy(update={"batch_size": min(profile.batch_size, 8), "repeats": 3, "warmup": 1,
                                       "rounds": 3, "min_processes": 2, "max_processes": 2})
    from autoprune.latency.runtimes import missing

    if missing(profile.runtime_settings()) is not None:
        # part of the contract: a profile this machine cannot run is refused in one clear line
        with pytest.raises(AutopruneError, match=f"{name}.*needs .*(lacks|not installed)"):
            latency_for(tiny_resnet(), quick, input_shape=(1, 8, 8), arch_key=name)
        return
    calibration = None
    if profile.quantization == "static":  # part of the contract: INT8 calibration inputs are asked for by name
        with pytest.raises(AutopruneError, match=f"{name}.*quantizes statically.*calibration"):
            latency_for(tiny_resnet(), quick, input_shape=(1, 8, 8), arch_key=name)
        calibration = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    stats = latency_for(tiny_resnet(), quick, input_shape=(1, 8, 8), arch_key=name, calibration=calibration)
    assert 0 < stats.min_ms <= stats.p50_ms <= stats.p90_ms
    assert stats.profile == name and stats.method == profile.method
    if profile.method == "pooled":  # against the shipped anchor: two processes of three interleaved rounds
        assert stats.reference == "anchor" and stats.attempts == 2 and stats.repeats == 6
        assert stats.ci_low_ms <= stats.p50_ms <= stats.ci_high_ms
    else:
        assert stats.repeats == 3


def test_bad_profile_value_names_file_key_and_value(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("name: x\nbatch_size: 0\n")
    with pytest.raises(ConfigError) as info:
        HardwareProfile.load(path)
    assert f"{path}: batch_size: 0" in str(info.value)
    path.write_text("name: x\ngraph_optimization: turbo\n")
    with pytest.raises(ConfigError, match="graph_optimization: 'turbo'"):
        HardwareProfile.load(path)


def test_unknown_profile_lists_shipped_ones():
    with pytest.raises(AutopruneError, match="'gpu-9000'.*cpu-default"):
        resolve_profile("gpu-9000")


def test_missing_provider_is_refused_clearly():
    profile = HardwareProfile(name="cuda", provider="CUDAExecutionProvider")
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has CUDA")
    with pytest.raises(AutopruneError, match="CUDAExecutionProvider.*lacks"):
        latency_for(tiny_resnet(), profile, input_shape=(1, 8, 8), arch_key='cuda')
