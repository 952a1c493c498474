"""pixellib.media.video: frame generator, header info, atomic writer with codec choice."""
from __future__ import annotations

import os

import av
import numpy as np
import pytest

from pixellib.errors import ImageReadError, InputNotFoundError
from pixellib.media.video import VIDEO_CODECS, VideoWriter, iter_frames, video_info

SIZE = (64, 48)  # (width, height)


def _frames(n=6):
    frames = []
    for i in range(n):
        frame = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
        frame[:, : SIZE[0] * (i + 1) // n] = (40 * i, 255 - 30 * i, 128)  # a growing bar
        frames.append(frame)
    return frames


@pytest.mark.parametrize("name", ["clip.mp4", "clip.avi", "sub dir/clïp.MP4", "clip.mkv"])
def test_write_then_read_back(tmp_path, name):
    path = tmp_path / name
    with VideoWriter(path, 12.0, SIZE) as writer:
        for frame in _frames():
            writer.write(frame)
    with av.open(str(path)) as container:  # the codec the file really holds
        assert container.streams.video[0].codec_context.name == VIDEO_CODECS[path.suffix.lower()]
    assert writer.frames_written == 6
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # temp renamed
    fps, count, size = video_info(path)
    assert fps == pytest.approx(12.0) and count == 6 and size == SIZE
    frames = list(iter_frames(path))
    assert len(frames) == 6
    assert all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for f in frames)
    # lossy, but the growing bar survives: column 60 is lit only in the last frame
    assert frames[-1][:, 60].mean() > 60 and frames[0][:, 60].mean() < 20


