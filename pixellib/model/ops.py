"""Detection ops in plain torch: box decoding, NMS, RoIAlign, point sampling, mask pasting.

Each function is a pure tensor function with the exact semantics of the op detectron2 calls
(torchvision's CPU kernels for NMS and RoIAlign, ``grid_sample`` for points and pasting;
spec §5.2, §5.3, §6.2, §7.1, §8). When torchvision's compiled ops load they are used for NMS
and RoIAlign instead (:data:`USE_TORCHVISION`); tests check that both paths agree.
"""
from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F

# ln(1000/16): detectron2's upper clamp on predicted log-scale deltas.
SCALE_CLAMP = math.log(1000.0 / 16)


def _load_torchvision_ops():
    if os.environ.get("PIXELLIB_NO_TORCHVISION"):
        return None
    try:
        import torchvision.ops as tv_ops

        tv_ops.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)  # raises when the C++ ops are missing
        return tv_ops
    except Exception:  # ImportError, RuntimeError "operator torchvision::nms does not exist"
        return None


_TV_OPS = _load_torchvision_ops()
USE_TORCHVISION = _TV_OPS is not None


# ----------------------------------------------------------------------------- boxes

def decode_boxes(
    deltas: torch.Tensor, boxes: torch.Tensor, weights: tuple[float, float, float, float]
) -> torch.Tensor:
    """Apply ``(dx, dy, dw, dh)`` deltas (R, 4k) to boxes (R, 4); returns (R, 4k).

    Centre-size parametrisation of Girshick et al. (R-CNN appendix C) with the upper-only
    clamp of the size deltas at ln(1000/16).
    """
    deltas = deltas.float()
    boxes = boxes.to(deltas.dtype)
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    ctr_x = boxes[:, 0] + 0.5 * widths
    ctr_y = boxes[:, 1] + 0.5 * heights
    wx, wy, ww, wh = weights
    dx = deltas[:, 0::4] / wx
    dy = deltas[:, 1::4] / wy
    dw = torch.clamp(deltas[:, 2::4] / ww, max=SCALE_CLAMP)
    dh = torch.clamp(deltas[:, 3::4] / wh, max=SCALE_CLAMP)
    pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
    pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
    pred_w = torch.exp(dw) * widths[:, None]
    pred_h = torch.exp(dh) * heights[:, None]
    out = torch.stack(
        (
            pred_ctr_x - 0.5 * pred_w,
            pred_ctr_y - 0.5 * pred_h,
            pred_ctr_x + 0.5 * pred_w,
            pred_ctr_y + 0.5 * pred_h,
        ),
        dim=-1,
    )
    return out.reshape(deltas.shape)


def clip_boxes(boxes: torch.Tensor, height: float, width: float) -> torch.Tensor:
    """Clamp ``(..., 4)`` boxes to x in [0, width], y in [0, height]."""
    x0 = boxes[..., 0].clamp(min=0, max=width)
    y0 = boxes[..., 1].clamp(min=0, max=height)
    x1 = boxes[..., 2].clamp(min=0, max=width)
    y1 = boxes[..., 3].clamp(min=0, max=height)
    return torch.stack((x0, y0, x1, y1), dim=-1)


def nonempty(boxes: torch.Tensor) -> torch.Tensor:
    """Bool (N,): width > 0 and height > 0."""
    return (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])


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

