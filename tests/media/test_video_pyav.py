"""Video through PyAV: exact frame rates, odd sizes, audio carried over, WebM with alpha, no
terminal noise, the OpenCV fallback, and the one frame loop (pixellib.media.video.run_frames)."""
from __future__ import annotations

import logging
import re
import struct
import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from pixellib.errors import ImageReadError
from pixellib.media.video import (
    DEFAULT_FPS,
    VideoWriter,
    frame_rate,
    iter_frames,
    probe_video,
    run_frames,
)

NTSC = Fraction(30000, 1001)
ROOT = Path(__file__).resolve().parents[2]


def _frame(i: int, size=(64, 48)) -> np.ndarray:
    frame = np.zeros((size[1], size[0], 3), np.uint8)
    frame[:, : size[0] * (i + 1) // 12] = (200, 60, 20)  # a growing bar
    return frame


def make_clip(path: Path, n: int = 30, rate: Fraction = NTSC, audio: str | None = "aac") -> Path:
    """A clip written directly with PyAV (not with the code under test): H.264 video at
    ``rate`` and, unless ``audio`` is None, one second of a 440 Hz tone in that codec."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        sound = None
        if audio is not None:
            sound = out.add_stream(audio, rate=48000)
            sound.layout = "stereo"
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(_frame(i), format="bgr24")
            frame.pts = i
            out.mux(video.encode(frame))
        if sound is not None:
            _mux_tone(out, sound, 48000, 960)
        for stream in (video, sound):
            if stream is not None:
                out.mux(stream.encode(None))
    return path


def _picture_and_sound(out, rate, audio: str):
    """A 64x48 H.264 stream at ``rate`` and a 48 kHz stereo ``audio`` stream in ``out``."""
    video = out.add_stream("libx264", rate=rate)
    video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
    sound = out.add_stream(audio, rate=48000)
    sound.layout = "stereo"
    return video, sound


def _mux_pictures(out, video, pts) -> None:
    """One :func:`_frame` per timestamp in ``pts`` (in ``1 / rate`` units)."""
    for i, p in enumerate(pts):
        frame = av.VideoFrame.from_ndarray(_frame(i % 12), format="bgr24")
        frame.pts = p
        out.mux(video.encode(frame))


def _mux_tone(out, sound, samples: int, chunk: int) -> None:
    """``samples`` of a 440 Hz stereo tone at 48 kHz, encoded ``chunk`` samples at a time."""
    for start in range(0, samples, chunk):
        tone = np.sin(2 * np.pi * 440 * (np.arange(chunk) + start) / 48000)
        frame = av.AudioFrame.from_ndarray(np.repeat(tone[None].astype(np.float32), 2, 0),
                                           format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = 48000, start
        out.mux(sound.encode(frame))


def _audio_packets(path: Path) -> tuple[str, list[bytes]]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return stream.codec_context.name, [bytes(p) for p in container.demux(stream) if p.size]


def _copy(frame, index):
    return index, frame


def test_ntsc_rate_stays_exact_through_the_loop(tmp_path):
    src = make_clip(tmp_path / "ntsc.mp4", audio=None)
    assert probe_video(src).rate == NTSC  # the source really is 30000/1001
    out = tmp_path / "out.mp4"
    last, count = run_frames(src, _copy, output=out)
    assert (last[0], count) == (30, 30)
    info = probe_video(out)
    assert info.rate == NTSC and info.frame_count == 30 and info.size == (64, 48)
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == NTSC
        # 30 frames of 1001/30000 s: the duration is exact to the container's time base
        assert float(stream.duration * stream.time_base) == pytest.approx(30 * 1001 / 30000,
                                                                          abs=1e-4)


def test_float_fps_and_fallback_rule(tmp_path):
    out = tmp_path / "float.mp4"
    with VideoWriter(out, 30000 / 1001, (64, 48)) as writer:
        writer.write(_frame(0))
    assert writer.rate == NTSC and probe_video(out).rate == NTSC
    assert frame_rate(None, NTSC) == NTSC
    assert frame_rate(5, NTSC) == 5
    for unusable in (None, 0, 0.0, float("nan"), float("inf"), -1, "x"):
        assert frame_rate(None, unusable) == DEFAULT_FPS == 30
    with pytest.raises(ValueError, match="fps"):
        frame_rate(0, NTSC)
    # numpy's numbers, as frame rates read from arrays are (float32 raised a TypeError)
    for rate in (np.float32(15), np.float16(15), np.int64(15), np.float64(15)):
        assert frame_rate(rate, NTSC) == 15
    assert frame_rate(np.float32(29.97), None) == Fraction(2997, 100)
    with pytest.raises(ValueError, match="too low.*1/1001"):  # not "must be positive"
        frame_rate(0.0001, NTSC)
    # Past 1000 fps (Matroska stamps frames in milliseconds; 2**40 overflowed the encoder):
    # refused when asked for, the default when only the source declares it.
    for too_fast in (1001, 1e6, 2**40, Fraction(5000)):
        with pytest.raises(ValueError, match="at most 1000"):
            frame_rate(too_fast, NTSC)
        with pytest.raises(ValueError, match="at most 1000"):
            VideoWriter(tmp_path / "fast.webm", too_fast, (64, 48))
    assert frame_rate(None, 5000) == DEFAULT_FPS
    assert frame_rate(1000, NTSC) == 1000


def test_odd_sizes_are_padded_by_a_repeated_pixel(tmp_path):
    out = tmp_path / "odd.mp4"
    frame = np.zeros((47, 63, 3), np.uint8)
    frame[:, -1] = 255  # a white last column: padding repeats it
    frame[-1, :] = 128
    with VideoWriter(out, 10, (63, 47)) as writer:
        writer.write(frame)
        writer.write(frame)
    assert writer.encoded_size == (64, 48) and probe_video(out).size == (64, 48)
    decoded = next(iter_frames(out)).astype(int)
    assert np.abs(decoded[:47, :63] - frame).mean() < 4  # the picture itself is kept
    assert decoded[10:40, 63].mean() > 200  # the padded column repeats the white one
    assert abs(decoded[47, 5:55].mean() - 128) < 10  # and the padded row the grey one


def test_portrait_phone_video_is_turned_upright(tmp_path):
    """A phone's portrait clip: landscape frames plus a 90-degree turn in the MP4 track header
    (patched in here); frames come out upright, as OpenCV shows them."""
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[:10, :20] = (0, 0, 255)  # a red block in the top left corner
    with VideoWriter(tmp_path / "flat.mp4", 10, (64, 48)) as writer:
        writer.write(frame)
    data = bytearray((tmp_path / "flat.mp4").read_bytes())
    matrix = data.index(b"tkhd") + 44  # version-0 track header: the display matrix
    data[matrix:matrix + 36] = struct.pack(">9i", 0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 1 << 30)
    (tmp_path / "portrait.mp4").write_bytes(data)
    upright = next(iter_frames(tmp_path / "portrait.mp4"))
    capture = cv2.VideoCapture(str(tmp_path / "portrait.mp4"))
    expected = capture.read()[1]
    capture.release()
    assert upright.shape == expected.shape == (64, 48, 3)
    assert np.abs(upright.astype(int) - expected).mean() < 2
    assert upright[:20, -10:, 2].mean() > 200  # turned clockwise: the block is top right
    assert probe_video(tmp_path / "portrait.mp4").size == (48, 64)


def test_audio_is_remuxed_unchanged(tmp_path):
    src = make_clip(tmp_path / "talk.mp4")
    out = tmp_path / "out.mp4"
    run_frames(src, _copy, output=out)
    codec, packets = _audio_packets(out)
    src_codec, src_packets = _audio_packets(src)
    assert codec == src_codec == "aac"
    # every packet byte-identical, up to where the video (1.001 s) ends
    assert 45 <= len(packets) <= len(src_packets) and packets == src_packets[: len(packets)]


def test_audio_reencoded_when_the_container_cannot_hold_it(tmp_path, caplog):
    src = make_clip(tmp_path / "talk.mp4")
    out = tmp_path / "out.webm"
    with caplog.at_level(logging.WARNING):
        run_frames(src, _copy, output=out)
    assert "re-encoding it to Opus" in caplog.text
    codec, packets = _audio_packets(out)
    assert codec == "opus" and len(packets) > 40
    with av.open(str(out)) as container:
        assert float(container.duration / 1e6) == pytest.approx(1.0, abs=0.1)


@pytest.mark.parametrize("ext", ["mkv", "avi", "webm"])
def test_audio_priming_moves_no_frame(tmp_path, ext):
    """AAC and MP3 start with priming samples before time 0. AVI and Matroska hold no
    negative time, and their muxer shifted every stream for them: MKV's frames came 21 ms
    late, and AVI's second frame a whole step late (its header then counted 11 of 10)."""
    src = make_clip(tmp_path / "talk.mp4", n=10)
    out = tmp_path / f"out.{ext}"
    run_frames(src, _copy, output=out)
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        times = sorted(p.pts * p.time_base for p in container.demux(stream) if p.size)
    assert times == pytest.approx([k * float(1 / NTSC) for k in range(10)], abs=1e-3)
    assert probe_video(out).frame_count == 10 and probe_video(out).has_audio
    codec, packets = _audio_packets(out)
    assert len(packets) >= 14  # the sound is there (1024 or 1152 samples each at 48 kHz)


def _tone_clip(path: Path, codec: str, rate: int, channels: int, n: int = 6) -> Path:
    """H.264 video with a quarter second of tone in ``codec`` (pcm_s16le: no named layout
    once in AVI or MKV, "6 channels", as FFmpeg reports PCM there)."""
    pcm = codec == "pcm_s16le"
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=NTSC)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        sound = out.add_stream(codec, rate=rate)
        sound.layout = {1: "mono", 2: "stereo", 6: "5.1"}[channels]
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(_frame(i), format="bgr24")
            frame.pts = i
            out.mux(video.encode(frame))
        step = 1024
        for start in range(0, rate // 4, step):
            tone = np.sin(2 * np.pi * 440 * (np.arange(step) + start) / rate)
            if pcm:
                samples = np.repeat((8000 * tone).astype(np.int16)[:, None], channels, 1)
                frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16",
                                                   layout=sound.layout.name)
            else:
                samples = np.repeat(tone.astype(np.float32)[None], channels, 0)
                frame = av.AudioFrame.from_ndarray(samples, format="fltp",
                                                   layout=sound.layout.name)
            frame.sample_rate, frame.pts = rate, start
            out.mux(sound.encode(frame))
        for stream in (video, sound):
            out.mux(stream.encode(None))
    return path


