"""The numpy results object every core entry point returns.

Coordinates: boxes are ``(x0, y0, x1, y1)`` float32 in original-image pixels (pixel ``(y, x)``
covers ``[x, x+1) x [y, y+1)``); masks are ``(N, H, W)`` bool in the original image size.
Order is the model's: descending score.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .classes import COCO_CLASSES
from .classes import class_ids as coco_class_ids
from .errors import InvalidArgumentError


@dataclass(frozen=True, eq=False)
class Detections:
    boxes: np.ndarray  # (N, 4) float32
    scores: np.ndarray  # (N,) float32 probabilities in [0, 1]
    class_ids: np.ndarray  # (N,) int64, index into COCO_CLASSES
    masks: np.ndarray  # (N, H, W) bool
    image_size: tuple[int, int]  # (H, W) of the original image
    # (N,) int64 ids that persist across video frames (pixellib.media.tracking), or None
    track_ids: np.ndarray | None = None

    def __post_init__(self):
        """Check every field's shape and dtype (raises, so ``python -O`` keeps the checks)."""
        n = len(self.boxes)
        h, w = self.image_size
        expected = {"boxes": ((n, 4), np.float32), "scores": ((n,), np.float32),
                    "class_ids": ((n,), np.int64), "masks": ((n, h, w), np.bool_)}
        for name, (shape, dtype) in expected.items():
            value = getattr(self, name)
            if not isinstance(value, np.ndarray) or value.shape != shape or value.dtype != dtype:
                got = (f"{value.dtype} array of shape {value.shape}"
                       if isinstance(value, np.ndarray) else type(value).__name__)
                raise InvalidArgumentError(
                    f"Detections.{name} must be a {np.dtype(dtype)} array of shape {shape}, "
                    f"got a {got}")
        bad = self.class_ids[(self.class_ids < 0) | (self.class_ids >= len(COCO_CLASSES))]
        if bad.size:
            raise InvalidArgumentError(
                f"Detections.class_ids must be COCO class ids 0..{len(COCO_CLASSES) - 1}, "
                f"got {int(bad[0])}")
        if self.track_ids is not None and (
            not isinstance(self.track_ids, np.ndarray)
            or self.track_ids.shape != (n,) or self.track_ids.dtype != np.int64
        ):
            raise InvalidArgumentError(
                f"Detections.track_ids must be None or an int64 array of shape ({n},), got "
                f"{getattr(self.track_ids, 'dtype', type(self.track_ids).__name__)} "
                f"{getattr(self.track_ids, 'shape', '')}")

    @classmethod
    def empty(cls, image_size: tuple[int, int]) -> Detections:
        h, w = image_size
        return cls(
            boxes=np.zeros((0, 4), np.float32),
            scores=np.zeros((0,), np.float32),
            class_ids=np.zeros((0,), np.int64),
            masks=np.zeros((0, h, w), bool),
            image_size=(int(h), int(w)),
        )

    def __repr__(self) -> str:
        """One line: the count, the image size and the first objects (the arrays are in the
        fields; the default repr printed every box, 10 KB at 100 objects)."""
        h, w = self.image_size
        shown = ", ".join(f"{COCO_CLASSES[int(c)]} {float(s):.2f}"
                          for c, s in zip(self.class_ids[:5], self.scores[:5]))
        more = ", ..." if len(self) > 5 else ""
        tracked = ", tracked" if self.track_ids is not None else ""
        return (f"Detections({len(self)} object{'s' if len(self) != 1 else ''} in {w}x{h}"
                f"{tracked}{': ' + shown + more if len(self) else ''})")

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, index) -> Detections:
        """Select detections with a bool mask, an index array, a slice or an int."""
        if isinstance(index, (bool, np.bool_)):
            raise InvalidArgumentError(
                "index Detections with an int, a slice, an index array or a boolean array "
                f"of length {len(self)}, not a single {type(index).__name__}")
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        elif isinstance(index, tuple) or np.ndim(index) > 1:
            raise InvalidArgumentError(
                "index Detections with an int, a slice, an index array or a boolean array "
                f"of length {len(self)}; it is one-dimensional (got {index!r})")
        boxes = self.boxes[index].reshape(-1, 4)
        return Detections(
            boxes=boxes,
            scores=self.scores[index].reshape(-1),
            class_ids=self.class_ids[index].reshape(-1),
            masks=self.masks[index].reshape(len(boxes), *self.image_size),
            image_size=self.image_size,
            track_ids=None if self.track_ids is None else self.track_ids[index].reshape(-1),
        )

    def __array__(self, dtype=None, copy=None):
        raise TypeError("Detections is not one array: use its .boxes, .scores, .class_ids or "
                        ".masks")

    @property
    def class_names(self) -> list[str]:
        return [COCO_CLASSES[i] for i in self.class_ids]

    def with_classes(self, class_ids) -> Detections:
        """Only the detections whose class is in ``class_ids`` (COCO ids and/or names, as
        :func:`pixellib.classes.class_ids` takes them), order kept."""
        ids = np.asarray(coco_class_ids(class_ids), dtype=np.int64)
        return self[np.isin(self.class_ids, ids)]