def test_mp4_is_h264_yuv420p(tmp_path):
    with VideoWriter(tmp_path / "a.mp4", 5, SIZE) as writer:
        writer.write(_frames(1)[0])
    assert (writer.backend, writer.fourcc) == ("pyav", "avc1")
    with av.open(str(tmp_path / "a.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert stream.average_rate == 5


def test_other_sizes_and_grey_frames_are_converted(tmp_path):
    path = tmp_path / "resized.avi"
    with VideoWriter(path, 10, SIZE) as writer:
        writer.write(np.full((96, 128, 3), 200, np.uint8))
        writer.write(np.full((10, 10), 100, np.uint8))
    frames = list(iter_frames(path))
    assert [f.shape for f in frames] == [(48, 64, 3)] * 2
    assert abs(int(frames[0].mean()) - 200) < 5 and abs(int(frames[1].mean()) - 100) < 5


def test_exception_inside_leaves_nothing(tmp_path):
    path = tmp_path / "broken.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(path, 10, SIZE) as writer:
            writer.write(_frames(1)[0])
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_no_frames_creates_no_file(tmp_path, caplog):
    with VideoWriter(tmp_path / "empty.mp4", 10, SIZE):
        pass
    assert list(tmp_path.iterdir()) == []
    assert "no frames" in caplog.text


def test_writer_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="clip.gif"):
        VideoWriter(tmp_path / "clip.gif", 10, SIZE)
    with pytest.raises(ValueError, match="fps"):
        VideoWriter(tmp_path / "a.mp4", 0, SIZE)
    with pytest.raises(ValueError, match="frame_size"):
        VideoWriter(tmp_path / "a.mp4", 10, (0, 10))
    writer = VideoWriter(tmp_path / "a.avi", 10, SIZE)
    with pytest.raises(ValueError, match="uint8"):
        writer.write(np.zeros((48, 64, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        writer.write(np.zeros((48, 64, 4), np.uint8))
    writer.write(_frames(1)[0])
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        writer.write(_frames(1)[0])
    assert [p.name for p in tmp_path.iterdir()] == ["a.avi"]


def test_missing_and_unreadable_videos(tmp_path):
    with pytest.raises(InputNotFoundError, match="nope.mp4"):
        iter_frames(tmp_path / "nope.mp4")  # raised at the call, not at the first next()
    with pytest.raises(InputNotFoundError):
        video_info(tmp_path / "nope.mp4")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, np.uint8).tobytes())
    text = tmp_path / "text.avi"
    text.write_text("not a video\n" * 50)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    for path in (garbage, text, empty, tmp_path):
        with pytest.raises(ImageReadError, match=path.name):
            iter_frames(path)
    with pytest.raises(ImageReadError, match="garbage.mp4"):
        video_info(garbage)
    with pytest.raises(TypeError):
        iter_frames(3.5)
    with pytest.raises(ImageReadError, match="camera -1"):  # OpenCV itself would crash
        iter_frames(-1)


class _FakeCapture:
    def __init__(self, frames, opened=True):
        self.frames, self.opened, self.released = list(frames), opened, False

    def isOpened(self):
        return self.opened

    def read(self):
        return (True, self.frames.pop(0)) if self.frames else (False, None)

    def release(self):
        self.released = True


def test_capture_objects_are_used_and_not_released():
    capture = _FakeCapture(_frames(3))
    assert len(list(iter_frames(capture))) == 3
    assert not capture.released
    with pytest.raises(ImageReadError, match="not opened") as caught:
        iter_frames(_FakeCapture([], opened=False))
    # named by its type, not by a repr with a memory address
    assert str(caught.value).startswith("cannot read from the capture _FakeCapture given")
    assert list(iter_frames(_FakeCapture([]))) == []  # a live source may simply be empty


def test_closing_the_generator_early_releases(tmp_path):
    path = tmp_path / "c.avi"
    with VideoWriter(path, 10, SIZE) as writer:
        for frame in _frames():
            writer.write(frame)
    frames = iter_frames(path)
    next(frames)
    assert _open_fds(path) >= 1  # FFmpeg holds the file while frames are left
    # Hold the generator's PyAV container, so that only an explicit close() in the
    # generator's finally (not garbage collection of the generator's frame) can let go of it.
    container = frames.gi_frame.f_locals["timed"].gi_frame.f_locals["container"]
    frames.close()
    assert _open_fds(path) == 0
    assert container is not None  # still referenced here: the file was closed, not collected


def _open_fds(path) -> int:
    """How many of this process's file descriptors point at ``path`` (Linux /proc)."""
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd to see open files")
    target = os.path.realpath(path)
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.path.realpath(f"/proc/self/fd/{fd}") == target
        except OSError:
            continue
    return count


def test_unavailable_camera_index():
    with pytest.raises(ImageReadError, match="camera 97"):
        iter_frames(97)


def test_outputs_that_cannot_be_written_are_refused_before_the_first_frame(tmp_path):
    from pixellib.errors import InvalidArgumentError
    from pixellib.media.video import run_frames

    src = tmp_path / "mine.mp4"
    with VideoWriter(src, 10, (64, 48)) as writer:
        for frame in _frames():
            writer.write(frame)
    before = src.read_bytes()
    (tmp_path / "adir.mp4").mkdir()
    steps = []

    def step(frame, index):
        steps.append(index)
        return None, frame

    for output, says in ((src, "the input video itself"), (tmp_path / "out.gif", "'.gif'"),
                         (tmp_path / "adir.mp4", "it is a folder"),
                         (src / "x.mp4", "is a file, not a folder")):
        with pytest.raises(InvalidArgumentError, match=says):
            run_frames(src, step, output=output)
    assert steps == [] and src.read_bytes() == before  # nothing ran, the source is intact


def test_a_pipe_or_a_loop_named_like_a_video_is_named_not_opened(tmp_path):
    """A named pipe called clip.mp4 hung the CLI for ever (the open waits for a writer),
    and SIGTERM could not end it; a loop of links was 'video not found'."""
    import threading

    pipe = tmp_path / "clip.mp4"
    os.mkfifo(pipe)
    (tmp_path / "a.mp4").symlink_to("b.mp4")
    (tmp_path / "b.mp4").symlink_to("a.mp4")
    errors = []

    def read(path):
        try:
            next(iter_frames(path))
        except Exception as exc:  # noqa: BLE001 - the test looks at it below
            errors.append(exc)

    reader = threading.Thread(target=read, args=(pipe,), daemon=True)
    reader.start()
    reader.join(30)
    if reader.is_alive():  # let the stuck open return before failing
        os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("opening the pipe waited for a writer")
    assert isinstance(errors[0], ImageReadError)
    assert "not a regular file (a pipe" in str(errors[0]) and "clip.mp4" in str(errors[0])
    with pytest.raises(InputNotFoundError, match="a.mp4' .a loop of symbolic links"):
        next(iter_frames(tmp_path / "a.mp4"))


def test_a_video_output_in_a_folder_nothing_can_be_written_in_is_refused_first(tmp_path):
    """process_video segmented frames, then failed to write (the CLI refused it first)."""
    import sys

    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    script = ("import sys\n"
              "from pixellib.media.writer import check_video_output\n"
              "try:\n"
              "    check_video_output(sys.argv[1])\n"
              "except ValueError as e:\n"
              "    print(e)\n")
    argv = [sys.executable, "-c", script, str(locked / "x.mp4")]
    from faults import run_locked_out

    done = run_locked_out(argv, locked)
    assert done.returncode == 0, done.stderr
    assert "x.mp4': cannot write in" in done.stdout and "no permission" in done.stdout