@pytest.mark.parametrize("source, output, codec, rate, layout", [
    (("pcm_s16le", 22050, 1, "a.avi"), "out.mp4", "aac", 22050, "mono"),  # "1 channels"
    (("pcm_s16le", 48000, 6, "a.mkv"), "out.mp4", "aac", 48000, "5.1"),
    (("pcm_s16le", 48000, 6, "a.mkv"), "out.webm", "opus", 48000, "stereo"),
    (("aac", 96000, 2, "a.mp4"), "out.avi", "mp3", 48000, "stereo"),  # MP3 stops at 48 kHz
])
def test_audio_reencoded_to_what_the_encoder_takes(tmp_path, source, output, codec, rate,
                                                   layout):
    """Audio that must be re-encoded keeps going when its rate or layout is not one the
    encoder takes (the video used to fail, with FFmpeg's 'Invalid argument')."""
    src_codec, src_rate, channels, name = source
    src = _tone_clip(tmp_path / name, src_codec, src_rate, channels)
    out = tmp_path / output
    assert run_frames(src, _copy, output=out)[1] == 6
    with av.open(str(out)) as container:
        stream = container.streams.audio[0]
        ctx = stream.codec_context
        assert (ctx.codec.canonical_name, ctx.sample_rate, ctx.layout.name) == (codec, rate,
                                                                               layout)
        assert sum(1 for p in container.demux(stream) if p.size) > 3
    with av.open(str(out)) as container:
        assert len(list(container.decode(video=0))) == 6


