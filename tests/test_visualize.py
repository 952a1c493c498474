"""pixellib.visualize: purity, determinism, PixelLib's blend maths, boxes only on request."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from pixellib.structures import Detections
from pixellib.visualize import annotate, draw_detections, instance_colors, label_text

RNG = np.random.default_rng(0)


def _scene(n=3, h=60, w=80):
    image = RNG.integers(0, 256, (h, w, 3), np.uint8)
    masks = np.zeros((n, h, w), bool)
    boxes = np.zeros((n, 4), np.int64)
    for i in range(n):
        x0, y0 = 5 + 15 * i, 4 + 10 * i
        masks[i, y0 : y0 + 20, x0 : x0 + 25] = True
        boxes[i] = (x0, y0, x0 + 25, y0 + 20)
    return image, boxes, masks, [f"thing{i} {90 - i:.2f}" for i in range(n)]


def _pixellib_overlay(image, masks, colors, alpha=0.5):
    """PixelLib's apply_mask, channel by channel over the full image (the slow reference)."""
    out = image.copy()
    for mask, colour in zip(masks, colors, strict=True):
        for c in range(3):
            out[:, :, c] = np.where(
                mask, out[:, :, c] * (1 - alpha) + alpha * float(colour[c]), out[:, :, c]
            )
    return out


def test_instance_colors_are_deterministic_distinct_and_prefix_stable():
    colors = instance_colors(12)
    assert colors.shape == (12, 3) and colors.dtype == np.uint8
    np.testing.assert_array_equal(colors, instance_colors(12))
    np.testing.assert_array_equal(instance_colors(5), colors[:5])
    assert len({tuple(c) for c in colors}) == 12
    neighbour_gap = np.abs(colors[1:].astype(int) - colors[:-1].astype(int)).sum(axis=1)
    assert neighbour_gap.min() > 150
    assert colors.max(axis=1).min() == 255  # fully bright, as PixelLib's V = 1
    assert instance_colors(0).shape == (0, 3)
    with pytest.raises(ValueError):
        instance_colors(-1)


def test_input_is_never_modified_and_result_is_deterministic():
    image, boxes, masks, labels = _scene()
    before = (image.copy(), boxes.copy(), masks.copy())
    first = draw_detections(image, boxes, masks, labels, show_boxes=True)
    second = draw_detections(image, boxes, masks, labels, show_boxes=True)
    np.testing.assert_array_equal(image, before[0])
    np.testing.assert_array_equal(boxes, before[1])
    np.testing.assert_array_equal(masks, before[2])
    assert first is not image and not np.shares_memory(first, image)
    np.testing.assert_array_equal(first, second)


def test_read_only_input_is_fine():
    image, boxes, masks, labels = _scene()
    before = image.copy()
    want = draw_detections(before.copy(), boxes, masks, labels, show_boxes=True)
    image.setflags(write=False)
    got = draw_detections(image, boxes, masks, labels, show_boxes=True)
    np.testing.assert_array_equal(got, want)  # same drawing as from a writable image
    np.testing.assert_array_equal(image, before)
    assert not np.array_equal(got, before)


def test_blend_on_a_known_pixel_truncates():
    image = np.full((4, 4, 3), 101, np.uint8)
    masks = np.zeros((1, 4, 4), bool)
    masks[0, 1, 2] = True
    out = draw_detections(image, None, masks, None, colors=np.array([[200, 0, 255]]))
    # 101 * 0.5 + 0.5 * 200 = 150.5 -> 150; 50.5 -> 50; 178.0 -> 178
    assert out[1, 2].tolist() == [150, 50, 178]
    untouched = np.ones((4, 4), bool)
    untouched[1, 2] = False
    assert (out[untouched] == 101).all()


def test_overlay_matches_pixellib_formula_with_overlaps():
    image = RNG.integers(0, 256, (50, 70, 3), np.uint8)
    masks = RNG.random((6, 50, 70)) < 0.3  # overlapping, scattered masks
    colors = instance_colors(6)
    out = draw_detections(image, None, masks, None)
    np.testing.assert_array_equal(out, _pixellib_overlay(image, masks, colors))
    out = draw_detections(image, None, masks, None, alpha=0.3)
    np.testing.assert_array_equal(out, _pixellib_overlay(image, masks, colors, alpha=0.3))


def test_later_masks_blend_over_earlier_ones():
    image = np.zeros((2, 2, 3), np.uint8)
    masks = np.ones((2, 2, 2), bool)
    colors = np.array([[200, 200, 200], [100, 0, 0]], np.uint8)
    out = draw_detections(image, None, masks, None, colors=colors)
    assert out[0, 0].tolist() == [100, 50, 50]  # (0/2 + 100) / 2 + 50, then 50 / 2


