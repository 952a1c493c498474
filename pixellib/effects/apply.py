"""Applying an effect: a pure function of an image and its detections.

The selected detections' masks are merged into one object mask. A background effect changes
the pixels outside it, an object effect the pixels inside it; the other pixels are copied
unchanged. With ``feather=F`` the border is softened inside the object: a mask pixel at
distance ``d`` from the nearest pixel outside the mask (1 on the border) keeps the object's
pixels with weight ``min(1, d / F)``, and pixels outside the mask keep none of them. So
only the ``F`` mask pixels nearest the border are blended, every other pixel is exactly what
the hard-edged effect gives, and nothing of the old background is kept outside the object
(a ramp centred on the border kept the background's colour half-visible around every cut-out:
a green-screen fringe). A feather as wide as an object leaves none of its pixels fully kept.

Pixel rules (``image`` BGR uint8):

* blur: ``cv2.blur`` (box filter, PixelLib's choice) with a ``K`` x ``K`` kernel;
* pixelate: blocks of ``B`` x ``B`` aligned to the image's top-left corner, each filled with
  its rounded mean (edge blocks average the pixels they have);
* grey: ``cv2.COLOR_BGR2GRAY`` replicated to three channels;
* colour: the solid colour;
* replace: the background picture fitted to cover the image
  (:func:`~pixellib.effects.background.fit_background`);
* remove: BGRA; object pixels keep their colour with alpha 255, background pixels become
  ``(0, 0, 0, 0)`` (their colour is dropped too, so nothing of the background stays in the
  file); with feathering, the alpha is the rounded keep weight.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..classes import class_ids as coco_class_ids
from ..errors import EffectError, InvalidArgumentError
from ..structures import Detections
from .background import fit_background, load_background
from .spec import Effect, parse_effect


def select(detections: Detections, classes=None, min_score=None) -> Detections:
    """The detections whose class is in ``classes`` (ids or names; None: all) and whose
    score is above ``min_score`` (None: no threshold), strictly, as the model's confidence
    threshold keeps them: ``min_score`` equal to a ``confidence`` keeps what it kept."""
    keep = np.ones(len(detections), bool)
    if classes is not None:
        keep &= np.isin(detections.class_ids, class_ids(classes))
    if min_score is not None:
        threshold = float(min_score)
        if not 0.0 <= threshold <= 1.0:
            raise EffectError(f"min_score must be in [0, 1], got {min_score}")
        keep &= detections.scores > np.float32(threshold)
    return detections if keep.all() else detections[keep]


def class_ids(classes) -> np.ndarray:
    """COCO class ids from an iterable of ids and/or names (or one name)
    (:func:`pixellib.classes.class_ids`, its errors as :class:`EffectError`)."""
    try:
        return np.array(coco_class_ids(classes), dtype=np.int64)
    except InvalidArgumentError as e:
        raise EffectError(str(e)) from None


def object_mask(detections: Detections) -> np.ndarray:
    """``(H, W)`` bool union of the detections' masks."""
    if len(detections) == 0:
        return np.zeros(detections.image_size, bool)
    return np.logical_or.reduce(detections.masks, axis=0)


def keep_weight(mask: np.ndarray, feather: float) -> np.ndarray | None:
    """Float32 weight of the object pixels: 0 outside the mask, rising inside it over the
    ``feather`` pixels nearest the border to 1 (module notes); None when ``feather`` is 0
    (use the hard mask)."""
    if feather <= 0:
        return None
    m = mask.astype(np.uint8)
    if not m.any():
        return np.zeros(mask.shape, np.float32)
    if m.all():
        return np.ones(mask.shape, np.float32)
    inside = cv2.distanceTransform(m, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)  # 0 outside
    return np.minimum(inside / np.float32(feather), np.float32(1.0)).astype(np.float32)


