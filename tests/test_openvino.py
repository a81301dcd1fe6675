"""OpenVINO as a target: its profiles time and score models through OpenVINO's own runtime, a
search measures every trial on ONNX Runtime and OpenVINO side by side, and a profile this machine
cannot run (or that mixes the runtimes' settings) is refused in one line."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn

from autoprune import apply, search
from autoprune.core.errors import AutopruneError, ConfigError
from autoprune.latency.measure import latency_for
from autoprune.latency.onnx import export_onnx
from autoprune.latency.profiles import HardwareProfile, resolve_profile
from autoprune.latency.quantize import onnx_accuracy
from autoprune.train.finetune import evaluate
from tests.conftest import ROOT, TINY_SINGLE
from tests.helpers import SHAPE, demo_space, tiny_resnet

pytest.importorskip("openvino", reason="the OpenVINO profiles need pip install 'autoprune[openvino]'")

TINY_OV = ROOT / "tests" / "profiles" / "tiny-openvino.yaml"


def _trained(digits) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                          nn.Flatten(), nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for x, y in torch.utils.data.DataLoader(digits.train, batch_size=64, shuffle=True,
                                            generator=torch.Generator().manual_seed(0)):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def test_openvino_f32_scores_what_torch_scores_and_bf16_is_flagged(digits, tmp_path):
    model = _trained(digits)
    path = export_onnx(model, tmp_path / "m.onnx", input_shape=SHAPE, batch_size=4)  # a fixed batch: padded rows
    f32 = HardwareProfile.load(TINY_OV)
    assert not f32.numerics_differ and f32.on_cpu
    torch_acc = evaluate(model, digits.val)
    assert 0.5 < torch_acc < 1.0  # a model whose accuracy can move
    assert onnx_accuracy(path, digits.val, settings=f32.runtime_settings()) == pytest.approx(torch_acc, abs=1e-9)
    default = f32.model_copy(update={"precision": None})  # the device's default (bf16 where the CPU has it)
    assert default.numerics_differ
    assert abs(onnx_accuracy(path, digits.val, settings=default.runtime_settings()) - torch_acc) <= 0.05


@pytest.mark.parametrize("name", ["openvino-cpu-b1", "tiny-openvino"])
def test_openvino_profile_times_through_openvino(name):
    profile = resolve_profile(TINY_OV if name == "tiny-openvino" else name)
    quick = profile.model_copy(update={"repeats": 3, "warmup": 1, "rounds": 3, "min_processes": 2, "max_processes": 2})
    stats = latency_for(tiny_resnet(), quick, input_shape=SHAPE, arch_key=f"ov-{name}")
    assert stats.profile == profile.name and 0 < stats.min_ms <= stats.p50_ms
    assert stats.ci_low_ms <= stats.p50_ms <= stats.ci_high_ms
    single = latency_for(tiny_resnet(), quick.model_copy(update={"method": "single"}), input_shape=SHAPE,
                         arch_key=f"ov-{name}-single")
    assert single.repeats == 3 and single.p50_ms > 0


def test_a_device_openvino_lacks_is_one_line():
    profile = HardwareProfile(name="npu", runtime="openvino", device="NO_SUCH_DEVICE")
    with pytest.raises(AutopruneError, match=r"profile 'npu' needs OpenVINO device NO_SUCH_DEVICE, which this "
                                             r"machine lacks; available: .*CPU"):
        latency_for(tiny_resnet(), profile, input_shape=SHAPE, arch_key="npu")


def test_settings_of_the_other_runtime_are_refused_with_file_and_key(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("name: x\nprecision: bf16\n")
    with pytest.raises(ConfigError, match=r"p\.yaml.*precision \(bf16\) is an OpenVINO setting; set runtime: openvino"):
        HardwareProfile.load(path)
    path.write_text("name: x\nruntime: openvino\nprovider: CUDAExecutionProvider\n")
    with pytest.raises(ConfigError, match=r"provider \(CUDAExecutionProvider\) and provider_options are ONNX Runtime settings"):
        HardwareProfile.load(path)
    path.write_text("name: x\nruntime: tensorflow\n")
    with pytest.raises(ConfigError, match="runtime: 'tensorflow'"):
        HardwareProfile.load(path)


def test_onnxruntime_profiles_keep_their_cache_keys():
    # Figures stored before OpenVINO came stay valid: an ONNX Runtime profile's key has no OpenVINO field.
    key = resolve_profile("cpu-1thread-b1").timing_key()
    assert "runtime" not in key and "precision" not in key and "CPUExecutionProvider" in key
    assert "'runtime', 'openvino'" in resolve_profile("openvino-cpu-b1").timing_key()


def test_a_search_budgeted_on_openvino_measures_each_trial_on_both_runtimes(ray_local, tmp_path):
    # OpenVINO primary (its budget, its pooled reference); ONNX Runtime beside it in one process per timing
    space = demo_space(tmp_path / "space.yaml", high=0.5, step=0.25)
    result = search(budget="0.9x", model="builtin:demo", space=space, profile=[TINY_OV, TINY_SINGLE], trials=3,
                    finetune_steps=2, bn_recalibration=2, confirm=0, out=tmp_path / "runs", quiet=True)
    done = pd.read_csv(result.run_dir / "trials.csv")
    measured = done[done["status"].isin(["completed", "infeasible"])]
    assert len(measured) >= 1
    # the two runtimes time the same plans differently (their kernels differ)
    assert not (measured["latency_p50_ms@tiny"] == measured["latency_p50_ms@tiny-openvino"]).any()
    for name in ("tiny", "tiny-openvino"):
        assert (measured[f"latency_p50_ms@{name}"] > 0).all(), name
        # each target's speedup against the MAC cut, and the plans whose cut bought nothing there
        assert (measured[f"speedup@{name}"] > 0).all() and f"not_faster_than@{name}" in measured
        assert measured[f"speedup_per_mac_cut@{name}"].tolist() == pytest.approx(
            (measured[f"speedup@{name}"] / measured["mac_cut"]).tolist())
    assert "Where MACs fell and latency did not" in (result.run_dir / "report.html").read_text()
    trial = measured["trial"].iloc[0]
    applied = apply(result.run_dir, pick=trial, epochs=0.1, out=tmp_path / "applied", quiet=True)
    assert applied.report["onnx_max_abs_diff"] <= 1e-4 and applied.onnx_path.is_file()
    for name in ("tiny", "tiny-openvino"):
        lat = applied.report["latency"][name]
        assert lat["speedup"] == pytest.approx(lat["unpruned_p50_ms"] / lat["applied"]["p50_ms"])


def test_openvino_not_installed_is_one_line_naming_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "openvino", None)  # what `import openvino` meets where it is not installed
    with pytest.raises(AutopruneError, match=r"profile 'openvino-cpu-b1' needs OpenVINO, which is not installed here "
                                             r"\(pip install 'autoprune\[openvino\]'\)"):
        latency_for(tiny_resnet(), resolve_profile("openvino-cpu-b1"), input_shape=SHAPE, arch_key="ov-missing")


def test_openvino_feeds_token_ids_below_the_files_bound(tmp_path):
    """An int64 input read through OpenVINO: its type and the ids' bound the export wrote (ONNX metadata)."""
    from autoprune.core.inputs import InputSpec
    from autoprune.latency.runtimes import open_session

    model = nn.Sequential(nn.Embedding(50, 8), nn.Flatten(), nn.Linear(32, 3)).eval()
    path = export_onnx(model, tmp_path / "ids.onnx", input_shape=InputSpec((4,), dtype="int64", high=50), batch_size=2)
    session = open_session(str(path), resolve_profile(TINY_OV).runtime_settings(), batch_size=2)
    feed = session.feed(seed=0)
    assert (session.dtype, session.high) == ("int64", 50)
    assert feed.dtype == "int64" and feed.max() < 50 and len(set(feed.ravel().tolist())) > 2
    assert session.run(feed).shape == (2, 3)
