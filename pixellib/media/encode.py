"""Video encoders behind :class:`pixellib.media.video.VideoWriter`.

:class:`PyAVEncoder` is the normal path. PyAV's wheels carry their own FFmpeg with libx264 and
libvpx, so it writes what browsers and editors play:

* ``.mp4`` ``.m4v`` ``.mov`` ``.mkv``: H.264 (libx264, ``yuv420p``, preset ``ultrafast``,
  CRF 20); MP4/MOV get ``+faststart`` so a browser can start playing before the download ends.
  4:2:0 needs even sizes: an odd width or height is **padded** by one pixel that repeats the
  last column or row (no input pixel is lost, the picture looks the same; the file is 1 px
  larger).
* ``.webm``: VP9 (libvpx-vp9); ``yuva420p`` (with alpha) when fed BGRA frames.
* ``.avi``: Motion-JPEG, which every player of AVI files decodes.

The frame rate is a rational (``Fraction(30000, 1001)`` stays exact), frame ``k`` has
presentation time ``k / rate`` unless it comes with its own time (a variable frame rate):
then the stream counts in a unit that holds both the source's time base and ``1 / rate``
exactly (MP4, MOV), in milliseconds (Matroska, WebM) or, in AVI, which has a single frame
rate, in ``1 / rate`` steps, each frame at the nearest step after the previous frame's. A
time within the source's rounding of a ``k / rate`` step is taken as that step (a constant
rate stored in milliseconds stays constant); a time that goes back (recordings joined end to
end) continues one frame after the previous frame, and the later times follow from there.

An audio track can be carried over from a source file: its packets are copied unchanged
(remuxed) when the container holds that codec, otherwise decoded and re-encoded (AAC; Opus
for WebM, MP3 for AVI), which is logged as a warning. Audio packets are muxed in step with
the video and stop where the video stops. A damaged packet, or one whose time goes back, is
left out with a warning: the sound skips there, the video is written whole. AVI and MKV hold
no negative time, so an encoder's priming samples before time 0 are left out there (or the
sound starts that much later, ~25 ms for MP3) rather than every frame moving later.

:class:`OpenCVEncoder` is the fallback used only when PyAV is not installed: MPEG-4 Part 2 /
Motion-JPEG through ``cv2.VideoWriter``, no alpha, no audio.
"""
from __future__ import annotations

import errno
import logging
import math
import shutil
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from ..errors import InvalidArgumentError

try:
    import av
except ImportError:  # the OpenCV fallback; see VideoWriter
    av = None

logger = logging.getLogger(__name__)

_warned_no_pyav = False


def pyav():
    """The ``av`` module, or None (logged once per process) when PyAV is not installed."""
    global _warned_no_pyav
    if av is None and not _warned_no_pyav:
        _warned_no_pyav = True
        logger.warning("PyAV is not installed (pip install av): video goes through OpenCV, "
                       "as MPEG-4 Part 2 that browsers do not play, without audio")
    return av

#: Output container per extension (FFmpeg muxer name).
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska",
              ".webm": "webm", ".avi": "avi"}
#: Video codec per container (FFmpeg encoder name) and the codec name a reader reports.
VIDEO_ENCODERS = {"mp4": "libx264", "mov": "libx264", "matroska": "libx264",
                  "webm": "libvpx-vp9", "avi": "mjpeg"}
_ENCODER_OPTIONS = {
    "libx264": {"preset": "ultrafast", "crf": "20"},
    # realtime deadline with a high cpu-used: VP9 is otherwise many times slower than x264
    "libvpx-vp9": {"crf": "32", "b": "0", "deadline": "realtime", "cpu-used": "8",
                   "row-mt": "1"},
    "mjpeg": {},
}
#: Audio codecs each container takes as they are (remuxed without decoding).
_AUDIO_AS_IS = {
    "mp4": {"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"},
    "mov": {"aac", "mp3", "alac", "ac3", "eac3", "pcm_s16le", "pcm_s16be", "pcm_s24le"},
    "matroska": {"aac", "mp3", "opus", "vorbis", "flac", "ac3", "eac3", "alac", "pcm_s16le",
                 "pcm_s24le", "pcm_f32le"},
    "webm": {"opus", "vorbis"},
    "avi": {"mp3", "ac3", "pcm_s16le", "pcm_u8"},
}
_AUDIO_REENCODE = {"webm": "libopus", "avi": "libmp3lame"}  # others: "aac"
#: Containers whose muxer shifts every stream when one has a negative time (see _AudioCopy).
#: WebM's sound is always Opus encoded here, whose priming Matroska records as a codec delay.
_NO_NEGATIVE_TIMES = {"avi", "matroska"}

