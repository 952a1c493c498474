"""Box branch of the R-CNN head: multi-level RoIAlign, two FC layers, class scores and
class-specific box deltas, then score filtering and per-class NMS (Girshick 2015 "Fast
R-CNN"; detectron2 ``modeling/roi_heads/{roi_heads,box_head,fast_rcnn}.py``;
docs/design.md, "Box head").
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import ops
from .layers import derived_weight


def assign_fpn_levels(
    boxes: torch.Tensor, min_level: int = 2, max_level: int = 5, canonical_size: float = 224.0,
    canonical_level: int = 4,
) -> torch.Tensor:
    """FPN level of each box, eq. (1) of Lin et al. 2017: ``floor(4 + log2(sqrt(area)/224))``
    clamped to [min_level, max_level], in float32 with detectron2's 1e-8."""
    sizes = torch.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    levels = torch.floor(canonical_level + torch.log2(sizes / canonical_size + 1e-8))
    return levels.clamp(min=min_level, max=max_level).long()


def multilevel_roi_align(
    features: list[torch.Tensor], boxes: torch.Tensor, *, output_size: int = 7,
    min_level: int = 2,
) -> torch.Tensor:
    """ROIAlignV2 of each box from its FPN level; (R, C, S, S), channels-last memory."""
    levels = assign_fpn_levels(boxes, min_level, min_level + len(features) - 1)
    c = features[0].shape[1]
    out = features[0].new_empty((len(boxes), output_size, output_size, c))
    for i, fmap in enumerate(features):
        idx = torch.nonzero(levels == min_level + i).view(-1)
        ops.roi_align_into(out, idx, fmap, boxes[idx], spatial_scale=1.0 / 2 ** (min_level + i),
                           sampling_ratio=0, aligned=True)
    return out.permute(0, 3, 1, 2)


class FastRCNNConvFCHead(nn.Module):
    """Flatten (C, 7, 7) then fc1 + ReLU, fc2 + ReLU.

    RoIAlign's result is channels-last, whose (S, S, C) flattening is free while the (C, S, S)
    one fc1 was trained on is a 50 MB copy for 1000 boxes; fc1's columns are permuted to the
    channels-last order instead, once, and cached (rebuilt if the weight changes).
    """

    def __init__(self, in_features: int = 256 * 7 * 7, fc_dim: int = 1024, num_fc: int = 2):
        super().__init__()
        self.num_fc = num_fc
        for k in range(1, num_fc + 1):
            self.add_module(f"fc{k}", nn.Linear(in_features if k == 1 else fc_dim, fc_dim))

    def _fc1_channels_last(self, c: int, s: int) -> torch.Tensor:
        def permute(w):  # columns (C, S, S) -> (S, S, C)
            return w.detach().view(-1, c, s, s).permute(0, 2, 3, 1).reshape(w.shape[0], -1)

        return derived_weight(self, "_fc1_cl", self.fc1.weight, permute, c, s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r, c, s = x.shape[0], x.shape[1], x.shape[-1]
        if (x.dim() == 4 and r > 0 and not torch.is_grad_enabled()
                and x.is_contiguous(memory_format=torch.channels_last)):
            rows = x.permute(0, 2, 3, 1).reshape(r, -1)  # a view: (S, S, C) order
            x = F.relu(F.linear(rows, self._fc1_channels_last(c, s), self.fc1.bias))
            first = 2
        else:
            x = torch.flatten(x, start_dim=1)
            first = 1
        for k in range(first, self.num_fc + 1):
            x = F.relu(getattr(self, f"fc{k}")(x))
        return x


class FastRCNNOutputLayers(nn.Module):
    """81-way classifier (background last) and 80 class-specific box regressors."""

    def __init__(self, in_features: int = 1024, num_classes: int = 80):
        super().__init__()
        self.cls_score = nn.Linear(in_features, num_classes + 1)
        self.bbox_pred = nn.Linear(in_features, num_classes * 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cls_score(x), self.bbox_pred(x)


def detections_from_logits(
    class_logits: torch.Tensor, box_deltas: torch.Tensor, proposals: torch.Tensor,
    image_size: tuple[int, int], *, score_thresh: float, nms_thresh: float, max_detections: int,
    box_weights=(10.0, 10.0, 5.0, 5.0),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Boxes (K, 4), scores (K,), classes (K,) from the box head outputs, as
    detectron2's ``fast_rcnn_inference_single_image`` (docs/design.md, "Box head").

    Every (proposal, class) pair with softmax score strictly above ``score_thresh`` is a
    candidate, so one proposal may yield several classes; per-class NMS; best ``max``.
    """
    scores = F.softmax(class_logits, dim=-1)
    boxes = ops.decode_boxes(box_deltas, proposals, box_weights)
    valid = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores).all(dim=1)
    if not bool(valid.all()):
        boxes, scores = boxes[valid], scores[valid]
    scores = scores[:, :-1]
    boxes = ops.clip_boxes(boxes.view(len(boxes), scores.shape[1], 4), *image_size)
    candidates = scores > score_thresh
    rows_cols = torch.nonzero(candidates)  # row-major: proposal-major, class-minor
    boxes, scores = boxes[candidates], scores[candidates]
    keep = ops.batched_nms(boxes, scores, rows_cols[:, 1], nms_thresh)[:max_detections]
    return boxes[keep], scores[keep], rows_cols[keep, 1]


class StandardROIHeads(nn.Module):
    """Box branch plus the PointRend mask head (``mask_head``), on p2..p5."""

    def __init__(
        self, *, mask_head: nn.Module, num_classes: int = 80, nms_thresh: float = 0.5,
        max_detections: int = 100,
        in_features=("p2", "p3", "p4", "p5"),
    ):
        super().__init__()
        self.in_features = in_features
        self.box_head = FastRCNNConvFCHead()
        self.box_predictor = FastRCNNOutputLayers(num_classes=num_classes)
        self.mask_head = mask_head
        self.nms_thresh = nms_thresh
        self.max_detections = max_detections

    def box_logits(
        self, features: dict[str, torch.Tensor], proposals: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits (R, 81) and box deltas (R, 320) for proposals (R, 4)."""
        pooled = multilevel_roi_align([features[f] for f in self.in_features], proposals)
        return self.box_predictor(self.box_head(pooled))

    def detect(
        self, features: dict[str, torch.Tensor], proposals: torch.Tensor,
        image_size: tuple[int, int], *, score_thresh: float,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Final boxes, scores and classes in resized-image pixels; a (proposal, class) pair
        is kept when its score is strictly above ``score_thresh``."""
        logits, deltas = self.box_logits(features, proposals)
        return detections_from_logits(
            logits, deltas, proposals, image_size, score_thresh=score_thresh,
            nms_thresh=self.nms_thresh, max_detections=self.max_detections,
        )
