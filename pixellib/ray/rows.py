"""The row each image becomes on a cluster, and back.

One row per input image, small enough to stream through an object store by the million: no
dense masks, which for a 1000x750 photo with 10 objects would be 7.5 MB of bools per row
(COCO RLE strings of the same masks are a few kB).

Columns (:data:`SCHEMA`, the same in Parquet and JSON Lines):

* ``path`` (the id: the input path as Ray reads it; a remote URI loses its scheme),
  ``width``, ``height`` (null on an error row);
* ``class_ids``, ``class_names``, ``scores``, ``boxes`` (``[x0, y0, x1, y1]`` float pixels),
  one entry per detection, in the model's order (descending score);
* ``masks_rle``: per detection the ``counts`` string of COCO compressed RLE
  (:func:`pixellib.export.mask_to_rle`); its ``size`` is ``[height, width]`` of the row;
* ``polygons``: null, or (when asked for) JSON: per detection a list of outlines, each a list
  of ``[x, y]`` points (:func:`pixellib.export.mask_polygons`);
* ``error``: null, or why the image has no detections (``ImageReadError: ...``).
"""
from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
import pyarrow as pa

from pixellib.errors import InvalidArgumentError
from pixellib.export import mask_polygons, mask_to_rle, rle_to_mask
from pixellib.structures import Detections

SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("class_ids", pa.list_(pa.int64())),
        ("class_names", pa.list_(pa.string())),
        ("scores", pa.list_(pa.float32())),
        ("boxes", pa.list_(pa.list_(pa.float32()))),
        ("masks_rle", pa.list_(pa.string())),
        ("polygons", pa.string()),
        ("error", pa.string()),
    ]
)


def detections_row(path: str, det: Detections, *, polygons: bool = False) -> dict:
    """The row of an image that was segmented (``error`` null)."""
    h, w = det.image_size
    outlines = None
    if polygons:
        outlines = json.dumps([[p.tolist() for p in mask_polygons(m)] for m in det.masks])
    return {
        "path": path,
        "width": int(w),
        "height": int(h),
        "class_ids": [int(c) for c in det.class_ids],
        "class_names": list(det.class_names),
        "scores": [float(s) for s in det.scores],
        "boxes": det.boxes.tolist(),
        "masks_rle": [mask_to_rle(m)["counts"] for m in det.masks],
        "polygons": outlines,
        "error": None,
    }


def error_row(path: str, reason: str) -> dict:
    """The row of an image that could not be segmented: empty lists and the reason."""
    return {
        "path": path, "width": None, "height": None, "class_ids": [], "class_names": [],
        "scores": [], "boxes": [], "masks_rle": [], "polygons": None,
        "error": " ".join(reason.split()),
    }


def rows_table(rows: list[dict]) -> pa.Table:
    """Rows as an Arrow table with the fixed :data:`SCHEMA` (so that a batch of only error
    rows has the same column types as any other)."""
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def row_detections(row: Mapping) -> Detections:
    """Rebuild the :class:`~pixellib.structures.Detections` of a row (masks decoded).

    Raises ``ValueError`` for an error row.
    """
    if row.get("error"):
        raise InvalidArgumentError(f"row {row.get('path')!r} is an error row: {row['error']}")
    h, w = int(row["height"]), int(row["width"])
    rles = list(row["masks_rle"])
    masks = [rle_to_mask({"size": [h, w], "counts": c}) for c in rles]
    return Detections(
        boxes=np.asarray([list(b) for b in row["boxes"]], np.float32).reshape(-1, 4),
        scores=np.asarray(list(row["scores"]), np.float32).reshape(-1),
        class_ids=np.asarray(list(row["class_ids"]), np.int64).reshape(-1),
        masks=np.asarray(masks, bool).reshape(len(rles), h, w),
        image_size=(h, w),
    )
