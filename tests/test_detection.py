"""YOLO detectors (issue 24): the C2f/C3k2 split channels pruned (not left out), the left-out check
judged on the prediction (not on the feature maps Detect returns beside it), and a detector searched
with its own loss and a torchmetrics mAP, then applied."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("ultralytics")
pytest.importorskip("torchmetrics")

from autoprune.latency.onnx import export_onnx, onnx_outputs
from autoprune.load.adapt import SplitCSP, SplitPSA, adapt
from autoprune.load.models import load_model
from autoprune.prune.engine import prune, unprunable_groups
from autoprune.prune.groups import find_groups
from autoprune.prune.plan import Plan
from tests.detection_models import SIZE, boxes_data, map50, yolo, yolo_loss

SHAPE = (3, SIZE, SIZE)


@pytest.mark.parametrize("cfg", ["yolov8n.yaml", "yolo11n.yaml"])
def test_split_csp_blocks_compute_what_the_chunked_ones_did(cfg):
    original = yolo(cfg)
    x = torch.randn(2, *SHAPE)
    with torch.no_grad():
        want = original(x)[0]
        adapted = adapt(yolo(cfg))
        assert any(isinstance(m, SplitCSP) for m in adapted.modules())
        assert any(isinstance(m, SplitPSA) for m in adapted.modules()) == (cfg == "yolo11n.yaml")  # C2PSA
        torch.testing.assert_close(adapted(x)[0], want)


@pytest.fixture(scope="module")
def detector():
    return load_model("tests.detection_models:yolo")  # adapted as any loaded model is


def test_split_halves_are_groups_that_prune_and_match_onnx(detector, tmp_path):
    groups = {g.name: g for g in find_groups(detector, input_shape=SHAPE)}
    halves = [n for n in groups if ".cv0." in n or (".cv1." in n and n.replace(".cv1.", ".cv0.") in groups)]
    assert len(halves) >= 16, sorted(groups)  # both halves of every C2f block: 8 blocks in YOLOv8n
    necks = ["model.15.cv2.conv", "model.18.cv2.conv", "model.21.cv2.conv"]  # they feed Detect
    picked = [g for g in groups.values() if g.name in halves[:4] + necks]
    assert unprunable_groups(detector, picked, input_shape=SHAPE, ratios=(0.5,)) == {}
    # Detect's last convs (model.22.cv2.i.2 / cv3.i.2) give the prediction's channels: init_space's check
    # leaves them out; every other group prunes at once.
    body = [n for n in groups if not (n.startswith("model.22.") and n.endswith(".2"))]
    pruned = prune(detector, Plan(ratios={n: 0.4 for n in body}, round_to=8), input_shape=SHAPE)
    assert sum(p.numel() for p in pruned.parameters()) < 0.6 * sum(p.numel() for p in detector.parameters())
    x = torch.randn(1, *SHAPE)
    with torch.no_grad():
        y = pruned(x)[0]
    path = export_onnx(pruned, tmp_path / "yolo.onnx", input_shape=SHAPE, batch_size=1)
    np.testing.assert_allclose(onnx_outputs(path, x), y.numpy(), atol=1e-3, rtol=1e-4)


def test_yolo_loss_trains_and_map_scores(detector):
    train, val = boxes_data()
    x, t = train[:8]
    loss = yolo_loss(detector.train()(x), t)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss) and loss > 0
    detector.eval().zero_grad(set_to_none=True)
    score = map50(detector, torch.utils.data.DataLoader(val, batch_size=16))
    assert 0.0 <= score <= 1.0


def test_a_detector_searches_and_applies(tmp_path):
    from autoprune import apply, search
    from autoprune.core.records import Status
    from tests.conftest import TINY_SINGLE

    # Every group but Detect's own (init_space's check would take 40 s to find its last convs left out)
    groups = [g.name for g in find_groups(load_model("tests.detection_models:yolo"), input_shape=SHAPE)
              if not g.name.startswith("model.22.")]
    space = tmp_path / "space.yaml"
    space.write_text("round_to: 8\ngroups:\n" + "".join(f"  {g}: {{low: 0.0, high: 0.5, step: 0.25}}\n" for g in groups))
    result = search(budget="0.8x", model="tests.detection_models:yolo", data="tests.detection_models:boxes_data",
                    metric="tests.detection_models:map50", loss="tests.detection_models:yolo_loss", space=space,
                    profile=TINY_SINGLE, trials=2, finetune_steps=2, confirm=0, landing_moves=0,
                    seed_plans="uniform", out=tmp_path, quiet=True)
    done = result.trials[result.trials["status"] == Status.COMPLETED]
    assert len(done) >= 1, result.trials[["trial", "status", "error"]].to_string()
    assert done["accuracy"].between(0.0, 1.0).all()
    applied = apply(result.run_dir, epochs=0.1, quiet=True)
    assert applied.onnx_path.is_file() and applied.model_path.is_file()
    again = load_model(str(applied.model_path))
    x = torch.randn(1, *SHAPE)
    with torch.no_grad():
        np.testing.assert_allclose(onnx_outputs(applied.onnx_path, x), again(x)[0].numpy(), atol=1e-3, rtol=1e-4)


def test_a_torchvision_detector_core_searches_with_its_own_loss(tmp_path):
    """RetinaNet's backbone + FPN + heads (anchors, matching and NMS left to the loss and the metric):
    every group found, none left out, searched with torchvision's focal + box loss."""
    from autoprune import search
    from autoprune.core.records import Status
    from tests.conftest import TINY_SINGLE

    result = search(budget="0.8x", model="tests.detection_models:retinanet", data="tests.detection_models:boxes_data",
                    metric="tests.detection_models:retinanet_map50", loss="tests.detection_models:retinanet_loss",
                    profile=TINY_SINGLE, trials=1, finetune_steps=2, bn_recalibration=2, confirm=0, landing_moves=0,
                    seed_plans="uniform", precheck=False, out=tmp_path, quiet=True)  # trained whatever the noise says
    assert result.trials["status"].iloc[0] == Status.COMPLETED, result.trials[["status", "error"]].to_string()
    assert 0.0 <= result.trials["accuracy"].iloc[0] <= 1.0
    space = (result.run_dir / "space.yaml").read_text()
    assert "backbone.body.layer1.0.conv1" in space and "head.classification_head.conv.0.0" in space
    assert "left_out: {}" in space
