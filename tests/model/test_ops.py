"""The plain-torch ops against slow, obviously-correct loop versions written from
docs/design.md and the detectron2/torchvision ops they mirror."""
from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import torch

import reference_ops
from pixellib.model import ops


def _random_boxes(rng, n, extent=60.0, allow_outside=True):
    lo = -10.0 if allow_outside else 0.0
    xy = rng.uniform(lo, extent, (n, 2))
    wh = rng.uniform(0.0, extent / 2, (n, 2))
    wh[rng.random(n) < 0.1] = 0.0  # degenerate boxes
    return torch.tensor(np.concatenate([xy, xy + wh], 1), dtype=torch.float32)


# ----------------------------------------------------------------------------- NMS

def slow_nms(boxes, scores, thr):
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
    b = boxes.tolist()
    keep, removed = [], set()
    for pos, i in enumerate(order):
        if i in removed:
            continue
        keep.append(i)
        for j in order[pos + 1:]:
            x0, y0 = max(b[i][0], b[j][0]), max(b[i][1], b[j][1])
            x1, y1 = min(b[i][2], b[j][2]), min(b[i][3], b[j][3])
            inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
            area_i = (b[i][2] - b[i][0]) * (b[i][3] - b[i][1])
            area_j = (b[j][2] - b[j][0]) * (b[j][3] - b[j][1])
            union = area_i + area_j - inter
            if union > 0 and inter / union > thr:
                removed.add(j)
    return keep


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("thr", [0.3, 0.5, 0.7])
def test_nms_matches_loop(seed, thr):
    rng = np.random.default_rng(seed)
    boxes = _random_boxes(rng, 80)
    scores = torch.tensor(rng.permutation(80) / 80.0, dtype=torch.float32)  # distinct scores
    assert ops.nms(boxes, scores, thr).tolist() == slow_nms(boxes, scores, thr)


def test_nms_edge_cases():
    empty = ops.nms(torch.zeros(0, 4), torch.zeros(0), 0.5)
    assert empty.dtype == torch.int64 and empty.numel() == 0
    one = ops.nms(torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([0.3]), 0.5)
    assert one.tolist() == [0]
    # identical boxes with tied scores: exactly one survives
    same = torch.tensor([[0.0, 0, 10, 10]] * 4)
    assert len(ops.nms(same, torch.ones(4), 0.5)) == 1
    # IoU exactly at the threshold is not suppressed (strictly greater)
    pair = torch.tensor([[0.0, 0, 10, 10], [0.0, 0, 10, 5]])  # IoU 0.5
    assert ops.nms(pair, torch.tensor([1.0, 0.9]), 0.5).tolist() == [0, 1]
    # zero-area boxes never suppress anything
    flat = torch.tensor([[0.0, 0, 0, 10], [0.0, 0, 0, 10]])
    assert ops.nms(flat, torch.tensor([1.0, 0.9]), 0.5).tolist() == [0, 1]


@pytest.mark.parametrize("seed", range(4))
def test_batched_nms_is_nms_per_id(seed):
    rng = np.random.default_rng(seed)
    boxes = _random_boxes(rng, 120)
    scores = torch.tensor(rng.permutation(120) / 120.0, dtype=torch.float32)
    ids = torch.tensor(rng.integers(0, 5, 120))
    expected = []
    for i in range(5):
        idx = torch.nonzero(ids == i).view(-1)
        expected += idx[slow_nms(boxes[idx], scores[idx], 0.5)].tolist()
    expected.sort(key=lambda k: -float(scores[k]))
    assert ops.batched_nms(boxes, scores, ids, 0.5).tolist() == expected


# ----------------------------------------------------------------------------- RoIAlign

