"""Stable object ids across video frames: a small IoU tracker.

Each frame's :class:`~pixellib.structures.Detections` go to :meth:`Tracker.update`, which
returns them with ``track_ids`` set: an object keeps its id while it moves, through a short
occlusion, and loses it for good once it has been gone for more than ``max_age`` frames.

How a frame is matched:

1. every live track predicts where its box is now: its last box moved on by its velocity (a
   running average of its per-frame box change), once per frame since it was last seen (a
   shrinking box keeps at least half its last size, rather than turn inside out);
2. the IoU of every (predicted box, detected box) pair is computed; pairs of different
   classes score 0 (``per_class``);
3. greedy assignment: the pair with the highest IoU is matched first, then the next best
   among the unmatched, down to ``iou_threshold``. With the few objects of a video frame,
   greedy and optimal (Hungarian) assignment agree except in contrived ties;
4. unmatched detections start new tracks (ids count up from 1 and are never reused);
   unmatched tracks age by one frame and are dropped when older than ``max_age``.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from ..errors import InvalidArgumentError
from ..structures import Detections
from ..visualize import instance_colors


@dataclass
class _Track:
    track_id: int
    class_id: int
    box: np.ndarray  # (4,) float64, where it was last seen
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))
    misses: int = 0  # frames since it was last seen

    def predicted(self) -> np.ndarray:
        box = self.box + self.velocity * (self.misses + 1)
        # A shrinking box (an object moving away) extrapolated over a few missed frames would
        # turn inside out and overlap nothing: keep its predicted centre and at least half
        # the size it was last seen at.
        centre = (box[:2] + box[2:]) / 2
        half = np.maximum(box[2:] - box[:2], (self.box[2:] - self.box[:2]) / 2) / 2
        return np.concatenate([centre - half, centre + half])


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(len(a), len(b))`` IoU of ``(x0, y0, x1, y1)`` boxes."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]).clip(0) * (a[:, 3] - a[:, 1]).clip(0)
    area_b = (b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def greedy_match(scores: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """``(row, col)`` pairs, best score first, each row and column used once, scores >=
    ``threshold``."""
    pairs = []
    if scores.size == 0:
        return pairs
    rows_used, cols_used = set(), set()
    order = np.argsort(-scores, axis=None, kind="stable")
    for flat in order:
        r, c = divmod(int(flat), scores.shape[1])
        if scores[r, c] < threshold:
            break
        if r in rows_used or c in cols_used:
            continue
        rows_used.add(r)
        cols_used.add(c)
        pairs.append((r, c))
    return pairs


class Tracker:
    """Give detections ids that persist across frames (see the module doc).

    * ``iou_threshold``: the least IoU between a track's predicted box and a detection for
      them to be the same object.
    * ``max_age``: frames a track survives unseen (occlusion, a missed detection).
    * ``per_class``: only match detections of the track's class.
    * ``smoothing``: weight of the newest box change in the velocity average (0: no motion
      prediction).
    """

    def __init__(self, *, iou_threshold: float = 0.3, max_age: int = 10, per_class: bool = True,
                 smoothing: float = 0.5):
        if not 0.0 < iou_threshold <= 1.0:
            raise InvalidArgumentError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        if max_age < 0:
            raise InvalidArgumentError(f"max_age must be >= 0, got {max_age}")
        if not 0.0 <= smoothing <= 1.0:
            raise InvalidArgumentError(f"smoothing must be in [0, 1], got {smoothing}")
        self.iou_threshold, self.max_age = float(iou_threshold), int(max_age)
        self.per_class, self.smoothing = bool(per_class), float(smoothing)
        self.reset()

    def reset(self) -> None:
        """Forget every track; ids start again at 1."""
        self._tracks: list[_Track] = []
        self._next_id = 1

    @property
    def active_ids(self) -> list[int]:
        """Ids of the tracks still alive (seen within ``max_age`` frames)."""
        return [t.track_id for t in self._tracks]

    def update(self, detections: Detections) -> Detections:
        """``detections`` of the next frame, with ``track_ids`` ``(N,)`` int64 set."""
        boxes = np.asarray(detections.boxes, np.float64)
        classes = np.asarray(detections.class_ids)
        scores = box_iou(np.array([t.predicted() for t in self._tracks]).reshape(-1, 4), boxes)
        if self.per_class and scores.size:
            same = np.array([t.class_id for t in self._tracks])[:, None] == classes[None, :]
            scores = np.where(same, scores, 0.0)
        ids = np.zeros(len(boxes), np.int64)
        matched = set()
        for r, c in greedy_match(scores, self.iou_threshold):
            track = self._tracks[r]
            step = (boxes[c] - track.box) / (track.misses + 1)
            track.velocity = (1 - self.smoothing) * track.velocity + self.smoothing * step
            track.box, track.misses = boxes[c].copy(), 0
            ids[c] = track.track_id
            matched.add(r)
        survivors = []
        for r, track in enumerate(self._tracks):
            if r not in matched:
                track.misses += 1
            if track.misses <= self.max_age:
                survivors.append(track)
        self._tracks = survivors
        for c in np.flatnonzero(ids == 0):
            ids[c] = self._next_id
            self._tracks.append(_Track(self._next_id, int(classes[c]), boxes[c].copy()))
            self._next_id += 1
        return dataclasses.replace(detections, track_ids=ids)


def track_colors(track_ids) -> np.ndarray:
    """``(N, 3)`` uint8 BGR colours that depend only on the id, so an object keeps its colour:
    id ``k`` gets :func:`pixellib.visualize.instance_colors`' colour ``k - 1``."""
    ids = np.asarray(track_ids, np.int64).reshape(-1)
    if ids.size == 0:
        return np.zeros((0, 3), np.uint8)
    if ids.min() < 1:
        raise InvalidArgumentError(f"track ids start at 1, got {int(ids.min())}")
    return instance_colors(int(ids.max()))[ids - 1]


def track_frames(predict: Callable[[np.ndarray], Detections], frames: Iterable[np.ndarray],
                 tracker: Tracker | None = None) -> Iterator[tuple[np.ndarray, Detections]]:
    """``(frame, detections with track_ids)`` for each frame; ``predict`` is e.g. a
    :class:`~pixellib.predictor.Predictor` and ``frames`` e.g.
    :func:`pixellib.media.video.iter_frames` of a video."""
    tracker = tracker if tracker is not None else Tracker()
    for frame in frames:
        yield frame, tracker.update(predict(frame))
