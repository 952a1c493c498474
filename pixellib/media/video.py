"""Video in and out: frame reading, header facts, an atomic writer, and the one frame loop.

Frames are ``(H, W, 3)`` uint8 **BGR** (``(H, W, 4)`` BGRA for transparent WebM); sizes are
``(width, height)`` like OpenCV's. Files are read and written with PyAV (FFmpeg), which keeps
the frame rate as an exact rational (NTSC's 29.97 is ``30000/1001``, not a rounded float) and
writes H.264 that browsers play (:mod:`pixellib.media.encode`). Cameras and capture objects
go through ``cv2.VideoCapture``. Without PyAV, files fall back to OpenCV (said once, in the
log).
"""
from __future__ import annotations

import logging
import os
import re
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from ..errors import ImageReadError, InputNotFoundError
from ..runtime.pipeline import WriteBehind, prefetch
from . import encode
from .encode import pyav
from .files import link_problem, user_path
from .writer import VIDEO_CODECS, VideoWriter, as_rate, check_video_output

__all__ = ["VIDEO_CODECS", "DEFAULT_FPS", "VideoInfo", "VideoWriter", "as_rate", "frame_rate",
           "iter_frames", "probe_video", "run_frames", "video_info"]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike

#: The frame rate used when neither the caller nor the source gives a usable one.
DEFAULT_FPS = Fraction(30)

# ----------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class VideoInfo:
    """Facts from a video file's header. ``rate`` is exact (e.g. ``Fraction(30000, 1001)``);
    ``frame_count`` is what the container declares, or estimated from its duration;
    ``declared_frames`` the declared count only (0 when the container declares none);
    ``start`` when the first frame is shown, in seconds (trimmed clips and MPEG-TS start
    late; the audio is shifted with the picture); ``pixel_aspect`` the sample aspect ratio
    when pixels are not square (None when they are); ``time_base`` the unit of the video
    track's timestamps (None when unknown); ``duration`` the container's length in seconds
    (None when it does not say)."""

    rate: Fraction | None
    frame_count: int
    size: tuple[int, int]
    has_audio: bool
    declared_frames: int = 0
    start: Fraction = Fraction(0)
    pixel_aspect: Fraction | None = None
    time_base: Fraction | None = None
    duration: Fraction | None = None


