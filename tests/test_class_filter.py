"""Class filters (``segment_target_classes``, ``--classes``) choose detections before the mask
head: the same results as filtering afterwards, and no mask for a dropped class."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pixellib.classes import class_id
from pixellib.predictor import Predictor

CAR = Path(__file__).parent / "data" / "images" / "car_rgba.png"
UMBRELLA, CAT = class_id("umbrella"), class_id("cat")


@pytest.fixture(scope="module")
def predictor(r50_model):
    # As in test_compat: about a dozen umbrellas and a cat on this photo.
    return Predictor(r50_model, speed="rapid", confidence=0.475)


@pytest.fixture(scope="module")
def unfiltered(predictor):
    return predictor(CAR)


def _masked_boxes(predictor):
    """A list that records how many boxes each mask-head call gets, and the hook's handle
    (a forward hook: the head itself runs unchanged)."""
    seen = []
    head = predictor.model.roi_heads.mask_head
    handle = head.register_forward_hook(lambda module, args, out: seen.append(len(args[1])))
    return seen, handle


@pytest.mark.parametrize("classes", [[CAT], [UMBRELLA], [CAT, UMBRELLA], [class_id("car")]])
def test_filtered_results_equal_filtering_afterwards(predictor, unfiltered, classes):
    counts = np.bincount(unfiltered.class_ids, minlength=80)
    assert counts[CAT] >= 1 and counts[UMBRELLA] >= 5  # the photo has both, several umbrellas
    expected = unfiltered.with_classes(classes)
    seen, handle = _masked_boxes(predictor)
    try:
        got = predictor(CAR, classes=classes)
    finally:
        handle.remove()
    assert got.image_size == expected.image_size
    for field in ("boxes", "scores", "class_ids", "masks"):
        np.testing.assert_array_equal(getattr(got, field), getattr(expected, field), field)
    # Masks were computed for the kept detections only (none at all for an absent class).
    assert seen == [len(expected)]


def test_compat_api_filters_before_the_mask_head(r50_model):
    from pixellib.torchbackend.instance import instanceSegmentation

    ins = instanceSegmentation()
    ins.load_model(r50_model, detection_speed="rapid", confidence=0.475, device="cpu")
    seen, handle = _masked_boxes(ins._predictor)
    try:
        results, _ = ins.segmentImage(str(CAR),
                                      segment_target_classes=ins.select_target_classes(cat=True))
    finally:
        handle.remove()
    assert results["class_names"] == ["cat"]
    assert seen == [1]


def test_classes_by_name_or_id_give_the_same_results(predictor, unfiltered):
    by_id = predictor(CAR, classes=[UMBRELLA, CAT])
    for spelled in (["umbrella", "cat"], ["umbrella", CAT], ("Umbrella", np.int64(CAT))):
        got = predictor(CAR, classes=spelled)
        np.testing.assert_array_equal(got.boxes, by_id.boxes)
        np.testing.assert_array_equal(got.masks, by_id.masks)
    one = predictor(CAR, classes="umbrella")
    assert len(one) >= 5 and set(one.class_names) == {"umbrella"}
    assert len(predictor(CAR, classes=UMBRELLA)) == len(one)
    assert unfiltered.with_classes(["umbrella"]).class_names == one.class_names


@pytest.mark.parametrize("classes, message", [
    (["persn"], "unknown class name 'persn'"),
    ([80], "class id must be in 0..79, got 80"),
    ([-1], "class id must be in 0..79, got -1"),
    ([0.7], "whole numbers"),
    ([True], "whole numbers"),
    ({"person": 1}, "got dict"),
    (3.5, "got float"),
])
def test_bad_classes_are_refused_before_the_model_runs(predictor, unfiltered, classes, message):
    from pixellib.errors import InvalidArgumentError

    seen, handle = _masked_boxes(predictor)
    try:
        with pytest.raises(InvalidArgumentError, match=message.replace("(", r"\(")):
            predictor(CAR, classes=classes)
        with pytest.raises(InvalidArgumentError, match=message.replace("(", r"\(")):
            unfiltered.with_classes(classes)
    finally:
        handle.remove()
    assert seen == []
