"""Drawing detections: pure functions of (image, detections) that never mutate their input.

Reproduces PixelLib's ``display_box_instances`` (docs/design.md, "PixelLib's results") except
for the colours: PixelLib shuffles evenly spaced hues with Python's unseeded global RNG, so its
pictures change between runs and video flickers. Here instance ``i`` always gets the same
colour (:func:`instance_colors`), whatever the number of instances.

Conventions: images are ``(H, W, 3)`` uint8 **BGR**; masks ``(N, H, W)`` bool; integer boxes
``(N, 4)`` ``(x1, y1, x2, y2)`` in pixels, as PixelLib's ``r["boxes"]`` (float boxes truncated
to int64); colours are BGR uint8 triples.
"""
from __future__ import annotations

import colorsys
from collections.abc import Sequence

import cv2
import numpy as np

from .errors import InvalidArgumentError
from .structures import Detections

# 1/phi: stepping the hue by this fraction spreads any number of colours evenly and puts
# consecutive instances far apart on the colour wheel.
_GOLDEN_FRACTION = 0.6180339887498949
_WHITE = (255, 255, 255)
# Largest caption scale and line thickness taken. OpenCV 5.0's putText crashes the process
# (segmentation fault) from a font scale of a few thousand; 1000 is a caption ~22000 px tall.
MAX_TEXT_SIZE = 1000.0
MAX_THICKNESS = 1000


def check_style(text_size: float, text_thickness: int, box_thickness: int) -> None:
    """Refuse drawing sizes OpenCV cannot draw, naming the argument (an
    :class:`~pixellib.errors.InvalidArgumentError`). ``box_thickness=-1`` fills the boxes,
    as ``cv2.rectangle`` (and so PixelLib) does."""
    try:
        size = float(text_size)
    except (TypeError, ValueError):
        size = float("nan")
    if isinstance(text_size, bool) or not 0.0 <= size <= MAX_TEXT_SIZE:
        raise InvalidArgumentError(
            f"text_size must be a number from 0 to {MAX_TEXT_SIZE:g}, got {text_size!r}")
    for name, value, lowest in (("text_thickness", text_thickness, 0),
                                ("box_thickness", box_thickness, -1)):
        if (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                or not lowest <= value <= MAX_THICKNESS):
            raise InvalidArgumentError(
                f"{name} must be a whole number from {lowest} to {MAX_THICKNESS}, got "
                f"{value!r}" + (" (-1 fills the box)" if lowest < 0 else ""))


def instance_colors(n: int) -> np.ndarray:
    """``(n, 3)`` uint8 BGR colours, fully saturated and bright; row ``i`` depends only on ``i``.

    Hue of instance ``i`` is ``i / phi mod 1`` (golden-ratio steps), so neighbours differ
    strongly and ``instance_colors(m)[:n] == instance_colors(n)`` for ``m >= n``.
    """
    if n < 0:
        raise InvalidArgumentError(f"number of colours must be >= 0, got {n}")
    hues = (i * _GOLDEN_FRACTION % 1.0 for i in range(n))
    rgb = np.array([colorsys.hsv_to_rgb(h, 1.0, 1.0) for h in hues], np.float64).reshape(n, 3)
    return np.rint(rgb[:, ::-1] * 255.0).astype(np.uint8)


def label_text(name: str, score_percent: int) -> str:
    """PixelLib's caption: ``"person 98.00"`` from the integer percent, only the name for 0."""
    return f"{name} {score_percent:.2f}" if score_percent else name


