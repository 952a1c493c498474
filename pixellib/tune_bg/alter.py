"""PixelLib's ``alter_bg`` (background tuning) on PointRend instance masks.

PixelLib 0.7.1 runs this API on a TensorFlow DeepLabv3+ model trained on Pascal VOC, which
needs TensorFlow 2.0-2.4. Here the same calls run on the PointRend model: the foreground is
the union of the instance masks of the target classes. Differences, on purpose:

* ``load_pascalvoc_model`` takes a PointRend checkpoint (or ``"resnet50"`` / ``"resnet101"``);
  a TensorFlow ``.pb`` / ``.h5`` is refused with an error saying what to load instead. It
  also takes ``detect=``, a default target for later calls (one tutorial block passes it).
* Without ``detect``, the foreground is every detection of the 20 Pascal VOC classes, the
  objects PixelLib's model knows (``detect`` may also name any COCO class).
* ``change_bg_img`` scales the background picture to cover the image and crops it; PixelLib
  stretches it to the image size.
* ``blur_*`` without ``low`` / ``moderate`` / ``extreme`` raises a clear error (PixelLib
  fails with ``NameError``); with several, the strongest wins, as in PixelLib.
* Videos are written at ``frames_per_second``, or the source's rate when it is None (PixelLib
  then crashes); camera loops end at the first failed read after the first frame (a
  camera opened by index: after 2 s without one), not run on for ever at the end of a
  capture longer than 29 frames.
"""
from __future__ import annotations

import os
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..classes import class_id
from ..effects import Effect, apply_effect, fit_background, load_background, parse_color
from ..effects.spec import BLUR_LEVELS
from ..errors import EffectError, ModelFileError
from ..media.files import real_path

#: Pascal VOC class names (PixelLib's ``detect=`` values) -> COCO class names.
VOC_TO_COCO: dict[str, str] = {
    "person": "person", "car": "car", "aeroplane": "airplane", "bicycle": "bicycle",
    "bird": "bird", "boat": "boat", "bottle": "bottle", "bus": "bus", "cat": "cat",
    "chair": "chair", "cow": "cow", "diningtable": "dining table", "dog": "dog",
    "horse": "horse", "motorbike": "motorcycle", "pottedplant": "potted plant",
    "sheep": "sheep", "sofa": "couch", "train": "train", "tvmonitor": "tv",
}
_VOC_ALIASES = {"monitor": "tv", "tv": "tv", "dinningtable": "dining table"}
VOC_CLASS_IDS = tuple(sorted({class_id(name) for name in VOC_TO_COCO.values()}))
_TENSORFLOW_SUFFIXES = (".pb", ".h5")


def detect_class_ids(detect) -> tuple[int, ...]:
    """COCO class ids for ``detect``: a Pascal VOC or COCO name, or a list of them; None
    means the 20 Pascal VOC classes."""
    if detect is None:
        return VOC_CLASS_IDS
    if isinstance(detect, str):
        names = [detect]
    elif isinstance(detect, (list, tuple, set, frozenset)):
        names = list(detect)
    else:
        raise TypeError(f"detect must be a class name or a list of them, got "
                        f"{type(detect).__name__} {detect!r}")
    wrong = next((name for name in names if not isinstance(name, str)), None)
    if wrong is not None:
        raise TypeError(f"detect: class names are strings, got {type(wrong).__name__} "
                        f"{wrong!r}")
    if not names:  # would select nothing: the whole picture would become "background"
        raise EffectError("detect names no class: give one or more class names, or None for "
                          "the 20 Pascal VOC classes")
    ids = []
    for name in names:
        key = str(name).strip().lower()
        coco = VOC_TO_COCO.get(key.replace(" ", "").replace("_", "")) or _VOC_ALIASES.get(key)
        try:
            ids.append(class_id(coco or key))
        except ValueError:
            raise EffectError(
                f"detect={name!r} is not a class: use a Pascal VOC name "
                f"({', '.join(VOC_TO_COCO)}) or a COCO class name"
            ) from None
    return tuple(ids)


def _new_predictor(path: str, stamp: tuple[int, int], speed, confidence, device):
    from ..predictor import Predictor

    return Predictor(path, speed=speed, confidence=confidence, device=device)


# The last model loaded, kept (``alter_bg.keep_model``): PixelLib scripts often build
# ``alter_bg`` per call. ``stamp`` (modification time, size): a file replaced is reloaded.
_kept_predictor = lru_cache(maxsize=1)(_new_predictor)
_kept_lock = threading.Lock()  # threads loading at once share one load


def _load_kept(*key):
    with _kept_lock:
        return _kept_predictor(*key)


def _blur_effect(low, moderate, extreme) -> Effect:
    levels = ((extreme, "extreme"), (moderate, "moderate"), (low, "low"))
    for flag, level in levels:
        if isinstance(flag, str):  # "no" is truthy: it would blur
            raise EffectError(f"{level} must be True or False, got {flag!r}")
    for flag, level in levels:
        if flag:
            return Effect("blur-bg", kernel=BLUR_LEVELS[level])
    raise EffectError("choose how much to blur: low=True, moderate=True or extreme=True")