def test_mp3_is_remuxed_unchanged(tmp_path, caplog):
    """MP3 (which FFmpeg decodes as "mp3float") is a codec AVI holds: copied, not
    re-encoded."""
    src = make_clip(tmp_path / "talk.avi", audio="libmp3lame")
    out = tmp_path / "out.avi"
    with caplog.at_level(logging.WARNING):
        run_frames(src, _copy, output=out)
    assert "re-encoding" not in caplog.text
    codec, packets = _audio_packets(out)
    src_codec, src_packets = _audio_packets(src)
    assert len(packets) > 10 and packets == src_packets[: len(packets)]


def test_audio_dropped_when_the_rate_changes(tmp_path, caplog):
    src = make_clip(tmp_path / "talk.mp4", n=6)
    out = tmp_path / "slow.mp4"
    with caplog.at_level(logging.WARNING):
        run_frames(src, _copy, output=out, fps=3)
    assert "audio not carried over" in caplog.text
    info = probe_video(out)
    assert info.rate == 3 and not info.has_audio


def test_webm_with_alpha(tmp_path):
    out = tmp_path / "cutout.webm"
    frame = np.zeros((48, 64, 4), np.uint8)
    frame[:, :32] = (0, 0, 255, 255)  # opaque red left half, transparent right half
    with VideoWriter(out, 10, (64, 48)) as writer:
        for _ in range(5):
            writer.write(frame)
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "vp9"
        assert stream.metadata.get("alpha_mode") == "1"
        decoder = av.codec.CodecContext.create("libvpx-vp9", "r")  # decodes the alpha layer
        frames = [f for p in container.demux(stream) for f in decoder.decode(p)]
    assert len(frames) == 5 and frames[0].format.name == "yuva420p"
    bgra = frames[-1].to_ndarray(format="bgra").astype(int)
    assert bgra[:, :28, 3].min() > 240 and bgra[:, 36:, 3].max() < 15
    assert bgra[:, :28, 2].mean() > 200 and bgra[:, :28, :2].mean() < 40
    with pytest.raises(ValueError, match="webm"):
        VideoWriter(tmp_path / "x.mp4", 10, (64, 48), alpha=True)


