"""PixelLib 0.7.1's ``instanceSegmentation``, on this project's PointRend engine.

The names, argument orders and results-dict formats of PixelLib's
``pixellib.torchbackend.instance`` (docs/design.md, "PixelLib's results") live here and only
here: every method adapts its arguments and calls the core
(:class:`pixellib.predictor.Predictor`, :mod:`pixellib.media.images`,
:mod:`pixellib.visualize`, :mod:`pixellib.export`, :mod:`pixellib.media.video`). The results
dict is described in :mod:`pixellib.torchbackend.instance.results`.

Deliberate differences from PixelLib (it got these wrong):

* Unknown ``detection_speed`` or ``network_backbone`` values raise
  :class:`~pixellib.errors.InvalidArgumentError`, a ``ValueError`` (PixelLib silently used a
  0.05 threshold, or the X101 model). The architecture is read from the file; a
  ``network_backbone`` that disagrees logs a warning. Each ``load_model`` call stands alone
  (PixelLib's settings accumulated across calls; docs/design.md, "Speed modes").
* The input image or frame is never modified; colours are deterministic per instance index.
* ``scores`` is a float32 numpy array of whole percentages (PixelLib: an int64 torch tensor),
  and the dict has the same types whether or not classes are filtered.
* Class filtering also applies to extraction in :meth:`~instanceSegmentation.segmentBatch`.
* Box crops are saved as ``object_extract_<k>.jpg`` as PixelLib's tutorial names them
  (PixelLib 0.7.1 wrote ``box_extract_<k>.jpg``).
* ``segmentBatch`` reads every common image type in any letter case, in sorted order, and
  goes on past unreadable files; videos get a progress bar, the source's frame rate and a
  codec the container holds.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np

from ...classes import COCO_CLASSES
from ...errors import BATCH_SKIPPED, InvalidArgumentError, UsageError
from ...media.files import (
    Rollback,
    all_or_nothing,
    joined,
    output_path_problem,
    unwritable_folder,
    user_path,
)
from ...media.images import (
    check_image_output,
    list_images,
    read_image,
    resolve_max_pixels,
    write_image,
)
from ...runtime.pipeline import overlap_enabled, run_batch
from ...runtime.progress import ProgressBar
from . import paths
from . import results as fmt

logger = logging.getLogger(__name__)


class SkippedImageWarning(UserWarning):
    """``segmentBatch`` skipped a file it could not read or write (the message names it and
    says why).

    It is attributed to the line that called ``segmentBatch``. Python's default filter shows
    each distinct message once per calling line, so a file skipped again from the same line is
    not shown again; :attr:`instanceSegmentation.batch_failures` always lists every skipped
    file. ``warnings.simplefilter("always", SkippedImageWarning)`` shows every one; turn it
    into an error to stop a batch at the first bad file:
    ``warnings.simplefilter("error", SkippedImageWarning)``.
    """


class instanceSegmentation:  # noqa: N801 - PixelLib's name
    """PixelLib's PointRend instance segmentation API.

    >>> ins = instanceSegmentation()
    >>> ins.load_model("pointrend_resnet50.pkl")
    >>> results, output = ins.segmentImage("image.jpg", show_bboxes=True,
    ...                                    output_image_name="output_image.jpg")

    Thread safety: after :meth:`load_model`, one instance can be shared by several threads
    calling :meth:`segmentImage`, :meth:`segmentFrame` (and the other methods) at once; each
    call keeps its state in local variables and the predictor mutates nothing, so results are
    identical to sequential calls. Do not call :meth:`load_model` while other threads
    segment. :attr:`batch_failures` is replaced at the end of each :meth:`segmentBatch`, so
    with concurrent batches on one instance it describes whichever finished last.

    Attributes:
        class_names: the 80 COCO class names, indexed by class id (as in PixelLib).
        batch_failures: ``[(path, reason), ...]`` for the files the last :meth:`segmentBatch`
            call skipped (empty when all succeeded).
    """

    def __init__(self) -> None:
        self.class_names: list[str] = list(COCO_CLASSES)  # PixelLib's attribute: id -> name
        self.batch_failures: list[tuple[str, str]] = []
        self._predictor = None
        self._model_key = None  # identifies the checkpoint behind self._predictor.model

    # ------------------------------------------------------------------------ model

    def load_model(self, model_path, confidence=None, detection_speed=None,
                   network_backbone="resnet50", *, device=None) -> None:
        """Load a PointRend checkpoint (``.pkl``, ``.pth`` or ``.safetensors``).

        * ``confidence``: score threshold in [0, 1]; ``None`` gives PixelLib's 0.5, or 0.3
          with ``detection_speed="fast"``, 0.2 with ``"rapid"``.
        * ``detection_speed``: ``None``, ``"fast"`` (long side scaled to 667 px) or
          ``"rapid"`` (333 px), as PixelLib 0.7.1 really applies them (docs/design.md,
          "Speed modes").
        * ``network_backbone``: ``"resnet50"`` or ``"resnet101"`` (PixelLib's name for its
          ResNeXt-101 32x8d file). The file decides; a mismatch logs a warning.
        * ``device`` (extension): torch device; default CUDA when available, else CPU, like
          PixelLib (for a model object: the device it is on).

        ``model_path`` may also be a model built by :func:`pixellib.predictor.load_model`, to
        share one model between instances. Reloading the same unchanged file reuses the
        model already loaded and only changes the settings.

        Raises :class:`~pixellib.errors.InvalidArgumentError` (a ``ValueError``) for an
        unknown speed or backbone or a confidence outside [0, 1] (before reading anything),
        :class:`~pixellib.errors.ModelNotFoundError` (with the download address) for a
        missing file, and
        :class:`~pixellib.errors.ModelFileError` for an unusable one.
        """
        from ...checkpoint.loading import load_model as build_from_file
        from ...config import BACKBONE_ALIASES, inference_config
        from ...model.detector import PointRendRCNN
        from ...predictor import Predictor, default_device

        inference = inference_config(detection_speed, confidence)
        if network_backbone is not None and network_backbone not in BACKBONE_ALIASES:
            raise InvalidArgumentError(
                f"unknown network_backbone {network_backbone!r}: expected 'resnet50' or "
                "'resnet101'"
            )
        if isinstance(model_path, PointRendRCNN):
            model, key = model_path, None
            device = model.device if device is None else device
            wanted = BACKBONE_ALIASES.get(network_backbone)
            if wanted is not None and wanted != model.config.name:
                logger.warning("network_backbone=%r but the model is a %s; using the model",
                               network_backbone, model.config.name)
        else:
            key = paths.file_key(model_path, network_backbone)
            if key is not None and key == self._model_key:
                model = self._predictor.model
            else:
                model = build_from_file(model_path, backbone=network_backbone,
                                        inference=inference)
        if device is None:
            device = default_device()
        predictor = Predictor(model, speed=detection_speed, confidence=confidence,
                              device=device, heap_reuse=True)
        self._predictor, self._model_key = predictor, key

    def select_target_classes(self, *positional, **flags) -> dict[str, str]:
        """Choose classes for ``segment_target_classes``: ``select_target_classes(person=True)``.

        Keyword flags are the 80 COCO names with underscores for spaces (``traffic_light``,
        ``sports_ball``, ``teddy_bear``...); positional ones follow PixelLib's parameter
        order, the COCO order of :attr:`class_names` (``select_target_classes(True)`` is
        person). Returns ``{class name: "valid" | "invalid"}`` for all 80 classes, like
        PixelLib. An unknown name raises ``ValueError`` listing the valid ones.
        """
        return fmt.target_flags(*positional, **flags)

    def filter_objects(self, segvalues: dict, segment_target_classes) -> dict:
        """PixelLib's filter: the results dict ``segvalues`` (as :meth:`segmentImage`
        returns it) keeping only the objects of ``segment_target_classes`` (what
        :meth:`select_target_classes` returns, or class names or ids); every per-object key
        is filtered alike and ``object_counts`` recounted. ``segvalues`` is not changed."""
        return fmt.filter_results(segvalues, fmt.target_class_ids(segment_target_classes))

    # ------------------------------------------------------------------------ images

    def segmentImage(self, image_path, segment_target_classes=None, show_bboxes=False,  # noqa: N802
                     extract_segmented_objects=False, extract_from_box=False,
                     save_extracted_objects=False, mask_points_values=False,
                     output_image_name=None, text_thickness=1, text_size=0.6, box_thickness=2,
                     verbose=None, *, extracted_objects_folder=None) -> tuple[dict, np.ndarray]:
        """Segment one image; return ``(results, output_image)``.

        * ``image_path``: a path (``str`` or ``pathlib.Path``) or a BGR numpy image (never
          modified).
        * ``segment_target_classes``: from :meth:`select_target_classes`; only those classes
          appear in the results, the picture and the extracts.
        * ``show_bboxes``: also draw boxes and ``"name score"`` captions (``text_size``,
          ``text_thickness``, ``box_thickness``). Masks are always blended in at 50 %.
        * ``extract_segmented_objects``: fill ``results["extracted_objects"]`` with one crop
          per object: its pixels on black cropped to the mask, or with ``extract_from_box``
          the box crop. ``save_extracted_objects`` also writes them as
          ``segmented_object_<k>.jpg`` / ``object_extract_<k>.jpg`` (``k`` from 1 in result
          order) into ``extracted_objects_folder`` (extension; default: the current
          directory, as in PixelLib). An empty crop (a mask without pixels) has nothing to
          save: its file is left out and the numbering still counts it.
        * ``mask_points_values``: ``results["masks"]`` holds outlines instead of bool masks.
        * ``output_image_name``: also write the annotated picture there (atomically).
        * ``verbose``: print a line before processing.

        ``results`` is the PixelLib dict (:mod:`pixellib.torchbackend.instance.results`);
        ``output_image`` is a new ``(H, W, 3)`` uint8 BGR array.
        Raises :class:`~pixellib.errors.UsageError` (a ``RuntimeError``) before
        :meth:`load_model`,
        :class:`~pixellib.errors.InputNotFoundError` for a missing file and
        :class:`~pixellib.errors.ImageReadError` for an unreadable one (both name it).
        """
        predictor = self._require_predictor()
        (show_bboxes, extract_segmented_objects, extract_from_box, save_extracted_objects,
         mask_points_values) = _on_off(show_bboxes, extract_segmented_objects, extract_from_box,
                                       save_extracted_objects, mask_points_values)
        target_ids = fmt.target_class_ids(segment_target_classes)
        style = fmt.checked_style(show_bboxes, text_size, text_thickness, box_thickness)
        if output_image_name is not None:
            check_image_output(output_image_name, [image_path])  # before the inference
        image = read_image(image_path)
        return self._segment(
            predictor, image, target_ids, show_bboxes=show_bboxes,
            extract=extract_segmented_objects, from_box=extract_from_box,
            save_folder=paths.extract_folder(save_extracted_objects, extracted_objects_folder),
            mask_points=mask_points_values, output_name=output_image_name,
            style=style, verbose=verbose,
        )

    def segmentFrame(self, frame, segment_target_classes=None, show_bboxes=False,  # noqa: N802
                     extract_segmented_objects=False, extract_from_box=False,
                     save_extracted_objects=False, mask_points_values=False,
                     output_image_name=None, text_thickness=1, text_size=0.6, box_thickness=2,
                     verbose=None, *, extracted_objects_folder=None) -> tuple[dict, np.ndarray]:
        """:meth:`segmentImage` for a BGR numpy frame (e.g. from ``cv2.VideoCapture``).

        The frame is not modified (PixelLib drew into it); the annotated copy is returned.
        """
        return self.segmentImage(
            frame, segment_target_classes, show_bboxes, extract_segmented_objects,
            extract_from_box, save_extracted_objects, mask_points_values, output_image_name,
            text_thickness, text_size, box_thickness, verbose,
            extracted_objects_folder=extracted_objects_folder,
        )

    def segmentBatch(self, input_folder, show_bboxes=False, segment_target_classes=None,  # noqa: N802
                     extract_segmented_objects=False, extract_from_box=False,
                     save_extracted_objects=False, mask_points_values=False,
                     output_folder_name=None, text_thickness=1, text_size=0.6, box_thickness=2,
                     verbose=None) -> tuple[list[dict], list[np.ndarray]]:
        """Segment every image directly in ``input_folder``; return ``(results, outputs)``.

        Images are the files with extension ``.jpg .jpeg .png .bmp .tif .tiff .webp`` in any
        letter case (not recursive), processed in sorted name order under a progress bar.
        The two lists hold one results dict and one annotated image per image that
        succeeded, in that order. Options are those of :meth:`segmentImage` (note PixelLib's
        argument order: ``show_bboxes`` comes before ``segment_target_classes`` here).

        * ``output_folder_name``: write each annotated image there under its input's file
          name (the folder is created when needed). It must not be ``input_folder`` itself:
          ``ValueError``, before anything runs, rather than overwrite the inputs.
        * ``save_extracted_objects``: extracts go to ``<output folder>/<image stem>_extracts/``
          (``<input folder>/<image stem>_extracts/`` without an output folder, like PixelLib;
          ``<image stem>_<extension>_extracts/`` for images that share a stem).

        A file that cannot be read (corrupt, truncated, not an image...) or whose outputs
        cannot be written is skipped with a :class:`SkippedImageWarning` naming it and the
        reason, and the batch goes on; :attr:`batch_failures` then lists ``(path, reason)``
        for every skipped file. A missing folder raises
        :class:`~pixellib.errors.InputNotFoundError`.

        ``PIXELLIB_BATCH_WORKERS=2`` processes two images at a time on the CPU, each with
        half of torch's threads (:mod:`pixellib.runtime.parallel`). Otherwise, on CUDA (or
        with ``PIXELLIB_OVERLAP=1``), the next images are read and the previous ones drawn and
        written on background threads while the model runs (:mod:`pixellib.runtime.pipeline`).
        Results and outputs keep the sorted order either way.
        """
        self.batch_failures = []  # a call that raises below has skipped nothing
        predictor = self._require_predictor()
        (show_bboxes, extract_segmented_objects, extract_from_box, save_extracted_objects,
         mask_points_values) = _on_off(show_bboxes, extract_segmented_objects, extract_from_box,
                                       save_extracted_objects, mask_points_values)
        target_ids = fmt.target_class_ids(segment_target_classes)
        files = list_images(input_folder)
        resolve_max_pixels()  # a bad $PIXELLIB_MAX_PIXELS fails here, not once per image
        out_dir = None if output_folder_name is None else user_path(output_folder_name)
        if out_dir is not None and paths.same_folder(out_dir, Path(input_folder)):
            raise InvalidArgumentError(
                f"output_folder_name {str(out_dir)!r} is the input folder: the outputs would "
                "overwrite the input images; choose another folder"
            )
        problem = out_dir is not None and output_path_problem(out_dir, folder=True)
        if problem:
            raise InvalidArgumentError(f"output_folder_name {problem}")
        paths.check_links_into(out_dir, files)
        # Before any image is segmented: each would fail to be written, after the model ran.
        saves = extract_segmented_objects and save_extracted_objects
        written = out_dir if out_dir is not None else Path(input_folder) if saves else None
        problem = written is not None and unwritable_folder(written)
        if problem:
            what = "output_folder_name" if out_dir is not None else "the extracts' folder"
            raise InvalidArgumentError(f"{what}: cannot write in {problem}")
        if not files:
            logger.warning("segmentBatch: no images in %s", input_folder)
        extract_dirs = paths.extract_dirs(files, out_dir)

        style = fmt.checked_style(show_bboxes, text_size, text_thickness, box_thickness)

        def finish(path, image, det):
            results, output = self._finish(
                image, det, show_bboxes=show_bboxes, extract=extract_segmented_objects,
                from_box=extract_from_box,
                save_folder=extract_dirs[path] if save_extracted_objects else None,
                mask_points=mask_points_values, style=style,
                output_name=None if out_dir is None else out_dir / path.name,
            )
            return results, output

        def segment(path, image):
            if verbose:
                print("Processing image...")
            return image, predictor(image, classes=target_ids)

        # In parallel (PIXELLIB_BATCH_WORKERS), or reading ahead and writing behind the model
        # where that pays: pixellib.runtime.pipeline.run_batch.
        done = run_batch(files, read_image, segment, lambda path, x: finish(path, *x),
                         device=predictor.device, skip=BATCH_SKIPPED)
        all_results, outputs, failures = [], [], []
        bar = ProgressBar(done, total=len(files), desc="segmentBatch", unit="image",
                          disable=not files)
        for path, outcome in bar:
            if outcome.error is not None:
                reason = " ".join(str(outcome.error).split())
                failures.append((str(path), reason))
                bar.set_postfix_str(f"{len(failures)} skipped", refresh=False)
                warnings.warn(f"segmentBatch skipped {str(path)!r}: {reason}",
                              SkippedImageWarning, stacklevel=2)
                continue
            all_results.append(outcome.value[0])
            outputs.append(outcome.value[1])
        self.batch_failures = failures
        return all_results, outputs

    # ------------------------------------------------------------------------ video

    def process_video(self, video_path, show_bboxes=False, segment_target_classes=None,
                      extract_segmented_objects=False, extract_from_box=False,
                      save_extracted_objects=False, text_thickness=1, text_size=0.6,
                      box_thickness=2, mask_points_values=False, output_video_name=None,
                      frames_per_second=None, *, extracted_objects_folder=None,
                      ) -> tuple[dict, np.ndarray]:
        """Segment every frame of a video file; return the last frame's ``(results, output)``.

        ``video_path``: a file, or what PixelLib's ``cv2.VideoCapture(video_path)`` also
        took: a stream URL (``rtsp://``, ``http://``...; read with FFmpeg, without its
        audio), a camera index or an opened capture.

        Options are those of :meth:`segmentImage` (in PixelLib's argument order for this
        method). ``output_video_name`` (``.mp4``, ``.avi``, ``.mov``, ``.mkv``...): write
        the annotated video there, at ``frames_per_second`` or, when None, the source's
        frame rate, with a codec the container holds (:data:`pixellib.media.video.VIDEO_CODECS`).
        The file appears only when the video is complete. A progress bar shows the frames.
        On CUDA (or with ``PIXELLIB_OVERLAP=1``) frames are decoded and encoded on background
        threads while the model runs.
        Saved extracts are named ``frame_<f>_segmented_object_<k>.jpg`` (``f`` from 1) so
        that frames do not overwrite each other.

        Raises :class:`~pixellib.errors.InputNotFoundError` for a missing file and
        :class:`~pixellib.errors.ImageReadError` for one that cannot be decoded.
        """
        from .streams import run_video

        extracts = Rollback(keep_earlier=False)  # a video's worth: no copies held
        segment = self._frame_segmenter(
            segment_target_classes, show_bboxes, extract_segmented_objects, extract_from_box,
            save_extracted_objects, mask_points_values, text_thickness, text_size,
            box_thickness, extracted_objects_folder, extracts)
        with all_or_nothing(extracts):  # a failed video leaves no frames' extracts
            return run_video(segment, video_path, output_video_name=output_video_name,
                             frames_per_second=frames_per_second,
                             overlap=overlap_enabled(self._predictor.device))

    def process_camera(self, cam, show_bboxes=False, segment_target_classes=None,
                       extract_segmented_objects=False, extract_from_box=False,
                       save_extracted_objects=False, text_thickness=1, text_size=0.6,
                       box_thickness=2, mask_points_values=False, output_video_name=None,
                       frames_per_second=None, show_frames=None, frame_name=None, verbose=None,
                       check_fps=False, *, extracted_objects_folder=None,
                       ) -> tuple[dict, np.ndarray]:
        """Segment a live capture until it ends; return the last frame's ``(results, output)``.

        ``cam`` is an opened ``cv2.VideoCapture`` (or anything with ``read()`` and
        ``isOpened()``), or a camera index. The loop stops when a read fails (end of
        stream) or, with ``show_frames``, when ``q`` is pressed in the window titled
        ``frame_name`` (default ``"pixellib"``). Windows are only used with ``show_frames``,
        which needs an OpenCV build with GUI support (``opencv-python``, not
        ``-headless``). The capture is released at the end, as PixelLib does.

        ``output_video_name`` writes the annotated frames at ``frames_per_second``, else
        the rate the capture reports, else 30. ``check_fps`` prints the processing rate,
        ``verbose`` the frame count and time. Ctrl-C stops the loop, keeps the video written
        so far, and re-raises ``KeyboardInterrupt``. Other options are those of
        :meth:`segmentImage`; saved extracts are named as in :meth:`process_video`.
        """
        from .streams import run_camera

        extracts = Rollback(keep_earlier=False)  # a video's worth: no copies held
        segment = self._frame_segmenter(
            segment_target_classes, show_bboxes, extract_segmented_objects, extract_from_box,
            save_extracted_objects, mask_points_values, text_thickness, text_size,
            box_thickness, extracted_objects_folder, extracts)
        # Ctrl-C keeps the video so far, and so its extracts; a failure leaves neither
        with all_or_nothing(extracts, keep_on_interrupt=True):
            return run_camera(segment, cam, output_video_name=output_video_name,
                              frames_per_second=frames_per_second, show_frames=show_frames,
                              frame_name=frame_name, verbose=verbose, check_fps=check_fps)

    # ------------------------------------------------------------------------ internals

    def _require_predictor(self):
        predictor = self._predictor
        if predictor is None:
            raise UsageError(
                "no model loaded: call load_model('pointrend_resnet50.pkl') before segmenting"
            )
        return predictor

    def _frame_segmenter(self, targets, show_bboxes, extract, from_box, save, mask_points,
                         text_thickness, text_size, box_thickness, folder, rollback):
        """``segment(frame, index)`` for the video loops, options bound; extracts saved as
        ``frame_<index>_<name>`` so that frames do not overwrite each other, each joining
        ``rollback`` (the whole video's extracts are undone if the video fails)."""
        predictor = self._require_predictor()
        show_bboxes, extract, from_box, save, mask_points = _on_off(
            show_bboxes, extract, from_box, save, mask_points)
        target_ids = fmt.target_class_ids(targets)
        save_folder = paths.extract_folder(save, folder)
        style = fmt.checked_style(show_bboxes, text_size, text_thickness, box_thickness)

        def segment(frame, index):
            # grey, BGRA or 16-bit frames (IR cameras, custom captures) become BGR, as in
            # segmentFrame, before the model and the drawing see them
            frame = read_image(frame)
            return self._segment(
                predictor, frame, target_ids, show_bboxes=show_bboxes, extract=extract,
                from_box=from_box, save_folder=save_folder, mask_points=mask_points,
                output_name=None, style=style,
                extract_prefix=f"frame_{index}_", rollback=rollback,
            )

        return segment

    @staticmethod
    def _segment(predictor, image, target_ids, *, show_bboxes, extract, from_box, save_folder,
                 mask_points, output_name, style, verbose=None, extract_prefix="",
                 rollback=None):
        """Run the model on a BGR image and build PixelLib's ``(results, output)``.

        Only local state: this is what makes shared instances thread-safe.
        """
        if verbose:
            print("Processing image...")
        det = predictor(image, classes=target_ids)  # other classes cost no mask
        return instanceSegmentation._finish(
            image, det, show_bboxes=show_bboxes, extract=extract, from_box=from_box,
            save_folder=save_folder, mask_points=mask_points, output_name=output_name,
            style=style, extract_prefix=extract_prefix, rollback=rollback)

    @staticmethod
    def _finish(image, det, *, show_bboxes, extract, from_box, save_folder, mask_points,
                output_name, style, extract_prefix="", rollback=None):
        """PixelLib's ``(results, output)`` from an image and its detections: draw, extract,
        write (everything after the model). The output picture is written last: when it
        cannot be, the extracts just saved are undone (the files of the same names from
        before put back): a failure leaves what was there. With ``rollback``, the extracts
        join that group instead (a video's, undone as a whole)."""
        text_size, text_thickness, box_thickness = style
        output = fmt.draw(image, det, show_bboxes=show_bboxes, text_size=text_size,
                          text_thickness=text_thickness, box_thickness=box_thickness)
        crops = []
        with joined(rollback) as group:
            if extract:
                crops = fmt.extract(image, det, from_box=bool(from_box))
                if save_folder is not None:
                    fmt.save_extracts(crops, save_folder, from_box=bool(from_box),
                                      prefix=extract_prefix, rollback=group)
            if output_name is not None:
                write_image(output_name, output)
        results = fmt.results_dict(det, mask_points_values=bool(mask_points),
                                   extracted_objects=crops)
        return results, output


def _on_off(show_bboxes, extract, from_box, save, mask_points) -> tuple[bool, ...]:
    """PixelLib's five on/off options checked (:func:`results.flags`), in this order; an
    extract option set without ``extract_segmented_objects`` is said to do nothing."""
    flags = fmt.flags(show_bboxes=show_bboxes, extract_segmented_objects=extract,
                      extract_from_box=from_box, save_extracted_objects=save,
                      mask_points_values=mask_points)
    _say_unused_extract_options(*flags[1:4])
    return flags


def _say_unused_extract_options(extract, from_box, save) -> None:
    """PixelLib ignores ``extract_from_box`` and ``save_extracted_objects`` without
    ``extract_segmented_objects``; so do we, but not without a word."""
    unused = [name for name, on in (("extract_from_box", from_box),
                                    ("save_extracted_objects", save)) if on]
    if unused and not extract:
        logger.warning("%s %s nothing without extract_segmented_objects=True: no objects "
                       "are extracted", " and ".join(f"{name}=True" for name in unused),
                       "does" if len(unused) == 1 else "do")


__all__ = ["SkippedImageWarning", "instanceSegmentation"]