def slow_roi_align(feat, box, out_size, scale, sampling_ratio, aligned):
    c, h, w = feat.shape
    off = 0.5 if aligned else 0.0
    f32 = np.float32
    sx, sy = f32(box[0]) * f32(scale) - f32(off), f32(box[1]) * f32(scale) - f32(off)
    ex, ey = f32(box[2]) * f32(scale) - f32(off), f32(box[3]) * f32(scale) - f32(off)
    rw, rh = ex - sx, ey - sy
    if not aligned:
        rw, rh = max(rw, f32(1)), max(rh, f32(1))
    bw, bh = rw / f32(out_size), rh / f32(out_size)
    gw = sampling_ratio if sampling_ratio > 0 else int(math.ceil(rw / out_size))
    gh = sampling_ratio if sampling_ratio > 0 else int(math.ceil(rh / out_size))
    count = max(gw * gh, 1)

    def bilinear(y, x):
        if y < -1.0 or y > h or x < -1.0 or x > w:
            return np.zeros(c)
        y, x = max(y, 0.0), max(x, 0.0)
        y0, x0 = int(y), int(x)
        if y0 >= h - 1:
            y0 = y1 = h - 1
            y = float(y0)
        else:
            y1 = y0 + 1
        if x0 >= w - 1:
            x0 = x1 = w - 1
            x = float(x0)
        else:
            x1 = x0 + 1
        ly, lx = y - y0, x - x0
        return ((1 - ly) * (1 - lx) * feat[:, y0, x0] + (1 - ly) * lx * feat[:, y0, x1]
                + ly * (1 - lx) * feat[:, y1, x0] + ly * lx * feat[:, y1, x1])

    out = np.zeros((c, out_size, out_size))
    for i in range(out_size):
        for j in range(out_size):
            acc = np.zeros(c)
            for iy in range(gh):
                y = sy + i * bh + (iy + 0.5) * bh / gh
                for ix in range(gw):
                    x = sx + j * bw + (ix + 0.5) * bw / gw
                    acc += bilinear(float(y), float(x))
            out[:, i, j] = acc / count
    return out


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
@pytest.mark.parametrize("scale", [1.0, 0.25])
def test_roi_align_matches_loop(aligned, sampling_ratio, scale):
    rng = np.random.default_rng(int(scale * 10) + sampling_ratio + aligned)
    feat = torch.tensor(rng.normal(size=(1, 3, 13, 17)), dtype=torch.float32)
    boxes = _random_boxes(rng, 12, extent=70.0 / scale / 4) * (1 if scale == 1 else 4)
    boxes = torch.cat([boxes, torch.tensor([[-30.0, -30, -20, -20], [200.0, 200, 260, 280],
                                            [5.0, 5, 5, 5], [0.0, 0, 300, 300]])])
    got = ops.roi_align(feat, boxes, output_size=7, spatial_scale=scale,
                        sampling_ratio=sampling_ratio, aligned=aligned)
    for k, box in enumerate(boxes.tolist()):
        want = slow_roi_align(feat[0].double().numpy(), box, 7, scale, sampling_ratio, aligned)
        np.testing.assert_allclose(got[k].numpy(), want, atol=1e-5, err_msg=f"box {box}")


def test_host_tensors_go_to_the_device_one_copy_per_dtype(monkeypatch):
    """RoIAlign's per-chunk plans reach a GPU in one copy per dtype (each copy from pageable
    memory waits for the device); the same tensors come out, shapes and values."""
    g = torch.Generator().manual_seed(0)
    plans = [(torch.arange(5), torch.randint(0, 99, (5, 3, 4), generator=g),
              torch.rand(5, 7, 3, generator=g), torch.rand(5, 7, 4, generator=g))
             for _ in range(3)]
    copies = []
    real_to = torch.Tensor.to
    monkeypatch.setattr(torch.Tensor, "to", lambda t, *a, **k: copies.append(t.dtype)
                        or real_to(t, *a, **k))
    moved = ops._to_device(plans, torch.device("cpu"))
    assert sorted(map(str, copies)) == ["torch.float32", "torch.int64"]
    for got, want in zip(moved, plans):
        for a, b in zip(got, want):
            assert a.dtype == b.dtype and torch.equal(a, b)


def test_roi_align_empty():
    out = ops.roi_align(torch.zeros(1, 4, 5, 5), torch.zeros(0, 4), output_size=7,
                        spatial_scale=1.0)
    assert out.shape == (0, 4, 7, 7)


# ----------------------------------------------------------------------------- points, paste

def slow_point_sample(feat, u, v):
    c, h, w = feat.shape
    x, y = u * w - 0.5, v * h - 0.5
    x0, y0 = math.floor(x), math.floor(y)
    out = np.zeros(c)
    for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= yy < h and 0 <= xx < w:  # zero padding outside
                out += wy * wx * feat[:, yy, xx]
    return out


def test_point_sample_matches_loop_including_borders():
    rng = np.random.default_rng(0)
    feat = torch.tensor(rng.normal(size=(2, 3, 6, 9)), dtype=torch.float32)
    pts = torch.tensor(rng.uniform(-0.1, 1.1, (2, 40, 2)), dtype=torch.float32)
    got = reference_ops.point_sample(feat, pts)
    assert got.shape == (2, 3, 40)
    for n in range(2):
        for p in range(40):
            want = slow_point_sample(feat[n].double().numpy(), *pts[n, p].tolist())
            np.testing.assert_allclose(got[n, :, p].numpy(), want, atol=1e-5)