_WRITE_SCRIPT = """
import logging, sys
import numpy as np
logging.basicConfig(level=logging.WARNING)
from pixellib.media.video import VideoWriter, iter_frames
for name in sys.argv[2:]:
    with VideoWriter(sys.argv[1] + "/" + name, 10, (63, 47)) as w:
        for i in range(3):
            w.write(np.full((47, 63, 3), 50 * i, np.uint8))
    assert len(list(iter_frames(sys.argv[1] + "/" + name))) == 3
print(w.backend, w.fourcc)
"""


def _run(tmp_path, prelude: str, *names: str) -> subprocess.CompletedProcess:
    script = textwrap.dedent(prelude) + _WRITE_SCRIPT
    return subprocess.run([sys.executable, "-c", script, str(tmp_path), *names], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_writing_prints_nothing_on_the_terminal(tmp_path):
    done = _run(tmp_path, "", "a.mp4", "b.webm", "c.avi", "d.mkv", "e.mov")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no OpenCV "[ERROR] ... Failed to initialize VideoWriter"
    assert done.stdout.split() == ["pyav", "avc1"]


def test_opencv_fallback_without_pyav(tmp_path):
    done = _run(tmp_path, "import sys; sys.modules['av'] = None  # PyAV missing\n",
                "a.mp4", "b.avi")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["opencv", "MJPG"]
    assert done.stderr.count("PyAV is not installed") == 1  # said once, not per file
    assert "ERROR" not in done.stderr


class _Capture:
    def __init__(self, frames, fps=0.0):
        self.frames, self.fps = list(frames), fps

    def isOpened(self):  # noqa: N802 - OpenCV's name
        return True

    def read(self):
        return (True, self.frames.pop(0)) if self.frames else (False, None)

    def get(self, prop):
        return self.fps


def test_loop_stop_interrupt_and_errors(tmp_path):
    out = tmp_path / "cam.mp4"
    last, count = run_frames(_Capture([_frame(i) for i in range(5)]), _copy, output=out,
                             stop=lambda last: last[0] == 3)
    assert (last[0], count) == (3, 3)
    assert probe_video(out).rate == DEFAULT_FPS and probe_video(out).frame_count == 3

    def interrupt(frame, index):
        if index == 3:
            raise KeyboardInterrupt
        return index, frame

    kept, lost = tmp_path / "kept.mp4", tmp_path / "lost.mp4"
    with pytest.raises(KeyboardInterrupt):
        run_frames(_Capture([_frame(i) for i in range(5)], fps=12), interrupt, output=kept,
                   keep_on_interrupt=True)
    assert probe_video(kept).frame_count == 2 and probe_video(kept).rate == 12
    with pytest.raises(KeyboardInterrupt):
        run_frames(_Capture([_frame(i) for i in range(5)]), interrupt, output=lost)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cam.mp4", "kept.mp4"]


def _decoded(path: Path) -> list[np.ndarray]:
    return list(iter_frames(path))


def test_overlapped_loop_writes_the_same_video(tmp_path):
    """``overlap=True`` decodes and encodes on background threads: same frames, same order,
    same audio, the same steps called from this thread."""
    import threading

    src = make_clip(tmp_path / "src.mp4", n=30)
    calls = []

    def step(frame, index):
        calls.append((index, threading.current_thread().name))
        return index, frame

    plain, overlapped = tmp_path / "plain.mp4", tmp_path / "overlap.mp4"
    assert run_frames(src, _copy, output=plain)[1] == 30
    last, count = run_frames(src, step, output=overlapped, overlap=True)
    assert (last[0], count) == (30, 30)
    assert [i for i, _ in calls] == list(range(1, 31))
    assert {name for _, name in calls} == {threading.current_thread().name}
    a, b = _decoded(plain), _decoded(overlapped)
    assert len(a) == len(b) == 30
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)  # same encoder, same frames: same pixels
    assert _audio_packets(overlapped) == _audio_packets(plain)


def test_overlapped_loop_discards_on_error_and_stops_early(tmp_path):
    import threading

    src = make_clip(tmp_path / "src.mp4", n=30, audio=None)
    out = tmp_path / "out.mp4"
    before = threading.active_count()

    def failing(frame, index):
        if index == 12:
            raise RuntimeError("step failed at frame 12")
        return index, frame

    with pytest.raises(RuntimeError, match="frame 12"):
        run_frames(src, failing, output=out, overlap=True)
    assert not out.exists() and list(tmp_path.iterdir()) == [src]
    assert threading.active_count() == before

    last, count = run_frames(src, _copy, output=out, overlap=True,
                             stop=lambda last: last[0] == 7)
    assert (last[0], count) == (7, 7)
    assert probe_video(out).frame_count == 7
    assert threading.active_count() == before


