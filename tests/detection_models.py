"""A YOLO detector on a tiny synthetic detection set, with its own loss and mAP@0.5 (importable by Ray
workers as ``tests.detection_models:NAME``): what a user passes as ``--model``, ``--data``, ``--loss``
and ``--metric`` to search a detector. Random-init YOLOv8n (ultralytics, built offline from its yaml)
at 64 px, 2 classes: seconds per step on 2 cores."""

from __future__ import annotations

import os

import torch
from torch.utils.data import TensorDataset

os.environ.setdefault("YOLO_OFFLINE", "1")
SIZE, CLASSES, MAX_BOXES = 64, 2, 3


def yolo(cfg: str = "yolov8n.yaml"):
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    return DetectionModel(cfg, nc=CLASSES, verbose=False).eval()


def boxes_data() -> tuple[TensorDataset, TensorDataset]:
    """Noise images with 1-3 filled rectangles: class 0 bright in red, class 1 bright in blue. Targets
    per image: (MAX_BOXES, 5) rows of class, cx, cy, w, h (normalised), padded with class -1."""
    g = torch.Generator().manual_seed(0)
    n = 128
    x = torch.rand(n, 3, SIZE, SIZE, generator=g) * 0.3
    t = torch.full((n, MAX_BOXES, 5), -1.0)
    for i in range(n):
        for j in range(int(torch.randint(1, MAX_BOXES + 1, (1,), generator=g))):
            w, h = (int(v) for v in torch.randint(12, 28, (2,), generator=g))
            x0, y0 = int(torch.randint(0, SIZE - w, (1,), generator=g)), int(torch.randint(0, SIZE - h, (1,), generator=g))
            c = int(torch.randint(0, CLASSES, (1,), generator=g))
            x[i, 2 * c, y0:y0 + h, x0:x0 + w] = 1.0
            t[i, j] = torch.tensor([c, (x0 + w / 2) / SIZE, (y0 + h / 2) / SIZE, w / SIZE, h / SIZE])
    return TensorDataset(x[:96], t[:96]), TensorDataset(x[96:], t[96:])


_CRITERION: dict[str, object] = {}


def yolo_loss(outputs, targets: torch.Tensor) -> torch.Tensor:
    """ultralytics' own YOLOv8 loss (box, class, DFL; its default gains) on the training outputs, per image."""
    if "v8" not in _CRITERION:
        from ultralytics.cfg import get_cfg
        from ultralytics.utils import DEFAULT_CFG
        from ultralytics.utils.loss import v8DetectionLoss

        ref = yolo()  # strides, classes and DFL bins: what pruning never changes
        ref.args = get_cfg(DEFAULT_CFG)
        _CRITERION["v8"] = v8DetectionLoss(ref)
    b, j = (targets[..., 0] >= 0).nonzero(as_tuple=True)
    batch = {"batch_idx": b.float(), "cls": targets[b, j, 0].view(-1, 1), "bboxes": targets[b, j, 1:]}
    loss, _ = _CRITERION["v8"](outputs, batch)
    return loss.sum() / targets.shape[0]


def map50(model, loader) -> float:
    """mAP@0.5 (torchmetrics, COCO's definition) after ultralytics' NMS."""
    from torchmetrics.detection import MeanAveragePrecision
    from ultralytics.utils.nms import non_max_suppression

    metric = MeanAveragePrecision(iou_thresholds=[0.5])
    with torch.no_grad():
        for x, t in loader:
            out = model(x)
            dets = non_max_suppression(out[0] if isinstance(out, (tuple, list)) else out, conf_thres=0.001,
                                       iou_thres=0.6, max_det=100)
            preds = [{"boxes": d[:, :4], "scores": d[:, 4], "labels": d[:, 5].long()} for d in dets]
            truth = []
            for rows in t:
                rows = rows[rows[:, 0] >= 0]
                cx, cy, w, h = (rows[:, k] * x.shape[-1] for k in range(1, 5))
                truth.append({"boxes": torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1),
                              "labels": rows[:, 0].long()})
            metric.update(preds, truth)
    return float(metric.compute()["map_50"])