def test_regular_grid_points_are_cell_centres():
    pts = ops.regular_grid_points(2, 4)
    assert pts.shape == (2, 16, 2)
    k = torch.arange(16)
    np.testing.assert_allclose(pts[1, :, 0], ((k % 4) + 0.5) / 4, atol=1e-7)
    np.testing.assert_allclose(pts[1, :, 1], ((k // 4) + 0.5) / 4, atol=1e-7)


def slow_paste(mask, box, h, w, thr):
    m = mask.shape[0]
    out = np.zeros((h, w), bool)
    x0, y0, x1, y1 = box
    for y in range(h):
        for x in range(w):
            u = (x + 0.5 - x0) / (x1 - x0) * m - 0.5
            v = (y + 0.5 - y0) / (y1 - y0) * m - 0.5
            val = slow_point_sample(mask[None], (u + 0.5) / m, (v + 0.5) / m)[0]
            out[y, x] = val >= thr
    return out


def test_paste_masks_matches_loop():
    rng = np.random.default_rng(3)
    masks = torch.tensor(rng.uniform(0, 1, (4, 8, 8)), dtype=torch.float32)
    boxes = torch.tensor([[2.3, 1.7, 15.2, 9.9], [-3.0, -2.0, 6.0, 5.0], [10.0, 4.0, 10.5, 11.0],
                          [0.0, 0.0, 24.0, 16.0]])
    got = ops.paste_masks(masks, boxes, (16, 24), 0.5)
    assert got.dtype == torch.bool and got.shape == (4, 16, 24)
    for k in range(4):
        want = slow_paste(masks[k].double().numpy(), boxes[k].tolist(), 16, 24, 0.5)
        mismatch = (got[k].numpy() != want).sum()
        assert mismatch <= 1, f"box {k}: {mismatch} pixels differ"


def test_paste_masks_only_inside_box_and_empty():
    masks = torch.ones(1, 28, 28)
    got = ops.paste_masks(masks, torch.tensor([[4.0, 2.0, 10.0, 8.0]]), (12, 14))
    ys, xs = np.nonzero(got[0].numpy())
    assert ys.min() >= 2 and ys.max() < 8 and xs.min() >= 4 and xs.max() < 10
    assert ops.paste_masks(torch.zeros(0, 28, 28), torch.zeros(0, 4), (5, 6)).shape == (0, 5, 6)


def test_decode_boxes_matches_formula():
    rng = np.random.default_rng(1)
    boxes = torch.tensor([[10.0, 20.0, 50.0, 60.0], [0.0, 0.0, 5.0, 100.0]])
    deltas = torch.tensor(rng.normal(size=(2, 8)), dtype=torch.float32)
    deltas[0, 2] = 20.0  # beyond the clamp
    got = ops.decode_boxes(deltas, boxes, (10.0, 10.0, 5.0, 5.0))
    for r in range(2):
        x0, y0, x1, y1 = boxes[r].tolist()
        w, h = x1 - x0, y1 - y0
        for c in range(2):
            dx, dy, dw, dh = (deltas[r, 4 * c:4 * c + 4] / torch.tensor([10, 10, 5, 5.0])).tolist()
            dw, dh = min(dw, math.log(1000 / 16)), min(dh, math.log(1000 / 16))
            cx, cy = x0 + 0.5 * w + dx * w, y0 + 0.5 * h + dy * h
            pw, ph = math.exp(dw) * w, math.exp(dh) * h
            want = [cx - pw / 2, cy - ph / 2, cx + pw / 2, cy + ph / 2]
            np.testing.assert_allclose(got[r, 4 * c:4 * c + 4].numpy(), want, rtol=1e-5)


# ----------------------------------------------------------------------------- torchvision

def _torchvision_ops():
    try:
        tv = importlib.import_module("torchvision.ops")
        tv.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)
        return tv
    except Exception:
        pytest.skip("torchvision's compiled ops do not load with this torch build "
                    "(.ci/torchvision-check runs these tests where they do)")


class _CountingOps:
    """torchvision.ops with a call count, to prove our branch really called it."""

    def __init__(self, tv):
        self.tv, self.calls = tv, {"nms": 0, "roi_align": 0}

    def nms(self, *args):
        self.calls["nms"] += 1
        return self.tv.nms(*args)

    def roi_align(self, *args):
        self.calls["roi_align"] += 1
        return self.tv.roi_align(*args)


@pytest.fixture
def branch(monkeypatch):
    """``branch(True)`` switches ops.py to its torchvision branch (as when torchvision's ops
    load at import), ``branch(False)`` to the plain-torch one. The suite's conftest disables
    torchvision at import, so without this fixture the branch never runs."""
    counting = _CountingOps(_torchvision_ops())

    def use(on: bool) -> _CountingOps:
        monkeypatch.setattr(ops, "USE_TORCHVISION", on)
        monkeypatch.setattr(ops, "_TV_OPS", counting if on else None)
        return counting

    return use


def test_torchvision_branch_nms_agrees(branch):
    rng = np.random.default_rng(5)
    boxes = _random_boxes(rng, 300, extent=200.0)
    scores = torch.tensor(rng.permutation(300) / 300.0, dtype=torch.float32)
    ids = torch.tensor(rng.integers(0, 5, 300))
    plain = [ops.nms(boxes, scores, 0.5), ops.batched_nms(boxes, scores, ids, 0.7)]
    assert branch(False).calls["nms"] == 0
    counting = branch(True)
    fast = [ops.nms(boxes, scores, 0.5), ops.batched_nms(boxes, scores, ids, 0.7)]
    assert counting.calls["nms"] >= 2
    assert [t.tolist() for t in fast] == [t.tolist() for t in plain]
    assert fast[0].tolist() == slow_nms(boxes, scores, 0.5)


@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_torchvision_branch_roi_align_agrees(branch, sampling_ratio):
    rng = np.random.default_rng(6)
    boxes = _random_boxes(rng, 200, extent=200.0)
    feat = torch.tensor(rng.normal(size=(1, 8, 40, 50)), dtype=torch.float32)
    kwargs = {"output_size": 7, "spatial_scale": 0.25, "sampling_ratio": sampling_ratio}
    branch(False)
    plain = ops.roi_align(feat, boxes, **kwargs)
    counting = branch(True)
    fast = ops.roi_align(feat, boxes, **kwargs)
    assert counting.calls["roi_align"] == 1
    np.testing.assert_allclose(fast.numpy(), plain.numpy(), atol=1e-5)
    assert np.abs(plain.numpy()).max() > 0.1  # a real comparison, not of zeros


def test_torchvision_branch_whole_model_agrees(branch, r50_model):
    """The full pipeline (RPN and box-head NMS, RoIAlign on every level) on a photo."""
    import cv2

    from golden import IMAGES
    from pixellib.predictor import Predictor

    image = cv2.imread(str(IMAGES / "street.jpg"))
    branch(False)
    plain = Predictor(r50_model, speed="rapid")(image)
    counting = branch(True)
    fast = Predictor(r50_model, speed="rapid")(image)
    assert counting.calls["nms"] > 0 and counting.calls["roi_align"] > 0
    assert len(plain) > 0 and len(fast) == len(plain)
    np.testing.assert_array_equal(fast.class_ids, plain.class_ids)
    np.testing.assert_allclose(fast.boxes, plain.boxes, atol=0.05)
    np.testing.assert_allclose(fast.scores, plain.scores, atol=1e-4)
    for a, b in zip(fast.masks, plain.masks):
        assert (a & b).sum() / max((a | b).sum(), 1) > 0.99


# ----------------------------------------------------------------------------- add + ReLU

@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("alpha", [1, 4])
def test_add_relu_fused_and_fallback(fused, alpha, monkeypatch):
    if not fused:
        monkeypatch.setattr(ops, "_ADD_RELU", None)
    elif ops._ADD_RELU is None:
        pytest.skip("this torch has no fused add + ReLU kernel")
    g = torch.Generator().manual_seed(alpha)
    a, b = torch.randn(3, 5, 7, generator=g), torch.randn(3, 5, 7, generator=g)
    expected = (a + alpha * b).clamp_min(0)
    out = torch.full_like(a, float("nan"))
    assert ops.add_relu(a, b, alpha=alpha, out=out) is out
    assert torch.equal(out, expected)
    assert (out == 0).any() and (out > 0).any()
    ops.add_relu(a, b, alpha=alpha, out=a)  # in place
    assert torch.equal(a, expected)


def test_add_relu_reduced_precision():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 9, generator=g), torch.randn(4, 9, generator=g)
    for dtype in (torch.bfloat16, torch.float16):
        x, y = a.to(dtype), b.to(dtype)
        ops.add_relu(x, y, out=x)
        assert x.dtype == dtype
        assert torch.equal(x, (a.to(dtype) + b.to(dtype)).clamp_min(0))
