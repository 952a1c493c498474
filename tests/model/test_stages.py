"""Stage-by-stage comparison with the reference's traces (street.jpg R50, small.jpg X101).

Each stage is fed the reference's own input for that stage (its proposals, its detections),
so a mismatch points at one module. The traces hold, per case: the padded input shape, the
per-channel mean and std of every FPN level and all of channel 0 of p4-p6, the 1000 RPN
proposals with their logits, the box head's logits and deltas for the first 300 proposals,
the final detections, the coarse 7x7 mask logits of the first 10 detections and the 224x224
mask probabilities (float16) of the first 4. Only these two cases (both full-size "default"
mode) were traced; the other modes are covered end to end by test_golden.py.

Each tolerance sits at least 10x below the change a half-pixel shift causes in the same
quantity (the ``*_half_pixel_shift`` tests check this for every stage). Two stages pick
items by rank, so float noise can flip a near-tie, which no tolerance on values can absorb:

- RPN: per-level NMS keeps one of two overlapping proposals whose logits are ~0.01 apart, and
  a flip there changes the whole chain of anchors behind it (seen for x101 without the
  Winograd convolutions: 3 of 1000 proposals swapped for their 8-pixel neighbours). Such
  swaps are allowed, counted, and each must pair with a swapped proposal on the other side.
- PointRend subdivision refines the 784 most uncertain cells; when the 784th and 785th are
  ~1e-6 apart (r50 box 1 at 112x112 on AVX2 CPUs), the reference refined one cell and we
  the other. The pixels downstream of such near-tie cells are excluded from the strict
  bound (under 2 % of the pixels) and bounded loosely instead.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from golden import IMAGES, box_iou, load_case
from pixellib.model import ops
from pixellib.model.point_rend import uncertain_grid_points
from pixellib.predictor import resize_image

TRACED = [("r50_seed0", "street.jpg", "r50_model"), ("x101_seed1", "small.jpg", "x101_model")]
FPN_CH0_TOL = 2e-3
LOGIT_TOL = 1e-3
DELTA_TOL = 1e-4  # box deltas: noise ~1e-6, a half-pixel shift ~1e-2
PROB_TOL = 1e-3  # twice the float16 step of the trace near 0.5 (4.9e-4)
TIE_EPS = 1e-3  # cells this close to the k-th uncertainty may swap rank under LOGIT_TOL noise


def _forward(model, image):
    x = torch.from_numpy(image.transpose(2, 0, 1).astype(np.float32))
    with torch.inference_mode():
        batch = model.preprocess(x)
        return model.backbone(batch), tuple(x.shape[-2:]), batch


@pytest.fixture(scope="module", params=TRACED, ids=[t[0] for t in TRACED])
def traced(request):
    model_dir, image, fixture = request.param
    model = request.getfixturevalue(fixture)
    golden = load_case(model_dir, image, "default")
    resized = resize_image(cv2.imread(str(IMAGES / image)), 800, 1333)
    assert tuple(resized.shape[:2]) == tuple(golden["resized_hw"])
    features, size, batch = _forward(model, resized)
    return model, golden, features, size, batch, resized


def _t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


def _fpn_errors(features, golden):
    stats = max(
        float(np.abs(getattr(features[f"p{lv}"], fn)(dim=(0, 2, 3)).numpy()
                     - golden[f"trace_p{lv}_channel_{fn}"]).max())
        for lv in range(2, 7) for fn in ("mean", "std")
    )
    ch0 = max(float(np.abs(features[f"p{lv}"][0, 0].numpy() - golden[f"trace_p{lv}_ch0"]).max())
              for lv in (4, 5, 6))
    return stats, ch0


def test_padded_input_and_fpn_levels(traced):
    _, golden, features, _, batch, _ = traced
    assert list(batch.shape) == golden["trace_input_shape"].astype(int).tolist()
    stats, ch0 = _fpn_errors(features, golden)
    assert stats < 1e-4
    assert ch0 < FPN_CH0_TOL


def test_fpn_tolerance_catches_a_half_pixel_shift(traced):
    """The image moved by 8 px, half a p4 cell: channel 0 of p4-p6 leaves the tolerance.
    (Channel means and stds are nearly shift-invariant, so they are no check of position.)"""
    model, golden, _, _, _, resized = traced
    shifted = np.zeros_like(resized)
    shifted[:, 8:] = resized[:, :-8]
    features, _, _ = _forward(model, shifted)
    _, ch0 = _fpn_errors(features, golden)
    assert ch0 > 10 * FPN_CH0_TOL


def _match_proposals(golden, boxes, logits):
    """Proposals paired by box IoU > 0.999; returns (pair logit diffs, unmatched ref idx,
    unmatched our idx)."""
    ref_boxes, ref_logits = golden["trace_proposals_boxes"], golden["trace_proposals_logits"]
    iou = box_iou(ref_boxes, boxes)
    best = iou.argmax(axis=1)
    paired = iou[np.arange(len(ref_boxes)), best] > 0.999
    diffs = np.abs(ref_logits[paired] - logits[best[paired]])
    ours_paired = np.zeros(len(boxes), bool)
    ours_paired[best[paired]] = True
    return diffs, np.flatnonzero(~paired), np.flatnonzero(~ours_paired)


def test_rpn_proposals(traced):
    model, golden, features, size, _, _ = traced
    with torch.inference_mode():
        boxes, logits = model.proposal_generator(features, size)
    boxes, logits = boxes.numpy(), logits.numpy()
    ref_boxes, ref_logits = golden["trace_proposals_boxes"], golden["trace_proposals_logits"]
    assert len(boxes) == len(ref_boxes)
    diffs, ref_only, ours_only = _match_proposals(golden, boxes, logits)
    assert diffs.max() < LOGIT_TOL
    # NMS near-ties (module docstring): at most 1 % swapped, each a neighbour (IoU > the
    # NMS threshold 0.7) of a swapped proposal on the other side with a logit within 0.05.
    assert len(ref_only) == len(ours_only) <= 10
    if len(ref_only):
        iou = box_iou(ref_boxes[ref_only], boxes[ours_only])
        close = np.abs(ref_logits[ref_only][:, None] - logits[ours_only][None]) < 0.05
        assert ((iou > 0.7) & close).any(axis=1).all()


def test_rpn_tolerance_catches_a_half_pixel_shift(traced):
    model, golden, features, size, _, _ = traced
    with torch.inference_mode():
        boxes, logits = model.proposal_generator(features, size)
    boxes = boxes.numpy() + np.float32([0.5, 0, 0.5, 0])
    _, ref_only, _ = _match_proposals(golden, boxes, logits.numpy())
    assert len(ref_only) > 500  # every proposal under ~500 px wide leaves IoU 0.999


def _box_head_errors(model, golden, features, shift=0.0):
    n = len(golden["trace_box_predictor_class_logits"])
    proposals = _t(golden["trace_proposals_boxes"][:n]).clone()
    proposals[:, [0, 2]] += shift
    with torch.inference_mode():
        logits, deltas = model.roi_heads.box_logits(features, proposals)
    return (np.abs(logits.numpy() - golden["trace_box_predictor_class_logits"]).max(),
            np.abs(deltas.numpy() - golden["trace_box_predictor_box_deltas"]).max())


def test_box_head_on_reference_proposals(traced):
    model, golden, features, _, _, _ = traced
    logit_err, delta_err = _box_head_errors(model, golden, features)
    assert logit_err < LOGIT_TOL and delta_err < DELTA_TOL


def test_box_head_tolerance_catches_a_half_pixel_shift(traced):
    model, golden, features, _, _, _ = traced
    logit_err, delta_err = _box_head_errors(model, golden, features, shift=0.5)
    assert logit_err > 100 * LOGIT_TOL and delta_err > 50 * DELTA_TOL  # measured 180x, 108x


def _detect(model, golden, features, size, shift=0.0):
    proposals = _t(golden["trace_proposals_boxes"]).clone()
    proposals[:, [0, 2]] += shift
    with torch.inference_mode():
        return model.roi_heads.detect(features, proposals, size, score_thresh=0.5)


def _detections_agree(model, golden, features, size, shift=0.0) -> bool:
    boxes, scores, classes = _detect(model, golden, features, size, shift)
    ref_boxes, ref_scores = golden["trace_detections_boxes"], golden["trace_detections_scores"]
    return (np.array_equal(classes.numpy(), golden["trace_detections_classes"])
            and np.abs(boxes.numpy() - ref_boxes).max() < 1e-2
            and np.abs(scores.numpy() - ref_scores).max() < 1e-4)


def test_detections_before_masks(traced):
    model, golden, features, size, _, _ = traced
    assert _detections_agree(model, golden, features, size)


def test_detections_tolerance_catches_a_half_pixel_shift(traced):
    """Shifted proposals change the detections (r50: 36 instead of 34; x101: boxes)."""
    model, golden, features, size, _, _ = traced
    assert not _detections_agree(model, golden, features, size, shift=0.5)


def _subdivided_probs(head, p2, boxes, classes):
    """The head's subdivision (``mask_logits``) replayed step by step, also returning the
    cells (R, 224, 224) downstream of a near-tie in the uncertain-point selection: a cell
    within TIE_EPS of the k-th uncertainty, and after each x2 bilinear upsampling everything
    such a cell feeds (its 2x2 children and their neighbours)."""
    r = len(boxes)
    table = head.point_head.coarse_table(head.coarse_logits(p2, boxes), classes)
    fine = head._fine_inputs(p2, r)
    res = head.init_resolution
    points = ops.regular_grid_points(r, res, p2.device)
    logits = head.point_logits(fine, table, boxes, classes, points).view(r, 1, res, res)
    ties = torch.zeros((r, 1, res, res))
    for _ in range(head.steps):
        logits = F.interpolate(logits, scale_factor=2, mode="bilinear", align_corners=False)
        ties = F.max_pool2d(F.interpolate(ties, scale_factor=2, mode="nearest"), 3, 1, 1)
        res *= 2
        uncertainty = logits.abs().view(r, res * res)
        kth = uncertainty.kthvalue(head.num_points, dim=1).values[:, None]
        near = ((uncertainty - kth).abs() <= TIE_EPS).view(r, 1, res, res)
        ties = torch.maximum(ties, near.float())
        idx, points = uncertain_grid_points(logits, head.num_points)
        values = head.point_logits(fine, table, boxes, classes, points)
        logits = logits.view(r, res * res).scatter_(1, idx, values).view(r, 1, res, res)
    return logits[:, 0], ties[:, 0] > 0


def _mask_stages(model, features, golden, shift=0.0):
    boxes = _t(golden["trace_detections_boxes"]).clone()
    boxes[:, [0, 2]] += shift
    classes = _t(golden["trace_detections_classes"])
    k_coarse = len(golden["trace_coarse_mask_logits"])
    k_mask = len(golden["trace_mask_logits_224_first10"])
    head = model.roi_heads.mask_head
    with torch.inference_mode():
        coarse = head.coarse_logits(features["p2"], boxes[:k_coarse])
        probs = head(features["p2"], boxes[:k_mask], classes[:k_mask])
        logits, ties = _subdivided_probs(head, features["p2"], boxes[:k_mask], classes[:k_mask])
    assert torch.equal(logits.sigmoid(), probs)  # the replay is the head's own computation
    coarse_err = np.abs(coarse.numpy() - golden["trace_coarse_mask_logits"]).max()
    # The trace holds the 224x224 sigmoid of the predicted class, stored as float16.
    prob_err = np.abs(probs.numpy() - golden["trace_mask_logits_224_first10"].astype(np.float32))
    return coarse_err, prob_err, ties.numpy()


def test_pointrend_coarse_and_subdivided_masks(traced):
    model, golden, features, _, _, _ = traced
    coarse_err, prob_err, ties = _mask_stages(model, features, golden)
    assert coarse_err < LOGIT_TOL
    assert ties.mean() < 0.02
    assert prob_err[~ties].max() < PROB_TOL
    # Inside a near-tie's reach one cell was refined on one side and interpolated on the
    # other; measured up to 0.0044, a half-pixel shift gives ~0.15 outside it.
    assert prob_err[ties].max(initial=0) < 2e-2


def test_mask_tolerances_catch_a_half_pixel_shift(traced):
    model, golden, features, _, _, _ = traced
    coarse_err, prob_err, ties = _mask_stages(model, features, golden, shift=0.5)
    assert coarse_err > 10 * LOGIT_TOL
    assert prob_err[~ties].max() > 100 * PROB_TOL
