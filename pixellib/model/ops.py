"""Detection ops in plain torch: box decoding, NMS, RoIAlign, point sampling, mask pasting.

Each function is a pure tensor function with the exact semantics of the op detectron2 calls
(torchvision's CPU kernels for NMS and RoIAlign, ``grid_sample`` for points and pasting;
docs/design.md, "Batched NMS and its rounding", "Box head", "Point sampling" and "Pasting
masks"). When torchvision's compiled ops load they are used for NMS and RoIAlign instead
(:func:`torchvision_ops`); tests check that both paths agree. NMS lives in
:mod:`pixellib.model.nms` and is re-exported here.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pixellib.config import env_switch
from pixellib.model.nms import batched_nms, nms, pairwise_iou  # noqa: F401 (re-exported)

# torch's fused add + ReLU kernel (aten::_add_relu, made for its JIT fuser), when it has one;
# it has a CPU kernel only, for full-precision types only (not under bf16 autocast).
_ADD_RELU = getattr(torch.ops.aten, "_add_relu", None)
_ADD_RELU_TYPES = (torch.float32, torch.float64)


def add_relu(a: torch.Tensor, b: torch.Tensor, *, alpha=1, out: torch.Tensor) -> torch.Tensor:
    """``out = max(a + alpha * b, 0)``, in one pass over memory where torch can (float32
    on the CPU); ``out`` may be ``a``."""
    if (_ADD_RELU is not None and out.device.type == "cpu"
            and a.dtype == b.dtype == out.dtype and out.dtype in _ADD_RELU_TYPES):
        return _ADD_RELU.out(a, b, alpha=alpha, out=out)
    return torch.add(a, b, alpha=alpha, out=out).clamp_min_(0)


# ln(1000/16): detectron2's upper clamp on predicted log-scale deltas.
SCALE_CLAMP = math.log(1000.0 / 16)


_UNSET = object()
_TV_OPS = _UNSET  # torchvision.ops once probed (None when its compiled kernels do not load)
# Set to False to force the plain-torch ops even where torchvision's kernels load (tests do).
USE_TORCHVISION = True


_TV_DEVICES: dict[str, bool] = {}  # device type -> whether torchvision's kernels run there


def _probe(tv_ops, device: str | torch.device = "cpu") -> None:
    """Raises when torchvision's compiled ``nms`` does not run on ``device``."""
    tv_ops.nms(torch.zeros(1, 4, device=device), torch.zeros(1, device=device), 0.5)


def _load_torchvision_ops():
    if env_switch("PIXELLIB_NO_TORCHVISION"):
        return None
    try:
        import torchvision.ops as tv_ops

        _probe(tv_ops)  # raises when the C++ ops are missing
        return tv_ops
    except Exception:  # ImportError, RuntimeError "operator torchvision::nms does not exist"
        return None


def torchvision_ops(device: torch.device | None = None):
    """``torchvision.ops`` when its compiled kernels load and :data:`USE_TORCHVISION` is
    true, else None. Probed once, on first use (importing this module loads nothing);
    ``PIXELLIB_NO_TORCHVISION=1`` in the environment turns them off. With a non-CPU
    ``device``, also None when its kernels do not run there (a CPU-only torchvision beside a
    CUDA torch), probed once per device type."""
    global _TV_OPS
    if not USE_TORCHVISION:
        return None
    if _TV_OPS is _UNSET:
        _TV_OPS = _load_torchvision_ops()
    if _TV_OPS is None or device is None or device.type == "cpu":
        return _TV_OPS
    if device.type not in _TV_DEVICES:
        try:
            _probe(_TV_OPS, device)
            _TV_DEVICES[device.type] = True
        except Exception:  # NotImplementedError: no kernel for this backend
            _TV_DEVICES[device.type] = False
    return _TV_OPS if _TV_DEVICES[device.type] else None


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


# ----------------------------------------------------------------------------- RoIAlign

