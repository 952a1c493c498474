"""Turning detections into what people take away: outlines, cut-out objects, COCO JSON.

Conventions: images ``(H, W, 3)`` uint8 BGR; masks ``(H, W)`` or ``(N, H, W)`` bool; integer
boxes ``(x1, y1, x2, y2)`` (PixelLib's ``r["boxes"]``); points are ``(x, y)`` = (column, row)
pixel indices. PixelLib's behaviour: docs/design.md, "PixelLib's results".
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from .classes import COCO_CLASSES, COCO_FILE_NAMES
from .effects.cutouts import cutout_objects, label_image, object_masks, save_cutouts, save_masks  # noqa: E501
from .errors import InvalidArgumentError
from .media.files import Rollback, joined
from .media.images import write_image
from .structures import Detections
from .wording import shortened

__all__ = [
    "BOX_EXTRACT_PREFIX", "COCO_CATEGORY_IDS", "MASK_EXTRACT_PREFIX", "check_rle_runs",
    "cutout_objects", "extract_objects", "label_image", "mask_polygons", "mask_to_rle",
    "object_masks", "remove_files", "rle_to_mask", "save_cutouts", "save_extracts",
    "save_masks", "to_coco_json",
]

#: Official COCO category id of each of the 80 model classes (index = class id). COCO numbers
#: 91 categories but only these 80 were annotated; ids 12, 26, 29, 30, 45, 66, 68, 69, 71, 83
#: and 91 are unused.
COCO_CATEGORY_IDS: tuple[int, ...] = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
    27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51,
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77,
    78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90,
)
assert len(COCO_CATEGORY_IDS) == len(COCO_CLASSES) == 80


def mask_polygons(mask: np.ndarray) -> list[np.ndarray]:
    """Outlines of a ``(H, W)`` mask as a list of ``(K, 2)`` int64 ``(x, y)`` point arrays.

    Same points as PixelLib's ``mask_points_values=True`` (imantics ``Mask.polygons()``):
    a 1-pixel zero border is added, ``cv2.findContours(RETR_LIST, CHAIN_APPROX_SIMPLE)`` traces
    every outer and hole boundary, and the offset maps points back to original pixel indices.
    The points are pixel centres on the boundary of the True region; contour order is
    OpenCV's. An empty mask gives ``[]``.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise InvalidArgumentError(f"expected an (H, W) mask, got shape {mask.shape}")
    padded = np.pad(mask.astype(bool).astype(np.uint8), 1)
    contours, _ = cv2.findContours(
        padded, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE, offset=(-1, -1)
    )
    return [c.reshape(-1, 2).astype(np.int64) for c in contours]


def extract_objects(
    image_bgr: np.ndarray,
    masks: np.ndarray | None,
    boxes_int: np.ndarray | None,
    *,
    from_box: bool = False,
    drop_gaps: bool = False,
) -> list[np.ndarray]:
    """One ``(h, w, 3)`` uint8 BGR crop per instance (new arrays; the image is not touched).

    * Mask mode (default, ``masks`` ``(N, H, W)`` bool): the object's pixels on black, cropped
      to the mask's bounding extent (rows ``min..max`` and columns ``min..max`` holding a True
      pixel). With ``drop_gaps``, as PixelLib crops (``np.ix_``, its API here uses it), only
      the rows and columns that hold a True pixel are kept, which also drops the empty rows
      and columns *between* the parts of a split mask, closing the gap; for a mask in one
      part both give the same crop.
    * Box mode (``from_box=True``, ``boxes_int`` ``(N, 4)`` ``(x1, y1, x2, y2)``):
      ``image[y1:y2, x1:x2]``, end-exclusive like PixelLib, clipped to the image.

    An empty mask or box gives a ``(0, 0, 3)`` array.
    """
    image = np.asarray(image_bgr)
    if image.ndim != 3 or image.shape[2] != 3:
        raise InvalidArgumentError(f"expected an (H, W, 3) BGR image, got shape {image.shape}")
    h, w = image.shape[:2]
    if from_box:
        if boxes_int is None:
            raise InvalidArgumentError("from_box=True needs boxes_int")
        boxes = np.asarray(boxes_int).astype(np.int64, copy=False).reshape(-1, 4)
        crops = []
        for x1, y1, x2, y2 in boxes.tolist():
            x1, x2 = max(x1, 0), min(x2, w)
            y1, y2 = max(y1, 0), min(y2, h)
            crops.append(_crop(image, y1, y2, x1, x2))
        return crops
    if masks is None:
        raise InvalidArgumentError("mask extraction needs masks")
    masks = np.asarray(masks)
    if masks.ndim != 3 or masks.shape[1:] != (h, w):
        raise InvalidArgumentError(f"expected masks of shape (N, {h}, {w}), got {masks.shape}")
    crops = []
    for mask in masks.astype(bool, copy=False):
        rows = np.flatnonzero(mask.any(axis=1))
        if rows.size == 0:
            crops.append(np.zeros((0, 0, 3), image.dtype))
            continue
        cols = np.flatnonzero(mask.any(axis=0))
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        inside = mask[r0:r1, c0:c1, None]
        crop = np.where(inside, image[r0:r1, c0:c1], 0).astype(image.dtype)
        if drop_gaps and (rows.size < r1 - r0 or cols.size < c1 - c0):
            crop = crop[np.ix_(rows - r0, cols - c0)]
        crops.append(crop)
    return crops