@pytest.mark.parametrize("ext, frames, keep, said", [
    # MP4 declares its frame count (+faststart: the index comes first, and survives the cut)
    ("mp4", 12, 2 / 3, "only {got} of the 12 frames its header declares could be decoded"),
    # MKV stores none: a cut file was read in part with no word (9 of 20); its length says
    ("mkv", 20, 1 / 2, "the frames decoded stop at {stop:.2f} s of its 2.00 s"),
])
def test_a_cut_video_says_how_many_frames_are_missing(tmp_path, caplog, ext, frames, keep,
                                                        said):
    """FFmpeg's threaded decoding ends a cut file without an error: the loop compares what it
    decoded with the count the header declares, or where the frames stop with its length."""
    whole = tmp_path / f"whole.{ext}"
    with VideoWriter(whole, 10, (64, 48)) as writer:
        for i in range(frames):
            writer.write(np.random.default_rng(i).integers(0, 256, (48, 64, 3), np.uint8))
    assert probe_video(whole).frame_count == frames
    data = whole.read_bytes()
    cut = tmp_path / f"cut.{ext}"
    cut.write_bytes(data[: int(len(data) * keep)])
    with caplog.at_level(logging.WARNING):
        assert run_frames(whole, _copy)[1] == frames
    assert "could be decoded" not in caplog.text
    with caplog.at_level(logging.WARNING):
        got = run_frames(cut, _copy)[1]
    assert 0 < got < 0.9 * frames - 1
    assert said.format(got=got, stop=got / 10) in caplog.text
    assert probe_video(cut).declared_frames == (frames if ext == "mp4" else 0)
    # strict (the command line's --strict): fewer frames than declared is an error, the
    # output not kept; a length not reached only a warning (a last frame held long, in a
    # variable-rate file, looks the same)
    out = tmp_path / f"out.{ext}"
    if ext == "mp4":
        with pytest.raises(ImageReadError, match=re.escape(said.format(got=got))):
            run_frames(cut, _copy, output=out, strict=True)
        assert not out.exists()
        assert [p.name for p in tmp_path.iterdir() if p.name[0] == "."] == []
    else:
        assert run_frames(cut, _copy, output=out, strict=True)[1] == got and out.is_file()
    assert run_frames(whole, _copy, output=out, strict=True)[1] == frames


def test_an_mp4_cut_by_stream_copy_is_whole(tmp_path, caplog):
    """"ffmpeg -ss 1.5 -c copy" keeps the frames from the keyframe before the cut, at negative
    times, and an edit list hides them: the header counts 20 frames, 15 are shown. That file
    was called truncated, and --strict failed it."""
    source, cut = tmp_path / "source.mp4", tmp_path / "cut.mp4"
    with av.open(str(source), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt, stream.gop_size = 64, 48, "yuv420p", 10
        for i in range(30):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 8, np.uint8),
                                               format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    with av.open(str(source)) as inp, av.open(str(cut), "w") as out:
        video = inp.streams.video[0]
        copy = out.add_stream_from_template(video)
        shift = int(1.5 / video.time_base)
        for packet in inp.demux(video):
            if packet.dts is None or packet.pts * video.time_base < 1:  # from the keyframe at 1 s
                continue
            packet.pts -= shift
            packet.dts -= shift
            packet.stream = copy
            out.mux(packet)
    info = probe_video(cut)
    assert info.declared_frames == 20
    with caplog.at_level(logging.WARNING):
        count = run_frames(cut, _copy, output=tmp_path / "out.mp4", strict=True)[1]
    assert count == 15 and (tmp_path / "out.mp4").is_file()
    assert "could be decoded" not in caplog.text and "stop at" not in caplog.text


def test_the_main_video_track_is_segmented_not_a_thumbnail(tmp_path, caplog):
    """A file whose first video track is a one-frame 32x24 thumbnail: its 64x48 picture
    track is the one read (it gave a one-frame 32x24 output), and the choice is said once."""
    path = tmp_path / "two.mp4"
    with av.open(str(path), "w") as out:
        thumb = out.add_stream("libx264", rate=30)
        thumb.width, thumb.height, thumb.pix_fmt = 32, 24, "yuv420p"
        video = out.add_stream("libx264", rate=30)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        frame = av.VideoFrame.from_ndarray(_frame(0, (32, 24)), format="bgr24")
        frame.pts = 0
        out.mux(thumb.encode(frame))
        out.mux(thumb.encode(None))
        _mux_pictures(out, video, range(10))
        out.mux(video.encode(None))
    info = probe_video(path)
    assert info.size == (64, 48) and info.frame_count == 10
    with caplog.at_level(logging.WARNING):
        _, count = run_frames(path, _copy, output=tmp_path / "out.mp4")
    assert count == 10 and probe_video(tmp_path / "out.mp4").size == (64, 48)
    assert caplog.text.count("has 2 video tracks: segmenting track 1 (64x48)") == 1


