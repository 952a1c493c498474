"""Video IO: a frame generator over ``cv2.VideoCapture`` and an atomic writer.

Frames are ``(H, W, 3)`` uint8 **BGR**; sizes are ``(width, height)`` like OpenCV's.
PixelLib's ``process_video`` writes FourCC ``DIVX`` into whatever container the name asks
for; :class:`VideoWriter` instead picks a codec the container holds and common players
play (see :data:`VIDEO_CODECS`).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from ..errors import ImageReadError, InputNotFoundError
from .files import temporary_name

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike

#: FourCCs tried in order for each extension. The opencv-python wheels' FFmpeg has no H.264
#: software encoder, so ``avc1`` is usually refused and MPEG-4 Part 2 (``mp4v``) is used; both
#: play in browsers' and desktop players' usual builds (mp4v: VLC, mpv, QuickTime, Windows).
#: Motion-JPEG in AVI plays everywhere, at the cost of larger files.
VIDEO_CODECS: dict[str, tuple[str, ...]] = {
    ".mp4": ("avc1", "mp4v"),
    ".m4v": ("avc1", "mp4v"),
    ".mov": ("avc1", "mp4v"),
    ".mkv": ("avc1", "mp4v"),
    ".avi": ("MJPG", "XVID"),
}

# (extension, fourcc, frame size) this process found it cannot open, so the probe (and
# FFmpeg's error spam on stderr) happens once.
_REFUSED: set[tuple[str, str, tuple[int, int]]] = set()


def _open_capture(source) -> tuple[object, bool, str]:
    """``(capture, owned, description)``; raises for missing or unopenable sources."""
    if hasattr(source, "read") and hasattr(source, "isOpened"):
        if not source.isOpened():
            raise ImageReadError(f"cannot read from {source!r}: it is not opened")
        return source, False, repr(source)
    if isinstance(source, (int, np.integer)) and not isinstance(source, bool):
        capture = cv2.VideoCapture(int(source))
        what = f"camera {int(source)}"
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise InputNotFoundError(f"video not found: {str(path)!r}")
        if path.is_dir():
            raise ImageReadError(f"cannot read video {str(path)!r}: it is a directory")
        capture = cv2.VideoCapture(str(path))
        what = f"video {str(path)!r}"
    else:
        raise TypeError(
            "video source must be a path, a camera index or an object with read() and "
            f"isOpened(), got {type(source).__name__}"
        )
    if not capture.isOpened():
        capture.release()
        raise ImageReadError(f"cannot open {what}: not a video OpenCV can decode, or unavailable")
    return capture, True, what


def iter_frames(source) -> Iterator[np.ndarray]:
    """Yield the BGR frames of a video file, a camera index or an open capture object.

    ``source`` is a path, an ``int`` camera index, or anything with ``read() -> (ok, frame)``
    and ``isOpened()`` (such an object is not released here; captures opened here are
    released when the generator finishes or is closed).

    The source is opened **now**, not at the first ``next()``: a missing path raises
    :class:`InputNotFoundError`, an unreadable file or camera :class:`ImageReadError` naming
    it. A file that opens but yields no frame at all also raises :class:`ImageReadError` (at
    the first ``next()``). Iteration ends at the first failed read.
    """
    capture, owned, what = _open_capture(source)
    return _frames(capture, owned, what, is_file=isinstance(source, (str, os.PathLike)))


def _frames(capture, owned: bool, what: str, is_file: bool) -> Iterator[np.ndarray]:
    count = 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok or frame is None:
                break
            count += 1
            yield frame
    finally:
        if owned:
            capture.release()
    if count == 0 and is_file:
        raise ImageReadError(f"cannot read {what}: no frame could be decoded")


def video_info(path: PathLike) -> tuple[float, int, tuple[int, int]]:
    """``(fps, frame_count, (width, height))`` from the container header.

    ``frame_count`` is what the container declares (FFmpeg may estimate it from the duration);
    count :func:`iter_frames` for the exact number. Errors as :func:`iter_frames`.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"video_info takes a path, got {type(path).__name__}")
    capture, _, _ = _open_capture(path)
    try:
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    finally:
        capture.release()
    return fps, count, size


