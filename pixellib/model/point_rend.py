"""PointRend mask head (Kirillov et al. 2020, "PointRend: Image Segmentation as Rendering"),
as detectron2's ``projects/PointRend/point_rend/{mask_head,point_head,point_features}.py`` run
it at test time with PixelLib's config (docs/design.md, "PointRend mask head").

A coarse 7x7 prediction per box (§3.1 of the paper's "coarse prediction"), then adaptive
subdivision (§3.1, Fig. 4): start from a 28x28 point-head prediction on a regular grid and
three times upsample x2 and recompute the 784 most uncertain points, up to 224x224.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..runtime import cancel
from . import ops


def subdivision_schedule(output_side: int = 7, steps: int = 5, num_points: int = 784):
    """Initial resolution and number of refinement steps, as PointRend derives them: while a
    doubled grid still has no more cells than ``num_points``, start finer and refine once
    less. With the defaults: 7 -> 14 -> 28, then 3 steps (28 -> 56 -> 112 -> 224)."""
    resolution = output_side
    while 4 * resolution**2 <= num_points:
        resolution *= 2
        steps -= 1
    return resolution, steps


def boxes_points_to_image(boxes: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Box-relative points (R, P, 2) in [0, 1]² -> image pixels, in detectron2's op order."""
    x = points[:, :, 0] * (boxes[:, None, 2] - boxes[:, None, 0]) + boxes[:, None, 0]
    y = points[:, :, 1] * (boxes[:, None, 3] - boxes[:, None, 1]) + boxes[:, None, 1]
    return torch.stack((x, y), dim=2)


def sample_image_features(
    fmap: torch.Tensor, stride: int, boxes: torch.Tensor, points: torch.Tensor,
    table: torch.Tensor | None = None,
) -> torch.Tensor:
    """Features (R, P, C) of one map (1, C, H, W) at box-relative points (R, P, 2).

    Points are normalised by the padded image size (``stride`` x map size), so the sample
    sits at ``X / stride - 0.5`` in map pixels, aligned like ROIAlignV2. ``table`` is the
    map's :func:`ops.channels_last_rows`, when the caller already has it.
    """
    h, w = fmap.shape[-2:]
    scale = torch.tensor([w * stride, h * stride], dtype=points.dtype, device=points.device)
    coords = boxes_points_to_image(boxes, points) / scale
    r, p = coords.shape[:2]
    if table is None:
        table = ops.channels_last_rows(fmap)
    return ops.sample_rows(table, h, w, coords.reshape(r * p, 2)).view(r, p, -1)


