"""instanceSegmentation.process_video / process_camera on short clips made from a golden photo."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from pixellib.errors import ImageReadError, InputNotFoundError
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


def test_process_camera_q_in_the_window_stops(ins, monkeypatch):
    shown, keys = [], iter([-1, ord("q")])
    monkeypatch.setattr(cv2, "imshow", lambda name, image: shown.append((name, image.shape)))
    monkeypatch.setattr(cv2, "waitKey", lambda delay=0: next(keys))
    monkeypatch.setattr(cv2, "destroyWindow", lambda name: None)
    cam = FakeCapture(_frames(4))
    ins.process_camera(cam, show_frames=True, frame_name="live")
    assert shown == [("live", (SIZE[1], SIZE[0], 3))] * 2
    assert cam.reads == 2 and cam.released


def test_process_camera_without_frames_or_closed(ins):
    with pytest.raises(ImageReadError, match="no frame"):
        ins.process_camera(FakeCapture([]))
    closed = FakeCapture(_frames(1))
    closed.release()
    with pytest.raises(ImageReadError, match="not opened"):
        ins.process_camera(closed)