def test_a_late_start_shifts_the_audio_with_the_picture(tmp_path):
    """A trimmed clip or an MPEG-TS recording starts at 1 s: the output's picture starts at
    0, and so must its sound (it stayed at 1 s, a second late, or went missing)."""
    src = tmp_path / "late.mkv"
    with av.open(str(src), "w") as out:
        video, sound = _picture_and_sound(out, 25, "aac")
        _mux_pictures(out, video, range(25, 50))  # one second in
        for start in range(48000, 96000, 1024):
            tone = np.sin(2 * np.pi * 440 * (np.arange(1024) + start) / 48000)
            frame = av.AudioFrame.from_ndarray(np.repeat(tone[None].astype(np.float32), 2, 0),
                                               format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = 48000, start
            out.mux(sound.encode(frame))
        for stream in (video, sound):
            out.mux(stream.encode(None))
    assert probe_video(src).start == 1
    out = tmp_path / "out.mp4"
    run_frames(src, _copy, output=out)
    with av.open(str(out)) as result:
        first = next(result.decode(video=0)).time
    with av.open(str(out)) as result:
        stream = result.streams.audio[0]
        times = [float(p.pts * p.time_base) for p in result.demux(stream) if p.pts is not None]
    assert first == pytest.approx(0, abs=1e-3)
    assert -0.05 <= times[0] <= 0.05 and 0.9 <= times[-1] <= 1.05


def test_non_square_pixels_are_declared_in_the_output(tmp_path):
    src = tmp_path / "anamorphic.mp4"
    with av.open(str(src), "w") as out:
        video = out.add_stream("libx264", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        video.codec_context.sample_aspect_ratio = Fraction(2, 1)  # shown 128 wide
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(_frame(i), format="bgr24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
    assert probe_video(src).pixel_aspect == 2
    out = tmp_path / "out.mp4"
    run_frames(src, _copy, output=out)
    with av.open(str(out)) as result:
        assert result.streams.video[0].codec_context.sample_aspect_ratio == 2
    assert probe_video(tmp_path / "out.mp4").pixel_aspect == 2


# Frame times (ms) of a screen-recording-like clip: bursts and long still stretches, 3 s.
VFR_MS = [0, 33, 66, 500, 533, 1500, 1533, 1566, 3000]


def _vfr_clip(path: Path, audio: bool = False) -> Path:
    """A variable-frame-rate clip written directly with PyAV: frames at :data:`VFR_MS` and,
    with ``audio``, 3.2 s of AAC tone."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=30)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        video.codec_context.time_base = Fraction(1, 1000)
        sound = None
        if audio:
            sound = out.add_stream("aac", rate=48000)
            sound.layout = "stereo"
        for i, ms in enumerate(VFR_MS):
            frame = av.VideoFrame.from_ndarray(_frame(i), format="bgr24")
            frame.pts, frame.time_base = ms, Fraction(1, 1000)
            out.mux(video.encode(frame))
        if sound is not None:
            _mux_tone(out, sound, 3 * 48000 + 9600, 1024)
        for stream in (video, sound):
            if stream is not None:
                out.mux(stream.encode(None))
    return path


def _frame_times(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        return [float(f.pts * f.time_base) for f in container.decode(video=0)]


@pytest.mark.parametrize("ext", [".mp4", ".mov", ".mkv", ".webm"])
def test_variable_frame_rate_keeps_its_timing(tmp_path, ext):
    """A phone or screen recording shows frames at irregular times: the output shows each
    frame when the source did (it used to play them one per average-rate step, squeezing a
    3 s clip into 1.45 s and drifting from its sound)."""
    src = _vfr_clip(tmp_path / "vfr.mp4")
    assert _frame_times(src) == pytest.approx([ms / 1000 for ms in VFR_MS])
    out = tmp_path / f"out{ext}"
    _, count = run_frames(src, _copy, output=out)
    assert count == len(VFR_MS)
    assert _frame_times(out) == pytest.approx([ms / 1000 for ms in VFR_MS], abs=1e-3)
    for got, want in zip(_decoded(out), [_frame(i) for i in range(len(VFR_MS))]):
        assert np.abs(got.astype(int) - want).mean() < 8  # the same pictures, in order


def test_variable_frame_rate_in_avi_lands_on_its_rate_steps(tmp_path):
    """AVI has one frame rate: each frame goes to the nearest free step of it, so the clip
    keeps its length and order instead of being squeezed."""
    src = _vfr_clip(tmp_path / "vfr.mp4")
    rate = probe_video(src).rate
    out = tmp_path / "out.avi"
    run_frames(src, _copy, output=out)
    times = _frame_times(out)
    assert len(times) == len(VFR_MS) and times == sorted(set(times))
    step = 1 / float(rate)
    for got, ms in zip(times, VFR_MS):
        assert abs(got - ms / 1000) <= 2.5 * step  # bursts push a frame at most a few steps
    assert times[-1] == pytest.approx(3.0, abs=step)


def test_variable_frame_rate_keeps_its_sound_in_step(tmp_path):
    src = _vfr_clip(tmp_path / "vfr.mp4", audio=True)
    out = tmp_path / "out.mp4"
    run_frames(src, _copy, output=out)
    with av.open(str(out)) as result:
        stream = result.streams.audio[0]
        ends = [float((p.pts + p.duration) * p.time_base) for p in result.demux(stream)
                if p.pts is not None]
    # the sound runs to the end of the picture (the last frame, at 3 s, plus its duration)
    assert 3.0 <= max(ends) <= 3.0 + 0.2 + 0.05


def test_a_requested_frame_rate_retimes_the_frames(tmp_path):
    """PixelLib's frames_per_second: the frames one after another at that rate."""
    src = _vfr_clip(tmp_path / "vfr.mp4")
    out = tmp_path / "out.mp4"
    run_frames(src, _copy, output=out, fps=10)
    assert _frame_times(out) == pytest.approx([i / 10 for i in range(len(VFR_MS))], abs=1e-3)


def test_a_rate_past_the_limit_is_written_at_the_default_as_the_warning_says(tmp_path,
                                                                            caplog):
    """A 1200 fps clip: the warning said "writing at 30 fps" while the frames kept the
    source's times (0.8 ms apart, a 5 ms video)."""
    src = make_clip(tmp_path / "fast.mp4", n=6, rate=Fraction(1200))
    out = tmp_path / "out.mp4"
    with caplog.at_level(logging.WARNING, logger="pixellib"):
        run_frames(src, _copy, output=out)
    assert "writing one frame after another at 30 fps" in caplog.text
    assert "audio not carried over" in caplog.text
    assert _frame_times(out) == pytest.approx([i / DEFAULT_FPS for i in range(6)], abs=1e-3)
    with av.open(str(out)) as result:
        assert not result.streams.audio


@pytest.mark.parametrize("audio", ["aac", None])
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_an_mp4_cut_before_its_index_says_so(tmp_path, audio, keep):
    """A recording cut short loses the index MP4 writes last: it was called "not a video
    FFmpeg can decode", "it has no video track" (as an audio file) or "Decoder not found"."""
    whole = make_clip(tmp_path / "whole.mp4", n=20, audio=audio).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole[: int(len(whole) * keep)])
    with pytest.raises(ImageReadError, match="MP4/MOV file without its index") as info:
        list(iter_frames(cut))
    assert str(cut) in str(info.value) and "completely written" in str(info.value)
    assert len(list(iter_frames(tmp_path / "whole.mp4"))) == 20  # the whole file is fine


def test_writer_times_out_of_order_move_after_the_previous_frame(tmp_path):
    out = tmp_path / "t.mkv"
    with VideoWriter(out, 10, (64, 48), time_base=Fraction(1, 1000)) as writer:
        for i, t in enumerate([0, Fraction(1, 2), Fraction(1, 2), Fraction(1, 4),
                               Fraction(7, 20), None]):
            writer.write(_frame(i), t)
    # a repeated time goes 1 ms (one tick) after the frame before; an earlier one (0.25 s)
    # one frame (1/10 s) after it, and the next times follow from there (0.35 s: 0.1 s
    # later); no time: one 1/10 s step
    assert _frame_times(out) == pytest.approx([0, 0.5, 0.501, 0.601, 0.701, 0.801], abs=1e-6)


def _ts_clip(path: Path, n: int = 6, audio_seconds: float = 0.25) -> Path:
    """An MPEG-TS clip (30 fps, AAC) written with PyAV, as DVRs and HLS segments are."""
    with av.open(str(path), "w", format="mpegts") as out:
        video = out.add_stream("libx264", rate=30)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        sound = out.add_stream("aac", rate=48000)
        sound.layout = "stereo"
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(_frame(i), format="bgr24")
            frame.pts = i
            out.mux(video.encode(frame))
        _mux_tone(out, sound, int(48000 * audio_seconds), 1024)
        for stream in (video, sound):
            out.mux(stream.encode(None))
    return path


@pytest.mark.parametrize("ext", [".mp4", ".mkv", ".webm"])
def test_recordings_joined_end_to_end_play_one_after_the_other(tmp_path, ext, caplog):
    """`cat a.ts b.ts`: the second part's times start again at 0. Its frames were squeezed
    into one tick after the first part's end, and its sound made the muxer fail."""
    part = _ts_clip(tmp_path / "part.ts").read_bytes()
    joined = tmp_path / "joined.ts"
    joined.write_bytes(part * 2)
    out = tmp_path / f"out{ext}"
    with caplog.at_level(logging.WARNING):
        _, count = run_frames(joined, _copy, output=out)
    assert count == 12
    times = _frame_times(out)
    assert len(times) == 12
    steps = np.diff(times)
    assert np.all(np.abs(steps - 1 / 30) < 2e-3), times  # one frame after another
    assert probe_video(out).has_audio


def test_a_damaged_audio_packet_is_left_out_and_the_video_is_whole(tmp_path, caplog):
    clip = _ts_clip(tmp_path / "clip.ts", n=30, audio_seconds=1.0)
    data = bytearray(clip.read_bytes())
    # damage the payload of TS packets that carry audio (PID of the second stream)
    with av.open(str(clip)) as container:
        audio_pid = container.streams.audio[0].id
    damaged = 0
    for offset in range(0, len(data) - 188, 188):
        pid = ((data[offset + 1] & 0x1F) << 8) | data[offset + 2]
        if pid == audio_pid and offset > len(data) // 3 and damaged < 3:
            data[offset + 40:offset + 120] = bytes(range(80))
            damaged += 1
    assert damaged == 3
    broken = tmp_path / "broken.ts"
    broken.write_bytes(bytes(data))
    for ext in (".mp4", ".webm"):
        out = tmp_path / f"out{ext}"
        _, count = run_frames(broken, _copy, output=out)
        assert count == 30 and len(_frame_times(out)) == 30
        assert probe_video(out).has_audio
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_a_constant_rate_stored_in_milliseconds_stays_exact(tmp_path):
    """MKV and WebM (OBS, browsers) store times in ms: 30000/1001 fps becomes 0, 33, 67...
    Written to MP4 the frames are exactly 1001/30000 s apart again, not 33 or 34 ms."""
    src = tmp_path / "ntsc.mkv"
    with av.open(str(src), "w") as out:
        video = out.add_stream("libx264", rate=NTSC)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        for i in range(30):
            frame = av.VideoFrame.from_ndarray(_frame(i % 12), format="bgr24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
    assert len(set(np.round(np.diff(_frame_times(src)), 4))) == 2  # 33 and 34 ms steps
    out = tmp_path / "out.mp4"
    run_frames(src, _copy, output=out)
    with av.open(str(out)) as result:
        stream = result.streams.video[0]
        pts = [f.pts for f in result.decode(stream)]
        assert stream.average_rate == NTSC
        assert {(b - a) * stream.time_base for a, b in zip(pts, pts[1:])} == {1 / NTSC}


def test_a_rate_typed_as_players_show_it_is_the_sources(tmp_path, caplog):
    """frames_per_second=29.97 for a 30000/1001 clip: the exact rate, its timing and sound
    (it wrote at 2997/100 and left the sound out)."""
    src = make_clip(tmp_path / "talk.mp4")
    out = tmp_path / "out.mp4"
    with caplog.at_level(logging.WARNING):
        run_frames(src, _copy, output=out, fps=29.97)
    assert "audio not carried over" not in caplog.text
    info = probe_video(out)
    assert info.rate == NTSC and info.has_audio
    assert frame_rate(30, NTSC) == 30 and frame_rate(23.976, Fraction(24000, 1001)) == Fraction(
        24000, 1001)


def test_a_file_url_is_the_file_itself(tmp_path):
    src = make_clip(tmp_path / "talk.mp4")
    from pixellib.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="it is the input video itself"):
        run_frames(src.as_uri(), _copy, output=src)
    out = tmp_path / "out.mp4"
    run_frames(src.as_uri(), _copy, output=out)
    assert probe_video(out).has_audio  # read as a file: its sound comes along


@pytest.mark.parametrize("ext", [".webm", ".mp4"])
def test_sound_that_starts_late_stays_late_when_re_encoded(tmp_path, ext):
    """PCM (in MOV) or AAC starting 0.2 s after the picture, re-encoded to Opus or AAC,
    started at 0 (the encoder numbered its samples from there)."""
    src = tmp_path / "late.mov"
    with av.open(str(src), "w") as out:
        video, sound = _picture_and_sound(out, 10, "pcm_s16le")
        _mux_pictures(out, video, range(10))
        for start in range(9600, 48000, 960):
            tone = (np.sin(2 * np.pi * 440 * (np.arange(960) + start) / 48000) * 8000)
            samples = np.repeat(tone[None].astype(np.int16), 2, 0).T.reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="stereo")
            frame.sample_rate, frame.pts = 48000, start
            out.mux(sound.encode(frame))
        for stream in (video, sound):
            out.mux(stream.encode(None))
    out = tmp_path / f"out{ext}"
    run_frames(src, _copy, output=out)
    with av.open(str(out)) as result:
        stream = result.streams.audio[0]
        starts = [float(p.pts * p.time_base) for p in result.demux(stream) if p.pts is not None]
    # the first samples play at 0.2 s (less the encoder's priming, one frame of samples)
    assert 0.15 <= min(starts) + 0.025 and min(starts) <= 0.21
