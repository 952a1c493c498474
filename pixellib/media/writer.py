"""The atomic video writer (:class:`VideoWriter`); the encoders are in :mod:`.encode`.

Import it from :mod:`pixellib.media.video`, which re-exports everything here.
"""
from __future__ import annotations

import logging
import math
import os
from fractions import Fraction

import cv2
import numpy as np

from ..errors import InvalidArgumentError
from . import encode
from .encode import pyav
from .files import (
    atomic_path,
    extension_problem,
    output_error,
    output_name,
    output_path_problem,
    real_path,
    unwritable_file,
    unwritable_folder,
    user_path,
    writable_file,
)

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike

#: Video codec written for each output extension (with PyAV; see :mod:`.encode`).
VIDEO_CODECS: dict[str, str] = {
    ".mp4": "h264", ".m4v": "h264", ".mov": "h264", ".mkv": "h264", ".webm": "vp9",
    ".avi": "mjpeg",
}


#: The highest frame rate written: Matroska (.mkv, .webm) stamps frames in milliseconds.
MAX_FPS = 1000


def as_rate(fps) -> Fraction:
    """A positive frame rate as an exact fraction. Fractions stay as they are; a float is read
    as the nearest fraction with denominator <= 1001, so ``30000 / 1001`` comes back exact."""
    if isinstance(fps, Fraction):
        rate = fps
    else:
        try:
            value = float(fps)
        except (TypeError, ValueError):
            raise InvalidArgumentError(f"fps must be a positive number, got {fps!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise InvalidArgumentError(f"fps must be a positive number, got {fps}")
        rate = Fraction(value).limit_denominator(1001)  # value: numpy's floats too
    if rate <= 0:
        raise InvalidArgumentError(
            f"fps {fps} is too low: a frame rate is kept as a fraction with a denominator up "
            "to 1001, so the lowest is 1/1001 frame per second")
    if rate > MAX_FPS:
        raise InvalidArgumentError(
            f"fps must be at most {MAX_FPS} (WebM and MKV time frames in milliseconds, AVI "
            f"and MP4 players stop far below), got {fps}; give a lower frame rate")
    return rate


def check_video_output(path: PathLike, source: PathLike | None = None) -> None:
    """Refuse, before any frame is made, a video output that cannot be written: an extension
    outside :data:`VIDEO_CODECS`, a folder at ``path`` or a file where a folder is needed, or
    (given ``source``) the source video itself, which it would replace."""
    if not output_name(path, "output video").strip():
        raise InvalidArgumentError(f"cannot write a video to {os.fspath(path)!r}: the file "
                                   "name is empty; name the video file, e.g. 'output.mp4'")
    path = user_path(path)
    if path.suffix.lower() not in VIDEO_CODECS:
        raise InvalidArgumentError(f"cannot write video {str(path)!r}: "
                                   + extension_problem(path, "", VIDEO_CODECS))
    problem = output_path_problem(path)
    if problem:
        raise InvalidArgumentError(f"cannot write video {problem}")
    unwritable = unwritable_file(path)
    if unwritable:
        raise InvalidArgumentError(f"cannot write video {str(path)!r}: {unwritable[1]}")
    if source is not None and real_path(path) == real_path(source):
        raise InvalidArgumentError(
            f"cannot write video {str(path)!r}: it is the input video itself; choose another "
            "output name")
    problem = not writable_file(path) and unwritable_folder(path.parent)
    if problem:  # every frame would be segmented, and then nothing written
        raise InvalidArgumentError(f"cannot write video {str(path)!r}: cannot write in {problem}")


class VideoWriter:
    """Write frames to a video file that appears only when writing finished cleanly.

    ``VideoWriter(path, fps, frame_size)`` with ``frame_size = (width, height)``; use it as a
    context manager and call :meth:`write` per frame. ``fps`` may be a ``Fraction`` (kept
    exact) or a number (:func:`as_rate`). The codec comes from the extension
    (:data:`VIDEO_CODECS`; an unknown one raises ``ValueError`` naming it). The file is written
    under a hidden temporary name (:func:`pixellib.media.files.atomic_path`), renamed on a
    clean exit and deleted on an exception; with no frame written, no file is created (a
    warning is logged).

    * ``audio_from``: a video or audio file whose first audio track is carried over (copied
      unchanged when the container holds its codec, else re-encoded; see :mod:`.encode`).
      ``audio_offset``: the source time, in seconds, of this video's first frame (its
      audio is shifted by as much, and what plays before it left out).
    * ``pixel_aspect``: the sample aspect ratio to declare when pixels are not square (a
      source's, so that players stretch the picture as they did the source; PyAV only).
    * ``alpha``: write transparency (``.webm`` only, VP9 ``yuva420p``). ``None`` (default):
      transparent when the first frame of a ``.webm`` is BGRA.
    * Timing: frame ``k`` is shown at ``k / fps`` unless :meth:`write` is given its time (a
      variable frame rate, as a source video's timestamps give it). ``time_base``: the unit
      of those times in the source (e.g. ``Fraction(1, 90000)``), kept in MP4 and MOV so
      that they stay exact; Matroska and WebM count milliseconds, and AVI, which has one
      frame rate, places each frame at the nearest free ``1 / fps`` step (PyAV only; the
      OpenCV fallback ignores times).

    Frames of another size are resized to ``frame_size`` (``INTER_AREA``); grey ``(H, W)``
    frames become BGR. H.264 pads an odd width or height by one repeated pixel
    (``encoded_size``).
    """

    def __init__(self, path: PathLike, fps, frame_size: tuple[int, int], *,
                 audio_from: PathLike | None = None, alpha: bool | None = None,
                 audio_offset=0, pixel_aspect: Fraction | None = None,
                 time_base: Fraction | None = None):
        self.path = user_path(path)
        self._ext = self.path.suffix.lower()
        check_video_output(self.path)
        self.rate = as_rate(fps)
        self.fps = float(self.rate)
        width, height = (int(v) for v in frame_size)
        if width <= 0 or height <= 0:
            raise InvalidArgumentError(
                f"frame_size must be (width, height) > 0, got {tuple(frame_size)}")
        if alpha and self._ext != ".webm":
            raise InvalidArgumentError(
                f"transparent video needs a .webm file, not {str(self.path)!r}")
        self.frame_size = (width, height)
        self.audio_from = user_path(audio_from) if audio_from is not None else None
        self.audio_offset = Fraction(audio_offset)
        self.pixel_aspect = Fraction(pixel_aspect) if pixel_aspect else None
        self.time_base = Fraction(time_base) if time_base else None
        if self.time_base is not None and self.time_base <= 0:
            raise InvalidArgumentError(f"time_base must be positive, got {time_base}")
        self.alpha = alpha
        self.frames_written = 0
        self._encoder = None
        self._closed = False
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        # "avc1", "vp09", "MJPG": what the file holds (with the OpenCV fallback, its FourCC)
        self.fourcc = ({"h264": "avc1", "vp9": "vp09", "mjpeg": "MJPG"}[VIDEO_CODECS[self._ext]]
                       if pyav() is not None else encode.OPENCV_FOURCCS[self._ext])

    @property
    def backend(self) -> str:
        """``"pyav"``, or ``"opencv"`` when PyAV is not installed."""
        return "pyav" if encode.av is not None else "opencv"

    @property
    def encoded_size(self) -> tuple[int, int]:
        """``(width, height)`` in the file: ``frame_size``, padded to even for H.264."""
        if self._encoder is not None:
            return self._encoder.encoded_size
        width, height = self.frame_size
        if VIDEO_CODECS[self._ext] == "h264" and self.backend == "pyav":
            return width + width % 2, height + height % 2
        return self.frame_size

    def write(self, frame: np.ndarray, time=None) -> None:
        """Append one ``(H, W, 3)`` uint8 BGR frame (``(H, W)`` grey; ``(H, W, 4)`` BGRA for
        ``.webm``), shown at ``time`` seconds from the video's start when given (later than
        the frame before; one that is not is moved just after it), else one frame after the
        previous one."""
        if self._closed:
            raise InvalidArgumentError(f"video writer for {str(self.path)!r} is closed")
        frame = np.asarray(frame)
        channels = frame.shape[2] if frame.ndim == 3 else 1
        if frame.dtype != np.uint8 or frame.ndim not in (2, 3) or frame.size == 0 or (
            channels not in (1, 3) + ((4,) if self._ext == ".webm" else ())
        ):
            expected = "(H, W, 3) BGR or (H, W, 4) BGRA" if self._ext == ".webm" else (
                "(H, W, 3) BGR")
            raise InvalidArgumentError(
                f"expected an {expected} uint8 frame for {str(self.path)!r}, "
                f"got {frame.dtype} of shape {frame.shape}")
        if frame.ndim == 2 or channels == 1:
            frame = cv2.cvtColor(frame.reshape(frame.shape[:2]), cv2.COLOR_GRAY2BGR)
        if (frame.shape[1], frame.shape[0]) != self.frame_size:
            frame = cv2.resize(frame, self.frame_size, interpolation=cv2.INTER_AREA)
        try:
            if self._encoder is None:
                self._encoder = self._open(alpha=self.alpha if self.alpha is not None
                                           else frame.shape[2] == 4)
            elif frame.shape[2] == 4 and not self._encoder.alpha:
                frame = frame[:, :, :3]  # opened opaque: the alpha channel has nowhere to go
            self._encoder.write(frame, None if time is None else Fraction(time))
        except OSError as exc:  # a full disk names the output, not our temporary file
            named = output_error(exc, self._tmp, self.path)
            if named is not None:
                raise named from exc
            raise
        self.frames_written += 1

    def _open(self, alpha: bool):
        kind = encode.PyAVEncoder if pyav() is not None else encode.OpenCVEncoder
        extra = ({"audio_offset": self.audio_offset, "pixel_aspect": self.pixel_aspect,
                  "time_base": self.time_base} if kind is encode.PyAVEncoder else {})
        encoder = kind(self._tmp, self._ext, self.rate, self.frame_size, alpha=alpha,
                       audio_from=self.audio_from, **extra)
        encoder.alpha = alpha
        logger.debug("writing %s with %s (%s)", self.path, encoder.codec, encoder.backend)
        return encoder

    def close(self, keep: bool = True) -> None:
        """Finish the file and move it into place (``keep``) or delete it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._encoder is not None:
                self._encoder.close()
        except BaseException as exc:
            if keep or not isinstance(exc, Exception):
                self._atomic.__exit__(type(exc), exc, exc.__traceback__)
                raise
            # discarding after an error: the file goes anyway, and that error is the one
            # the caller must see, not a second one from finishing what is thrown away
            logger.debug("finishing the discarded %s failed: %s", self.path, exc)
        if keep and self.frames_written == 0:
            logger.warning("no frames were written; %s was not created", self.path)
            keep = False
        if keep:
            self._atomic.__exit__(None, None, None)
        else:
            discard = _Discarded()
            self._atomic.__exit__(_Discarded, discard, None)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(keep=exc_type is None)

    def __del__(self):
        # Dropped without close(): discard the partial file rather than leave a temp behind.
        if not getattr(self, "_closed", True):
            try:
                self.close(keep=False)
            except Exception:  # noqa: BLE001 - interpreter shutdown: nothing left to report to
                pass


class _Discarded(Exception):
    """Thrown into the atomic-write context to make it delete the temporary file."""