def draw_detections(
    image_bgr: np.ndarray,
    boxes_int: np.ndarray | None,
    masks: np.ndarray | None,
    labels: Sequence[str] | None,
    *,
    show_boxes: bool = False,
    text_size: float = 0.6,
    text_thickness: int = 1,
    box_thickness: int = 2,
    colors: np.ndarray | None = None,
    alpha: float = 0.5,
) -> np.ndarray:
    """A new image with the masks blended in and, if ``show_boxes``, boxes and captions.

    * ``image_bgr``: ``(H, W, 3)`` uint8 BGR; never modified.
    * ``boxes_int``: ``(N, 4)`` integer ``(x1, y1, x2, y2)``; only needed with ``show_boxes``.
    * ``masks``: ``(N, H, W)`` bool (or ``None`` for no overlay).
    * ``labels``: ``N`` captions (e.g. from :func:`label_text`), ``None`` or ``""`` for none.
    * ``colors``: ``(N, 3)`` or ``(3,)`` uint8 BGR; default :func:`instance_colors`.

    For each instance in order (later ones over earlier ones), as PixelLib does: where the
    mask is True, ``new = old * (1 - alpha) + alpha * colour`` computed in float64 and
    truncated to uint8; then, with ``show_boxes`` and unless the box is all zeros, a
    ``cv2.rectangle`` in the instance colour and the caption with ``cv2.putText``
    (FONT_HERSHEY_SIMPLEX, white, bottom-left corner at ``(x1, y1)``). Only each mask's
    bounding region is touched, so many small masks on a large image stay cheap.
    """
    image = np.asarray(image_bgr)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise InvalidArgumentError(
            f"expected an (H, W, 3) uint8 BGR image, got {image.dtype} of shape {image.shape}"
        )
    if not 0.0 <= alpha <= 1.0:
        raise InvalidArgumentError(f"alpha must be in [0, 1], got {alpha}")
    if show_boxes:
        check_style(text_size, text_thickness, box_thickness)
    if show_boxes and boxes_int is None:
        raise InvalidArgumentError("show_boxes=True needs boxes_int")
    h, w = image.shape[:2]
    n = _count(boxes_int if show_boxes else None, masks, labels)
    if masks is not None:
        masks = np.asarray(masks)
        if masks.shape != (n, h, w):
            raise InvalidArgumentError(f"expected masks of shape {(n, h, w)}, got {masks.shape}")
        masks = masks.astype(bool, copy=False)
    if show_boxes:
        boxes = np.asarray(boxes_int).astype(np.int64, copy=False).reshape(-1, 4)
    palette = _palette(colors, n)

    out = image.copy()
    for i in range(n):
        if masks is not None:
            _blend_mask(out, masks[i], palette[i], alpha)
        if not show_boxes:
            continue
        x1, y1, x2, y2 = (int(v) for v in boxes[i])
        if x1 == y1 == x2 == y2 == 0:
            continue
        colour = tuple(int(c) for c in palette[i])
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, box_thickness)
        if labels is not None and labels[i]:
            cv2.putText(
                out, labels[i], (x1, y1), cv2.FONT_HERSHEY_SIMPLEX, text_size, _WHITE,
                text_thickness,
            )
    return out