#: FourCCs of the OpenCV fallback, per extension (no probing of codecs OpenCV lacks).
OPENCV_FOURCCS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "mp4v",
                  ".avi": "MJPG", ".webm": "VP90"}


# FFmpeg's AVColorSpace / AVColorPrimaries / AVColorTransferCharacteristic (all SMPTE 170M,
# i.e. BT.601) and AVColorRange (limited, "MPEG").
_SMPTE170M, _LIMITED_RANGE = 6, 1


def _tag_colours(context) -> str:
    """Tag the stream as BT.601 (SMPTE 170M matrix, primaries and transfer; limited range)
    and return the matrix frames are converted with (``VideoFrame.reformat``).

    Untagged, a player guesses the matrix from the size: BT.709 from HD up, which turned
    FFmpeg's BT.601 conversion green-tinted in Chromium (pure green played as (0, 215, 0) at
    1280 x 720). Chromium honours these tags only when all three are given; converting to
    BT.709 and tagging that instead was off by up to 16 levels in it (measured on colour
    bars in headless Chromium: BT.601 tagged is within 5 levels at every size, FFmpeg's own
    rounding)."""
    context.colorspace = context.color_primaries = context.color_trc = _SMPTE170M
    context.color_range = _LIMITED_RANGE
    return "ITU601"


class PyAVEncoder:
    """Encode BGR / BGRA uint8 frames into ``path`` (a temporary name; the caller renames)."""

    backend = "pyav"

    def __init__(self, path: Path, container_ext: str, rate: Fraction,
                 frame_size: tuple[int, int], *, alpha: bool = False,
                 audio_from: Path | None = None, audio_offset: Fraction = Fraction(0),
                 pixel_aspect: Fraction | None = None, time_base: Fraction | None = None):
        fmt = CONTAINERS[container_ext]
        self.codec = VIDEO_ENCODERS[fmt]
        self._matrix = None
        self.alpha = bool(alpha)
        if self.alpha and self.codec != "libvpx-vp9":
            raise InvalidArgumentError(f"transparent video needs .webm, not {container_ext}")
        self.rate = rate
        width, height = frame_size
        if self.codec == "libx264":  # 4:2:0 H.264 needs even sizes: pad by one pixel
            width, height = width + width % 2, height + height % 2
        self.encoded_size = (width, height)
        options = {"movflags": "+faststart"} if fmt in ("mp4", "mov") else {}
        self._out = av.open(str(path), "w", format=fmt, options=options)
        self._audio = None
        try:
            stream = self._out.add_stream(self.codec, rate=rate,
                                          options=dict(_ENCODER_OPTIONS[self.codec]))
            stream.width, stream.height = width, height
            if self.codec == "mjpeg":
                stream.pix_fmt = "yuvj420p"
                stream.codec_context.bit_rate = max(width * height * 8, 2_000_000)
            else:
                stream.pix_fmt = "yuva420p" if self.alpha else "yuv420p"
                self._matrix = _tag_colours(stream.codec_context)
            self.time_base = _stream_time_base(fmt, rate, time_base)
            # how far a source time may sit off a 1/rate step and still be that step
            self._snap = min(Fraction(6, 10) * max(time_base or 0, Fraction(1, 1000)),
                             1 / (4 * rate))
            stream.codec_context.time_base = self.time_base
            if pixel_aspect:
                stream.codec_context.sample_aspect_ratio = pixel_aspect
            self._video = stream
            if audio_from is not None:
                self._audio = _AudioCopy.open(audio_from, self._out, fmt, audio_offset)
        except BaseException:
            self._out.close()
            raise
        self._pts = -1  # the last frame's, in time_base units (-1: none yet)
        self._end = Fraction(0)  # seconds: where the last frame ends
        self._last = Fraction(-1)  # seconds: the last frame's time
        self._shift = Fraction(0)  # added to source times since they went back

    def write(self, frame: np.ndarray, time: Fraction | None = None) -> None:
        """Encode one frame, at ``time`` seconds when given, else one frame after the last."""
        height, width = frame.shape[:2]
        pad_w, pad_h = self.encoded_size[0] - width, self.encoded_size[1] - height
        if pad_w or pad_h:
            frame = cv2.copyMakeBorder(frame, 0, pad_h, 0, pad_w, cv2.BORDER_REPLICATE)
        if self.alpha and frame.shape[2] == 3:
            frame = cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA)  # opaque
        video_frame = av.VideoFrame.from_ndarray(
            np.ascontiguousarray(frame), format="bgra" if frame.shape[2] == 4 else "bgr24")
        if self._matrix is not None:  # the YUV matrix the stream is tagged with
            video_frame = video_frame.reformat(format=self._video.pix_fmt,
                                               dst_colorspace=self._matrix)
        seconds = self._end if time is None else self._placed(time)
        self._last = seconds
        self._pts = max(round(seconds / self.time_base), self._pts + 1)
        video_frame.pts = self._pts
        video_frame.time_base = self.time_base
        for packet in self._video.encode(video_frame):
            self._out.mux(packet)
        self._end = self._pts * self.time_base + 1 / self.rate
        if self._audio is not None:
            self._audio.mux_until(self._end)

    def _placed(self, time: Fraction) -> Fraction:
        """When a frame the source shows at ``time`` is shown here (see the module doc)."""
        seconds = max(time + self._shift, Fraction(0))
        if seconds < self._last:  # went back: continue after the previous frame
            self._shift += self._end - seconds
            seconds = self._end
        step = round(seconds * self.rate)
        if abs(seconds - step / self.rate) <= self._snap:
            seconds = step / self.rate
        return seconds

    def close(self) -> None:
        try:
            if self._pts >= 0:
                for packet in self._video.encode(None):
                    self._out.mux(packet)
                if self._audio is not None:
                    self._audio.finish(self._end)
        finally:
            if self._audio is not None:
                self._audio.close()
            self._out.close()


