"""Effects on instance masks: background blur / pixelate / grey / colour / replace / remove,
object blur / pixelate, and transparent cut-outs and mask files.

::

    from pixellib.effects import apply_effect
    out = apply_effect(image_bgr, predictor(image_bgr), "blur-bg=extreme", classes=["person"])

All functions are pure: they return new arrays and never modify their inputs.
"""
from .apply import apply_effect, class_ids, keep_weight, object_mask, pixelate, select
from .background import fit_background, load_background
from .spec import BLUR_LEVELS, EFFECTS, Effect, parse_color, parse_effect

__all__ = [
    "BLUR_LEVELS", "EFFECTS", "Effect", "apply_effect", "class_ids", "fit_background",
    "keep_weight", "load_background", "object_mask", "parse_color", "parse_effect", "pixelate",
    "select",
]