def _axis_weights(start, bin_size, grid, size: int, pooled: int):
    """Bilinear weights of RoIAlign's samples along one axis, summed per output bin.

    ``start``/``bin_size`` (n,) float and ``grid`` (n,) int samples per bin, per box. Returns
    ``(first, weights)``: ``weights[b, p, k]`` is the total weight of feature row/column
    ``first[b] + k`` in bin ``p`` (n, pooled, extent). torchvision's border rules: a sample
    beyond [-1, size] contributes 0, below 0 it clamps to 0, past size - 1 to the last index.
    """
    g_max = max(int(grid.max()), 1)
    p = torch.arange(pooled, dtype=start.dtype).view(1, -1, 1)
    g = torch.arange(g_max, dtype=start.dtype).view(1, 1, -1)
    step = bin_size.view(-1, 1, 1)
    n_samples = grid.to(start.dtype).view(-1, 1, 1)
    pos = start.view(-1, 1, 1) + p * step + (g + 0.5) * step / n_samples
    valid = (pos >= -1.0) & (pos <= size) & (g < n_samples)
    pos = torch.where(valid, pos, torch.zeros_like(pos)).clamp(min=0)  # no NaN from 0 samples
    lo = pos.floor().long()
    at_end = lo >= size - 1
    lo = torch.where(at_end, torch.full_like(lo, size - 1), lo)
    hi = torch.where(at_end, lo, lo + 1)
    frac = torch.where(at_end, torch.zeros_like(pos), pos - lo.to(pos.dtype))
    big = torch.full_like(lo, 1 << 30)
    first = torch.where(valid, lo, big).amin(dim=(1, 2)).clamp(max=size - 1)
    last = torch.where(valid, hi, -big).amax(dim=(1, 2))
    extent = int((last - first).max().clamp(min=0)) + 1
    weights = torch.zeros((len(start), pooled, extent), dtype=start.dtype)
    base = first.view(-1, 1, 1)
    zero = torch.zeros_like(frac)
    weights.scatter_add_(2, (lo - base).clamp(0, extent - 1), torch.where(valid, 1 - frac, zero))
    weights.scatter_add_(2, (hi - base).clamp(0, extent - 1), torch.where(valid, frac, zero))
    return first, weights


def roi_align(
    features: torch.Tensor, boxes: torch.Tensor, *, output_size: int, spatial_scale: float,
    sampling_ratio: int = 0, aligned: bool = True,
) -> torch.Tensor:
    """RoIAlign (He et al. 2017, §3; torchvision ``roi_align``) of one feature map.

    ``features``: (1, C, H, W); ``boxes``: (R, 4) ``x0, y0, x1, y1`` in image pixels.
    Returns (R, C, output_size, output_size), in channels-last memory. With ``aligned=True``
    pixel centres sit at +0.5 (ROIAlignV2); ``sampling_ratio=0`` takes
    ``ceil(roi_size / output_size)`` samples per bin and axis, per box.
    """
    c = features.shape[1]
    out = features.new_empty((len(boxes), output_size, output_size, c))
    roi_align_into(out, None, features, boxes, spatial_scale=spatial_scale,
                   sampling_ratio=sampling_ratio, aligned=aligned)
    return out.permute(0, 3, 1, 2)


