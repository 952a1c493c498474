"""Frame loops behind ``process_video`` and ``process_camera``.

Both take ``segment(frame, index) -> (results, output)`` (``index`` counts frames from 1), so
they know nothing about PixelLib's options; frames are ``(H, W, 3)`` uint8 BGR. Output videos
go through :class:`pixellib.media.video.VideoWriter`: a codec the extension holds, and a file that
appears only once complete.
"""
from __future__ import annotations

import math
import time
from contextlib import ExitStack
from pathlib import Path

import cv2
import numpy as np

from ...errors import ImageReadError
from ...media.video import VideoWriter, iter_frames, video_info

#: Window title of ``process_camera(show_frames=True)`` when ``frame_name`` is None.
DEFAULT_WINDOW_NAME = "pixellib"


def run_video(segment, video_path, *, output_video_name=None, frames_per_second=None):
    """Segment each frame of a video file under a progress bar; return the last
    ``(results, output)``. The output video, if named, runs at ``frames_per_second`` or the
    source's rate; an exception discards it."""
    from tqdm import tqdm

    source_fps, n_frames, _ = video_info(video_path)  # raises for missing / unreadable files
    fps = frame_rate(frames_per_second, source_fps)
    last = (None, None)
    with ExitStack() as stack:
        bar = stack.enter_context(tqdm(iter_frames(video_path), total=n_frames or None,
                                       unit="frame", desc=Path(video_path).name))
        writer = None
        for index, frame in enumerate(bar, start=1):
            last = segment(frame, index)
            if output_video_name is not None:
                writer = writer or stack.enter_context(_writer(output_video_name, fps, frame))
                writer.write(last[1])
    return last


def run_camera(segment, cam, *, output_video_name=None, frames_per_second=None,
               show_frames=None, frame_name=None, verbose=None, check_fps=False):
    """Segment a live capture until a read fails or ``q`` is pressed in the window; return the
    last ``(results, output)``. See ``instanceSegmentation.process_camera``."""
    frames = iter_frames(cam)  # raises for a capture that is not opened
    reported = cam.get(cv2.CAP_PROP_FPS) if hasattr(cam, "get") else None
    fps = frame_rate(frames_per_second, reported)
    window = frame_name or DEFAULT_WINDOW_NAME
    last, count, interrupted = (None, None), 0, None
    started = time.perf_counter()
    try:
        with ExitStack() as stack:
            writer = None
            try:
                for frame in frames:
                    count += 1
                    last = segment(frame, count)
                    if output_video_name is not None:
                        writer = writer or stack.enter_context(
                            _writer(output_video_name, fps, frame))
                        writer.write(last[1])
                    if show_frames and _show(window, last[1]) == ord("q"):
                        break
            except KeyboardInterrupt as exc:  # the usual way to stop a camera: keep the video
                interrupted = exc
    finally:
        frames.close()
        if hasattr(cam, "release"):
            cam.release()
        if show_frames:
            _close_window(window)
    elapsed = time.perf_counter() - started
    if interrupted is not None:
        raise interrupted
    if count == 0:
        raise ImageReadError(f"no frame could be read from {cam!r}")
    if check_fps:
        print(f"{count / elapsed:.2f} frames per second")
    if verbose:
        print(f"Processed {count} frames in {elapsed:.1f} seconds")
    return last


def frame_rate(requested, reported) -> float:
    """``requested`` if given, else the source's rate when it is usable, else 30."""
    if requested is not None:
        return float(requested)
    try:
        reported = float(reported)
    except (TypeError, ValueError):
        return 30.0
    return reported if math.isfinite(reported) and reported > 0 else 30.0


def _writer(path, fps: float, frame: np.ndarray) -> VideoWriter:
    return VideoWriter(path, fps, (frame.shape[1], frame.shape[0]))


def _show(window: str, image: np.ndarray) -> int:
    """Show ``image``; return the key pressed within 1 ms (255 when none)."""
    try:
        cv2.imshow(window, image)
        return cv2.waitKey(1) & 0xFF
    except cv2.error as exc:
        raise RuntimeError(
            "show_frames=True needs an OpenCV build with GUI support (pip install "
            f"opencv-python rather than opencv-python-headless): {exc}"
        ) from exc


def _close_window(window: str) -> None:
    try:
        cv2.destroyWindow(window)
    except cv2.error:  # never opened, or no GUI support: nothing to close
        pass