def annotate(
    image_bgr: np.ndarray, detections: Detections, *, show_boxes: bool = False,
    show_masks: bool = True, show_labels: bool = True, **kwargs
) -> np.ndarray:
    """The one drawing path for :class:`Detections` (library, PixelLib API and CLI alike).

    :func:`draw_detections` with PixelLib's boxes and captions: boxes are truncated to int64
    and scores shown as ``trunc(score * 100)`` computed in float32, exactly like PixelLib's
    results dict (docs/design.md, "PixelLib's results"). Style options: ``show_masks=False``
    draws no mask overlay (only boxes and captions, when ``show_boxes``); ``show_labels=False``
    draws boxes without captions;
    ``kwargs`` (``text_size``, ``text_thickness``, ``box_thickness``, ``colors``, ``alpha``)
    go to :func:`draw_detections`. Detections with ``track_ids`` (tracked video) are drawn in
    each id's colour (:func:`pixellib.media.tracking.track_colors`) with ``#id`` captions.
    A BGRA image (a transparent cut-out) is drawn on its colour channels, its alpha kept
    except under boxes and captions, which are made opaque so that they show;
    grey, 16-bit or float images are converted as the predictor reads them
    (:func:`~pixellib.media.images.read_image`). An image of another size than the one the
    detections were made on raises :class:`~pixellib.errors.InvalidArgumentError`.
    """
    if not isinstance(image_bgr, np.ndarray):  # a PIL image is RGB: it would be drawn swapped
        raise TypeError(f"annotate draws on a BGR numpy array, got {type(image_bgr).__name__}"
                        + (" (a PIL image is RGB: pass np.asarray(image)[:, :, ::-1])"
                           if hasattr(image_bgr, "getbands") else ""))
    image = image_bgr
    if image.ndim >= 2 and tuple(image.shape[:2]) != tuple(detections.image_size):
        (h, w), (dh, dw) = image.shape[:2], detections.image_size
        raise InvalidArgumentError(
            f"image is {w}x{h} but the detections are for a {dw}x{dh} image; draw them on "
            "the image they were made from")
    if not (image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] in (3, 4)):
        from .media.images import read_image

        image = read_image(image)  # grey, 16-bit, float: as the model saw it
    if image.ndim == 3 and image.shape[2] == 4:
        drawn = annotate(np.ascontiguousarray(image[:, :, :3]), detections,
                         show_boxes=show_boxes, show_masks=show_masks,
                         show_labels=show_labels, **kwargs)
        alpha = image[:, :, 3]
        if show_boxes and len(detections):
            # Boxes and captions are made opaque, or those over transparent pixels (most of
            # them, on a cut-out) would not show. What they cover: drawn alone on black and
            # on white, a pixel they touch differs from one of the two.
            lines = {}
            for base in (0, 255):
                lines[base] = annotate(np.full_like(drawn, base), detections, show_boxes=True,
                                       show_masks=False, show_labels=show_labels, **kwargs)
            touched = (lines[0] != 0).any(axis=2) | (lines[255] != 255).any(axis=2)
            alpha = np.where(touched, np.uint8(255), alpha)
        return np.dstack([drawn, alpha])
    labels = None
    if show_labels:
        percent = (detections.scores * np.float32(100)).astype(np.int64)
        labels = [label_text(name, int(p)) for name, p in zip(detections.class_names, percent)]
    if detections.track_ids is not None:  # tracked video: colour and caption follow the id
        from .media.tracking import track_colors

        kwargs.setdefault("colors", track_colors(detections.track_ids))
        if labels is not None:
            labels = [f"{label} #{k}" for label, k in zip(labels, detections.track_ids)]
    return draw_detections(
        image, detections.boxes.astype(np.int64), detections.masks if show_masks else None,
        labels, show_boxes=show_boxes, **kwargs,
    )


def _count(boxes, masks, labels) -> int:
    counts = {
        name: len(value)
        for name, value in (("boxes", boxes), ("masks", masks), ("labels", labels))
        if value is not None
    }
    if len(set(counts.values())) > 1:
        raise InvalidArgumentError(
            f"boxes, masks and labels disagree on the number of instances: {counts}")
    return next(iter(counts.values()), 0)


def _palette(colors, n: int) -> np.ndarray:
    if colors is None:
        return instance_colors(n)
    palette = np.asarray(colors)
    if palette.shape == (3,):
        palette = np.broadcast_to(palette, (n, 3))
    if palette.shape != (n, 3):
        raise InvalidArgumentError(
            f"expected colors of shape ({n}, 3) or (3,), got {palette.shape}")
    if palette.min(initial=0) < 0 or palette.max(initial=0) > 255:
        raise InvalidArgumentError("colors must be BGR values in [0, 255]")
    return palette.astype(np.uint8)


def _blend_mask(out: np.ndarray, mask: np.ndarray, colour: np.ndarray, alpha: float) -> None:
    """Blend ``colour`` into ``out`` (in place; ``out`` is our copy) inside ``mask`` only."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return
    r0, r1 = rows[0], rows[-1] + 1
    cols = np.flatnonzero(mask[r0:r1].any(axis=0))
    c0, c1 = cols[0], cols[-1] + 1
    region = out[r0:r1, c0:c1]
    if alpha == 0.5:  # floor((old + c) / 2): the float formula's exact value, in integers
        blended = ((region.astype(np.uint16) + colour) >> 1).astype(np.uint8)
    else:
        blended = (region * (1.0 - alpha) + alpha * colour.astype(np.float64)).astype(np.uint8)
    np.copyto(region, blended, where=mask[r0:r1, c0:c1, None])