def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS. Returns kept indices (int64), by descending score.

    A box is suppressed by any higher-scoring kept box with IoU > ``iou_threshold``.
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    if USE_TORCHVISION:
        return _TV_OPS.nms(boxes.float(), scores.float(), iou_threshold)
    order = torch.sort(scores, descending=True).indices
    sorted_boxes = boxes[order].float()
    # over[i, j]: box j (later in score order) would be suppressed by box i.
    over = (pairwise_iou(sorted_boxes, sorted_boxes) > iou_threshold).triu_(1).cpu().numpy()
    removed = over[0] & False
    keep = []
    for i in range(len(over)):
        if not removed[i]:
            keep.append(i)
            removed |= over[i]
    return order[torch.as_tensor(keep, dtype=torch.int64, device=order.device)]


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, ids: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """NMS within each id (class or FPN level) independently; kept indices by descending
    score. This is the per-id loop, the mathematically clean form of torchvision's
    ``batched_nms`` (spec §5.3)."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    keep_mask = torch.zeros_like(scores, dtype=torch.bool)
    for i in torch.unique(ids).tolist():
        idx = torch.nonzero(ids == i).view(-1)
        keep_mask[idx[nms(boxes[idx], scores[idx], iou_threshold)]] = True
    keep = torch.nonzero(keep_mask).view(-1)
    return keep[torch.sort(scores[keep], descending=True).indices]


# ----------------------------------------------------------------------------- RoIAlign

def _axis_samples(start, bin_size, grid, size, pooled):
    """Sample positions and bilinear taps along one axis for RoIAlign.

    ``start``/``bin_size`` are (r,) float, ``grid`` the samples per bin (int). Returns
    ``(lo, hi, w_lo, w_hi)`` of shape (r, pooled, grid), following torchvision's border rules:
    a sample beyond [-1, size] contributes 0, below 0 it clamps to 0, past size-1 it clamps to
    the last row/column.
    """
    p = torch.arange(pooled, dtype=start.dtype, device=start.device).view(1, -1, 1)
    g = (torch.arange(grid, dtype=start.dtype, device=start.device) + 0.5).view(1, 1, -1)
    pos = start.view(-1, 1, 1) + p * bin_size.view(-1, 1, 1) + g * bin_size.view(-1, 1, 1) / grid
    valid = (pos >= -1.0) & (pos <= size)
    pos = pos.clamp(min=0)
    lo = pos.floor().long()
    at_end = lo >= size - 1
    lo = torch.where(at_end, torch.full_like(lo, size - 1), lo)
    hi = torch.where(at_end, lo, lo + 1)
    pos = torch.where(at_end, lo.to(pos.dtype), pos)
    frac = pos - lo.to(pos.dtype)
    w_lo = (1 - frac) * valid
    w_hi = frac * valid
    return lo, hi, w_lo, w_hi


def roi_align(
    features: torch.Tensor, boxes: torch.Tensor, *, output_size: int, spatial_scale: float,
    sampling_ratio: int = 0, aligned: bool = True,
) -> torch.Tensor:
    """RoIAlign (He et al. 2017, §3; torchvision ``roi_align``) of one feature map.

    ``features``: (1, C, H, W); ``boxes``: (R, 4) ``x0, y0, x1, y1`` in image pixels.
    Returns (R, C, output_size, output_size). With ``aligned=True`` pixel centres sit at
    +0.5 (ROIAlignV2); ``sampling_ratio=0`` takes ``ceil(roi_size / output_size)`` samples
    per bin and axis, per box.
    """
    r, (_, c, h, w) = len(boxes), features.shape
    if r == 0:
        return features.new_zeros((0, c, output_size, output_size))
    if USE_TORCHVISION:
        rois = torch.cat([boxes.new_zeros((r, 1)), boxes], dim=1)
        return _TV_OPS.roi_align(
            features, rois, (output_size, output_size), spatial_scale, sampling_ratio, aligned
        )
    offset = 0.5 if aligned else 0.0
    boxes = boxes.float()
    start_x = boxes[:, 0] * spatial_scale - offset
    start_y = boxes[:, 1] * spatial_scale - offset
    roi_w = boxes[:, 2] * spatial_scale - offset - start_x
    roi_h = boxes[:, 3] * spatial_scale - offset - start_y
    if not aligned:
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    bin_w, bin_h = roi_w / output_size, roi_h / output_size
    if sampling_ratio > 0:
        grid_w = torch.full((r,), sampling_ratio, dtype=torch.int64)
        grid_h = grid_w
    else:
        grid_w = torch.ceil(roi_w / output_size).long().clamp(min=0)
        grid_h = torch.ceil(roi_h / output_size).long().clamp(min=0)
    count = (grid_w * grid_h).clamp(min=1).to(features.dtype)

    # Gather from a channels-last copy: each tap reads C contiguous floats.
    table = features[0].permute(1, 2, 0).reshape(h * w, c)
    out = features.new_zeros((r, output_size, output_size, c))
    pairs = torch.stack((grid_h, grid_w), dim=1)
    for gh, gw in torch.unique(pairs, dim=0).tolist():
        if gh == 0 or gw == 0:
            continue  # no samples: the bin averages nothing and stays 0
        idx = torch.nonzero((grid_h == gh) & (grid_w == gw)).view(-1)
        # Bound the temporary (rois * samples * C) to ~16M floats.
        step = max(1, (1 << 24) // (output_size * output_size * gh * gw * c))
        for chunk in idx.split(step):
            ylo, yhi, wylo, wyhi = _axis_samples(start_y[chunk], bin_h[chunk], gh, h, output_size)
            xlo, xhi, wxlo, wxhi = _axis_samples(start_x[chunk], bin_w[chunk], gw, w, output_size)
            # Broadcast to (n, P, gh, P, gw): y along dims 1-2, x along dims 3-4.
            ylo, yhi = ylo[:, :, :, None, None], yhi[:, :, :, None, None]
            wylo, wyhi = wylo[:, :, :, None, None], wyhi[:, :, :, None, None]
            xlo, xhi = xlo[:, None, None], xhi[:, None, None]
            wxlo, wxhi = wxlo[:, None, None], wxhi[:, None, None]
            acc = None
            for yi, wy in ((ylo, wylo), (yhi, wyhi)):
                for xi, wx in ((xlo, wxlo), (xhi, wxhi)):
                    tap = table[(yi * w + xi).reshape(-1)] * (wy * wx).reshape(-1, 1)
                    acc = tap if acc is None else acc.add_(tap)
            acc = acc.view(len(chunk), output_size, gh, output_size, gw, c).sum(dim=(2, 4))
            out[chunk] = acc / count[chunk].view(-1, 1, 1, 1)
    return out.permute(0, 3, 1, 2).contiguous()


# ----------------------------------------------------------------------------- points

def point_sample(features: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of ``features`` (N, C, H, W) at normalised ``points`` (N, P, 2) in
    [0, 1]² (x, y); returns (N, C, P). ``grid_sample`` semantics: ``align_corners=False``,
    zero padding, so samples within half a pixel of the border are attenuated (spec §7.1).
    """
    grid = 2.0 * points.unsqueeze(2) - 1.0
    return F.grid_sample(features, grid, mode="bilinear", align_corners=False).squeeze(3)


