"""Non-maximum suppression exactly as PixelLib gets it from detectron2 and torchvision.

The plain-torch kernel below reproduces torchvision's CPU ``nms`` (stable descending sort,
float32 IoU without +1, strict ``>`` against the double threshold); when torchvision's
compiled ops load, its kernel is used instead. :func:`batched_nms` reproduces torchvision's
choice between the coordinate-offset trick and the per-id loop, which decides near-ties.
"""
from __future__ import annotations

import numpy as np
import torch


def _tv(device: torch.device):
    from pixellib.model.ops import torchvision_ops  # the one switch, shared with RoIAlign

    return torchvision_ops(device)


def pairwise_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU matrix (N, M) computed as torchvision's NMS kernel does (no +1, float32)."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_a[:, None] + area_b[None, :] - inter)


# ----------------------------------------------------------------------------- NMS

# torchvision's batched_nms shifts boxes per id and runs one NMS when boxes.numel() is at
# most this (CPU) or _TRICK_LIMIT_OTHER (any other device), else it loops over the ids.
_TRICK_LIMIT_CPU = 4000
_TRICK_LIMIT_OTHER = 100_000
# PixelLib's own wrapper loops over ids itself from this many boxes up.
_WRAPPER_LOOP_FROM = 40000
# The plain kernel builds an N x N IoU matrix: above this many shifted boxes (only off the
# CPU, where the trick runs up to 25000 boxes: gigabytes) it runs per id instead.
_DENSE_NMS_MAX = 1000


def _strictly_above(threshold: float) -> float:
    """The float32 ``t`` with ``x > t`` (float32) exactly when ``x > threshold`` (double):
    torchvision's kernel compares the float IoU with the double threshold."""
    t = np.float32(threshold)
    if float(t) > threshold:
        t = np.nextafter(t, np.float32(-np.inf))
    return float(t)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS. Returns kept indices (int64), by descending score.

    A box is suppressed by any higher-scoring kept box with IoU > ``iou_threshold``; equal
    scores keep their input order (a stable sort, as torchvision's CPU kernel).
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    tv = _tv(boxes.device)
    if tv is not None:
        return tv.nms(boxes.float(), scores.float(), iou_threshold)
    order = torch.sort(scores, stable=True, descending=True).indices
    sorted_boxes = boxes[order].float()
    # over[i, j]: box j (later in score order) would be suppressed by box i.
    iou = pairwise_iou(sorted_boxes, sorted_boxes)
    over = (iou > _strictly_above(iou_threshold)).triu_(1).cpu().numpy()
    removed = over[0] & False
    keep = []
    for i in range(len(over)):
        if not removed[i]:
            keep.append(i)
            removed |= over[i]
    return order[torch.as_tensor(keep, dtype=torch.int64, device=order.device)]


def _nms_per_id(boxes, scores, ids, iou_threshold):
    """Indices kept by NMS within each id, in ascending index order."""
    keep_mask = torch.zeros_like(scores, dtype=torch.bool)
    for i in torch.unique(ids).tolist():
        idx = torch.nonzero(ids == i).view(-1)
        keep_mask[idx[nms(boxes[idx], scores[idx], iou_threshold)]] = True
    return torch.nonzero(keep_mask).view(-1)


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, ids: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """NMS within each id (class or FPN level); kept indices by descending score.

    Exactly what PixelLib gets from detectron2 + torchvision, including its rounding: for
    small inputs (``boxes.numel()`` up to 4000 on the CPU, 100000 elsewhere) every box is
    shifted by ``id * (max_coordinate + 1)`` in float32 and one NMS runs over all of them.
    The shift rounds coordinates (around 80000, float32 steps are 1/128 px), which can flip
    IoU decisions that sit near the threshold, so this is not the same as NMS per id. Larger
    inputs go through the per-id loop.
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    if len(boxes) >= _WRAPPER_LOOP_FROM:  # PixelLib's wrapper, on the boxes' own dtype
        keep = _nms_per_id(boxes, scores, ids, iou_threshold)
        return keep[scores[keep].argsort(descending=True)]
    boxes = boxes.float()
    limit = _TRICK_LIMIT_CPU if boxes.device.type == "cpu" else _TRICK_LIMIT_OTHER
    if boxes.numel() > limit:
        keep = _nms_per_id(boxes, scores, ids, iou_threshold)
        return keep[scores[keep].sort(descending=True)[1]]
    offsets = ids.to(boxes) * (boxes.max() + torch.tensor(1).to(boxes))
    shifted = boxes + offsets[:, None]
    if len(boxes) <= _DENSE_NMS_MAX or _tv(boxes.device) is not None:
        return nms(shifted, scores, iou_threshold)
    # Shifted boxes of different ids never overlap (coordinates are >= 0 and each id's range
    # starts past the previous one's largest coordinate; rounding is monotonic), so one NMS
    # over all of them keeps exactly what NMS within each id keeps, on the same rounded
    # coordinates. Their order: descending score, equal scores by index, as one NMS gives.
    keep = _nms_per_id(shifted, scores, ids, iou_threshold)
    return keep[torch.sort(scores[keep], stable=True, descending=True).indices]
