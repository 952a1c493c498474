"""One drawing path: ``visualize.annotate`` with style options serves the library, the
PixelLib-compatible class and the CLI."""
from __future__ import annotations

import argparse

import numpy as np
from test_effects import make_detections, make_image

from pixellib.cli import outputs
from pixellib.torchbackend.instance import results
from pixellib.visualize import annotate, draw_detections


def test_no_overlay_draws_boxes_and_labels_only():
    image, det = make_image(), make_detections()
    image0 = image.copy()
    plain = annotate(image, det, show_boxes=True, show_masks=False)
    assert np.array_equal(image, image0)
    labels = ["person 90.00", "car 80.00", "dog 30.00"]
    assert np.array_equal(plain, draw_detections(image, det.boxes.astype(np.int64), None, labels,
                                                 show_boxes=True))
    # Mask pixels away from every box outline and caption keep their colour.
    assert np.array_equal(plain[20:30, 15:25], image[20:30, 15:25])
    overlay = annotate(image, det, show_boxes=True)
    assert not np.array_equal(overlay[20:30, 15:25], image[20:30, 15:25])
    no_labels = annotate(image, det, show_boxes=True, show_masks=False, show_labels=False)
    assert np.array_equal(no_labels, draw_detections(image, det.boxes.astype(np.int64), None,
                                                     None, show_boxes=True))


def test_pixellib_class_and_cli_draw_through_annotate():
    image, det = make_image(1), make_detections()
    compat = results.draw(image, det, show_bboxes=True, text_size=0.6, text_thickness=1,
                          box_thickness=2)
    assert np.array_equal(compat, annotate(image, det, show_boxes=True))
    args = argparse.Namespace(boxes=False, no_overlay=True, effect=None, feather=0)
    assert np.array_equal(outputs.render(image, det, args),
                          annotate(image, det, show_boxes=True, show_masks=False))
    args = argparse.Namespace(boxes=True, no_overlay=False, effect=outputs.parse_effect(
        "gray-bg"), feather=0, effect_background=None)
    from pixellib.effects import apply_effect
    assert np.array_equal(outputs.render(image, det, args), annotate(
        apply_effect(image, det, "gray-bg"), det, show_boxes=True, show_masks=False))
