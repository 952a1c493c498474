"""Parity with PixelLib 0.7.1 on the golden photos; the rule is stated in
tests/data/golden/README.md and implemented in tests/golden.py.

Every case runs the full pipeline from a synthetic checkpoint *file* (restricted unpickler,
key conversion, folded norms) on the photo read as PixelLib reads it.
"""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from golden import CASES, IMAGES, load_case, match
from pixellib.predictor import Predictor

_results: dict = {}
# benchmarks/gpu_check.sh runs these cases on CUDA (the same code, another device).
DEVICE = os.environ.get("PIXELLIB_TEST_DEVICE", "cpu")


def _run(request, model_dir, image, mode):
    key = (model_dir, image, mode)
    if key not in _results:
        model = request.getfixturevalue("r50_model" if model_dir == "r50_seed0" else "x101_model")
        predictor = Predictor(model, speed=None if mode == "default" else mode,
                              device=DEVICE)
        dets = predictor(cv2.imread(str(IMAGES / image)))
        golden = load_case(*key)
        _results[key] = (golden, dets, match(golden, dets.boxes, dets.scores, dets.class_ids,
                                             dets.masks))
    return _results[key]


# Unpaired detections allowed per case: none, except where a near-tie in a rank-based pick
# (NMS, top-k, the 100-detection cap) was seen to flip between machines; each entry says why.
ALLOWED_UNMATCHED: dict[tuple[str, str, str], tuple[int, str]] = {}
# Over all 21 cases together. Earlier runs paired all 1,563 golden detections (figures the
# README quoted); re-measure with `pytest -s tests/test_golden.py -k together` and list any
# near-tie case in ALLOWED_UNMATCHED with its reason.
TOTAL_UNMATCHED = 0
# Mean over all pairs and worst pair, just under the measured 0.99999 and 0.994.
MIN_MEAN_IOU = 0.9999
MIN_WORST_IOU = 0.99


@pytest.mark.parametrize("model_dir,image,mode", CASES, ids=["/".join(c) for c in CASES])
def test_case_matches_reference(request, model_dir, image, mode):
    golden, dets, result = _run(request, model_dir, image, mode)
    allowed = ALLOWED_UNMATCHED.get((model_dir, image, mode), (0, ""))[0]
    assert result.unmatched <= allowed, str(result)
    assert len(result.mask_ious) >= result.golden - allowed, str(result)  # pairs in this case
    assert all(v >= 0.95 for v in result.mask_ious), str(result)
    assert not result.mask_ious or np.mean(result.mask_ious) >= 0.99, str(result)
    assert all(d <= 1 for d in result.score_diffs), str(result)
    assert list(dets.masks.shape[1:]) == golden["mask_shape"][1:].tolist()


def test_all_cases_together(request):
    ious, unmatched, report = [], 0, []
    for case in CASES:
        _, _, result = _run(request, *case)
        ious += result.mask_ious
        unmatched += result.unmatched
        report.append(f"{'/'.join(case)}: {result}")
    print("\n".join(report))
    print(f"pairs {len(ious)}, unmatched {unmatched}, mean mask IoU {np.mean(ious):.5f}, "
          f"worst {min(ious):.5f}")
    golden_total = sum(len(load_case(*case)["scores"]) for case in CASES)
    assert len(ious) >= golden_total - TOTAL_UNMATCHED
    assert unmatched <= TOTAL_UNMATCHED
    assert np.mean(ious) >= MIN_MEAN_IOU
    assert min(ious) >= MIN_WORST_IOU


@pytest.mark.parametrize("model_dir,image,mode", [("r50_seed0", "street.jpg", "default"),
                                                  ("r50_seed0", "small.jpg", "fast")])
def test_pixellib_integer_fields_match(request, model_dir, image, mode):
    """The truncated int boxes and percent scores PixelLib returns, for matched cases."""
    golden, dets, _ = _run(request, model_dir, image, mode)
    assert len(dets) == len(golden["scores"])
    np.testing.assert_array_equal(dets.boxes.astype(np.int64), golden["pixellib_boxes"])
    np.testing.assert_array_equal((dets.scores * 100).astype(np.int64), golden["pixellib_scores"])
    assert dets.class_names == list(golden["pixellib_class_names"])
