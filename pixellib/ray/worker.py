"""The callable class Ray Data runs in each actor: a batch of images in, a batch of rows out.

::

    ds = ray.data.read_binary_files(paths, include_paths=True)
    rows = ds.map_batches(SegmentBatch, fn_constructor_kwargs={"model": "resnet50"},
                          compute=ray.data.ActorPoolStrategy(size=4), num_cpus=2,
                          batch_size=8, batch_format="numpy")

The model is loaded once per actor, in the constructor, from a checkpoint path or a released
model name (only the name travels to the workers, never a pickled model). The class is plain
Python: outside Ray (a Spark ``mapInPandas``, a test) it works on any ``{"bytes" | "image",
"path"}`` dict of arrays and leaves the process's thread count alone.
"""
from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from pixellib.classes import class_ids
from pixellib.errors import InvalidArgumentError
from pixellib.media.images import IMAGE_EXTENSIONS, decode_image, read_image, write_image

from .rows import detections_row, error_row, rows_table

logger = logging.getLogger(__name__)


def annotated_name(path: str) -> str:
    """File name of an image's annotated copy: ``<stem>-<10 hex of sha1(path)><ext>``.

    It depends on the input path only, so a retried batch rewrites the same files, and two
    inputs of the same name in different folders never collide.
    """
    digest = hashlib.sha1(path.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    p = Path(path)
    ext = p.suffix.lower() if p.suffix.lower() in IMAGE_EXTENSIONS else ".png"
    return f"{p.stem}-{digest}{ext}"


def _assigned_resources() -> tuple[float, float]:
    """(CPUs, GPUs) Ray reserved for this actor; (0, 0) outside a Ray worker."""
    import ray

    if not ray.is_initialized():
        return 0.0, 0.0
    try:
        assigned = ray.get_runtime_context().get_assigned_resources()
    except AssertionError:  # the driver, not a worker
        return 0.0, 0.0
    return float(assigned.get("CPU", 0.0)), float(assigned.get("GPU", 0.0))


def _to_bgr(pixels: np.ndarray) -> np.ndarray:
    """A ``read_images`` array (RGB, RGBA, grey or grey + alpha, as Pillow decoded it) in
    our BGR."""
    pixels = np.asarray(pixels)
    if pixels.ndim == 3 and pixels.shape[2] == 2:  # grey + alpha ("LA"): the grey is the image
        pixels = pixels[:, :, 0]
    elif pixels.ndim == 3 and pixels.shape[2] == 3:
        pixels = pixels[:, :, ::-1]
    elif pixels.ndim == 3 and pixels.shape[2] == 4:
        pixels = pixels[:, :, [2, 1, 0, 3]]
    return read_image(np.ascontiguousarray(pixels))


class SegmentBatch:
    """Segment a Ray Data batch; one output row per input row (:mod:`pixellib.ray.rows`).

    Input columns: ``path`` and either ``bytes`` (``read_binary_files(...,
    include_paths=True)``: decoded by :func:`pixellib.media.images.decode_image`, so the
    results equal the CLI's) or ``image`` (``read_images(..., include_paths=True)``: arrays
    as Pillow decoded them, taken as RGB; read them with ``mode="RGB"``, as a palette image
    otherwise arrives as its palette indices). An image that cannot be decoded or segmented
    becomes an error row; the batch goes on.

    In a Ray actor, torch uses as many threads as the actor has CPUs, and the GPU when the
    actor was given one (``device`` overrides). ``classes`` keeps only those class ids;
    ``polygons`` adds outlines; ``annotate_dir`` also writes each annotated image there
    (atomically, named by :func:`annotated_name`: shared storage for a multi-node cluster).
    """

    def __init__(
        self, model: str | os.PathLike, *, speed: str | None = None,
        confidence: float | None = None, classes: Sequence[int | str] | None = None,
        polygons: bool = False, annotate_dir: str | os.PathLike | None = None,
        device: str | None = None,
    ):
        import torch

        from pixellib.checkpoint.hub import resolve_model
        from pixellib.predictor import Predictor

        self.classes = None if classes is None else class_ids(classes)  # ids or names
        cpus, gpus = _assigned_resources()
        if cpus > 0:  # this process is the actor's: its thread count is ours to set
            torch.set_num_threads(max(1, round(cpus)))
        if device is None:
            device = "cuda" if gpus > 0 and torch.cuda.is_available() else "cpu"
        # The actor owns its process, so it keeps freed memory for reuse between images.
        self.predictor = Predictor(resolve_model(str(model)), speed=speed,
                                   confidence=confidence, device=device, heap_reuse=True)
        self.polygons = bool(polygons)
        self.annotate_dir = None if annotate_dir is None else Path(annotate_dir)

    def __call__(self, batch: Mapping[str, np.ndarray]) -> pa.Table:
        if "path" not in batch:
            raise InvalidArgumentError("batch has no 'path' column: read with include_paths=True "
                             "(the path is each row's id)")
        paths = [str(p) for p in batch["path"]]
        if "bytes" in batch:
            items, decode = batch["bytes"], decode_image
        elif "image" in batch:
            items, decode = batch["image"], lambda pixels, _name: _to_bgr(pixels)
        else:
            raise InvalidArgumentError(
                f"batch has neither 'bytes' nor 'image': columns {sorted(batch)}")
        rows = []
        for path, item in zip(paths, items, strict=True):
            self.before_image(path)
            try:
                image = decode(item, path)
                rows.append(self._segment(path, image))
            except Exception as e:  # noqa: BLE001 - a bad image is a row, never a failed job
                # the driver says it, once, from the error row (a worker's line would
                # reach the terminal too, prefixed by Ray)
                logger.debug("skipped %s: %s", path, e)
                rows.append(error_row(path, f"{type(e).__name__}: {e}"))
        return rows_table(rows)

    def before_image(self, path: str) -> None:
        """Called before each image; does nothing (a hook for subclasses, e.g. tests)."""

    def _segment(self, path: str, image: np.ndarray) -> dict:
        det = self.predictor(image)
        if self.classes is not None:
            det = det.with_classes(self.classes)
        if self.annotate_dir is not None:
            from pixellib.visualize import draw_detections, label_text

            percent = (det.scores * np.float32(100)).astype(np.int64)
            labels = [label_text(n, int(p)) for n, p in zip(det.class_names, percent)]
            drawn = draw_detections(image, det.boxes.astype(np.int64), det.masks, labels)
            write_image(self.annotate_dir / annotated_name(path), drawn)
        return detections_row(path, det, polygons=self.polygons)