def regular_grid_points(num_boxes: int, side: int, device=None) -> torch.Tensor:
    """Cell centres of a side x side grid in [0, 1]², row-major, x fastest: (R, side², 2).

    Built with ``affine_grid`` exactly as PointRend does, so values match to the ulp.
    """
    theta = torch.tensor([[[0.5, 0.0, 0.5], [0.0, 0.5, 0.5]]], device=device)
    grid = F.affine_grid(theta, [1, 1, side, side], align_corners=False)
    return grid.view(1, -1, 2).expand(num_boxes, -1, -1)


# ----------------------------------------------------------------------------- pasting

def paste_masks(
    masks: torch.Tensor, boxes: torch.Tensor, image_size: tuple[int, int], threshold: float = 0.5
) -> torch.Tensor:
    """Paste (N, M, M) box-relative probability maps into (N, H, W) bool image masks.

    Each pixel centre is mapped into its box and sampled with ``grid_sample``
    (``align_corners=False``, zero padding); ``>= threshold`` is foreground. Only the box's
    integer neighbourhood is computed: outside the box every sample is below 0.5·p, so the
    rest stays False (spec §8.5).
    """
    h, w = image_size
    out = torch.zeros((len(masks), h, w), dtype=torch.bool, device=masks.device)
    for i in range(len(masks)):
        box = boxes[i : i + 1].float()
        x0i = max(int(math.floor(box[0, 0].item())) - 1, 0)
        y0i = max(int(math.floor(box[0, 1].item())) - 1, 0)
        x1i = min(int(math.ceil(box[0, 2].item())) + 1, w)
        y1i = min(int(math.ceil(box[0, 3].item())) + 1, h)
        if x1i <= x0i or y1i <= y0i:
            continue
        x0, y0, x1, y1 = box.split(1, dim=1)
        ys = torch.arange(y0i, y1i, device=masks.device, dtype=torch.float32) + 0.5
        xs = torch.arange(x0i, x1i, device=masks.device, dtype=torch.float32) + 0.5
        gy = (ys - y0) / (y1 - y0) * 2 - 1
        gx = (xs - x0) / (x1 - x0) * 2 - 1
        shape = (1, len(ys), len(xs))
        grid = torch.stack([gx[:, None, :].expand(shape), gy[:, :, None].expand(shape)], dim=3)
        pasted = F.grid_sample(masks[i][None, None].float(), grid, align_corners=False)
        out[i, y0i:y1i, x0i:x1i] = pasted[0, 0] >= threshold
    return out