class alter_bg:  # noqa: N801 - PixelLib's class name
    """``alter_bg(model_type="pb")``: ``model_type`` is accepted for compatibility and
    ignored (one PointRend model serves both of PixelLib's types).

    ``detection_speed`` (``None``, ``"fast"``, ``"rapid"``), ``confidence`` and ``device``
    are the :class:`~pixellib.predictor.Predictor` settings (``device`` None: CUDA when
    available, else the CPU, as ``instanceSegmentation.load_model`` and PixelLib's
    TensorFlow ``alter_bg`` choose); setting the class attributes
    ``alter_bg.detection_speed`` / ``alter_bg.confidence`` changes the default for every
    instance.

    The last model loaded stays in memory after its instances are gone, so that a script
    building ``alter_bg`` per call loads it once; instances with the same model and settings
    share it. ``alter_bg.keep_model = False`` turns that off (each load is the instance's
    own, freed with it), and :meth:`release_model` drops the kept one.
    """

    detection_speed: str | None = None
    confidence: float | None = None
    keep_model: bool = True

    @staticmethod
    def release_model() -> None:
        """Forget the kept model (its memory is freed once no instance holds it)."""
        with _kept_lock:
            _kept_predictor.cache_clear()

    def __init__(self, model_type: str = "h5", *, detection_speed: str | None = None,
                 confidence: float | None = None, device: str | None = None) -> None:
        self.model_type = model_type
        self.speed = detection_speed if detection_speed is not None else self.detection_speed
        self.confidence = confidence if confidence is not None else type(self).confidence
        self.device = device
        self.predictor = None
        self.detect = None

    # ------------------------------------------------------------------ model

    def load_pascalvoc_model(self, model_path, detect=None) -> None:
        """Load a PointRend checkpoint path or released name; ``detect`` sets the default
        target class of later calls."""
        from ..checkpoint.hub import MODEL_URLS, model_filename, resolve_model

        if detect is not None:
            detect_class_ids(detect)  # checked first: a typo must not cost a model load
        text = str(model_path)
        if Path(text).suffix.lower() in _TENSORFLOW_SUFFIXES:
            raise ModelFileError(
                f"{text!r} is a TensorFlow Pascal VOC model, which this PyTorch pixellib does "
                "not run. Load a PointRend checkpoint instead: "
                "load_pascalvoc_model('pointrend_resnet50.pkl') for a downloaded file, or "
                "load_pascalvoc_model('resnet50') to download and cache the released model"
            )
        path = Path(text).expanduser()
        if not path.exists() and path.name == text:  # a bare file name, not a mistyped path
            for name in MODEL_URLS:
                if path.name == model_filename(name):
                    text = name  # the released file's name: use the cached download
        resolved = resolve_model(text)
        stat = os.stat(resolved)
        from ..predictor import default_device

        load = _load_kept if self.keep_model else _new_predictor
        self.predictor = load(str(real_path(resolved)), (stat.st_mtime_ns, stat.st_size),
                              self.speed, self.confidence, self.device or default_device())
        self.detect = detect

    # ------------------------------------------------------------------ core

    def _check(self, detect) -> tuple[int, ...]:
        """The class ids to keep; raises for what a video or camera loop would otherwise only
        find at its first frame: no model, or a ``detect`` class that does not exist."""
        if self.predictor is None:
            raise EffectError("no model loaded: call load_pascalvoc_model(...) first")
        return detect_class_ids(detect if detect is not None else self.detect)

    def _tune(self, image, effect: Effect, detect, background=None) -> np.ndarray:
        from ..media.images import read_image

        keep = self._check(detect)
        image = read_image(image)
        det = self.predictor(image, classes=keep)  # other classes cost no mask
        if background is not None:
            background = fit_background(background, image.shape[:2])
        return apply_effect(image, det, effect, background=background)

    def _image(self, image, effect, output_image_name, verbose, detect, background=None,
               what="image", inputs=()):
        from ..media.images import check_image_output, write_image

        if output_image_name is not None:  # before the inference, not after
            check_image_output(output_image_name, [image, *inputs])
        if verbose is not None:
            print(f"processing {what}......")  # PixelLib's words: image, or frame
        out = self._tune(image, effect, detect, background)
        if output_image_name is not None:
            write_image(output_image_name, out)
        return out

    def _video(self, video_path, effect, frames_per_second, output_video_name, detect,
               background=None):
        from ..torchbackend.instance.streams import run_video

        self._check(detect)

        def segment(frame, _index):
            return None, self._tune(frame, effect, detect, background)

        from ..runtime.pipeline import overlap_enabled

        device = self.predictor.device if self.predictor is not None else "cpu"
        return run_video(segment, video_path, output_video_name=output_video_name,
                         frames_per_second=frames_per_second,
                         overlap=overlap_enabled(device))[1]

    def _camera(self, cam, effect, detect, background=None, **options):
        from ..torchbackend.instance.streams import run_camera

        self._check(detect)

        def segment(frame, _index):
            return None, self._tune(frame, effect, detect, background)

        return run_camera(segment, cam, **options)[1]

    # ------------------------------------------------------------------ picture background

    def change_bg_img(self, f_image_path, b_image_path, output_image_name=None, verbose=None,
                      detect=None) -> np.ndarray:
        return self._image(f_image_path, Effect("replace-bg", background=str(b_image_path)),
                           output_image_name, verbose, detect, load_background(b_image_path),
                           inputs=[b_image_path])

    def change_frame_bg(self, frame, b_image_path, verbose=None, detect=None) -> np.ndarray:
        return self._image(frame, Effect("replace-bg", background=str(b_image_path)), None,
                           verbose, detect, load_background(b_image_path), what="frame")

    def change_video_bg(self, video_path, b_image_path, frames_per_second=None,
                        output_video_name=None, detect=None) -> np.ndarray:
        return self._video(video_path, Effect("replace-bg", background=str(b_image_path)),
                           frames_per_second, output_video_name, detect,
                           load_background(b_image_path))

    def change_camera_bg(self, cam, b_image_path, frames_per_second=None, check_fps=False,
                         show_frames=False, frame_name=None, verbose=None,
                         output_video_name=None, detect=None) -> np.ndarray:
        return self._camera(cam, Effect("replace-bg", background=str(b_image_path)), detect,
                            load_background(b_image_path), frames_per_second=frames_per_second,
                            check_fps=check_fps, show_frames=show_frames, frame_name=frame_name,
                            verbose=verbose, output_video_name=output_video_name)

    # ------------------------------------------------------------------ colour

    def color_bg(self, image_path, colors, output_image_name=None, verbose=None,
                 detect=None) -> np.ndarray:
        return self._image(image_path, _color(colors), output_image_name, verbose, detect)

    def color_frame(self, frame, colors, verbose=None, detect=None) -> np.ndarray:
        return self._image(frame, _color(colors), None, verbose, detect,
                           what="frame")

    def color_video(self, video_path, colors, frames_per_second=None, output_video_name=None,
                    detect=None) -> np.ndarray:
        return self._video(video_path, _color(colors), frames_per_second, output_video_name,
                           detect)

    def color_camera(self, cam, colors, frames_per_second=None, check_fps=False,
                     show_frames=False, frame_name=None, verbose=None, output_video_name=None,
                     detect=None) -> np.ndarray:
        return self._camera(cam, _color(colors), detect, frames_per_second=frames_per_second,
                            check_fps=check_fps, show_frames=show_frames, frame_name=frame_name,
                            verbose=verbose, output_video_name=output_video_name)

    # ------------------------------------------------------------------ blur

    def blur_bg(self, image_path, low=False, moderate=False, extreme=False,
                output_image_name=None, verbose=None, detect=None) -> np.ndarray:
        return self._image(image_path, _blur_effect(low, moderate, extreme), output_image_name,
                           verbose, detect)

    def blur_frame(self, frame, low=False, moderate=False, extreme=False, verbose=None,
                   detect=None) -> np.ndarray:
        return self._image(frame, _blur_effect(low, moderate, extreme), None, verbose, detect,
                           what="frame")

    def blur_video(self, video_path, low=False, moderate=False, extreme=False,
                   frames_per_second=None, output_video_name=None, detect=None) -> np.ndarray:
        return self._video(video_path, _blur_effect(low, moderate, extreme), frames_per_second,
                           output_video_name, detect)

    def blur_camera(self, cam, low=False, moderate=False, extreme=False, frames_per_second=None,
                    check_fps=False, show_frames=False, frame_name=None, verbose=None,
                    output_video_name=None, detect=None) -> np.ndarray:
        return self._camera(cam, _blur_effect(low, moderate, extreme), detect,
                            frames_per_second=frames_per_second, check_fps=check_fps,
                            show_frames=show_frames, frame_name=frame_name, verbose=verbose,
                            output_video_name=output_video_name)

    # ------------------------------------------------------------------ grey

    def gray_bg(self, image_path, output_image_name=None, verbose=None, detect=None) -> np.ndarray:
        return self._image(image_path, Effect("gray-bg"), output_image_name, verbose, detect)

    def gray_frame(self, frame, verbose=None, detect=None) -> np.ndarray:
        return self._image(frame, Effect("gray-bg"), None, verbose, detect,
                           what="frame")

    def gray_video(self, video_path, frames_per_second=None, output_video_name=None,
                   detect=None) -> np.ndarray:
        return self._video(video_path, Effect("gray-bg"), frames_per_second, output_video_name,
                           detect)

    def gray_camera(self, cam, frames_per_second=None, check_fps=False, show_frames=False,
                    frame_name=None, verbose=None, output_video_name=None,
                    detect=None) -> np.ndarray:
        return self._camera(cam, Effect("gray-bg"), detect, frames_per_second=frames_per_second,
                            check_fps=check_fps, show_frames=show_frames, frame_name=frame_name,
                            verbose=verbose, output_video_name=output_video_name)


def _color(colors) -> Effect:
    """PixelLib's ``colors``: an RGB tuple (a ``#rrggbb`` string or name also works)."""
    return Effect("color-bg", color=parse_color(colors))
