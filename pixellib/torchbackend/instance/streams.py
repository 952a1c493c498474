"""Frame loops behind ``process_video`` and ``process_camera``.

Both take ``segment(frame, index) -> (results, output)`` (``index`` counts frames from 1), so
they know nothing about PixelLib's options; frames are ``(H, W, 3)`` uint8 BGR. Output videos
go through the one frame loop, :func:`pixellib.media.video.run_frames` (H.264 MP4 through PyAV,
the source's exact frame rate and audio, a file that appears only once complete).
"""
from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from ...errors import ImageReadError, InvalidArgumentError, UsageError
from ...media.files import open_in_this_process
from ...media.video import is_stream_url, run_frames
from ...media.writer import as_rate, check_video_output

logger = logging.getLogger(__name__)

#: Window title of ``process_camera(show_frames=True)`` when ``frame_name`` is None.
DEFAULT_WINDOW_NAME = "pixellib"


def run_video(segment, video_path, *, output_video_name=None, frames_per_second=None,
              overlap=False):
    """Segment each frame of a video file (or a stream URL, a camera index or an opened
    capture, which PixelLib's ``cv2.VideoCapture(video_path)`` took too) under a progress
    bar; return the last ``(results, output)``. The output video, if named, runs at
    ``frames_per_second`` or the source's own timing (keeping its audio); an exception
    discards it. ``overlap``: decode and encode on background threads (``run_frames``)."""
    if isinstance(video_path, (str, os.PathLike)) and not is_stream_url(video_path):
        name = Path(video_path).name
    else:
        name = str(video_path)
    last, count = run_frames(video_path, segment, output=output_video_name,
                             fps=_output_fps(output_video_name, frames_per_second),
                             progress=name, overlap=overlap)
    if count == 0:  # a file with no frame raises in run_frames; a capture may just be empty
        raise ImageReadError(f"no frame could be read from {name}")
    return last


def _output_fps(output_video_name, frames_per_second):
    """The rate of the output video; without one, PixelLib never read ``frames_per_second``
    (scripts passing 0 there ran), so it is not checked either."""
    return frames_per_second if output_video_name is not None else None


def run_camera(segment, cam, *, output_video_name=None, frames_per_second=None,
               show_frames=None, frame_name=None, verbose=None, check_fps=False):
    """Segment a live capture until a read fails or ``q`` is pressed in the window; return the
    last ``(results, output)``. See ``instanceSegmentation.process_camera``."""
    window = frame_name or DEFAULT_WINDOW_NAME
    show_frames = bool(show_frames)
    no_window = show_frames and window_problem()
    if no_window:
        if frame_name is None:
            # PixelLib showed frames only in a named window (frame_name): without one its
            # scripts ran on headless machines, so they do here, without a window.
            logger.warning("show_frames=True: no window (%s); the frames are still processed",
                           no_window[0])
            show_frames = False
        else:
            # found before the camera is read and a frame segmented, not at the first
            # frame; the caller's capture is left open
            raise UsageError(no_window[1])
    if output_video_name is not None:  # refused with the capture still open, as above
        check_video_output(output_video_name)
        if not isinstance(cam, (str, os.PathLike)) and open_in_this_process(output_video_name):
            # a capture of that very file (VideoCapture keeps it open and does not say
            # which; a path is checked by run_frames): the annotated video would replace the
            # one being read
            raise InvalidArgumentError(
                f"cannot write video {os.fspath(output_video_name)!r}: it is open in this "
                "process, as the file the capture reads? Writing it would replace that video; "
                "choose another output name")
        if frames_per_second is not None:
            as_rate(frames_per_second)

    def pressed_q(last) -> bool:
        return show_frames and _show(window, last[1]) == ord("q")

    started = time.perf_counter()
    try:
        # Ctrl-C is the usual way to stop a camera: the video so far is kept
        last, count = run_frames(cam, segment, output=output_video_name,
                                 fps=_output_fps(output_video_name, frames_per_second),
                                 stop=pressed_q, keep_on_interrupt=True)
    finally:
        if hasattr(cam, "release"):
            cam.release()
        if show_frames:
            _close_window(window)
    elapsed = time.perf_counter() - started
    if count == 0:
        raise ImageReadError(f"no frame could be read from {cam!r}")
    if check_fps:
        print(f"{count / elapsed:.2f} frames per second")
    if verbose:
        print(f"Processed {count} frames in {elapsed:.1f} seconds")
    return last


NO_GUI = ("show_frames=True needs an OpenCV build with GUI support, and this one has none "
          "(pixellib installs opencv-python-headless, which runs on servers): run `pip "
          "uninstall -y opencv-python-headless && pip install opencv-python` to show windows, "
          "or leave show_frames off and write output_video_name instead")


NO_DISPLAY = ("show_frames=True needs a display to open a window on, and there is none "
              "(DISPLAY and WAYLAND_DISPLAY are unset: an ssh session without -X, a "
              "container, a service): leave show_frames off and write output_video_name "
              "instead")


def window_problem() -> tuple[str, str] | None:
    """Why no window can be shown, ``(short reason, message)``, or None: an OpenCV without
    GUI support, or (on Linux) no display, where OpenCV's Qt or GTK would abort the whole
    process at the first ``cv2.imshow``, past any ``except``."""
    if not gui_available():
        return "this OpenCV has no GUI support (opencv-python-headless)", NO_GUI
    if (sys.platform.startswith("linux") and not os.environ.get("DISPLAY")
            and not os.environ.get("WAYLAND_DISPLAY")
            and not os.environ.get("QT_QPA_PLATFORM")):  # e.g. "offscreen": Qt needs none
        return "there is no display: DISPLAY and WAYLAND_DISPLAY are unset", NO_DISPLAY
    return None


def gui_available() -> bool:
    """Whether this OpenCV can open windows (its build lists a GUI backend)."""
    info = cv2.getBuildInformation()
    for line in info.splitlines():
        key, _, value = line.strip().partition(":")
        if key.strip() == "GUI":
            return value.strip().upper() not in ("", "NONE", "NO")
    return True  # not said: let cv2.imshow decide


def _show(window: str, image: np.ndarray) -> int:
    """Show ``image``; return the key pressed within 1 ms (255 when none)."""
    try:
        cv2.imshow(window, image)
        return cv2.waitKey(1) & 0xFF
    except cv2.error as exc:
        raise UsageError(f"{NO_GUI}: {exc}") from exc


def _close_window(window: str) -> None:
    try:
        cv2.destroyWindow(window)
    except cv2.error:  # never opened, or no GUI support: nothing to close
        pass