def _stream_time_base(fmt: str, rate: Fraction, source: Fraction | None) -> Fraction:
    """The unit of the video stream's timestamps: ``1 / rate`` when frames come one per
    step (no ``source`` time base) and in AVI, whose frames are one rate's steps; otherwise
    Matroska's milliseconds (what its files store), or the source's own unit in MP4/MOV."""
    if source is None or fmt == "avi":
        return 1 / rate
    if fmt in ("matroska", "webm"):
        return Fraction(1, 1000)
    step = 1 / rate  # the largest unit both count in whole numbers of
    unit = Fraction(math.gcd(source.numerator, step.numerator),
                    math.lcm(source.denominator, step.denominator))
    return unit if unit.denominator < 2**31 else source  # MP4 timescales are 32-bit


def _encodable(codec: str, source) -> tuple[int, str]:
    """A sample rate and channel layout the ``codec`` encoder takes, as close to the
    ``source`` decoder's as it allows: the same rate when listed, else the nearest listed one
    up to 48 kHz; mono, stereo or 5.1 by channel count (MP3 and Opus: mono or stereo), other
    counts and unnamed layouts ("6 channels" from PCM in AVI/MKV) mixed to one of those."""
    rates = sorted(av.Codec(codec, "w").audio_rates or ())
    rate = source.sample_rate
    if rates and rate not in rates:
        usable = [r for r in rates if r <= 48000] or rates
        rate = min(usable, key=lambda r: abs(r - rate))
    channels = source.layout.nb_channels
    if channels == 1:
        layout = "mono"
    elif channels >= 6 and codec == "aac":
        layout = "5.1"
    else:
        layout = "stereo"
    return rate, layout