def roi_align_into(
    out: torch.Tensor, rows: torch.Tensor | None, features: torch.Tensor, boxes: torch.Tensor,
    *, spatial_scale: float, sampling_ratio: int = 0, aligned: bool = True,
) -> None:
    """:func:`roi_align` written into ``out[rows]`` ((N, S, S, C), box-major, channels
    last; ``rows`` None means ``out`` has one row per box), so that several feature maps
    can fill one result without intermediate copies.

    Bilinear sampling is separable: each bin's value is a weighted sum of the feature
    positions its samples touch, the weight of position (y, x) being ``Wy[p, y] * Wx[q, x]``
    with ``Wy``/``Wx`` the summed sample weights per bin along each axis. So the rows are
    summed first (bin row ``p``, every column of the box's window) and then the columns (bin
    ``(p, q)``), each pass one ``embedding_bag`` over channel vectors that reads only the few
    positions of each bin's band and writes no gathered window.
    """
    r, (_, c, h, w) = len(boxes), features.shape
    size = out.shape[1]
    if r == 0:
        return
    dev = features.device
    if rows is None:
        rows = torch.arange(r, device=dev)
    tv = torchvision_ops(dev)
    if tv is not None:
        rois = torch.cat([boxes.new_zeros((r, 1)), boxes], dim=1)
        out[rows] = tv.roi_align(
            features, rois, (size, size), spatial_scale, sampling_ratio, aligned
        ).permute(0, 2, 3, 1)
        return
    offset = 0.5 if aligned else 0.0
    boxes = boxes.float().cpu()
    start_x = boxes[:, 0] * spatial_scale - offset
    start_y = boxes[:, 1] * spatial_scale - offset
    roi_w = boxes[:, 2] * spatial_scale - offset - start_x
    roi_h = boxes[:, 3] * spatial_scale - offset - start_y
    if not aligned:
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    bin_w, bin_h = roi_w / size, roi_h / size
    if sampling_ratio > 0:
        grid_w = torch.full((r,), sampling_ratio, dtype=torch.int64)
        grid_h = grid_w
    else:
        grid_w = torch.ceil(roi_w / size).long().clamp(min=0)
        grid_h = torch.ceil(roi_h / size).long().clamp(min=0)
    count = (grid_w * grid_h).clamp(min=1).to(features.dtype)

    table = features[0].permute(1, 2, 0).reshape(h * w, c)  # one C-vector per position
    rows = rows.to(dev)
    plans = []  # per chunk, on the host: (boxes, row-pass taps and weights, column pass's)
    for idx in _roi_chunks(roi_w, size):
        n = len(idx)
        y0, wy = _axis_weights(start_y[idx], bin_h[idx], grid_h[idx], h, size)
        x0, wx = _axis_weights(start_x[idx], bin_w[idx], grid_w[idx], w, size)
        wy = wy / count[idx].view(-1, 1, 1)  # the average over samples, folded into Wy
        ww = wx.shape[2]
        first_y, band_wy = _bands(wy)  # (n, S), (n, S, by)
        first_x, band_wx = _bands(wx)
        by, bx = band_wy.shape[2], band_wx.shape[2]
        # Pass 1, one bag per (box, bin row, window column): the bin row's band of rows.
        ys = (y0.view(n, 1, 1) + first_y[:, :, None] + torch.arange(by)).clamp(max=h - 1)
        xs = (x0.view(n, 1) + torch.arange(ww)).clamp(max=w - 1)
        taps1 = (ys[:, :, None, :] * w + xs[:, None, :, None]).view(-1, by)
        weights1 = band_wy[:, :, None, :].expand(n, size, ww, by).reshape(-1, by)
        # Pass 2, one bag per (box, bin row, bin column): the bin column's band of pass 1's
        # window columns.
        window = (torch.arange(n * size) * ww).view(n, size, 1, 1)
        cols = (first_x[:, None, :, None] + torch.arange(bx)).clamp(max=ww - 1)
        taps2 = (window + cols).view(-1, bx)
        weights2 = band_wx[:, None].expand(n, size, size, bx).reshape(-1, bx)
        plans.append((idx, taps1, weights1.to(table.dtype), taps2, weights2.to(table.dtype)))
    if dev.type != "cpu":
        plans = _to_device(plans, dev)
    for idx, taps1, weights1, taps2, weights2 in plans:
        by_rows = F.embedding_bag(taps1, table, per_sample_weights=weights1, mode="sum")
        res = F.embedding_bag(taps2, by_rows, per_sample_weights=weights2, mode="sum")
        out[rows[idx]] = res.view(len(idx), size, size, c)


# Rows of the row pass per chunk of boxes (x 256 channels x 4 bytes: 32 MB).
ROI_ROWS_PER_CHUNK = 1 << 15


