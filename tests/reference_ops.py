"""Reference formulations the tests compare the fast code against: the textbook form of an
operation, slow and obviously right. Nothing in pixellib uses them."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def point_sample(features: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of ``features`` (N, C, H, W) at normalised ``points`` (N, P, 2) in
    [0, 1]² (x, y); returns (N, C, P). ``grid_sample`` semantics (detectron2's
    ``point_sample``): ``align_corners=False``, zero padding, so samples within half a pixel of
    the border are attenuated."""
    grid = 2.0 * points.unsqueeze(2) - 1.0
    return F.grid_sample(features, grid, mode="bilinear", align_corners=False).squeeze(3)


def point_head_hidden(head, fine: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
    """Last hidden layer (R, P, fc_dim) of a ``StandardPointHead``, points channels-last.

    ``fc(cat(x, coarse))`` computed as ``fc_x(x) + fc_coarse(coarse)`` with the weight split
    by input channels: the same map without copying the concatenation."""
    x = fine
    for k in range(1, head.num_fc + 1):
        fc = getattr(head, f"fc{k}")
        w = fc.weight[:, :, 0]
        split = x.shape[-1]
        x = F.relu(F.linear(x, w[:, :split]) + F.linear(coarse, w[:, split:], fc.bias))
    return x


def point_head_class_logits(head, fine: torch.Tensor, coarse: torch.Tensor,
                            classes: torch.Tensor) -> torch.Tensor:
    """Logits (R, P) of each box's own class only; fine (R, P, C), coarse (R, P, K). The
    predictor's rows are independent, so evaluating one row per box is exact."""
    x = point_head_hidden(head, fine, coarse)
    w = head.predictor.weight[classes, :, 0]  # (R, fc_dim + K)
    split = x.shape[-1]
    logits = torch.bmm(x, w[:, :split, None]) + torch.bmm(coarse, w[:, split:, None])
    return logits[:, :, 0] + head.predictor.bias[classes][:, None]


def point_head_logits(head, fine: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
    """All-class logits (R, num_classes, P) from fine (R, C, P) and coarse (R, K, P), as
    detectron2's ``StandardPointHead.forward`` computes them (with the split first layers)."""
    coarse = coarse.transpose(1, 2)
    x = torch.cat((point_head_hidden(head, fine.transpose(1, 2), coarse), coarse), dim=2)
    fc = head.predictor
    return F.linear(x, fc.weight[:, :, 0], fc.bias).transpose(1, 2)