def test_boxes_and_captions_only_when_asked():
    image, boxes, masks, labels = _scene()
    plain = draw_detections(image, boxes, masks, labels)
    np.testing.assert_array_equal(plain, _pixellib_overlay(image, masks, instance_colors(3)))
    boxed = draw_detections(image, boxes, masks, labels, show_boxes=True)
    assert (boxed != plain).any()
    # the rectangle's top-left corner has the instance colour (drawn after the masks before it)
    x1, y1 = boxes[0, :2]
    assert boxed[y1, x1].tolist() == instance_colors(3)[0].tolist()


def test_box_and_caption_match_cv2_calls():
    image = np.zeros((60, 120, 3), np.uint8)
    boxes = np.array([[10, 30, 90, 55]])
    out = draw_detections(image, boxes, None, ["person 98.00"], show_boxes=True,
                          colors=np.array([[0, 255, 0]]), box_thickness=3, text_size=0.5)
    expected = image.copy()
    cv2.rectangle(expected, (10, 30), (90, 55), (0, 255, 0), 3)
    cv2.putText(expected, "person 98.00", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                (255, 255, 255), 1)
    np.testing.assert_array_equal(out, expected)


def test_all_zero_box_is_skipped_like_pixellib():
    image = np.zeros((20, 20, 3), np.uint8)
    out = draw_detections(image, np.zeros((1, 4), np.int64), None, ["x"], show_boxes=True)
    assert not out.any()


def test_no_detections_returns_a_copy():
    image = RNG.integers(0, 256, (10, 12, 3), np.uint8)
    out = draw_detections(image, np.zeros((0, 4)), np.zeros((0, 10, 12), bool), [],
                          show_boxes=True)
    np.testing.assert_array_equal(out, image)
    assert out is not image


@pytest.mark.parametrize(
    "kwargs, phrase",
    [
        ({"image_bgr": np.zeros((5, 5), np.uint8)}, "(H, W, 3)"),
        ({"image_bgr": np.zeros((5, 5, 3), np.float32)}, "uint8"),
        ({"masks": np.zeros((2, 6, 6), bool)}, "masks of shape"),
        ({"labels": ["a"]}, "disagree"),
        ({"colors": np.zeros((3, 3))}, "colors of shape"),
        ({"alpha": 1.5}, "alpha"),
        ({"boxes_int": None}, "needs boxes_int"),
    ],
)
def test_bad_arguments(kwargs, phrase):
    args = {"image_bgr": np.zeros((5, 5, 3), np.uint8), "boxes_int": np.zeros((2, 4)),
            "masks": np.zeros((2, 5, 5), bool), "labels": ["a", "b"], "show_boxes": True}
    args.update(kwargs)
    with pytest.raises(ValueError) as info:
        draw_detections(**args)
    assert phrase in str(info.value)


def test_label_text_and_annotate():
    assert label_text("person", 98) == "person 98.00"
    assert label_text("person", 0) == "person"
    image, boxes, masks, _ = _scene(2)
    dets = Detections(
        boxes=boxes.astype(np.float32) + np.float32(0.7),
        scores=np.array([0.99999, 1.0], np.float32),
        class_ids=np.array([0, 2], np.int64),
        masks=masks,
        image_size=image.shape[:2],
    )
    out = annotate(image, dets, show_boxes=True)
    expected = draw_detections(image, boxes, masks, ["person 99.00", "car 100.00"],
                               show_boxes=True)  # truncated percent, like PixelLib
    np.testing.assert_array_equal(out, expected)
    # A transparent cut-out (BGRA): drawn on the colours, the alpha channel kept, except
    # where boxes and captions are drawn: opaque, or they would not show over the
    # transparent background (most of them did not, after remove-bg).
    alpha = (masks.any(0) * 255).astype(np.uint8)
    bgra = annotate(np.dstack([image, alpha]), dets, show_boxes=True, show_masks=False)
    assert bgra.shape == (*image.shape[:2], 4)
    opaque_rgb = annotate(image, dets, show_boxes=True, show_masks=False)
    np.testing.assert_array_equal(bgra[..., :3], opaque_rgb)
    lines = (opaque_rgb != image).any(axis=2)  # what the boxes and captions changed
    assert lines.any() and (bgra[..., 3][lines] == 255).all()
    assert (bgra[..., 3][lines & (alpha == 0)] == 255).any()
    kept = ~lines & (bgra[..., 3] != 255)
    np.testing.assert_array_equal(bgra[..., 3][kept], alpha[kept])
    untouched = ~(annotate(np.full_like(image, 0), dets, show_boxes=True,
                           show_masks=False) != 0).any(axis=2)
    untouched &= ~(annotate(np.full_like(image, 255), dets, show_boxes=True,
                            show_masks=False) != 255).any(axis=2)
    np.testing.assert_array_equal(bgra[..., 3][untouched], alpha[untouched])
    # Without boxes nothing is drawn over the cut-out: its alpha is as it was.
    np.testing.assert_array_equal(annotate(np.dstack([image, alpha]), dets)[..., 3], alpha)