def _roi_chunks(roi_w: torch.Tensor, size: int) -> list[torch.Tensor]:
    """Box indices by increasing width, cut into chunks whose row pass (boxes x ``size`` bin
    rows x the widest window's columns) stays within :data:`ROI_ROWS_PER_CHUNK`."""
    order = torch.argsort(roi_w.clamp(min=0))
    widths = (roi_w.clamp(min=0)[order].floor().long() + 3).tolist()  # >= each window
    chunks, begin = [], 0
    for end, width in enumerate(widths):
        if end > begin and (end + 1 - begin) * size * width > ROI_ROWS_PER_CHUNK:
            chunks.append(order[begin:end])
            begin = end
    chunks.append(order[begin:])
    return chunks


def _bands(weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(first, band)`` for (n, S, E) per-bin weights along an axis, each bin's non-zero
    weights lying in a run of positions: ``first`` (n, S) the run's start and ``band``
    (n, S, B) the weights from there on, B the longest run (zero past a bin's own)."""
    n, s, e = weights.shape
    where = torch.arange(e).view(1, 1, e)
    nonzero = weights != 0
    first = torch.where(nonzero, where, e).amin(dim=2)
    last = torch.where(nonzero, where, -1).amax(dim=2)
    first = torch.where(last < 0, torch.zeros_like(first), first)  # a bin without samples
    span = max(int((last - first).max()) + 1, 1)
    padded = torch.cat([weights, weights.new_zeros((n, s, span))], dim=2)
    return first, padded.gather(2, first[:, :, None] + torch.arange(span))


def _to_device(tensors: list[tuple[torch.Tensor, ...]], dev: torch.device) -> list[tuple]:
    """``tensors`` (a list of tuples of host tensors) on ``dev`` with one copy per dtype: a
    copy from pageable host memory waits for the device, so one per tensor and chunk would
    stall it dozens of times per image."""
    flat = [t for group in tensors for t in group]
    moved: list[torch.Tensor | None] = [None] * len(flat)
    for dtype in {t.dtype for t in flat}:
        members = [i for i, t in enumerate(flat) if t.dtype == dtype]
        packed = torch.cat([flat[i].reshape(-1) for i in members]).to(dev)
        for i, part in zip(members, packed.split([flat[i].numel() for i in members])):
            moved[i] = part.view(flat[i].shape)
    it = iter(moved)
    return [tuple(next(it) for _ in group) for group in tensors]


# ----------------------------------------------------------------------------- points

def channels_last_rows(maps: torch.Tensor) -> torch.Tensor:
    """(M, C, H, W) maps -> (M*H*W, C) table, one row per position, for :func:`sample_rows`."""
    m, c, h, w = maps.shape
    return maps.permute(0, 2, 3, 1).reshape(m * h * w, c)


def sample_rows(
    table: torch.Tensor, height: int, width: int, points: torch.Tensor,
    map_offset: torch.Tensor | None = None,
) -> torch.Tensor:
    """Bilinear point samples of channels-last maps (detectron2's ``point_sample``, i.e.
    ``grid_sample``), returning (N, C) rows directly.

    ``table``: (M*H*W, C) from :func:`channels_last_rows`; ``points``: (N, 2) normalised
    (x, y); ``map_offset``: (N,) first row of each point's map (``m * H * W``), or None for
    one map. Same coordinates, weights and zero padding as ``grid_sample`` with
    ``align_corners=False``; the four taps are summed by ``embedding_bag`` in one pass, an
    order of magnitude faster than ``grid_sample`` plus a transpose for 256 channels.
    """
    idx, weights = bilinear_taps(height, width, points, map_offset)
    weights = weights.to(table.dtype)  # bf16/fp16 tables under autocast
    return F.embedding_bag(idx, table, per_sample_weights=weights, mode="sum")


def bilinear_taps(
    height: int, width: int, points: torch.Tensor, map_offset: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`sample_rows`' four taps per point: table rows (N, 4) and weights (N, 4), zero
    for taps outside the map, in ``grid_sample``'s order (nw, ne, sw, se)."""
    g = 2.0 * points - 1.0
    x = ((g[:, 0] + 1) * width - 1) / 2
    y = ((g[:, 1] + 1) * height - 1) / 2
    x0, y0 = torch.floor(x), torch.floor(y)
    x1, y1 = x0 + 1, y0 + 1
    wx = (x1 - x, x - x0)
    wy = (y1 - y, y - y0)
    idx, weights = [], []
    for yi, wyi in ((y0, wy[0]), (y1, wy[1])):
        for xi, wxi in ((x0, wx[0]), (x1, wx[1])):
            inside = (xi >= 0) & (xi <= width - 1) & (yi >= 0) & (yi <= height - 1)
            flat = yi.clamp(0, height - 1) * width + xi.clamp(0, width - 1)
            idx.append(flat.long())
            weights.append(torch.where(inside, wxi * wyi, torch.zeros_like(x)))
    idx = torch.stack(idx, dim=1)
    if map_offset is not None:
        idx += map_offset.view(-1, 1)
    return idx, torch.stack(weights, dim=1)


def regular_grid_points(num_boxes: int, side: int, device=None) -> torch.Tensor:
    """Cell centres of a side x side grid in [0, 1]², row-major, x fastest: (R, side², 2).

    Built with ``affine_grid`` exactly as PointRend does, so values match to the ulp.
    """
    theta = torch.tensor([[[0.5, 0.0, 0.5], [0.0, 0.5, 0.5]]], device=device)
    grid = F.affine_grid(theta, [1, 1, side, side], align_corners=False)
    return grid.view(1, -1, 2).expand(num_boxes, -1, -1)


# ----------------------------------------------------------------------------- pasting

def box_grid(box: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor):
    """Image coordinates (pixel centres) -> ``grid_sample`` coordinates in [-1, 1] relative to
    a (1, 4) box, in detectron2's op order: ``(gx, gy)``, each (1, N)."""
    x0, y0, x1, y1 = box.split(1, dim=1)
    return (xs - x0) / (x1 - x0) * 2 - 1, (ys - y0) / (y1 - y0) * 2 - 1


def paste_masks(
    masks: torch.Tensor, boxes: torch.Tensor, image_size: tuple[int, int], threshold: float = 0.5
) -> torch.Tensor:
    """Paste (N, M, M) box-relative probability maps into (N, H, W) bool image masks.

    Each pixel centre is mapped into its box and sampled with ``grid_sample``
    (``align_corners=False``, zero padding); ``>= threshold`` is foreground. Only the box's
    integer neighbourhood is computed: outside the box every sample is below 0.5·p, so the
    rest stays False (detectron2's ``paste_masks_in_image`` on the CPU; docs/design.md,
    "Pasting masks").
    """
    h, w = image_size
    out = torch.zeros((len(masks), h, w), dtype=torch.bool, device=masks.device)
    corners = boxes.float().cpu().tolist()  # one copy to the host, not one per box
    for i, (bx0, by0, bx1, by1) in enumerate(corners):
        box = boxes[i : i + 1].float()
        x0i = max(int(math.floor(bx0)) - 1, 0)
        y0i = max(int(math.floor(by0)) - 1, 0)
        x1i = min(int(math.ceil(bx1)) + 1, w)
        y1i = min(int(math.ceil(by1)) + 1, h)
        if x1i <= x0i or y1i <= y0i:
            continue
        ys = torch.arange(y0i, y1i, device=masks.device, dtype=torch.float32) + 0.5
        xs = torch.arange(x0i, x1i, device=masks.device, dtype=torch.float32) + 0.5
        gx, gy = box_grid(box, xs, ys)
        shape = (1, len(ys), len(xs))
        grid = torch.stack([gx[:, None, :].expand(shape), gy[:, :, None].expand(shape)], dim=3)
        pasted = F.grid_sample(masks[i][None, None].float(), grid, align_corners=False)
        out[i, y0i:y1i, x0i:x1i] = pasted[0, 0] >= threshold
    return out
