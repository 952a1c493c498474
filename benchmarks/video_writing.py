"""Time per frame of writing video: PyAV H.264 (our VideoWriter) against OpenCV's MPEG-4 Part 2
(``mp4v``, what VideoWriter wrote before it used PyAV), at 1280x720 by default.

    python benchmarks/video_writing.py                 # 240 frames, 5 rounds, prints a table
    python benchmarks/video_writing.py --quick         # smoke test: 8 frames, 1 round
    python benchmarks/video_writing.py --webm          # VP9 WebM too
    python benchmarks/video_writing.py --presets ultrafast,veryfast   # other x264 presets too

Frames are a photo panned across the picture with a moving bar, made before timing starts,
so only encoding (and muxing, and closing the file) is timed. Each round writes one file per
writer, alternating which goes first; the table shows the median ms per frame over the rounds
and the file sizes. Run it on a quiet machine: the load average is printed before and after.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pixellib.media import encode  # noqa: E402 - after the path setup
from pixellib.media.video import VideoWriter  # noqa: E402


def make_frames(n: int, size: tuple[int, int]) -> list[np.ndarray]:
    width, height = size
    photo = cv2.imread(str(ROOT / "tests" / "data" / "images" / "street.jpg"))
    wide = cv2.resize(photo, (width * 3 // 2, height), interpolation=cv2.INTER_AREA)
    frames = []
    for i in range(n):
        x = (i * 4) % (wide.shape[1] - width)
        frame = wide[:, x:x + width].copy()
        bar = (i * 16) % width
        frame[:, bar:bar + 40] = (40, 200, 255)
        frames.append(frame)
    return frames


def write_pyav(path: Path, frames, fps: float) -> None:
    with VideoWriter(path, fps, (frames[0].shape[1], frames[0].shape[0])) as writer:
        for frame in frames:
            writer.write(frame)


def pyav_with_preset(preset: str):
    def write(path: Path, frames, fps: float) -> None:
        options = encode._ENCODER_OPTIONS["libx264"]
        default, options["preset"] = options["preset"], preset
        try:
            write_pyav(path, frames, fps)
        finally:
            options["preset"] = default
    return write


def write_mp4v(path: Path, frames, fps: float) -> None:
    size = (frames[0].shape[1], frames[0].shape[0])
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise SystemExit("OpenCV cannot write mp4v here")
    for frame in frames:
        writer.write(frame)
    writer.release()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=240)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--webm", action="store_true", help="also time VP9 WebM (PyAV)")
    parser.add_argument("--presets", default="",
                        help="also time these x264 presets, comma separated (default: "
                             f"{encode._ENCODER_OPTIONS['libx264']['preset']} only)")
    parser.add_argument("--quick", action="store_true", help="8 frames, 1 round (smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.frames, args.runs = 8, 1
    size = tuple(int(v) for v in args.size.lower().split("x"))
    frames = make_frames(args.frames, size)
    default = encode._ENCODER_OPTIONS["libx264"]["preset"]
    writers = {f"pyav h264 {default} (.mp4)": (write_pyav, ".mp4"),
               "opencv mp4v (.mp4)": (write_mp4v, ".mp4")}
    for preset in filter(None, args.presets.split(",")):
        writers[f"pyav h264 {preset} (.mp4)"] = (pyav_with_preset(preset), ".mp4")
    if args.webm:
        writers["pyav vp9 (.webm)"] = (write_pyav, ".webm")
    print(f"load average before: {os.getloadavg()}")
    times = {name: [] for name in writers}
    sizes = {}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            names = list(writers) if run % 2 == 0 else list(writers)[::-1]
            for name in names:
                write, ext = writers[name]
                path = Path(tmp) / f"{len(sizes)}{ext}"
                started = time.perf_counter()
                write(path, frames, args.fps)
                times[name].append((time.perf_counter() - started) / len(frames) * 1000)
                sizes[name] = path.stat().st_size
                path.unlink()
    print(f"load average after: {os.getloadavg()}")
    print(f"\n{args.frames} frames of {size[0]}x{size[1]}, {args.runs} rounds\n")
    print("| writer | ms / frame (median) | min | file size |")
    print("|---|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.2f} | {min(values):.2f} | "
              f"{sizes[name] / 1e6:.2f} MB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
