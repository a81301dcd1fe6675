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


# --- a torchvision detector: RetinaNet's backbone + FPN + heads, with torchvision's own loss -------------


def _retinanet_full():
    import torchvision
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    torch.manual_seed(0)
    body = torchvision.models.resnet18(weights=None)
    backbone = BackboneWithFPN(body, return_layers={"layer2": "0", "layer3": "1", "layer4": "2"},
                               in_channels_list=[128, 256, 512], out_channels=64,
                               extra_blocks=LastLevelP6P7(64, 64))
    return torchvision.models.detection.RetinaNet(backbone, num_classes=CLASSES, min_size=SIZE, max_size=SIZE)


class RetinaCore(torch.nn.Module):
    """RetinaNet without its data-dependent ends (resizing, anchor matching, NMS): normalised images of
    one size in, per-anchor class logits and box deltas out, concatenated (N, anchors, classes + 4), a
    tensor of fixed shape that prunes, exports and times like any classifier's."""

    def __init__(self, full) -> None:
        super().__init__()
        self.backbone, self.head = full.backbone, full.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(list(self.backbone(x).values()))
        return torch.cat([out["cls_logits"], out["bbox_regression"]], -1)


def retinanet():
    return RetinaCore(_retinanet_full()).eval()


def _anchors() -> torch.Tensor:
    """One image's anchors, (anchors, 4) in pixels: the same for every image of the fixed size."""
    if "anchors" not in _CRITERION:
        from torchvision.models.detection.image_list import ImageList

        full = _retinanet_full().eval()
        with torch.no_grad():
            feats = list(full.backbone(torch.zeros(1, 3, SIZE, SIZE)).values())
        _CRITERION["retina"] = full
        _CRITERION["anchors"] = full.anchor_generator(ImageList(torch.zeros(1, 3, SIZE, SIZE), [(SIZE, SIZE)]), feats)[0]
    return _CRITERION["anchors"]


def _boxes(rows: torch.Tensor) -> dict[str, torch.Tensor]:
    rows = rows[rows[:, 0] >= 0]
    cx, cy, w, h = (rows[:, k] * SIZE for k in range(1, 5))
    return {"boxes": torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1), "labels": rows[:, 0].long()}


def retinanet_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """torchvision's RetinaNet loss (focal classification + box regression), anchors matched as it does."""
    from torchvision.ops import box_iou

    anchors = _anchors()
    full = _CRITERION["retina"]
    truth = [_boxes(rows) for rows in targets]
    matched = [full.proposal_matcher(box_iou(t["boxes"], anchors)) if len(t["boxes"])
               else torch.full((len(anchors),), -1, dtype=torch.long) for t in truth]
    head = {"cls_logits": outputs[..., :CLASSES], "bbox_regression": outputs[..., CLASSES:]}
    losses = full.head.compute_loss(truth, head, [anchors] * len(truth), matched)
    return losses["classification"] + losses["bbox_regression"]


def retinanet_map50(model, loader) -> float:
    """mAP@0.5 (torchmetrics) of the decoded boxes, after torchvision's batched NMS."""
    from torchmetrics.detection import MeanAveragePrecision
    from torchvision.ops import batched_nms

    anchors = _anchors()
    coder = _CRITERION["retina"].box_coder
    metric = MeanAveragePrecision(iou_thresholds=[0.5])
    with torch.no_grad():
        for x, t in loader:
            out = model(x)
            preds = []
            for o in out:
                scores, labels = o[:, :CLASSES].sigmoid().max(1)
                keep = scores.topk(min(300, len(scores))).indices
                boxes = coder.decode_single(o[keep, CLASSES:], anchors[keep]).clamp(0, SIZE)
                nms = batched_nms(boxes, scores[keep], labels[keep], 0.5)[:100]
                preds.append({"boxes": boxes[nms], "scores": scores[keep][nms], "labels": labels[keep][nms]})
            metric.update(preds, [_boxes(rows) for rows in t])
    return float(metric.compute()["map_50"])
