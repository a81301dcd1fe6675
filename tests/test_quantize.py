"""INT8 quantization with ONNX Runtime, and accuracy through ONNX Runtime, on a tiny CNN trained on digits."""

from __future__ import annotations

import onnx
import pytest
import torch
from torch import nn

from autoprune.core.errors import AutopruneError
from autoprune.latency.onnx import export_onnx
from autoprune.latency.quantize import (
    QUANTIZATION,
    calibration_samples,
    onnx_accuracy,
    quantize_onnx,
)
from autoprune.train.finetune import evaluate
from tests.helpers import SHAPE

BATCH = 4  # does not divide the 359 validation digits: the last batch is padded


def _cnn() -> nn.Module:
    # 64 channels so conv weights dominate the file and int8 is clearly smaller than float.
    return nn.Sequential(nn.Conv2d(1, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
                         nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(256, 10))


@pytest.fixture(scope="module")
def trained(digits):
    torch.manual_seed(0)
    model = _cnn()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    loader = torch.utils.data.DataLoader(digits.train, batch_size=64, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    model.train()
    for _ in range(3):  # 3 epochs of 23 steps: about 95 % on digits
        for x, y in loader:
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def files(trained, digits, tmp_path_factory):
    d = tmp_path_factory.mktemp("quant")
    fp32 = export_onnx(trained, d / "fp32.onnx", input_shape=SHAPE, batch_size=BATCH)
    calib = calibration_samples(digits.train, count=50)  # 50 is not a multiple of the batch either
    return {"fp32": fp32,
            "dynamic": quantize_onnx(fp32, d / "dyn.onnx", mode="dynamic"),
            "static": quantize_onnx(fp32, d / "static.onnx", mode="static", calibration=calib)}


def test_quantized_files_are_smaller(files):
    float_size = files["fp32"].stat().st_size
    for mode in ("dynamic", "static"):
        assert files[mode].is_file()
        assert files[mode].stat().st_size < 0.5 * float_size, mode


def test_static_is_qdq_and_dynamic_uses_integer_ops(files):
    static_ops = {n.op_type for n in onnx.load(str(files["static"])).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= static_ops
    dynamic_ops = {n.op_type for n in onnx.load(str(files["dynamic"])).graph.node}
    assert "ConvInteger" in dynamic_ops and "Conv" not in dynamic_ops


def test_float_onnx_accuracy_matches_torch_with_padded_fixed_batch(files, trained, digits):
    assert len(digits.val) % BATCH != 0
    torch_acc = evaluate(trained, digits.val)
    assert torch_acc > 0.9
    for batch_size in (256, 3, 1):  # loader batches that are, are not, and are smaller than, the fixed batch
        assert abs(onnx_accuracy(files["fp32"], digits.val, batch_size=batch_size) - torch_acc) <= 1e-6


def test_onnx_accuracy_with_dynamic_batch(trained, digits, tmp_path):
    path = export_onnx(trained, tmp_path / "dyn_batch.onnx", input_shape=SHAPE, batch_size=BATCH, dynamic_batch=True)
    assert abs(onnx_accuracy(path, digits.val, batch_size=100, threads=1) - evaluate(trained, digits.val)) <= 1e-6


def test_int8_accuracy_close_to_float(files, digits):
    float_acc = onnx_accuracy(files["fp32"], digits.val)
    assert abs(onnx_accuracy(files["static"], digits.val) - float_acc) <= 0.05
    assert abs(onnx_accuracy(files["dynamic"], digits.val) - float_acc) <= 0.05


def test_static_with_fewer_samples_than_the_batch(files, digits, tmp_path):
    out = quantize_onnx(files["fp32"], tmp_path / "few.onnx", mode="static",
                        calibration=calibration_samples(digits.train, count=BATCH - 1))
    assert onnx_accuracy(out, digits.val) > 0.5


def test_calibration_samples_are_seeded(digits):
    a = calibration_samples(digits.train, count=16, seed=3)
    assert a.shape == (16, *SHAPE)
    assert torch.equal(a, calibration_samples(digits.train, count=16, seed=3))
    assert not torch.equal(a, calibration_samples(digits.train, count=16, seed=4))
    assert len(calibration_samples(digits.val, count=10_000)) == len(digits.val)


@pytest.mark.parametrize("mode", ["none", "int4"])
def test_bad_mode_is_refused(files, tmp_path, mode):
    assert "none" in QUANTIZATION
    with pytest.raises(AutopruneError, match=rf"quantization mode '{mode}' .*dynamic, static"):
        quantize_onnx(files["fp32"], tmp_path / "x.onnx", mode=mode)
    assert not (tmp_path / "x.onnx").exists()


def test_static_without_calibration_is_refused(files, tmp_path):
    with pytest.raises(AutopruneError, match="static quantization needs calibration samples"):
        quantize_onnx(files["fp32"], tmp_path / "x.onnx", mode="static")


def test_calibration_of_the_wrong_shape_is_refused(files, tmp_path):
    with pytest.raises(AutopruneError, match=r"shape \(5, 3, 8, 8\); the model needs \(N, 1, 8, 8\)"):
        quantize_onnx(files["fp32"], tmp_path / "x.onnx", mode="static", calibration=torch.zeros(5, 3, 8, 8))


def test_static_without_pre_processing_and_with_dynamic_batch(trained, digits, tmp_path, monkeypatch):
    from onnxruntime.quantization import shape_inference

    def broken(*args, **kwargs):
        raise RuntimeError("shape inference failed")

    monkeypatch.setattr(shape_inference, "quant_pre_process", broken)  # falls back to the model as exported
    path = export_onnx(trained, tmp_path / "dyn_batch.onnx", input_shape=SHAPE, batch_size=BATCH, dynamic_batch=True)
    out = quantize_onnx(path, tmp_path / "int8.onnx", mode="static", calibration=calibration_samples(digits.train))
    assert "QuantizeLinear" in {n.op_type for n in onnx.load(str(out)).graph.node}
    assert abs(onnx_accuracy(out, digits.val) - onnx_accuracy(path, digits.val)) <= 0.05
