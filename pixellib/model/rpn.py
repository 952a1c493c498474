"""Region proposal network over the FPN levels (Ren et al. 2015; Lin et al. 2017 §4.1), as
detectron2's ``modeling/proposal_generator/rpn.py`` runs it at test time
(docs/design.md, "Anchors" and "Proposal selection").
"""
from __future__ import annotations

import math

import torch
from torch import nn

from . import ops
from .layers import Conv2d


def cell_anchors(size: float, aspect_ratios=(0.5, 1.0, 2.0)) -> torch.Tensor:
    """(A, 4) anchors centred on 0 for one size; ratio is h/w, float64 maths then float32."""
    rows = []
    for ratio in aspect_ratios:
        w = math.sqrt(size**2.0 / ratio)
        h = ratio * w
        rows.append([-w / 2.0, -h / 2.0, w / 2.0, h / 2.0])
    return torch.tensor(rows, dtype=torch.float32)


class AnchorGenerator(nn.Module):
    """One anchor size per level, 3 ratios; anchor centres at cell corners (offset 0)."""

    def __init__(self, sizes=(32, 64, 128, 256, 512), strides=(4, 8, 16, 32, 64)):
        super().__init__()
        self.sizes = sizes
        self.strides = strides
        for i in range(len(sizes)):
            # Non-persistent, as in detectron2: a checkpoint's copies are ignored.
            self.register_buffer(f"cell_anchors_{i}", torch.empty(3, 4), persistent=False)
        self.reset_constants()

    def reset_constants(self) -> None:
        for i, size in enumerate(self.sizes):
            buf = getattr(self, f"cell_anchors_{i}")
            if buf.device.type != "meta":
                setattr(self, f"cell_anchors_{i}", cell_anchors(size).to(buf.device))

    def forward(self, grid_sizes: list[tuple[int, int]]) -> list[torch.Tensor]:
        """Per level, (Hl*Wl*A, 4) anchors in flat (y, x, anchor) order."""
        anchors = []
        for i, ((h, w), stride) in enumerate(zip(grid_sizes, self.strides)):
            base = getattr(self, f"cell_anchors_{i}")
            xs = torch.arange(0, w * stride, step=stride, dtype=torch.float32, device=base.device)
            ys = torch.arange(0, h * stride, step=stride, dtype=torch.float32, device=base.device)
            sy, sx = torch.meshgrid(ys, xs, indexing="ij")
            sx, sy = sx.reshape(-1), sy.reshape(-1)
            shifts = torch.stack((sx, sy, sx, sy), dim=1)
            anchors.append((shifts.view(-1, 1, 4) + base.view(1, -1, 4)).reshape(-1, 4))
        return anchors


class RPNHead(nn.Module):
    """3x3 conv + ReLU shared by all levels, then 1x1 objectness (A) and deltas (4A)."""

    def __init__(self, in_channels: int = 256, num_anchors: int = 3):
        super().__init__()
        self.conv = Conv2d(in_channels, in_channels, 3, padding=1, relu=True)
        self.objectness_logits = nn.Conv2d(in_channels, num_anchors, 1)
        self.anchor_deltas = nn.Conv2d(in_channels, num_anchors * 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One level (1, C, H, W) -> logits (H*W*A,), deltas (H*W*A, 4) in (y, x, a) order."""
        t = self.conv(x)  # conv + ReLU
        logits = self.objectness_logits(t)[0].permute(1, 2, 0).reshape(-1)
        deltas = self.anchor_deltas(t)[0]
        a, h, w = deltas.shape[0] // 4, deltas.shape[1], deltas.shape[2]
        # channel a*4 + k -> (H, W, A, 4)
        deltas = deltas.view(a, 4, h, w).permute(2, 3, 0, 1).reshape(-1, 4)
        return logits, deltas


class RPN(nn.Module):
    """Proposals for one image: per-level top-k, clip, drop empty, per-level NMS, top-k."""

    def __init__(
        self, *, in_features=("p2", "p3", "p4", "p5", "p6"), pre_nms_topk: int = 1000,
        post_nms_topk: int = 1000, nms_thresh: float = 0.7,
    ):
        super().__init__()
        self.in_features = in_features
        self.rpn_head = RPNHead()
        self.anchor_generator = AnchorGenerator()
        self.pre_nms_topk = pre_nms_topk
        self.post_nms_topk = post_nms_topk
        self.nms_thresh = nms_thresh

    def forward(
        self, features: dict[str, torch.Tensor], image_size: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns proposal boxes (P, 4) clipped to ``image_size`` (unpadded resized (h, w))
        and their objectness logits (P,), by descending logit."""
        maps = [features[f] for f in self.in_features]
        anchors = self.anchor_generator([tuple(m.shape[-2:]) for m in maps])
        boxes, logits, levels = [], [], []
        for level, (fmap, level_anchors) in enumerate(zip(maps, anchors)):
            level_logits, level_deltas = self.rpn_head(fmap)
            k = min(self.pre_nms_topk, level_logits.numel())
            top_logits, top_idx = level_logits.topk(k)
            boxes.append(
                ops.decode_boxes(level_deltas[top_idx], level_anchors[top_idx], (1, 1, 1, 1))
            )
            logits.append(top_logits)
            levels.append(torch.full((k,), level, dtype=torch.int64, device=fmap.device))
        boxes, logits, levels = torch.cat(boxes), torch.cat(logits), torch.cat(levels)

        finite = torch.isfinite(boxes).all(dim=1) & torch.isfinite(logits)
        boxes, logits, levels = boxes[finite], logits[finite], levels[finite]
        boxes = ops.clip_boxes(boxes, *image_size)
        keep = ops.nonempty(boxes)
        boxes, logits, levels = boxes[keep], logits[keep], levels[keep]
        keep = ops.batched_nms(boxes, logits, levels, self.nms_thresh)[: self.post_nms_topk]
        return boxes[keep], logits[keep]
