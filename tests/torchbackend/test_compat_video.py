"""instanceSegmentation.process_video / process_camera on short clips made from a golden photo."""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from pixellib.errors import ImageReadError, InputNotFoundError, InvalidArgumentError
from pixellib.media.video import VideoWriter, iter_frames, video_info
from pixellib.torchbackend.instance import instanceSegmentation

IMAGES = Path(__file__).parents[1] / "data" / "images"
SIZE = (160, 120)  # (width, height)


@pytest.fixture(scope="module")
def ins(r50_model):
    ins = instanceSegmentation()
    ins.load_model(r50_model, detection_speed="rapid", confidence=0.45)
    return ins


def _frames(n: int) -> list[np.ndarray]:
    """``n`` frames panning across car_rgba.png, SIZE each."""
    photo = cv2.imread(str(IMAGES / "car_rgba.png"), cv2.IMREAD_COLOR)
    h, w = photo.shape[:2]
    frames = []
    for i in range(n):
        x = i * (w - h * 4 // 3) // max(n - 1, 1)
        crop = photo[:, x : x + h * 4 // 3]
        frames.append(cv2.resize(crop, SIZE, interpolation=cv2.INTER_AREA))
    return frames


def _clip(path: Path, n: int, fps: float) -> Path:
    with VideoWriter(path, fps, SIZE) as writer:
        for frame in _frames(n):
            writer.write(frame)
    return path


class FakeCapture:
    """What process_camera needs from a cv2.VideoCapture: read, isOpened, get, release."""

    def __init__(self, frames, fps=0.0):
        self.frames, self.fps, self.reads, self.released = list(frames), fps, 0, False

    def isOpened(self):  # noqa: N802 - OpenCV's name
        return not self.released

    def read(self):
        self.reads += 1
        if self.frames:
            return True, self.frames.pop(0)
        return False, None

    def get(self, prop):
        return {cv2.CAP_PROP_FPS: self.fps, cv2.CAP_PROP_FRAME_WIDTH: SIZE[0],
                cv2.CAP_PROP_FRAME_HEIGHT: SIZE[1]}.get(prop, 0.0)

    def release(self):
        self.released = True


def test_process_video_keeps_frame_count_size_and_fps(ins, tmp_path):
    source = _clip(tmp_path / "clip.avi", 5, 7.0)
    out = tmp_path / "out" / "segmented.mp4"
    results, output = ins.process_video(str(source), show_bboxes=True, output_video_name=str(out))
    fps, count, size = video_info(out)
    assert fps == pytest.approx(7.0) and size == SIZE
    frames = list(iter_frames(out))
    assert len(frames) == 5 == count
    assert all(f.shape == (SIZE[1], SIZE[0], 3) for f in frames)
    assert sorted(p.name for p in out.parent.iterdir()) == ["segmented.mp4"]  # no temp left
    # the last frame's results, like PixelLib
    last_frame = list(iter_frames(source))[-1]
    expected, expected_output = ins.segmentFrame(last_frame, show_bboxes=True)
    assert list(results) == list(expected)
    np.testing.assert_array_equal(results["boxes"], expected["boxes"])
    np.testing.assert_array_equal(output, expected_output)
    assert results["masks"].shape[:2] == (SIZE[1], SIZE[0])


def test_process_video_frames_per_second_and_avi(ins, tmp_path):
    source = _clip(tmp_path / "clip.mp4", 2, 25.0)
    out = tmp_path / "slow.avi"
    ins.process_video(source, output_video_name=out, frames_per_second=4)
    fps, _, size = video_info(out)
    assert fps == pytest.approx(4.0) and size == SIZE
    assert len(list(iter_frames(out))) == 2


def test_a_rate_is_only_checked_for_an_output_video(ins, tmp_path):
    """frames_per_second=0 without an output video ran in PixelLib (the rate is never read
    then), and raised "fps must be a positive number" here, processing nothing."""
    source = _clip(tmp_path / "clip.mp4", 2, 25.0)
    results, output = ins.process_video(source, frames_per_second=0)
    assert output.shape == (SIZE[1], SIZE[0], 3) and "boxes" in results
    _, camera_output = ins.process_camera(cv2.VideoCapture(str(source)), frames_per_second=0)
    assert camera_output.shape == output.shape
    with pytest.raises(InvalidArgumentError, match="fps must be a positive number"):
        ins.process_video(source, frames_per_second=0, output_video_name=tmp_path / "o.mp4")
    assert not (tmp_path / "o.mp4").exists()


def test_process_video_bad_inputs(ins, tmp_path):
    with pytest.raises(InputNotFoundError, match="missing.mp4"):
        ins.process_video(str(tmp_path / "missing.mp4"))
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video")
    with pytest.raises(ImageReadError, match="fake.mp4"):
        ins.process_video(fake, output_video_name=tmp_path / "out.mp4")
    assert not (tmp_path / "out.mp4").exists()
    with pytest.raises(RuntimeError, match="load_model"):
        instanceSegmentation().process_video(str(fake))


def test_process_camera_stops_at_end_of_stream(ins, tmp_path, monkeypatch, capsys):
    def no_gui(*args):
        raise AssertionError("a window was used although show_frames is None")

    monkeypatch.setattr(cv2, "imshow", no_gui)
    monkeypatch.setattr(cv2, "waitKey", no_gui)
    cam = FakeCapture(_frames(3), fps=15.0)
    out = tmp_path / "camera.mp4"
    results, output = ins.process_camera(cam, show_bboxes=True, output_video_name=out,
                                         check_fps=True)
    assert cam.reads == 4 and cam.released  # three frames, then the failed read
    assert "frames per second" in capsys.readouterr().out
    fps, _, size = video_info(out)
    assert fps == pytest.approx(15.0) and size == SIZE
    assert len(list(iter_frames(out))) == 3
    assert output.shape == (SIZE[1], SIZE[0], 3) and "masks" in results


def test_process_camera_will_not_replace_the_file_its_capture_reads(ins, tmp_path):
    # A cv2.VideoCapture of a file does not say which file it reads; the annotated video
    # written over it would replace the user's video.
    clip = _clip(tmp_path / "clip.mp4", 3, 10.0)
    before = clip.read_bytes()
    cam = cv2.VideoCapture(str(clip))
    assert cam.isOpened()
    try:
        with pytest.raises(InvalidArgumentError, match="open in this process"):
            ins.process_camera(cam, output_video_name=clip)
    finally:
        cam.release()
    assert clip.read_bytes() == before
    # another name is fine, and so is that name once nothing reads it
    cam = cv2.VideoCapture(str(clip))
    ins.process_camera(cam, output_video_name=tmp_path / "other.mp4")
    assert len(list(iter_frames(tmp_path / "other.mp4"))) == 3


def test_process_camera_q_in_the_window_stops(ins, monkeypatch):
    from pixellib.torchbackend.instance import streams

    monkeypatch.setattr(streams, "gui_available", lambda: True)  # a GUI build of OpenCV
    monkeypatch.setenv("DISPLAY", ":0")  # on a desktop
    shown, keys = [], iter([-1, ord("q")])
    monkeypatch.setattr(cv2, "imshow", lambda name, image: shown.append((name, image.shape)))
    monkeypatch.setattr(cv2, "waitKey", lambda delay=0: next(keys))
    monkeypatch.setattr(cv2, "destroyWindow", lambda name: None)
    cam = FakeCapture(_frames(4))
    ins.process_camera(cam, show_frames=True, frame_name="live")
    assert shown == [("live", (SIZE[1], SIZE[0], 3))] * 2
    assert cam.reads == 2 and cam.released


def test_process_camera_without_frames_or_closed(ins, monkeypatch):
    from pixellib.media import video

    monkeypatch.setattr(video, "CAMERA_PATIENCE", 0.2)
    with pytest.raises(ImageReadError, match="no frame"):
        ins.process_camera(FakeCapture([]))
    closed = FakeCapture(_frames(1))
    closed.release()
    with pytest.raises(ImageReadError, match="not opened"):
        ins.process_camera(closed)


class FlakyCapture(FakeCapture):
    """A camera whose reads fail where ``pattern`` says False (then give the next frame)."""

    def __init__(self, pattern, frames):
        super().__init__(frames)
        self.pattern = list(pattern)

    def read(self):
        if self.pattern and not self.pattern.pop(0):
            self.reads += 1
            return False, None
        return super().read()


def test_a_camera_warming_up_is_waited_for(ins, monkeypatch, caplog):
    """A webcam's first reads often fail while it starts: the first failed read was taken
    for the end ("no frame could be read"). PixelLib skipped the failures of its first 30
    tries; here a live capture gets CAMERA_PATIENCE seconds before its first frame."""
    from pixellib.media import video

    monkeypatch.setattr(video, "CAMERA_PATIENCE", 5.0)
    cam = FlakyCapture([False, False, True, True], _frames(2))
    with caplog.at_level(logging.WARNING):
        results, output = ins.process_camera(cam)
    assert cam.reads == 5 and output.shape == (SIZE[1], SIZE[0], 3)  # 2 failed, 2, end
    assert "skipped" not in caplog.text and "ended there" not in caplog.text


def test_a_camera_by_index_skips_dropped_frames_and_says_so(monkeypatch, caplog):
    """A camera opened by its index may drop a frame: the failed reads are skipped and
    counted, and one that gives nothing for CAMERA_PATIENCE seconds has ended, said so."""
    from pixellib.media import video

    monkeypatch.setattr(video, "CAMERA_PATIENCE", 0.3)
    cam = FlakyCapture([True, False, False, True, True], _frames(3))
    monkeypatch.setattr(video, "_open_capture", lambda source: (cam, True, "camera 0"))
    with caplog.at_level(logging.WARNING):
        frames = [frame for frame, _ in video._timed_frames(0)]
    assert len(frames) == 3 and cam.released
    assert "camera 0 failed 2 reads; they were skipped" in caplog.text
    assert "camera 0 gave no frame for 0.3 s after frame 3: ended there" in caplog.text


@pytest.mark.skipif(not Path("/dev").is_dir() or Path("/dev/video7").exists(),
                    reason="needs a Linux /dev without a 7th camera")
def test_a_missing_camera_is_named_without_opencvs_warnings(ins, monkeypatch):
    """OpenCV printed its V4L2 and FFmpeg warnings on the terminal before the error."""
    def opened(*args):
        raise AssertionError("OpenCV was asked to open a camera that is not there")

    monkeypatch.setattr(cv2, "VideoCapture", opened)
    with pytest.raises(ImageReadError, match=r"cannot open camera 7: there is no /dev/video7"):
        ins.process_camera(7)
    with pytest.raises(ImageReadError, match=r"camera 207: there is no /dev/video7"):
        ins.process_camera(cv2.CAP_V4L2 + 7)  # OpenCV's backend + index form


def test_camera_arguments_are_refused_with_the_capture_left_open(ins, monkeypatch, tmp_path):
    """A bad output name or frame rate closed the caller's capture (a bad window did not),
    so a script that fixed the argument and tried again got "it is not opened"."""
    for kwargs in ({"output_video_name": str(tmp_path / "out.gif")},
                   {"output_video_name": str(tmp_path / "o.mp4"), "frames_per_second": 0}):
        cam = FakeCapture(_frames(2))
        with pytest.raises(InvalidArgumentError):
            ins.process_camera(cam, **kwargs)
        assert cam.reads == 0 and not cam.released
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("gui, says, warns", [
    (False, "pip uninstall -y opencv-python-headless",
     "no window (this OpenCV has no GUI support"),
    (True, "needs a display.*DISPLAY and WAYLAND_DISPLAY", "no window (there is no display"),
])
def test_show_frames_without_a_gui_or_a_display(ins, monkeypatch, caplog, gui, says, warns):
    """pixellib installs opencv-python-headless; with a GUI build (opencv-python) and no
    display (ssh, a container), the first cv2.imshow aborted the whole process from Qt,
    past any except. Either way a named window (frame_name) is refused before the first
    frame (it failed only after a frame had been read and segmented), the caller's capture
    left open; without a name PixelLib showed no window, so its scripts ran headless: they
    run here too (they were refused, and the capture closed)."""
    from pixellib.torchbackend.instance import streams

    monkeypatch.setattr(streams, "gui_available", lambda: gui)
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    def no_window(*args):
        raise AssertionError("a window was used")
    monkeypatch.setattr(cv2, "imshow", no_window)
    cam = FakeCapture(_frames(2))
    with pytest.raises(RuntimeError, match=says):
        ins.process_camera(cam, show_frames=True, frame_name="live")
    assert cam.reads == 0 and not cam.released
    with caplog.at_level(logging.WARNING):
        results, output = ins.process_camera(cam, show_frames=True)
    assert cam.reads == 3 and cam.released and output.shape == (SIZE[1], SIZE[0], 3)
    assert warns in caplog.text


def test_process_video_takes_what_videocapture_took(ins, tmp_path):
    """PixelLib passed video_path to cv2.VideoCapture: a capture object, a camera index or a
    stream URL worked there (a URL is read here with FFmpeg: file:// stands in for rtsp)."""
    clip = tmp_path / "clip.mp4"
    with VideoWriter(clip, 10, SIZE) as writer:
        for frame in _frames(3):
            writer.write(frame)
    from_file = ins.process_video(str(clip), output_video_name=tmp_path / "a.mp4")
    from_url = ins.process_video(clip.as_uri(), output_video_name=tmp_path / "b.mp4")
    capture = FakeCapture(list(iter_frames(clip)), fps=10.0)
    from_capture = ins.process_video(capture, output_video_name=tmp_path / "c.mp4")
    assert len(from_file[0]["class_ids"]) > 0
    for (results, output) in (from_url, from_capture):
        np.testing.assert_array_equal(output, from_file[1])
        np.testing.assert_array_equal(results["class_ids"], from_file[0]["class_ids"])
    for name in ("b.mp4", "c.mp4"):
        assert len(list(iter_frames(tmp_path / name))) == 3
    with pytest.raises(ImageReadError, match="nowhere.invalid"):
        ins.process_video("rtsp://nowhere.invalid:1/stream")


def test_grey_and_bgra_frames_are_read_like_segment_frame(ins):
    grey = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in _frames(1)]
    bgra = [cv2.cvtColor(f, cv2.COLOR_BGR2BGRA) for f in _frames(1)]
    for frames in (grey, bgra):
        results, output = ins.process_camera(FakeCapture(frames),
                                             extract_segmented_objects=True)
        expected, expected_output = ins.segmentFrame(frames[-1], extract_segmented_objects=True)
        assert output.shape == (SIZE[1], SIZE[0], 3) and len(expected["class_ids"]) > 0
        np.testing.assert_array_equal(output, expected_output)
        np.testing.assert_array_equal(results["class_ids"], expected["class_ids"])


def test_a_file_where_the_extracts_folder_should_be_is_refused_before_anything(ins, tmp_path):
    blocker = tmp_path / "notadir"
    blocker.write_text("")
    out = tmp_path / "out.jpg"
    with pytest.raises(Exception, match="extracted_objects_folder .*is a file"):
        ins.segmentImage(str(IMAGES / "small.jpg"), extract_segmented_objects=True,
                         save_extracted_objects=True, output_image_name=out,
                         extracted_objects_folder=blocker)
    assert not out.exists()


def test_home_folder_paths_are_expanded(ins, tmp_path, monkeypatch):
    """"~/out.png" is the home folder, as in a shell; it became a folder named "~" in the
    working directory."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    cv2.imwrite(str(home / "in.png"), _frames(1)[0])
    ins.segmentImage("~/in.png", output_image_name="~/out/seg.jpg",
                     extract_segmented_objects=True, save_extracted_objects=True,
                     extracted_objects_folder="~/crops")
    with VideoWriter("~/clip.mp4", 10, SIZE) as writer:
        for frame in _frames(2):
            writer.write(frame)
    ins.process_video("~/clip.mp4", output_video_name="~/clip_out.mp4")
    assert (home / "out" / "seg.jpg").is_file() and list((home / "crops").iterdir())
    assert len(list(iter_frames(home / "clip_out.mp4"))) == 2
    assert list(work.iterdir()) == []