class _AudioCopy:
    """The first audio track of a source file, muxed into an output as the video advances."""

    def __init__(self, source, in_stream, out, out_stream, encoder, offset=Fraction(0)):
        self._source, self._in, self._out, self._stream = source, in_stream, out, out_stream
        self._encoder = encoder  # None: packets are copied unchanged
        self._offset = Fraction(offset)  # source seconds at the output's time 0
        self._packets = (p for p in source.demux(in_stream)
                         if p.dts is not None and not self._before_the_picture(p))
        self._pending = None
        self._last_dts = None  # the last packet copied, in its stream's time base
        self._samples = None  # re-encoding: where the next decoded samples go, in samples
        self._skipped = 0
        self.remuxed = encoder is None
        # AVI and MKV hold no negative time: their muxer shifts every stream, the picture
        # too, when an audio packet starts before 0 (an encoder's priming samples)
        self._lead = None if out.format.name.split(",")[0] in _NO_NEGATIVE_TIMES else 0

    @classmethod
    def open(cls, path: Path, out, fmt: str, offset: Fraction = Fraction(0)):
        """An audio copier for ``path``'s first audio track, or None when it has none;
        ``offset``: the source time (seconds) of the output's first frame."""
        try:
            source = av.open(str(path))
        except av.FFmpegError as exc:
            logger.warning("audio not carried over: cannot open %s: %s", path, exc)
            return None
        if not source.streams.audio:
            source.close()
            return None
        in_stream = source.streams.audio[0]
        # The codec, not its decoder: "mp3", which FFmpeg decodes with "mp3float".
        name = in_stream.codec_context.codec.canonical_name
        if name in _AUDIO_AS_IS[fmt]:
            return cls(source, in_stream, out, out.add_stream_from_template(in_stream), None,
                       offset)
        codec = _AUDIO_REENCODE.get(fmt, "aac")
        label = {"libopus": "Opus", "libmp3lame": "MP3"}.get(codec, "AAC")
        rate, layout = _encodable(codec, in_stream.codec_context)
        try:  # what the encoder refuses is found here, not at the first frame
            probe = av.CodecContext.create(codec, "w")
            probe.sample_rate, probe.layout = rate, layout
            probe.format = av.Codec(codec, "w").audio_formats[0]
            probe.open()
        except (av.FFmpegError, ValueError) as exc:
            logger.warning("audio not carried over: the %s container cannot hold %s audio as "
                           "it is, and it cannot be re-encoded to %s (%d Hz, %s): %s",
                           fmt, name, label, rate, layout, exc)
            source.close()
            return None
        logger.warning("the %s container cannot hold %s audio as it is: re-encoding it to %s",
                       fmt, name, label)
        stream = out.add_stream(codec, rate=rate)
        stream.layout = layout
        return cls(source, in_stream, out, stream, in_stream.codec_context, offset)

    def _next(self):
        if self._pending is None and self._packets is not None:
            try:
                self._pending = next(self._packets, None)
            except av.FFmpegError as exc:  # a damaged file: keep the sound so far
                logger.warning("audio from %s ends early: reading it failed: %s",
                               self._source.name, exc)
                self._packets = None
        return self._pending

    def _skip(self, packet, why) -> None:
        """Leave out one damaged or misplaced packet (a warning for the first only)."""
        self._skipped += 1
        if self._skipped == 1:
            logger.warning("audio from %s: packets are left out, the first at %.3f s (%s); "
                           "the picture is unaffected", self._source.name,
                           float(self._start(packet)), why)

    def _before_the_picture(self, packet) -> bool:
        """Whether ``packet`` plays wholly before the output's first frame, with one packet
        of margin (an encoder's priming samples sit just before time 0 in any file), when the
        source's picture starts late (its first frame is the output's time 0)."""
        if not self._offset:
            return False
        return self._start(packet) + 2 * Fraction(packet.duration or 0) * packet.time_base <= 0

    def _start(self, packet) -> Fraction:
        """When ``packet`` plays in the output, in seconds."""
        pts = packet.pts if packet.pts is not None else packet.dts
        return Fraction(pts) * packet.time_base - self._offset

    def mux_until(self, end: Fraction) -> None:
        """Mux the audio packets that start before ``end`` seconds."""
        while (packet := self._next()) is not None and self._start(packet) < end:
            self._pending = None
            try:
                self._mux(packet)
            except av.FFmpegError as exc:  # damaged data: the sound skips, the run goes on
                self._skip(packet, exc.strerror or exc)

    def _mux(self, packet) -> None:
        if self._encoder is None:
            if self._last_dts is not None and packet.dts <= self._last_dts:
                # timestamps that go back (joined recordings): a muxer refuses them
                self._skip(packet, "its timestamp goes back")
                return
            self._last_dts = packet.dts
            if self._offset:
                shift = round(self._offset / packet.time_base)
                if packet.pts is not None:
                    packet.pts -= shift
                packet.dts -= shift
            packet.stream = self._stream
            self._write(packet)
        else:
            for frame in self._encoder.decode(packet):
                if self._samples is None:  # a sound that starts after the picture stays late
                    start = (Fraction(frame.pts) * frame.time_base - self._offset
                             if frame.pts is not None and frame.time_base else Fraction(0))
                    self._samples = round(max(start, Fraction(0)) * frame.sample_rate)
                # the samples follow one another from there (the encoder's resampler needs
                # times that only go forward)
                frame.pts, frame.time_base = self._samples, Fraction(1, frame.sample_rate)
                self._samples += frame.samples
                for out_packet in self._stream.encode(frame):
                    self._write(out_packet)

    def _write(self, packet) -> None:
        """Mux ``packet``; where times cannot be negative, a first packet of priming
        samples only (it ends by time 0) is left out, and one that starts before 0 moves
        the sound that much later (a few tens of ms) instead of the muxer moving the picture."""
        if self._lead is None:
            first = min(t for t in (packet.pts, packet.dts) if t is not None)
            if first + (packet.duration or 0) <= 0 and packet.duration:
                return
            self._lead = max(0, -first)
        if self._lead:
            if packet.pts is not None:
                packet.pts += self._lead
            if packet.dts is not None:
                packet.dts += self._lead
        self._out.mux(packet)

    def finish(self, end: Fraction) -> None:
        self.mux_until(end)
        if self._encoder is not None:
            for packet in self._stream.encode(None):
                self._write(packet)

    def close(self) -> None:
        self._source.close()