def probe_video(path: PathLike) -> VideoInfo:
    """:class:`VideoInfo` for a video file (or stream URL); errors as :func:`iter_frames`."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"probe_video takes a path, got {type(path).__name__}")
    path, what = _check_file(path)
    av = pyav()
    if av is None:
        capture = _open_cv_file(path, what)
        try:
            fps = capture.get(cv2.CAP_PROP_FPS)
            rate = Fraction(fps).limit_denominator(1001) if fps > 0 else None
            return VideoInfo(rate, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)),
                             (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                              int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))), False)
        finally:
            capture.release()
    container, stream = _open_av(path, what, quiet=True)  # said when it is decoded
    try:
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        rate = Fraction(rate) if rate else None
        count = declared = int(stream.frames or 0)
        if count == 0 and rate and container.duration:
            count = round(Fraction(container.duration, 1_000_000) * rate)
        size = (stream.codec_context.width, stream.codec_context.height)
        start = (Fraction(stream.start_time) * stream.time_base
                 if stream.start_time is not None and stream.time_base else Fraction(0))
        aspect = stream.codec_context.sample_aspect_ratio
        aspect = Fraction(aspect) if aspect and aspect != 1 else None
        try:  # a rotation is only known from a decoded frame
            if round((getattr(next(container.decode(stream)), "rotation", 0) or 0) / 90) % 2:
                size = size[::-1]
                aspect = 1 / aspect if aspect else None  # turned upright with the picture
        except (StopIteration, encode.av.FFmpegError):
            pass
        return VideoInfo(rate, count, size, bool(container.streams.audio), declared,
                         max(start, Fraction(0)), aspect,
                         Fraction(stream.time_base) if stream.time_base else None,
                         Fraction(container.duration, 1_000_000) if container.duration else None)
    finally:
        container.close()


def video_info(path: PathLike) -> tuple[float, int, tuple[int, int]]:
    """``(fps, frame_count, (width, height))``; see :func:`probe_video` for the exact rate."""
    info = probe_video(path)
    return (float(info.rate) if info.rate else 0.0), info.frame_count, info.size


def iter_frames(source) -> Iterator[np.ndarray]:
    """Yield the BGR frames of a video file, a camera index or an open capture object.

    ``source`` is a path (decoded with PyAV), an ``int`` camera index, or anything with
    ``read() -> (ok, frame)`` and ``isOpened()`` (such an object is not released here;
    what is opened here is closed when the generator finishes or is closed).

    The source is opened **now**, not at the first ``next()``: a missing path raises
    :class:`InputNotFoundError`, an unreadable file or camera :class:`ImageReadError` naming
    it. A file that opens but yields no frame at all also raises :class:`ImageReadError` (at
    the first ``next()``).
    """
    return _images(_timed_frames(source))


def _images(timed) -> Iterator[np.ndarray]:
    try:
        for image, _ in timed:
            yield image
    finally:
        timed.close()


def _timed_frames(source) -> Iterator[tuple[np.ndarray, Fraction | None]]:
    """:func:`iter_frames` with each frame's presentation time in seconds, as the file's
    timestamps give it (None from OpenCV, and for a frame without a timestamp). Opens the
    source now, like :func:`iter_frames`."""
    if isinstance(source, (str, os.PathLike)):
        source, what = _check_file(source)
        if pyav() is not None:
            container, stream = _open_av(source, what)
            return _av_frames(container, stream, what)
        return _cv_frames(_open_cv_file(source, what), True, what, is_file=True)
    capture, owned, what = _open_capture(source)
    return _cv_frames(capture, owned, what, is_file=False)


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")


def is_stream_url(source) -> bool:
    """Whether ``source`` is a URL FFmpeg opens itself (``rtsp://``, ``http(s)://``,
    ``file://``...), not a file name."""
    return isinstance(source, str) and bool(_URL.match(source)) and not os.path.exists(source)


def file_url_path(source) -> Path | None:
    """The local file a ``file://`` URL names (None for anything else): it is read, and
    guarded against being overwritten, like that path."""
    if not isinstance(source, str) or not source[:7].lower() == "file://":
        return None
    parts = urllib.parse.urlsplit(source)
    if parts.netloc not in ("", "localhost"):
        return None  # a file on another host: FFmpeg's to try
    return Path(urllib.request.url2pathname(parts.path))


def _check_file(path: PathLike) -> tuple[str | Path, str]:
    """``(what to open, how to name it)`` for a file path (``~`` expanded, ``file://`` URLs
    too) or a stream URL; a missing file raises :class:`InputNotFoundError`, a folder
    :class:`ImageReadError`."""
    path = file_url_path(path) or path
    if is_stream_url(path):
        return path, f"video {path!r}"
    path = user_path(path)
    if not os.path.exists(path):
        broken = f" ({link_problem(path)})" if os.path.islink(path) else ""
        raise InputNotFoundError(f"video not found: {str(path)!r}{broken}")
    if path.is_dir():
        raise ImageReadError(f"cannot read video {str(path)!r}: it is a directory")
    if not path.is_file():  # a named pipe: opening it waits for a writer, for ever
        raise ImageReadError(f"cannot read video {str(path)!r}: not a regular file (a pipe, "
                             "socket or device)")
    return path, f"video {str(path)!r}"


_CUT_MP4 = ("cannot open {what}: it is an MP4/MOV file without its index (the 'moov' box, "
            "which a camera or encoder writes last unless the file is made for streaming): "
            "it was cut short; was it completely written or downloaded?")


def _mp4_without_index(path: PathLike) -> bool:
    """True for a file that starts as an MP4/MOV (an ``ftyp`` box) whose ``moov`` box is
    missing or runs past the end of the file: a recording or download cut short. FFmpeg then
    finds no stream, or a stream without a codec, or fails to open it at all."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if f.read(8)[4:8] != b"ftyp":
                return False
            pos = 0
            while pos + 8 <= size:
                f.seek(pos)
                head = f.read(16)
                length, kind = int.from_bytes(head[:4], "big"), head[4:8]
                if length == 1:  # a 64-bit size follows the type
                    length = int.from_bytes(head[8:16], "big")
                elif length == 0:  # to the end of the file
                    length = size - pos
                if length < 8:
                    return False  # not a box structure this walk knows
                if kind == b"moov":
                    return pos + length > size  # the index itself cut short
                pos += length
            return True
    except OSError:
        return False


def _open_av(path: PathLike, what: str, quiet: bool = False):
    av = encode.av
    try:
        container = av.open(str(path))
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        if is_stream_url(path):  # a network failure as often as a format one
            raise ImageReadError(f"cannot open {what}: {exc}") from None
        if _mp4_without_index(path):
            raise ImageReadError(_CUT_MP4.format(what=what)) from None
        raise ImageReadError(f"cannot open {what}: not a video FFmpeg can decode ({exc})") from None
    if not container.streams.video or all(
            s.codec_context is None for s in container.streams.video):
        container.close()
        if not is_stream_url(path) and _mp4_without_index(path):
            raise ImageReadError(_CUT_MP4.format(what=what))
        raise ImageReadError(f"cannot open {what}: it has no video track")
    stream = _main_video(container, what, quiet)
    stream.thread_type = "AUTO"  # this decoder's own threads; nothing process-wide
    return container, stream


def _main_video(container, what: str, quiet: bool = False):
    """The video track to segment: not a cover picture or thumbnails, and of several, the
    largest picture (as the ffmpeg command chooses), then the most frames, then the first."""
    streams = list(container.streams.video)
    if len(streams) == 1:
        return streams[0]
    skip = ("attached_pic", "timed_thumbnails", "still_image")
    pictures = [s for s in streams if not any(_has(s, name) for name in skip)] or streams
    best = max(pictures, key=lambda s: (s.codec_context.width * s.codec_context.height,
                                        s.frames or 0, -s.index))
    if len(pictures) > 1 and not quiet:
        logger.warning("%s has %d video tracks: segmenting track %d (%dx%d), the largest",
                       what, len(pictures), best.index, best.codec_context.width,
                       best.codec_context.height)
    return best


def _has(stream, disposition: str) -> bool:
    flag = getattr(getattr(encode.av.stream, "Disposition", None), disposition, None)
    return bool(flag is not None and stream.disposition & flag)


def _av_frames(container, stream, what: str):
    count = 0
    try:
        try:
            for frame in container.decode(stream):
                count += 1
                seconds = (Fraction(frame.pts) * frame.time_base
                           if frame.pts is not None and frame.time_base else None)
                yield _upright(frame), seconds
        except encode.av.FFmpegError as exc:
            if count == 0:
                raise ImageReadError(f"cannot read {what}: {exc}") from None
            logger.warning("%s: decoding stopped after %d frames: %s", what, count, exc)
    finally:
        container.close()
    if count == 0:
        raise ImageReadError(f"cannot read {what}: no frame could be decoded")


def _upright(frame) -> np.ndarray:
    """The frame as BGR, turned the way it is meant to be shown: phones store portrait video
    as landscape frames plus a rotation in the container (OpenCV applies it too)."""
    image = frame.to_ndarray(format="bgr24")
    quarter_turns = round((getattr(frame, "rotation", 0) or 0) / 90) % 4  # counterclockwise
    return np.ascontiguousarray(np.rot90(image, quarter_turns)) if quarter_turns else image


def _open_cv_file(path: PathLike, what: str):
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise ImageReadError(f"cannot open {what}: not a video OpenCV can decode")
    return capture


def _open_capture(source) -> tuple[object, bool, str]:
    """``(capture, owned, description)`` for a camera index or a capture object."""
    if hasattr(source, "read") and hasattr(source, "isOpened"):
        what = f"the capture {type(source).__name__} given"
        if not source.isOpened():
            raise ImageReadError(f"cannot read from {what}: it is not opened (a camera "
                                 "that does not exist or is in use, or a file OpenCV "
                                 "cannot open)")
        return source, False, what
    if not isinstance(source, (int, np.integer)) or isinstance(source, bool):
        raise TypeError(
            "video source must be a path, a camera index or an object with read() and "
            f"isOpened(), got {type(source).__name__}"
        )
    if int(source) < 0:  # OpenCV 5.0's VideoCapture(-1) crashes the process without a camera
        raise ImageReadError(f"cannot open camera {int(source)}: camera indices are 0, 1, ...")
    device = f"/dev/video{int(source) % 100}"  # (OpenCV's backend + index: CAP_V4L2 + 0)
    if sys.platform.startswith("linux") and not os.path.exists(device):
        # said here, not by OpenCV's V4L2 warnings on the terminal
        raise ImageReadError(f"cannot open camera {int(source)}: there is no {device} (no "
                             "camera plugged in, or, in a container, none passed into it)")
    capture = cv2.VideoCapture(int(source))
    if not capture.isOpened():
        capture.release()
        raise ImageReadError(f"cannot open camera {int(source)}: unavailable")
    return capture, True, f"camera {int(source)}"


#: Seconds a live capture may fail to give a frame before it counts as ended: cameras fail
#: reads while they warm up (PixelLib skipped the failed reads of its first 30 tries).
CAMERA_PATIENCE = 2.0


def _cv_frames(capture, owned: bool, what: str, is_file: bool):
    """The frames of an OpenCV capture, up to its first failed read, except that a live
    capture is given :data:`CAMERA_PATIENCE` seconds of failed reads before its first frame
    (a camera warming up), and a camera opened here by its index at any time (one dropping
    a frame: the failed reads after the first frame are counted in a warning). A capture that says
    it has read all of its file's frames, or that was released, ends at once."""
    count = skipped = streak = 0
    gave_up = False
    failing_since = 0.0
    try:
        while True:
            ok, frame = capture.read()
            if ok and frame is not None:
                skipped += streak if count else 0  # a camera warming up is no news
                streak = 0
                count += 1
                yield frame, None
                continue
            if (is_file or (count and not owned) or not _still_open(capture)
                    or _read_to_end(capture)):
                break
            now = time.monotonic()
            failing_since = now if streak == 0 else failing_since
            if now - failing_since >= CAMERA_PATIENCE:
                gave_up = True
                break
            streak += 1
            time.sleep(0.02)
    finally:
        if owned:
            capture.release()
    if count == 0 and is_file:
        raise ImageReadError(f"cannot read {what}: no frame could be decoded")
    if skipped:
        logger.warning("%s failed %d reads; they were skipped", what, skipped)
    if gave_up and count:
        logger.warning("%s gave no frame for %g s after frame %d: ended there", what,
                       CAMERA_PATIENCE, count)


def _still_open(capture) -> bool:
    try:
        return bool(capture.isOpened())
    except Exception:  # noqa: BLE001 - a capture object of the caller's
        return True


def _read_to_end(capture) -> bool:
    """Whether a capture of a file (it knows how many frames the file has) has read them all."""
    try:
        total = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        position = capture.get(cv2.CAP_PROP_POS_FRAMES)
    except Exception:  # noqa: BLE001 - a capture object of the caller's, or a released one
        return False
    return bool(total > 0 and position >= total)


# ----------------------------------------------------------------------------- the loop


def frame_rate(requested, reported) -> Fraction:
    """The output rate: ``requested`` if given, else the source's ``reported`` rate when
    usable, else :data:`DEFAULT_FPS` (some containers and cameras declare none). A requested
    rate within 0.005 of the source's is the source's, as a player shows it rounded (29.97
    for ``30000/1001``): the exact rate is kept, and with it the timing and the sound."""
    if requested is not None:
        rate = as_rate(requested)
        try:
            source = as_rate(reported) if reported else None
        except ValueError:
            source = None
        return source if source is not None and abs(rate - source) <= Fraction(1, 200) else rate
    try:
        return as_rate(reported)
    except ValueError as exc:
        if reported:  # declared but unusable (over MAX_FPS, say): say what happens instead
            logger.warning("the source's frame rate cannot be used (%s): writing one frame "
                           "after another at %s fps (a high-speed clip plays slowed down); in "
                           "Python, fps= / frames_per_second= sets another rate", exc,
                           DEFAULT_FPS)
        return DEFAULT_FPS


def _usable_rate(reported) -> bool:
    try:
        as_rate(reported)
        return True
    except ValueError:
        return False


def run_frames(source, step: Callable, *, output: PathLike | None = None, fps=None,
               progress: str | None = None, stop: Callable | None = None,
               keep_on_interrupt: bool = False, overlap: bool = False, strict: bool = False):
    """The frame loop of every video command; returns ``(last, count)``.

    For each frame of ``source`` (as :func:`iter_frames`), ``last = step(frame, index)``
    (``index`` counts from 1) must return ``(result, output_frame)``; the output frames go to
    a :class:`VideoWriter` at ``output`` (none when ``output`` is None) running at
    :func:`frame_rate` ``(fps, source rate)``. When the output keeps a file source's rate
    (``fps`` None or equal to it), every frame keeps the source's timestamp, so that a
    variable-frame-rate video (phones, screen recordings) plays with its own timing, and the
    source's audio is carried over. At another rate the frames are re-timed to it, one after
    another (PixelLib's ``frames_per_second``), and the audio, which would no longer match
    the picture, is left out.
    ``stop(last)`` returning true ends the loop. ``progress``: a tqdm bar with that title.
    An exception discards the output, except ``KeyboardInterrupt`` with
    ``keep_on_interrupt``: the video so far is kept and the interrupt re-raised.
    Nothing is released that the caller passed in.

    ``overlap``: decode the next frames and encode the previous ones on background threads
    while ``step`` runs (:mod:`pixellib.runtime.pipeline`; worth it on a GPU, where ``step``
    is fast). Frames, outputs and errors are the same, in the same order.

    A file that ends before the frames (or the length) its header declares is warned about;
    with ``strict``, one with fewer frames than its header declares raises
    :class:`~pixellib.errors.ImageReadError` instead, the output discarded.
    """
    is_file = isinstance(source, (str, os.PathLike))
    source = file_url_path(source) or source
    if output is not None:
        check_video_output(output, source if is_file else None)
    info = probe_video(source) if is_file else None
    frames = _timed_frames(source)  # raises now for a missing or unreadable source
    if is_file:
        reported = info.rate
    else:
        reported = source.get(cv2.CAP_PROP_FPS) if hasattr(source, "get") else None
    rate = frame_rate(fps, reported)
    # the source's own timestamps, unless its rate could not be used (frames then follow one
    # another at the rate chosen instead, as the warning says)
    timed = is_file and _usable_rate(info.rate) and (fps is None or rate == info.rate)
    audio = None
    if output is not None and is_file and info.has_audio:
        if is_stream_url(source):  # a second connection would not be in step with the first
            logger.warning("audio not carried over from the stream %s", source)
        elif timed:
            audio = source
        else:
            logger.warning("audio not carried over: the output runs at %s fps, the source "
                           "at %s", rate, info.rate)
    source_frames = prefetch(frames) if overlap else frames
    bar = None
    if progress is not None:
        from ..runtime.progress import ProgressBar

        total = info.frame_count if info is not None else None
        bar = ProgressBar(source_frames, total=total or None, unit="frame", desc=progress)
    writes = WriteBehind(enabled=overlap)
    writer, last, count, interrupted, stopped = None, (None, None), 0, None, False
    last_time = None  # the last frame's time in the source, in seconds
    try:
        for frame, seconds in bar if bar is not None else source_frames:
            count += 1
            last_time = seconds if seconds is not None else last_time
            last = step(frame, count)
            if output is not None and last[1] is not None:
                if writer is None:
                    size = (last[1].shape[1], last[1].shape[0])
                    writer = VideoWriter(
                        output, rate, size, audio_from=audio,
                        audio_offset=info.start if audio is not None else 0,
                        pixel_aspect=info.pixel_aspect if info is not None else None,
                        time_base=info.time_base if timed else None)
                at = seconds - info.start if timed and seconds is not None else None
                writes.submit(writer.write, last[1], at)
            if stop is not None and stop(last):
                stopped = True
                break
    except KeyboardInterrupt as exc:
        if not keep_on_interrupt:
            writes.close()
            _discard(writer)
            raise
        interrupted = exc
    except BaseException:
        writes.close()
        _discard(writer)
        raise
    finally:
        if bar is not None:
            bar.close()
        if source_frames is not frames:
            source_frames.close()  # joins the decoding thread before the decoder is closed
        frames.close()
    try:
        writes.wait()
    except BaseException:
        _discard(writer)
        raise
    damage, certain = None, False
    if info is not None and not stopped and interrupted is None:
        damage, certain = _cut_short(source, info, count, last_time)
    if damage and certain and strict:
        _discard(writer)
        raise ImageReadError(damage)
    if writer is not None:
        writer.close()
    if interrupted is not None:
        raise interrupted
    if damage:
        logger.warning("%s", damage)
    return last, count


def _cut_short(source, info: VideoInfo, count: int, last_time) -> tuple[str | None, bool]:
    """FFmpeg's threaded decoders end a damaged or cut file quietly: what is missing, if
    anything, and whether that is certain. Against the frame count the header declares (MP4,
    AVI) and, where the container gives its length, the time the frames decoded reach (the
    last must be in its last tenth: a time, not a count, so that a variable rate does not
    matter). Fewer frames than declared that still reach the end are not missing: an MP4 cut
    by stream copy counts the frames its edit list hides. Without a declared count (MKV,
    WebM, MPEG-TS) only the time is there, a likelihood: a last frame held long (a still at
    the end of a screen recording) looks the same."""
    short_in_time = None
    if info.duration and last_time is not None:
        reached = last_time - info.start + (1 / info.rate if info.rate else 0)
        short_in_time = reached < Fraction(9, 10) * info.duration
    if info.declared_frames:
        if count < info.declared_frames and short_in_time is not False:
            return (f"{source}: only {count} of the {info.declared_frames} frames its header "
                    "declares could be decoded; the file may be truncated or damaged"), True
    elif short_in_time:
        return (f"{source}: the frames decoded stop at {float(reached):.2f} s of its "
                f"{float(info.duration):.2f} s; the file may be truncated or damaged, or its "
                "last frame is held"), False
    return None, False


def _discard(writer: VideoWriter | None) -> None:
    if writer is not None:
        writer.close(keep=False)