class VideoWriter:
    """Write BGR frames to a video file that appears only when writing finished cleanly.

    ``VideoWriter(path, fps, frame_size)`` with ``frame_size = (width, height)``; use it as a
    context manager and call :meth:`write` per frame. The codec comes from the extension
    (:data:`VIDEO_CODECS`; an unknown extension raises ``ValueError`` naming it). Frames go to
    a hidden temporary file in the same folder (parents are created); on a clean exit it is
    renamed to ``path``, on an exception it is deleted. If no frame was written, no file is
    created (a warning is logged).

    Frames of another size are resized to ``frame_size`` with ``INTER_AREA``; grey ``(H, W)``
    frames are converted to BGR. Note that OpenCV's FFmpeg backend encodes odd widths and
    heights rounded down to even for MPEG-4.
    """

    def __init__(self, path: PathLike, fps: float, frame_size: tuple[int, int]):
        self.path = Path(path)
        ext = self.path.suffix.lower()
        if ext not in VIDEO_CODECS:
            raise ValueError(
                f"cannot write video {str(self.path)!r}: unknown extension "
                f"{self.path.suffix!r}; use one of {', '.join(VIDEO_CODECS)}"
            )
        fps = float(fps)
        if not np.isfinite(fps) or fps <= 0:
            raise ValueError(f"fps must be a positive number, got {fps}")
        width, height = (int(v) for v in frame_size)
        if width <= 0 or height <= 0:
            raise ValueError(f"frame_size must be (width, height) > 0, got {tuple(frame_size)}")
        self.fps, self.frame_size = fps, (width, height)
        self.frames_written = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = temporary_name(self.path)  # the atomic-write helper's naming
        self._writer, self.fourcc = self._open(ext)

    def _open(self, ext: str):
        for fourcc in VIDEO_CODECS[ext]:
            key = (ext, fourcc, self.frame_size)
            if key in _REFUSED:
                continue
            writer = cv2.VideoWriter(
                str(self._tmp), cv2.VideoWriter_fourcc(*fourcc), self.fps, self.frame_size
            )
            if writer.isOpened():
                logger.debug("writing %s with FourCC %s", self.path, fourcc)
                return writer, fourcc
            writer.release()
            _REFUSED.add(key)
        self._tmp.unlink(missing_ok=True)
        raise OSError(
            f"cannot open a video writer for {str(self.path)!r}: OpenCV refused FourCCs "
            f"{', '.join(VIDEO_CODECS[ext])} at {self.frame_size[0]}x{self.frame_size[1]}"
        )

    def write(self, frame: np.ndarray) -> None:
        """Append one ``(H, W, 3)`` uint8 BGR (or ``(H, W)`` grey) frame."""
        if self._writer is None:
            raise ValueError(f"video writer for {str(self.path)!r} is closed")
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim not in (2, 3) or (
            frame.ndim == 3 and frame.shape[2] != 3
        ) or frame.size == 0:
            raise ValueError(
                f"expected an (H, W, 3) uint8 BGR frame, got {frame.dtype} of shape {frame.shape}"
            )
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        if (frame.shape[1], frame.shape[0]) != self.frame_size:
            frame = cv2.resize(frame, self.frame_size, interpolation=cv2.INTER_AREA)
        self._writer.write(np.ascontiguousarray(frame))
        self.frames_written += 1

    def close(self, keep: bool = True) -> None:
        """Finish the file and move it into place (``keep``) or delete it. Idempotent."""
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        if keep and self.frames_written == 0:
            logger.warning("no frames were written; %s was not created", self.path)
            keep = False
        if keep and self._tmp.exists():
            os.replace(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(keep=exc_type is None)

    def __del__(self):
        # Dropped without close(): discard the partial file rather than leave a temp behind.
        if getattr(self, "_writer", None) is not None:
            try:
                self.close(keep=False)
            except Exception:  # noqa: BLE001 - interpreter shutdown: nothing left to report to
                pass