def test_many_masks_touch_only_their_regions_and_equal_a_full_frame_blend():
    """Blending works on each mask's bounding region only (what keeps 100 masks on a large
    photo cheap; timed in benchmarks/effects_overhead.py, not here): the result must equal
    blending every mask over the whole frame, and pixels outside every mask stay as they
    were."""
    h, w = 669, 1000
    image = RNG.integers(0, 256, (h, w, 3), np.uint8)
    masks = np.zeros((100, h, w), bool)
    for i in range(100):
        y, x = RNG.integers(0, h - 80), RNG.integers(0, w - 120)
        masks[i, y : y + 80, x : x + 120] = RNG.random((80, 120)) < 0.7
    boxes = np.zeros((100, 4), np.int64)
    out = draw_detections(image, boxes, masks, ["x"] * 100, show_boxes=True)
    expected = image.copy()
    for mask, color in zip(masks, instance_colors(100)):
        expected[mask] = (expected[mask] * 0.5 + 0.5 * color.astype(np.float64)).astype(np.uint8)
    np.testing.assert_array_equal(out, expected)
    untouched = ~masks.any(axis=0)
    np.testing.assert_array_equal(out[untouched], image[untouched])


def _one_person() -> Detections:
    """One person, box (10, 5)-(30, 20) and a mask filling it, on a 40x30 image."""
    masks = np.zeros((1, 30, 40), bool)
    masks[0, 5:20, 10:30] = True
    return Detections(boxes=np.array([[10, 5, 30, 20]], np.float32),
                      scores=np.array([0.9], np.float32), class_ids=np.array([0], np.int64),
                      masks=masks, image_size=(30, 40))


def test_annotate_names_a_size_mismatch_and_reads_grey_images():
    from pixellib.errors import InvalidArgumentError
    from pixellib.visualize import annotate

    det = _one_person()
    grey = (np.arange(30 * 40) % 256).astype(np.uint8).reshape(30, 40)
    with pytest.raises(InvalidArgumentError, match="image is 20x15 but the detections are for "
                                                   "a 40x30 image"):
        annotate(grey[::2, ::2], det)
    bgr = np.repeat(grey[:, :, None], 3, axis=2)
    expected = annotate(bgr, det, show_boxes=True)
    for same in (grey, grey[:, :, None], grey.astype(np.float32),
                 grey.astype(np.uint16) << 8):
        np.testing.assert_array_equal(annotate(same, det, show_boxes=True), expected)
    assert not np.array_equal(expected, bgr)  # something was drawn


def test_annotate_refuses_what_is_not_a_bgr_array():
    """A PIL image (RGB) was drawn on with its red and blue swapped, in silence."""
    from PIL import Image

    from pixellib.visualize import annotate

    det = _one_person()
    rgb = Image.fromarray(np.zeros((30, 40, 3), np.uint8))
    with pytest.raises(TypeError, match=r"got Image \(a PIL image is RGB: pass "):
        annotate(rgb, det)
    with pytest.raises(TypeError, match="annotate draws on a BGR numpy array, got list"):
        annotate(np.zeros((30, 40, 3), np.uint8).tolist(), det)


def test_box_thickness_minus_one_fills_the_box_as_opencv_does():
    """PixelLib passes box_thickness to cv2.rectangle, where -1 fills the box."""
    from pixellib.visualize import annotate

    det = _one_person()
    image = np.zeros((30, 40, 3), np.uint8)
    filled = annotate(image, det, show_boxes=True, show_labels=False, box_thickness=-1)
    outline = annotate(image, det, show_boxes=True, show_labels=False, box_thickness=1)
    inside = (slice(8, 18), slice(13, 28))
    assert (filled[inside] == filled[12, 20]).all() and filled[12, 20].any()
    assert not np.array_equal(filled[inside], outline[inside])
