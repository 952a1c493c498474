"""Stage-by-stage comparison with the reference's traces (street.jpg R50, small.jpg X101).

Each stage is fed the reference's own input for that stage (its proposals, its detections),
so a mismatch points at one module. Tolerances are ~100x the float noise measured here and
~100x below what a half-pixel shift of the boxes causes (checked in the last test).
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from golden import IMAGES, box_iou, load_case
from pixellib.predictor import resize_image

TRACED = [("r50_seed0", "street.jpg", "r50_model"), ("x101_seed1", "small.jpg", "x101_model")]


@pytest.fixture(scope="module", params=TRACED, ids=[t[0] for t in TRACED])
def traced(request):
    model_dir, image, fixture = request.param
    model = request.getfixturevalue(fixture)
    golden = load_case(model_dir, image, "default")
    resized = resize_image(cv2.imread(str(IMAGES / image)), 800, 1333)
    assert tuple(resized.shape[:2]) == tuple(golden["resized_hw"])
    x = torch.from_numpy(resized.transpose(2, 0, 1).astype(np.float32))
    with torch.inference_mode():
        batch = model.preprocess(x)
        features = model.backbone(batch)
    return model, golden, features, tuple(x.shape[-2:]), batch


def _t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


def test_padded_input_and_fpn_levels(traced):
    _, golden, features, _, batch = traced
    assert list(batch.shape) == golden["trace_input_shape"].astype(int).tolist()
    for level in range(2, 7):
        fmap = features[f"p{level}"]
        np.testing.assert_allclose(fmap.mean(dim=(0, 2, 3)).numpy(),
                                   golden[f"trace_p{level}_channel_mean"], atol=1e-4)
        np.testing.assert_allclose(fmap.std(dim=(0, 2, 3)).numpy(),
                                   golden[f"trace_p{level}_channel_std"], atol=1e-4)
    for level in (4, 5, 6):
        np.testing.assert_allclose(features[f"p{level}"][0, 0].numpy(),
                                   golden[f"trace_p{level}_ch0"], atol=2e-3)


def test_rpn_proposals(traced):
    model, golden, features, size, _ = traced
    with torch.inference_mode():
        boxes, logits = model.proposal_generator(features, size)
    ref_boxes, ref_logits = golden["trace_proposals_boxes"], golden["trace_proposals_logits"]
    assert len(boxes) == len(ref_boxes)
    np.testing.assert_allclose(logits.numpy(), ref_logits, atol=1e-3)
    # Equal logits may come out in either order: compare as sets of boxes.
    assert box_iou(ref_boxes, boxes.numpy()).max(axis=1).min() > 0.999


def test_box_head_on_reference_proposals(traced):
    model, golden, features, _, _ = traced
    n = len(golden["trace_box_predictor_class_logits"])
    with torch.inference_mode():
        proposals = _t(golden["trace_proposals_boxes"][:n])
        logits, deltas = model.roi_heads.box_logits(features, proposals)
    np.testing.assert_allclose(logits.numpy(), golden["trace_box_predictor_class_logits"],
                               atol=1e-3)
    np.testing.assert_allclose(deltas.numpy(), golden["trace_box_predictor_box_deltas"], atol=1e-3)


def test_detections_before_masks(traced):
    model, golden, features, size, _ = traced
    with torch.inference_mode():
        boxes, scores, classes = model.roi_heads.detect(
            features, _t(golden["trace_proposals_boxes"]), size, score_thresh=0.5
        )
    np.testing.assert_array_equal(classes.numpy(), golden["trace_detections_classes"])
    np.testing.assert_allclose(boxes.numpy(), golden["trace_detections_boxes"], atol=1e-2)
    np.testing.assert_allclose(scores.numpy(), golden["trace_detections_scores"], atol=1e-4)


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
    coarse_err = np.abs(coarse.numpy() - golden["trace_coarse_mask_logits"]).max()
    # The trace holds the 224x224 sigmoid of the predicted class, stored as float16.
    prob_err = np.abs(probs.numpy() - golden["trace_mask_logits_224_first10"].astype(np.float32))
    return coarse_err, prob_err.max()


def test_pointrend_coarse_and_subdivided_masks(traced):
    model, golden, features, _, _ = traced
    coarse_err, prob_err = _mask_stages(model, features, golden)
    assert coarse_err < 1e-3
    assert prob_err < 2e-3


def test_tolerances_catch_a_half_pixel_shift(traced):
    model, golden, features, _, _ = traced
    coarse_err, prob_err = _mask_stages(model, features, golden, shift=0.5)
    assert coarse_err > 1e-2 and prob_err > 2e-2
