"""pixellib.media.tracking: ids that persist across frames, on hand-made clips of moving shapes,
and end to end through the CLI's ``--track`` on a real clip."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from pixellib.cli import main
from pixellib.media.tracking import Tracker, box_iou, greedy_match, track_colors, track_frames
from pixellib.media.video import iter_frames, probe_video
from pixellib.structures import Detections
from pixellib.visualize import instance_colors

H, W = 120, 200
CAR, PERSON, DOG = 2, 0, 16


def detections(objects: list[tuple[int, float, float, float]], size: int = 20) -> Detections:
    """``(class_id, x0, y0, score)`` squares of ``size`` px, with their masks."""
    n = len(objects)
    boxes = np.array([[x, y, x + size, y + size] for _, x, y, _ in objects], np.float32)
    masks = np.zeros((n, H, W), bool)
    for k, (x0, y0, x1, y1) in enumerate(boxes.astype(int)):
        masks[k, max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = True
    return Detections(boxes.reshape(n, 4), np.array([o[3] for o in objects], np.float32),
                      np.array([o[0] for o in objects], np.int64), masks, (H, W))


def scene(t: int) -> list[tuple[str, tuple[int, float, float, float]]]:
    """Frame ``t`` of a clip: a car driving right; a person walking down, hidden behind
    something in frames 8-10; a dog running right that leaves the picture after frame 6;
    a second dog coming in at frame 15."""
    objects = [("car", (CAR, 10 + 6 * t, 20, 0.9))]
    if not 8 <= t <= 10:
        objects.append(("person", (PERSON, 100, 5 + 4 * t, 0.8)))
    if 150 + 8 * t < W:
        objects.append(("dog", (DOG, 150 + 8 * t, 80, 0.7)))
    if t >= 15:
        objects.append(("dog2", (DOG, 5 + 3 * (t - 15), 90, 0.6)))
    return objects


def test_ids_survive_motion_occlusion_and_leaving():
    tracker = Tracker(max_age=4)
    seen: dict[str, set[int]] = {}
    for t in range(20):
        named = scene(t)
        if t % 2:
            named = named[::-1]  # detection order must not matter
        det = tracker.update(detections([o for _, o in named]))
        for (name, _), track_id in zip(named, det.track_ids):
            seen.setdefault(name, set()).add(int(track_id))
        if t == 9:  # the person is hidden but still remembered
            assert 2 in tracker.active_ids
        if t == 10:  # the dog, last seen in frame 6, is still remembered for max_age frames
            assert 3 in tracker.active_ids
        if t == 11:  # and forgotten after that
            assert 3 not in tracker.active_ids
    # one id per object for its whole life: motion, the occlusion and the order changes
    assert seen == {"car": {1}, "person": {2}, "dog": {3}, "dog2": {4}}  # ids never reused


def test_an_object_moving_away_keeps_its_id_through_an_occlusion():
    """A shrinking box extrapolated over the missed frames turned inside out (x1 < x0) and
    overlapped nothing, so the object came back with a new id."""
    tracker, ids = Tracker(), []
    for f in range(4):  # driving away: 8 px smaller on each side every frame
        ids.append(tracker.update(detections([(0, 10 + 8 * f, 10 + 8 * f, 0.9)],
                                             size=80 - 16 * f)).track_ids.tolist())
    for _ in range(3):
        ids.append(tracker.update(detections([])).track_ids.tolist())
    ids.append(tracker.update(detections([(0, 40, 40, 0.9)], size=20)).track_ids.tolist())
    assert ids == [[1]] * 4 + [[]] * 3 + [[1]]


def test_without_motion_prediction_a_speeding_object_is_lost():
    def run(smoothing):
        tracker, ids, x, speed = Tracker(smoothing=smoothing), set(), 0.0, 6.0
        for _ in range(12):
            det = tracker.update(detections([(CAR, x, 50, 0.9)]))
            ids.add(int(det.track_ids[0]))
            x, speed = x + speed, min(speed * 1.25, 17.0)  # IoU of raw boxes drops to 0.08
        return ids

    assert run(0.5) == {1}
    assert len(run(0.0)) > 1


def test_crossing_objects_keep_their_ids():
    tracker = Tracker()
    for t in range(16):
        left, right = (PERSON, 10 + 10 * t, 40, 0.9), (PERSON, 170 - 10 * t, 48, 0.8)
        det = tracker.update(detections([right, left] if t % 3 == 1 else [left, right]))
        ids = dict(zip(det.boxes[:, 1].tolist(), det.track_ids.tolist()))
        assert ids == {40.0: 1, 48.0: 2}, t


def test_classes_are_not_mixed_unless_asked():
    still = [(CAR, 50, 50, 0.9)]
    tracker = Tracker()
    tracker.update(detections(still))
    assert tracker.update(detections([(PERSON, 50, 50, 0.9)])).track_ids.tolist() == [2]
    tracker = Tracker(per_class=False)
    tracker.update(detections(still))
    assert tracker.update(detections([(PERSON, 50, 50, 0.9)])).track_ids.tolist() == [1]


def test_empty_frames_and_reset():
    tracker = Tracker(max_age=1)
    tracker.update(detections([(CAR, 5, 5, 0.9)]))
    assert len(tracker.update(Detections.empty((H, W))).track_ids) == 0
    tracker.update(Detections.empty((H, W)))
    assert tracker.active_ids == []  # gone for 2 > max_age frames
    assert tracker.update(detections([(CAR, 5, 5, 0.9)])).track_ids.tolist() == [2]
    tracker.reset()
    assert tracker.update(detections([(CAR, 5, 5, 0.9)])).track_ids.tolist() == [1]
    with pytest.raises(ValueError, match="iou_threshold"):
        Tracker(iou_threshold=0)


def test_helpers_and_detections_field():
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30]])
    np.testing.assert_allclose(box_iou(a, [[5, 0, 15, 10]]), [[1 / 3], [0.0]])
    assert greedy_match(np.array([[0.9, 0.8], [0.85, 0.1]]), 0.3) == [(0, 0)]
    assert greedy_match(np.array([[0.9, 0.8], [0.85, 0.4]]), 0.3) == [(0, 0), (1, 1)]
    colours = track_colors([3, 1, 3])
    np.testing.assert_array_equal(colours, instance_colors(3)[[2, 0, 2]])
    det = Tracker().update(detections([(CAR, 5, 5, 0.9), (DOG, 50, 50, 0.8)]))
    assert det[1].track_ids.tolist() == [2] and det.with_classes([CAR]).track_ids.tolist() == [1]
    assert detections([(CAR, 5, 5, 0.9)]).track_ids is None  # untracked results as before
    with pytest.raises(ValueError, match="track_ids"):
        Detections(det.boxes, det.scores, det.class_ids, det.masks, (H, W),
                   track_ids=np.array([1]))


# ----------------------------------------------------------------------------- end to end


def _real_clip(path: Path, n: int) -> Path:
    """``n`` 160x120 frames of a photo panning slowly, at 30000/1001 fps, with a tone."""
    photo = cv2.imread(str(Path(__file__).parents[1] / "data" / "images" / "street.jpg"))
    h = photo.shape[0]
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=Fraction(30000, 1001))
        video.width, video.height, video.pix_fmt = 160, 120, "yuv420p"
        sound = out.add_stream("aac", rate=48000)
        sound.layout = "mono"
        for i in range(n):
            crop = photo[:, 4 * i: 4 * i + h * 4 // 3]
            frame = av.VideoFrame.from_ndarray(
                cv2.resize(crop, (160, 120), interpolation=cv2.INTER_AREA), format="bgr24")
            frame.pts = i
            out.mux(video.encode(frame))
        tone = np.sin(np.arange(48000 * n // 30) * 0.05).astype(np.float32)
        for start in range(0, len(tone) - 1024, 1024):
            frame = av.AudioFrame.from_ndarray(tone[None, start:start + 1024], format="flt",
                                               layout="mono")
            frame.sample_rate, frame.pts = 48000, start
            out.mux(sound.encode(frame))
        out.mux(video.encode(None))
        out.mux(sound.encode(None))
    return path


@pytest.mark.slow
def test_cli_track_on_a_real_clip(r50_checkpoint, r50_model, tmp_path, capsys):
    from pixellib.predictor import Predictor

    clip = _real_clip(tmp_path / "street.mp4", 2)
    out = tmp_path / "tracked.mp4"
    code = main(["segment", str(clip), "-o", str(out), "--model", str(r50_checkpoint),
                 "--speed", "rapid", "--confidence", "0.45", "--boxes", "--track"])
    assert code == 0, capsys.readouterr().err
    assert "1 video (2 frames)" in capsys.readouterr().out
    info = probe_video(out)
    assert (info.rate, info.frame_count, info.size, info.has_audio) == (
        Fraction(30000, 1001), 2, (160, 120), True)

    # the same frames through the core API: ids carry over between consecutive frames
    predictor = Predictor(r50_model, speed="rapid", confidence=0.45)
    results = [det for _, det in track_frames(predictor, iter_frames(clip))]
    assert all(det.track_ids is not None for det in results)
    kept = 0
    for before, after in zip(results, results[1:]):
        overlap = box_iou(before.boxes, after.boxes)
        for k in range(len(after)):
            j = int(np.argmax(overlap[:, k])) if len(before) else -1
            unique = j >= 0 and overlap[j, k] > 0.8 and np.sum(overlap[:, k] > 0.5) == 1
            if unique and before.class_ids[j] == after.class_ids[k]:
                assert before.track_ids[j] == after.track_ids[k]
                kept += 1
    assert kept > 0  # the check above did run on real detections