def _crop(image: np.ndarray, y1: int, y2: int, x1: int, x2: int) -> np.ndarray:
    if y2 <= y1 or x2 <= x1:
        return np.zeros((0, 0, 3), image.dtype)
    return image[y1:y2, x1:x2].copy()


def mask_to_rle(mask: np.ndarray) -> dict:
    """COCO compressed RLE of a ``(H, W)`` mask: ``{"size": [H, W], "counts": str}``.

    The pixels are read column by column (Fortran order); runs alternate starting with a run
    of zeros (possibly empty). The run lengths are written in the ASCII form COCO tools use:
    from the third run on, each is stored as the difference to the run two before, then
    emitted as 5-bit little-endian groups, each group + 48 as one character, bit 0x20 meaning
    "more groups follow" and bit 0x10 of the last group the sign.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise InvalidArgumentError(f"expected an (H, W) mask, got shape {mask.shape}")
    h, w = mask.shape
    flat = mask.astype(bool).ravel(order="F")
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.concatenate([[0], changes, [flat.size]])
    runs = np.diff(edges).tolist() if flat.size else []
    if flat.size and flat[0]:
        runs.insert(0, 0)
    return {"size": [int(h), int(w)], "counts": _encode_counts(runs)}


def _encode_counts(runs: Sequence[int]) -> str:
    out = []
    for i, run in enumerate(runs):
        value = run - runs[i - 2] if i > 2 else run
        more = True
        while more:
            group = value & 0x1F
            value >>= 5  # arithmetic shift: a negative value tends to -1
            more = value != -1 if group & 0x10 else value != 0
            out.append(chr(group + 48 + (0x20 if more else 0)))
    return "".join(out)


def _decode_counts(text: str) -> list[int]:
    runs: list[int] = []
    pos = 0
    while pos < len(text):
        value, shift, more = 0, 0, True
        while more:
            if pos >= len(text):
                raise InvalidArgumentError("RLE counts string ends in the middle of a number")
            group = ord(text[pos]) - 48
            if not 0 <= group < 64:
                raise InvalidArgumentError(f"invalid character {text[pos]!r} in RLE counts")
            value |= (group & 0x1F) << shift
            more = bool(group & 0x20)
            pos += 1
            shift += 5
            if not more and group & 0x10:
                value |= -1 << shift  # sign-extend
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def check_rle_runs(runs: Sequence[int], h: int, w: int) -> None:
    """Raise :class:`InvalidArgumentError` unless ``runs`` (decoded RLE counts) are >= 0 and
    cover an ``h x w`` mask exactly."""
    if any(r < 0 for r in runs) or sum(runs) != h * w:
        raise InvalidArgumentError(
            f"RLE runs do not describe a {h}x{w} mask (runs must be >= 0 and add up to "
            f"{h * w}, they add up to {sum(runs)})")


def rle_to_mask(rle: dict) -> np.ndarray:
    """Decode COCO RLE to an ``(H, W)`` bool mask.

    ``counts`` may be the compressed ``str``/``bytes`` or the uncompressed list of runs.

    Raises ``ValueError`` when the runs are negative or do not add up to ``H * W``.
    """
    problem = _rle_problem(rle)
    if problem:
        raise InvalidArgumentError(
            f"not a COCO RLE ({problem}): expected {{'size': [height, width], 'counts': ...}}, "
            f"got {shortened(repr(rle), 80)}")
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    runs = _decode_counts(counts) if isinstance(counts, str) else [int(c) for c in counts]
    check_rle_runs(runs, h, w)
    values = np.arange(len(runs)) % 2 == 1
    return np.repeat(values, runs).reshape((h, w), order="F")


def _rle_problem(rle) -> str | None:
    if not isinstance(rle, dict):
        return f"a {type(rle).__name__}, not a dict"
    missing = [key for key in ("size", "counts") if key not in rle]
    if missing:
        return f"no {' or '.join(repr(k) for k in missing)} key"
    size = rle["size"]
    if (isinstance(size, (str, bytes)) or np.ndim(size) != 1 or len(size) != 2
            or not all(isinstance(v, (int, np.integer)) and v >= 0 for v in size)):
        return "'size' must be [height, width], two whole numbers"
    if not isinstance(rle["counts"], (str, bytes, list, tuple, np.ndarray)):
        return f"'counts' must be a string or a list of runs, not {type(rle['counts']).__name__}"
    return None


def to_coco_json(
    detections: Detections, image_id: int = 1, file_name: str | os.PathLike | None = None
) -> dict:
    """A COCO-format dict (``json.dump``-able) for one image.

    * ``"images"``: ``[{"id", "width", "height", "file_name"}]``.
    * ``"annotations"``: one per detection, in order: ``"id"`` (1-based), ``"image_id"``,
      ``"category_id"`` (official COCO id, :data:`COCO_CATEGORY_IDS`, not the 0-based class
      id), ``"bbox"`` ``[x, y, width, height]`` float pixels from the detection box,
      ``"score"`` float in [0, 1], ``"segmentation"`` compressed RLE (:func:`mask_to_rle`),
      ``"area"`` (mask pixel count, float) and ``"iscrowd": 0``. The list of annotations is
      also what COCO's ``loadRes`` takes as detection results (pycocotools' ``loadRes``
      fails on an empty list: with no detection, skip it, as ``pixellib evaluate`` does).
    * ``"categories"``: the 80 ``{"id", "name"}`` with COCO's spelling ("hair drier").
    """
    if isinstance(image_id, (bool, np.bool_)) or not isinstance(image_id, (int, np.integer)):
        raise InvalidArgumentError(f"image_id must be a whole number, got {image_id!r}")
    image_id = int(image_id)  # a numpy integer is not JSON
    h, w = detections.image_size
    annotations = []
    for k in range(len(detections)):
        x0, y0, x1, y1 = (float(v) for v in detections.boxes[k])
        mask = detections.masks[k]
        annotations.append(
            {
                "id": k + 1,
                "image_id": image_id,
                "category_id": COCO_CATEGORY_IDS[int(detections.class_ids[k])],
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "score": float(detections.scores[k]),
                "segmentation": mask_to_rle(mask),
                "area": float(np.count_nonzero(mask)),
                "iscrowd": 0,
            }
        )
    return {
        "images": [
            {"id": image_id, "width": int(w), "height": int(h),
             "file_name": os.fspath(file_name) if file_name else ""}
        ],
        "annotations": annotations,
        "categories": [
            {"id": cid, "name": name} for cid, name in zip(COCO_CATEGORY_IDS, COCO_FILE_NAMES)
        ],
    }


#: File name prefixes of saved extracts, as PixelLib's tutorial (tests/data/seed_doc.md) names them:
#: ``segmented_object_1.jpg`` (mask cut-out) and ``object_extract_1.jpg`` (box crop).
MASK_EXTRACT_PREFIX = "segmented_object"
BOX_EXTRACT_PREFIX = "object_extract"


def save_extracts(crops: list[np.ndarray], folder: str | Path, *, from_box: bool,
                  prefix: str = "", rollback: Rollback | None = None) -> list[Path]:
    """Write ``crops`` as ``<folder>/<prefix>segmented_object_<k>.jpg`` (or
    ``object_extract_<k>.jpg`` with ``from_box``), ``k`` from 1 in result order.

    An empty crop (an empty mask or a degenerate box) has no pixels to encode and is
    skipped; the numbering still counts it, so file ``k`` is always result ``k``. When a
    write fails (a full disk...), the files of the same names that were there before are put
    back, the new ones removed (and the folder if this call made it) before the error is
    raised: never a partial set. With ``rollback``
    (:class:`pixellib.media.files.Rollback`), the writes join that group instead, for the
    caller to commit or undo with its other files.
    """
    stem = BOX_EXTRACT_PREFIX if from_box else MASK_EXTRACT_PREFIX
    written: list[Path] = []
    with joined(rollback) as group:
        group.made(folder)
        for k, crop in enumerate(crops, start=1):
            if crop.size:
                path = Path(folder) / f"{prefix}{stem}_{k}.jpg"
                group.before_write(path)
                written.append(write_image(path, crop))
    return written


def remove_files(files: list[Path], folder: Path | None = None) -> None:
    """Delete ``files`` (written by a step that then failed), then ``folder`` if that leaves
    it empty; what cannot be removed is left (the step's own error is the one to say)."""
    for path in files:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
    if folder is not None:
        with contextlib.suppress(OSError):
            folder.rmdir()