def box_map_taps(side: int, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear taps (R*P, 4) into the (R*S*S, C) rows of R per-box S x S maps, each box's
    points (R, P, 2) on its own map: indices and weights for :func:`ops.sample_rows`' sum."""
    r, p = points.shape[:2]
    offset = (torch.arange(r, device=points.device) * (side * side)).repeat_interleave(p)
    return ops.bilinear_taps(side, side, points.reshape(r * p, 2), offset)


class ConvFCHead(nn.Module):
    """Coarse head: 2x2/2 conv + ReLU on a 14x14 grid of p2 samples, two FC + ReLU, then a
    linear layer to (num_classes, 7, 7) logits."""

    def __init__(
        self, *, channels: int = 256, input_side: int = 14, fc_dim: int = 1024, num_fc: int = 2,
        num_classes: int = 80, output_side: int = 7,
    ):
        super().__init__()
        self.num_fc = num_fc
        self.output_shape = (num_classes, output_side, output_side)
        self.reduce_spatial_dim_conv = nn.Conv2d(channels, channels, 2, stride=2)
        in_dim = channels * (input_side // 2) ** 2
        for k in range(1, num_fc + 1):
            self.add_module(f"fc{k}", nn.Linear(in_dim if k == 1 else fc_dim, fc_dim))
        self.prediction = nn.Linear(fc_dim, num_classes * output_side**2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.reduce_spatial_dim_conv(x))
        x = torch.flatten(x, start_dim=1)
        for k in range(1, self.num_fc + 1):
            x = F.relu(getattr(self, f"fc{k}")(x))
        return self.prediction(x).view(len(x), *self.output_shape)


# Points per pass of the point head's layers (StandardPointHead.projected_class_logits): one
# box's 784 on the CPU (activations stay in cache), 65536 elsewhere (~270 MB of activations).
CPU_POINTS_PER_CHUNK = 784
GPU_POINTS_PER_CHUNK = 1 << 16


class StandardPointHead(nn.Module):
    """Per-point MLP (1x1 Conv1d) over [fine features, coarse logits], with the coarse
    logits concatenated again after every hidden layer."""

    def __init__(
        self, *, fine_channels: int = 256, num_classes: int = 80, fc_dim: int = 256,
        num_fc: int = 3,
    ):
        super().__init__()
        self.num_fc = num_fc
        dim = fine_channels + num_classes
        for k in range(1, num_fc + 1):
            self.add_module(f"fc{k}", nn.Conv1d(dim, fc_dim, 1))
            dim = fc_dim + num_classes
        self.predictor = nn.Conv1d(dim, num_classes, 1)

    def project_fine_map(self, fine_map: torch.Tensor) -> torch.Tensor:
        """fc1's fine-feature columns applied to the whole map: (1, C, H, W) -> (1, D, H, W).

        Bilinear sampling is linear, so ``W @ sample(F) == sample(W @ F)`` (fc1's bias is
        added after sampling: zero padding does not commute with it). Projecting the map once
        replaces a (C x D) matmul per point by one D-channel sample: the same numbers, far
        fewer FLOPs when boxes x points exceed the map's size.
        """
        w = self.fc1.weight[:, : fine_map.shape[1]]
        return F.conv2d(fine_map, w[:, :, :, None].contiguous())

    def coarse_table(self, coarse: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Every layer's coarse-logit columns applied to each box's coarse map, as one
        :func:`box_map_taps` table (R*S*S, L*D + 1): for (R, K, S, S) coarse logits,
        the L hidden layers' K columns (D channels each), then the predictor's K columns of
        each box's own class.

        Like fc1's fine columns (:meth:`project_fine_map`), these layers are linear in the
        coarse logits, which are themselves bilinear samples of the S x S map: weighting the
        map's S*S cells once per box replaces a (K x D) product at every one of the box's
        points by a sample of the weighted map. Biases are added after sampling (zero padding
        does not commute with them).
        """
        r, k, s, _ = coarse.shape
        rows = ops.channels_last_rows(coarse)  # (R*S*S, K)
        weights = [getattr(self, f"fc{i}").weight[:, -k:, 0] for i in range(1, self.num_fc + 1)]
        hidden = rows @ torch.cat(weights).t()  # (R*S*S, L*D)
        pred = self.predictor.weight[classes, -k:, 0]  # (R, K)
        own = torch.bmm(rows.view(r, s * s, k), pred[:, :, None]).view(r * s * s, 1)
        return torch.cat((hidden, own), dim=1)

    def projected_class_logits(
        self, fine_projected: torch.Tensor, coarse_table: torch.Tensor, side: int,
        points: torch.Tensor, classes: torch.Tensor, rows_per_chunk: int | None = None,
    ) -> torch.Tensor:
        """Class logits (R, P) at box-relative points (R, P, 2), from samples (R, P, D) of
        :meth:`project_fine_map`'s map and the boxes' :meth:`coarse_table` (maps of side
        ``side``): the point head's MLP (per point, 1x1 convolutions over [fine features,
        coarse logits], the coarse logits concatenated again after every hidden layer)
        evaluated for each box's own class only.

        Each layer is then one (D x D) matmul whose bias-plus-coarse term is the table's
        sample. Boxes go through all layers a few at a time (~``rows_per_chunk`` points),
        sampling their table rows on the way, so the activations stay in cache between
        layers: about 1.8x faster than whole-tensor matmuls on the CPU. A GPU has no such
        cache to keep and pays a launch per kernel, so off the CPU the default chunk is large
        (:data:`GPU_POINTS_PER_CHUNK`): all of 83 boxes' points at once.
        """
        r, p, d = fine_projected.shape
        if rows_per_chunk is None:
            on_cpu = fine_projected.device.type == "cpu"
            rows_per_chunk = CPU_POINTS_PER_CHUNK if on_cpu else GPU_POINTS_PER_CHUNK
        layers = [(getattr(self, f"fc{i}").weight[:, :d, 0].t().contiguous(),
                   getattr(self, f"fc{i}").bias) for i in range(2, self.num_fc + 1)]
        pred_w = self.predictor.weight[classes, :d, 0]  # (R, D): each box's own class row
        taps, weights = box_map_taps(side, points)
        weights = weights.to(coarse_table.dtype)
        out = fine_projected.new_empty((r, p))
        step = max(1, rows_per_chunk // max(p, 1))
        for s in range(0, r, step):
            n, rows = min(step, r - s), slice(s * p, (s + step) * p)
            sampled = F.embedding_bag(taps[rows], coarse_table, mode="sum",
                                      per_sample_weights=weights[rows])
            x = fine_projected[s:s + step].reshape(-1, d) + self.fc1.bias
            x = x.add_(sampled[:, :d]).relu_()
            for i, (weight, bias) in enumerate(layers, start=1):
                x = torch.addmm(sampled[:, i * d:(i + 1) * d].add_(bias), x, weight).relu_()
            own = torch.bmm(x.view(n, p, d), pred_w[s:s + step, :, None])[..., 0]
            out[s:s + step] = own.add_(sampled[:, -1].view(n, p))
        return out + self.predictor.bias[classes][:, None]


class PointRendMaskHead(nn.Module):
    """Masks (R, 224, 224) of probabilities for final boxes, from p2 only."""

    def __init__(
        self, *, stride: int = 4, coarse_side: int = 14, output_side: int = 7,
        subdivision_steps: int = 5, subdivision_num_points: int = 784, num_classes: int = 80,
    ):
        super().__init__()
        self.stride = stride
        self.coarse_side = coarse_side
        self.num_points = subdivision_num_points
        self.init_resolution, self.steps = subdivision_schedule(
            output_side, subdivision_steps, subdivision_num_points
        )
        self.coarse_head = ConvFCHead(
            input_side=coarse_side, num_classes=num_classes, output_side=output_side
        )
        self.point_head = StandardPointHead(num_classes=num_classes)

    def coarse_logits(self, p2: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """(R, 80, 7, 7) coarse logits. The 14x14 p2 grid is sampled with zero padding
        (``grid_sample``), not with RoIAlign's border clamping."""
        r, s = len(boxes), self.coarse_side
        points = ops.regular_grid_points(r, s, p2.device)
        feats = sample_image_features(p2, self.stride, boxes, points)  # (R, s*s, C)
        return self.coarse_head(feats.transpose(1, 2).reshape(r, -1, s, s))

    def point_logits(
        self, fine_inputs: tuple[torch.Tensor, torch.Tensor, bool], coarse_table: torch.Tensor,
        boxes: torch.Tensor, classes: torch.Tensor, points: torch.Tensor,
    ) -> torch.Tensor:
        """Logits (R, P) of each box's class at box-relative points (R, P, 2), given the fine
        inputs of :meth:`_fine_inputs` and the point head's :meth:`~StandardPointHead.coarse_table`
        of the coarse logits."""
        fine_map, table, projected = fine_inputs
        fine = sample_image_features(fine_map, self.stride, boxes, points, table)
        if not projected:  # raw p2 samples: apply fc1's fine columns per point
            fc1 = self.point_head.fc1.weight[:, : fine.shape[-1], 0]
            fine = fine @ fc1.t()
        return self.point_head.projected_class_logits(
            fine, coarse_table, self.coarse_head.output_shape[-1], points, classes
        )

    def _fine_inputs(self, p2: torch.Tensor, num_boxes: int):
        """``(map, rows, projected)`` the point head samples its fine features from.

        fc1's fine columns are linear, so they can go before the sampling (once over the
        whole map) or after it (once per point); both give the same numbers. Whichever
        touches fewer positions is cheaper: the map when boxes x points outnumber its pixels.
        """
        points = num_boxes * self.num_points * (self.steps + 1)
        if points >= p2.shape[-2] * p2.shape[-1]:
            p2 = self.point_head.project_fine_map(p2)
            return p2, ops.channels_last_rows(p2), True
        return p2, ops.channels_last_rows(p2), False

    def forward(
        self, p2: torch.Tensor, boxes: torch.Tensor, classes: torch.Tensor, *,
        plan_boxes: int | None = None,
    ) -> torch.Tensor:
        """Mask probabilities (R, S, S), S = 224, for boxes (R, 4) in resized-image pixels."""
        return self.mask_logits(p2, boxes, classes, plan_boxes=plan_boxes).sigmoid()

    def mask_logits(
        self, p2: torch.Tensor, boxes: torch.Tensor, classes: torch.Tensor, *,
        plan_boxes: int | None = None,
    ) -> torch.Tensor:
        """Logits (R, S, S) of each box's predicted class after subdivision.

        ``plan_boxes`` (default R): the box count that chooses how fc1 is applied
        (:meth:`_fine_inputs`); a caller that dropped boxes passes the count before, so that
        the remaining boxes get the very same numbers."""
        r = len(boxes)
        side = self.init_resolution * 2**self.steps
        if r == 0:
            return p2.new_zeros((0, side, side))
        table = self.point_head.coarse_table(self.coarse_logits(p2, boxes), classes)
        projected = self._fine_inputs(p2, r if plan_boxes is None else plan_boxes)
        res = self.init_resolution
        points = ops.regular_grid_points(r, res, p2.device)
        logits = self.point_logits(projected, table, boxes, classes, points).view(r, 1, res, res)
        for _ in range(self.steps):
            cancel.check()
            logits = F.interpolate(logits, scale_factor=2, mode="bilinear", align_corners=False)
            res *= 2
            idx, points = uncertain_grid_points(logits, self.num_points)
            values = self.point_logits(projected, table, boxes, classes, points)
            logits = logits.view(r, res * res).scatter_(1, idx, values).view(r, 1, res, res)
        return logits[:, 0]


def uncertain_grid_points(logits: torch.Tensor, num_points: int):
    """The ``num_points`` cells of (R, 1, H, W) logits closest to 0 (uncertainty -|logit|),
    as flat indices (R, k) and their cell-centre coordinates (R, k, 2) in [0, 1]²."""
    r, _, h, w = logits.shape
    k = min(h * w, num_points)
    idx = torch.topk(-logits.abs().view(r, h * w), k=k, dim=1).indices
    h_step, w_step = 1.0 / h, 1.0 / w
    points = torch.empty((r, k, 2), dtype=torch.float32, device=logits.device)
    points[:, :, 0] = w_step / 2.0 + (idx % w).to(torch.float32) * w_step
    points[:, :, 1] = h_step / 2.0 + (idx // w).to(torch.float32) * h_step
    return idx, points
