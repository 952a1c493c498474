"""Parity with PixelLib 0.7.1 on the golden photos (rule: tests/data/golden, README rule).

Every case runs the full pipeline from a synthetic checkpoint *file* (restricted unpickler,
key conversion, folded norms) on the photo read as PixelLib reads it.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from golden import CASES, IMAGES, load_case, match
from pixellib.predictor import Predictor

_results: dict = {}


def _run(request, model_dir, image, mode):
    key = (model_dir, image, mode)
    if key not in _results:
        model = request.getfixturevalue("r50_model" if model_dir == "r50_seed0" else "x101_model")
        predictor = Predictor(model, speed=None if mode == "default" else mode)
        dets = predictor(cv2.imread(str(IMAGES / image)))
        golden = load_case(*key)
        _results[key] = (golden, dets, match(golden, dets.boxes, dets.scores, dets.class_ids,
                                             dets.masks))
    return _results[key]


@pytest.mark.parametrize("model_dir,image,mode", CASES, ids=["/".join(c) for c in CASES])
def test_case_matches_reference(request, model_dir, image, mode):
    golden, dets, result = _run(request, model_dir, image, mode)
    assert result.ok, str(result)
    assert list(dets.masks.shape[1:]) == golden["mask_shape"][1:].tolist()


def test_all_cases_mean_mask_iou(request):
    ious, report = [], []
    for case in CASES:
        _, _, result = _run(request, *case)
        ious += result.mask_ious
        report.append(f"{'/'.join(case)}: {result}")
    print("\n".join(report))
    print(f"pairs {len(ious)}, mean mask IoU {np.mean(ious):.5f}, worst {min(ious):.5f}")
    assert sum(r.ok for *_, r in _results.values()) == len(CASES)
    assert np.mean(ious) >= 0.995


@pytest.mark.parametrize("model_dir,image,mode", [("r50_seed0", "street.jpg", "default"),
                                                  ("r50_seed0", "small.jpg", "fast")])
def test_pixellib_integer_fields_match(request, model_dir, image, mode):
    """The truncated int boxes and percent scores PixelLib returns, for matched cases."""
    golden, dets, _ = _run(request, model_dir, image, mode)
    assert len(dets) == len(golden["scores"])
    np.testing.assert_array_equal(dets.boxes.astype(np.int64), golden["pixellib_boxes"])
    np.testing.assert_array_equal((dets.scores * 100).astype(np.int64), golden["pixellib_scores"])
    assert dets.class_names == list(golden["pixellib_class_names"])