def apply_effect(image_bgr: np.ndarray, detections: Detections, effect, *, classes=None,
                 min_score=None, feather: float = 0, background=None) -> np.ndarray:
    """A new image with ``effect`` (an :class:`Effect` or its text) applied.

    ``classes`` (COCO ids or names) and ``min_score`` select which detections are "the
    object"; ``feather`` softens the border over that many pixels (0: hard edges);
    ``background`` is the picture for ``replace-bg`` (a BGR array or a path; default: the
    path in the effect). Returns ``(H, W, 3)`` uint8 BGR, or ``(H, W, 4)`` BGRA for
    ``remove-bg``. Neither ``image_bgr`` nor ``detections`` is modified.
    """
    effect = parse_effect(effect)
    image = checked_image(image_bgr, detections, EffectError)
    try:
        feather = float(feather)
    except (TypeError, ValueError):
        raise EffectError(f"feather must be a number of pixels, got {feather!r}") from None
    if not 0 <= feather <= 10_000:
        raise EffectError(f"feather must be between 0 and 10000 pixels, got {feather}")
    if effect.name == "replace-bg":
        source = background if background is not None else effect.background
        if source is None:
            raise EffectError("replace-bg needs a background picture: replace-bg=PATH, or "
                              "apply_effect(..., background=picture)")
        backdrop = fit_background(load_background(source), image.shape[:2])
    mask = object_mask(select(detections, classes, min_score))
    weight = keep_weight(mask, feather)
    h, w = image.shape[:2]

    if effect.name == "remove-bg":
        alpha = (mask * np.uint8(255)) if weight is None else np.rint(weight * 255).astype(
            np.uint8)
        out = np.dstack([image, alpha])
        out[alpha == 0] = 0
        return out
    if effect.on_objects:
        # Only the objects' bounding region needs the filtered pixels.
        region = _region(mask if weight is None else weight > 0, effect, (h, w))
        if region is None:
            return image.copy()
        r0, r1, c0, c1 = region
        changed = image.copy()
        changed[r0:r1, c0:c1] = _filtered(image[r0:r1, c0:c1], effect)
        if weight is None:
            return np.where(mask[:, :, None], changed, image)
        return _blend(changed, image, weight)
    if effect.name == "replace-bg":
        changed = backdrop
    else:
        changed = _filtered(image, effect)
    if weight is None:
        return np.where(mask[:, :, None], image, changed)
    return _blend(image, changed, weight)


def _filtered(image: np.ndarray, effect: Effect) -> np.ndarray:
    """The whole of ``image`` with the effect's filter."""
    if effect.kernel is not None:
        return cv2.blur(image, (effect.kernel, effect.kernel))
    if effect.block is not None:
        return pixelate(image, effect.block)
    if effect.name == "gray-bg":
        return cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    if effect.name == "color-bg":
        r, g, b = effect.color
        return np.broadcast_to(np.array([b, g, r], np.uint8), image.shape)
    raise EffectError(f"effect {effect.name!r} has no filter")  # pragma: no cover


def pixelate(image: np.ndarray, block: int) -> np.ndarray:
    """Blocks of ``block`` x ``block`` (from the top-left corner) filled with their rounded
    per-channel mean; partial blocks at the right and bottom edges average what they hold."""
    h, w = image.shape[:2]
    rows, cols = np.arange(0, h, block), np.arange(0, w, block)
    sums = np.add.reduceat(np.add.reduceat(image.astype(np.uint32), rows, axis=0), cols, axis=1)
    counts = np.outer(np.diff(np.append(rows, h)), np.diff(np.append(cols, w)))
    means = np.floor(sums / counts[:, :, None] + 0.5).astype(np.uint8)
    return np.repeat(np.repeat(means, block, axis=0)[:h], block, axis=1)[:, :w]


def _region(mask: np.ndarray, effect: Effect, size) -> tuple[int, int, int, int] | None:
    """Rows/columns to filter so the object pixels get exactly the whole-image filter:
    the mask's extent, widened by the blur radius or snapped to the pixel blocks."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    h, w = size
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    if effect.kernel is not None:
        # A box filter reads K // 2 pixels around; image borders are reflected alike in the
        # crop and the whole image only when the crop reaches them, so widen by 2 radii.
        pad = effect.kernel
        return max(r0 - pad, 0), min(r1 + pad, h), max(c0 - pad, 0), min(c1 + pad, w)
    b = effect.block
    return r0 // b * b, min(-(-r1 // b) * b, h), c0 // b * b, min(-(-c1 // b) * b, w)


def _blend(keep: np.ndarray, changed: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``keep * weight + changed * (1 - weight)`` rounded; exact where weight is 0 or 1."""
    wgt = weight[:, :, None]
    out = keep.astype(np.float32) * wgt + changed.astype(np.float32) * (1.0 - wgt)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def checked_image(image_bgr, detections: Detections, error: type[Exception]) -> np.ndarray:
    """``image_bgr`` as an array, checked to be (H, W, 3) uint8 BGR of the detections' size;
    raises ``error`` saying what is wrong."""
    image = np.asarray(image_bgr)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise error(
            f"expected an (H, W, 3) uint8 BGR image, got {image.dtype} of shape {image.shape}"
        )
    if tuple(image.shape[:2]) != tuple(detections.image_size):
        raise error(
            f"image is {image.shape[1]}x{image.shape[0]} but the detections are for "
            f"{detections.image_size[1]}x{detections.image_size[0]}"
        )
    return image
