"""Pruning × INT8: a search whose profile deploys INT8 times and evaluates the quantized model;
apply writes model.int8.onnx. Real ONNX Runtime quantization, real Ray, real Optuna."""

from __future__ import annotations

from pathlib import Path

import onnx
import pandas as pd
import pytest
import yaml

from autoprune import apply, search
from autoprune.core.errors import ConfigError
from autoprune.latency.profiles import HardwareProfile
from tests.conftest import TINY_SINGLE

INT8_PROFILE = str(Path(__file__).parent / "profiles" / "tiny-int8.yaml")


def test_a_search_on_an_int8_profile_writes_an_int8_front_and_apply_an_int8_model(ray_local, tmp_path):
    result = search(budget="0.8x@tiny-int8", model="builtin:demo", profile=[INT8_PROFILE, TINY_SINGLE], trials=2,
                    finetune_steps=5, seed_plans="uniform", out=tmp_path, quiet=True)
    base = result.baseline
    assert base["profiles"]["tiny-int8"]["quantization"] == "static"
    assert 0.5 < base["profiles"]["tiny-int8"]["accuracy"] <= 1  # the unpruned INT8 model, through ONNX Runtime
    trials = pd.read_csv(result.run_dir / "trials.csv")
    done = trials[trials["status"] == "completed"]
    assert len(done) >= 1
    # the objective is the INT8 model's accuracy; the float model's is beside it
    assert (done["accuracy"] == done["accuracy@tiny-int8"]).all()
    assert done["accuracy_float"].between(0, 1).all()
    assert (done["latency_p50_ms@tiny-int8"] > 0).all() and (done["latency_p50_ms@tiny"] > 0).all()
    front = pd.read_csv(result.run_dir / "pareto.csv")
    assert {"accuracy", "accuracy_float", "accuracy@tiny-int8"} <= set(front.columns)

    applied = apply(result.run_dir, pick=str(done.iloc[0]["trial"]), epochs=0.2, quiet=True)
    int8 = applied.report["int8"]
    path = Path(int8["file"])
    assert path.name == "model.int8.onnx" and path.is_file()
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert int8["size_bytes"] < int8["float_size_bytes"]
    assert abs(int8["accuracy"] - int8["accuracy_float"]) < 0.05
    assert int8["latency"]["tiny-int8"]["p50_ms"] > 0
    assert Path(applied.report["files"]["channels"]).stat().st_size > 0
    report = yaml.safe_load(applied.report_path.read_text())
    assert report["int8"]["quantization"] == "static"


def test_a_latency_table_cannot_predict_an_int8_profile():
    with pytest.raises(ConfigError, match="latency table predicts the float model"):
        from autoprune.core import config

        config.validate(HardwareProfile, {"name": "x", "quantization": "static", "latency_table": "t.yaml"},
                        source="x.yaml")