class OpenCVEncoder:
    """The fallback without PyAV: ``cv2.VideoWriter`` with :data:`OPENCV_FOURCCS`."""

    backend = "opencv"

    def __init__(self, path: Path, container_ext: str, rate: Fraction,
                 frame_size: tuple[int, int], *, alpha: bool = False,
                 audio_from: Path | None = None):
        if alpha:
            raise InvalidArgumentError("transparent video needs PyAV (pip install av)")
        self.codec = OPENCV_FOURCCS[container_ext]
        self.encoded_size = tuple(frame_size)
        self._path = path
        self._frames = 0
        self._writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*self.codec),
                                       float(rate), self.encoded_size)
        if not self._writer.isOpened():
            self._writer.release()
            raise OSError(f"OpenCV cannot write {self.codec} video to {container_ext} files")
        if audio_from is not None:
            logger.warning("audio not carried over: that needs PyAV (pip install av)")

    def write(self, frame: np.ndarray, time: Fraction | None = None) -> None:
        """Append ``frame``; OpenCV writes at a constant rate, so ``time`` is not used."""
        if frame.shape[2] == 4:
            raise InvalidArgumentError("transparent video needs PyAV (pip install av)")
        self._writer.write(np.ascontiguousarray(frame))
        self._frames += 1

    def close(self) -> None:
        """Finish the file, then read it back: ``cv2.VideoWriter`` reports no write error
        (a full disk left a file no player opens, and the run said it succeeded), so a file
        without all its frames, or whose last frame cannot be read, raises ``OSError``."""
        self._writer.release()
        if not self._frames:
            return
        readable = _frames_readable(self._path, self._frames)
        if readable < self._frames:
            full = _nearly_full(self._path.parent)
            raise OSError(
                errno.ENOSPC if full else errno.EIO,
                f"OpenCV's video writer reported no error, but only {readable} of the "
                f"{self._frames} frames written can be read back"
                + (" (the disk is full)" if full else ""), str(self._path))


def _frames_readable(path: Path, written: int) -> int:
    """How many of the ``written`` frames of a video OpenCV just wrote can be read back:
    its frame count, when the last of them reads too (else one less)."""
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            return 0
        count = min(int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0), written)
        if count:
            capture.set(cv2.CAP_PROP_POS_FRAMES, count - 1)
            if not capture.read()[0]:
                return count - 1
        return count
    finally:
        capture.release()


def _nearly_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < (1 << 20)
    except OSError:
        return False
