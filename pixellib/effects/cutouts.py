"""Cut-outs and mask files: what users take from instance masks into other tools.

* :func:`cutout_objects`: each object as a BGRA picture cropped to its mask's extent, alpha
  255 on the mask and 0 elsewhere (colour also 0 there, so nothing else of the image leaks);
* :func:`object_masks`: each object's binary mask, uint8 0 / 255, full image size;
* :func:`label_image`: one instance-id image, 0 = background, ``k`` = the ``k``-th object in
  result order (1-based). Where masks overlap, the lower ``k`` (higher score) wins. uint8
  up to 255 objects, uint16 beyond.

The ``save_*`` functions write PNGs atomically (:mod:`pixellib.media.files`) as
``<prefix>object_<k>_<class>.png``, ``<prefix>mask_<k>_<class>.png`` and
``<prefix>labels.png``, ``k`` from 1 in result order, so file ``k`` is always object ``k``
and label value ``k``. An object with an empty mask has no cut-out file.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..errors import InvalidArgumentError
from ..media.files import Rollback, write_bytes
from ..media.images import write_image
from ..structures import Detections
from .apply import checked_image


def cutout_objects(image_bgr: np.ndarray, detections: Detections) -> list[np.ndarray]:
    """One ``(h, w, 4)`` uint8 BGRA cut-out per detection (``(0, 0, 4)`` for an empty mask)."""
    image = checked_image(image_bgr, detections, InvalidArgumentError)
    out = []
    for mask in detections.masks:
        rows = np.flatnonzero(mask.any(axis=1))
        if rows.size == 0:
            out.append(np.zeros((0, 0, 4), np.uint8))
            continue
        cols = np.flatnonzero(mask.any(axis=0))
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        inside = mask[r0:r1, c0:c1]
        crop = np.zeros((r1 - r0, c1 - c0, 4), np.uint8)
        crop[:, :, :3] = np.where(inside[:, :, None], image[r0:r1, c0:c1], 0)
        crop[:, :, 3] = inside * np.uint8(255)
        out.append(crop)
    return out


def object_masks(detections: Detections) -> list[np.ndarray]:
    """One ``(H, W)`` uint8 mask per detection: 255 on the object, 0 elsewhere."""
    return [m * np.uint8(255) for m in detections.masks]


def label_image(detections: Detections) -> np.ndarray:
    """``(H, W)`` instance ids: 0 background, ``k`` object ``k`` (uint8, uint16 if > 255)."""
    n = len(detections)
    if n > np.iinfo(np.uint16).max:
        raise InvalidArgumentError(f"a label image holds at most 65535 objects, got {n}")
    dtype = np.uint8 if n <= 255 else np.uint16
    labels = np.zeros(detections.image_size, dtype)
    for k in range(n, 0, -1):  # lower k painted last: it wins where masks overlap
        labels[detections.masks[k - 1]] = k
    return labels


def _name(detections: Detections, k: int) -> str:
    return detections.class_names[k - 1].replace(" ", "_")


def save_cutouts(image_bgr: np.ndarray, detections: Detections, folder, *,
                 prefix: str = "", rollback: Rollback | None = None) -> list[Path]:
    """Write :func:`cutout_objects` as ``<folder>/<prefix>object_<k>_<class>.png``. With
    ``rollback`` (:class:`pixellib.media.files.Rollback`), each file that was there before is
    kept aside first, so that the caller can undo the whole group."""
    written = []
    for k, crop in enumerate(cutout_objects(image_bgr, detections), start=1):
        if crop.size:
            path = Path(folder) / f"{prefix}object_{k}_{_name(detections, k)}.png"
            written.append(_write(path, rollback, write_image, crop))
    return written


def save_masks(detections: Detections, folder, *, prefix: str = "",
               rollback: Rollback | None = None) -> list[Path]:
    """Write each binary mask as ``<prefix>mask_<k>_<class>.png`` and the instance-id image
    as ``<prefix>labels.png`` (8- or 16-bit PNG); return the paths, labels last.
    ``rollback``: as :func:`save_cutouts`."""
    folder = Path(folder)
    written = [
        _write(folder / f"{prefix}mask_{k}_{_name(detections, k)}.png", rollback, write_image,
               mask)
        for k, mask in enumerate(object_masks(detections), start=1)
    ]
    labels = label_image(detections)
    ok, encoded = cv2.imencode(".png", labels)  # write_image takes 8-bit only; labels may be 16
    if not ok:  # pragma: no cover - PNG encodes any uint8/uint16 array
        raise InvalidArgumentError(f"cannot encode the label image for {str(folder)!r}")
    written.append(_write(folder / f"{prefix}labels.png", rollback, write_bytes,
                          encoded.tobytes()))
    return written


def _write(path: Path, rollback: Rollback | None, write, content) -> Path:
    if rollback is not None:
        rollback.made(path.parent)
        rollback.before_write(path)
    return write(path, content)
