"""Image in, detections out: the one entry point every API (PixelLib compat, CLI) calls.

Resizing follows detectron2's ``ResizeShortestEdge`` at test time with Pillow's bilinear
filter on the uint8 BGR image, exactly as PixelLib runs it (docs/design.md, "Resizing"):
Pillow antialiases on downscale and rounds to uint8 between passes, which neither OpenCV nor
torch reproduce.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import torch
from PIL import Image

from .checkpoint.loading import load_model
from .classes import class_ids
from .config import ARCHITECTURES, BACKBONE_ALIASES, inference_config
from .errors import InvalidArgumentError
from .media.images import read_image
from .model.detector import PointRendRCNN, padded_size
from .runtime import heap
from .structures import Detections

PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resized_shape(height: int, width: int, min_size: int, max_size: int) -> tuple[int, int]:
    """(h, w) after scaling the short side to ``min_size`` and capping the long side at
    ``max_size``, rounded half up; computed in float64 like detectron2. Each side is at
    least 1 px: a strip thinner than ``max_size / min_size`` : 1 rounds to 0 there (and
    fails in the resize); here it stays 1 px thick."""
    scale = min_size / min(height, width)
    if height < width:
        h, w = float(min_size), scale * width
    else:
        h, w = scale * height, float(min_size)
    if max(h, w) > max_size:
        s = max_size / max(h, w)
        h, w = h * s, w * s
    return max(int(h + 0.5), 1), max(int(w + 0.5), 1)


def resize_image(image: np.ndarray, min_size: int, max_size: int) -> np.ndarray:
    """Resize (H, W, 3) uint8 with Pillow bilinear; channel order is kept as is."""
    h, w = resized_shape(image.shape[0], image.shape[1], min_size, max_size)
    return np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))


def default_device() -> str:
    """PixelLib's choice when no device is given: CUDA when available, else the CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def checked_device(device: str | torch.device) -> torch.device:
    """``device`` as a ``torch.device`` the model can run on here: ``"cpu"``, ``"cuda"`` /
    ``"cuda:N"`` with CUDA available (and that many GPUs), or ``"mps"`` on Apple silicon;
    anything else raises :class:`InvalidArgumentError` before a model is loaded."""
    try:
        if isinstance(device, bool) or not isinstance(device, (str, torch.device, int)):
            raise TypeError
        device = torch.device(device)
    except (TypeError, RuntimeError, ValueError):
        raise InvalidArgumentError(
            f"unknown device {device!r}: use 'cpu', 'cuda', 'cuda:N' or 'mps'") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidArgumentError(
                f"device {str(device)!r} requested but CUDA is not available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InvalidArgumentError(
                f"device {str(device)!r} requested but there are only "
                f"{torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise InvalidArgumentError("device 'mps' requested but MPS is not available")
    elif device.type != "cpu":
        raise InvalidArgumentError(
            f"device {str(device)!r} is not supported: use 'cpu', 'cuda', 'cuda:N' or 'mps'")
    return device


class Predictor:
    """Segment BGR uint8 images with a PointRend model.

    ``model`` is a checkpoint path or a built :class:`PointRendRCNN`. ``speed`` is PixelLib's
    ``detection_speed`` (None, "fast", "rapid") and ``confidence`` overrides its threshold.

    ``heap_reuse`` (default off; CPU on Linux with glibc only): let large freed tensors reuse
    heap memory instead of fresh pages from the kernel, about 8-12 % faster per image at up to
    ~0.25 GB more peak memory (:mod:`pixellib.runtime.heap`). It changes the process's malloc
    settings, so a library leaves it off unless asked; programs that own their process turn it
    on (the ``pixellib`` command and PixelLib's ``instanceSegmentation`` do).
    ``PIXELLIB_NO_HEAP_REUSE=1`` keeps it off even when asked. :attr:`heap_reuse` says
    whether this predictor turned it on; once on, the process keeps the malloc settings
    after the predictor is gone.

    Thread safety: a call mutates no state (the model runs under ``inference_mode``), so
    one instance can be shared between threads and gives the same results as sequential
    calls. torch already uses every core for one image, so threads add little throughput.
    """

    def __init__(
        self, model: str | os.PathLike | PointRendRCNN, *, speed: str | None = None,
        confidence: float | None = None, device: str | torch.device = "cpu",
        backbone: str | None = None, precision: str = "float32", heap_reuse: bool = False,
    ):
        self.inference = inference_config(speed, confidence)
        device = checked_device(device)
        if precision not in PRECISIONS:
            raise InvalidArgumentError(
                f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}"
            )
        if precision == "float16" and device.type == "cpu":
            warnings.warn(
                "precision='float16' on the CPU: without native float16 arithmetic (most "
                "CPUs) torch emulates it, many times slower than float32; use float32, or "
                "bfloat16 on CPUs with AVX-512 BF16 / AMX", UserWarning, stacklevel=2)
        self.precision = precision
        self.heap_reuse = bool(heap_reuse and device.type == "cpu"
                               and heap.reuse_freed_memory())
        if not isinstance(model, PointRendRCNN):
            model = load_model(model, backbone=backbone, inference=self.inference)
        self.model = model.to(device)

    @property
    def device(self) -> torch.device:
        """Where the model is now (read from it: a model shared by several predictors and
        moved by one of them is where all of them run, and autocast follows it)."""
        return self.model.device

    def _autocast(self):
        """Reduced precision (opt-in, never the default): matmuls and convs in bf16/fp16
        under ``torch.autocast``; results move slightly (see docs/benchmarks.md)."""
        dtype = PRECISIONS[self.precision]
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)

    @property
    def arch(self) -> str:
        return self.model.config.name

    def __call__(self, image: np.ndarray | str | os.PathLike, *, classes=None) -> Detections:
        """Detections for one image, in its own pixel coordinates.

        ``classes`` (COCO class ids or names, e.g. ``[0, 2]``, ``["person", "car"]`` or
        ``"person"``): only detections of these classes. They are chosen before the mask
        head, so the others cost no mask; the result equals
        ``predictor(image).with_classes(classes)``. An unknown name or an id outside 0..79
        raises :class:`~pixellib.errors.InvalidArgumentError`.

        ``image`` is an (H, W, 3) uint8 BGR array, or anything
        :func:`pixellib.media.images.read_image`
        accepts (a path; grey, BGRA, 16-bit or float arrays), converted by its rules; bad
        input raises :class:`~pixellib.errors.ImageReadError` / ``InputNotFoundError``.
        """
        return self.predict_batch([image], classes=classes, batch_size=1)[0]

    def predict_batch(self, images, *, classes=None, batch_size: int | None = None,
                      pad_mixed: bool = False) -> list[Detections]:
        """One :class:`Detections` per image, in order; each equals ``predictor(image)``.

        ``images``: a list (or other iterable) of what :meth:`__call__` accepts; one image
        or path on its own is refused (call the predictor for that). Up to ``batch_size`` images
        go through the backbone + FPN in one forward (default: 8 on CUDA; 1 on the CPU, where
        batches of 2 and 3 measured 4-5 % slower: docs/benchmarks.md), then the heads,
        pasting and conversion run image by image.

        Images are grouped by resized size (rounded up to multiples of 32), so that a
        forward never pads an image beyond what a one-image call does and the results equal
        one-image calls up to float rounding. ``pad_mixed=True`` pads images of different
        sizes into one forward (fewer, fuller forwards for photos of mixed sizes); a small
        image then sees the padding's features near its bottom/right border, which can move
        its results slightly (:meth:`PointRendRCNN.forward_batch`).

        An unreadable image raises its :func:`read_image` error, naming it, before any
        forward runs.
        """
        if batch_size is None:
            batch_size = 8 if self.device.type == "cuda" else 1
        if (isinstance(batch_size, (bool, np.bool_))
                or not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
            raise InvalidArgumentError(f"batch_size must be a whole number >= 1, "
                                       f"got {batch_size!r}")
        batch_size = int(batch_size)
        if isinstance(images, np.ndarray) and images.ndim == 4:
            raise InvalidArgumentError(
                f"predict_batch takes a list of images, got one array of shape {images.shape}; "
                "pass list(array) for a stack of images")
        if isinstance(images, (np.ndarray, str, bytes, os.PathLike, torch.Tensor)):
            raise InvalidArgumentError(
                f"predict_batch takes a list of images or paths, got one "
                f"{type(images).__name__}; call the predictor itself for a single image, or "
                "pass [image]")
        keep = None if classes is None else torch.as_tensor(
            np.asarray(class_ids(classes), dtype=np.int64))
        prepared = [self._prepare(image) for image in images]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, (tensor, _) in enumerate(prepared):
            key = (0, 0) if pad_mixed else padded_size(tuple(tensor.shape[-2:]))
            groups.setdefault(key, []).append(i)
        results: list[Detections | None] = [None] * len(prepared)
        for members in groups.values():
            for start in range(0, len(members), batch_size):
                chunk = members[start:start + batch_size]
                for i, det in zip(chunk, self._forward([prepared[i] for i in chunk], keep)):
                    results[i] = det
                for i in chunk:
                    prepared[i] = None  # free each input once its detections exist
                if self.heap_reuse:
                    heap.release_surplus()
        return results

    def _prepare(self, image) -> tuple[torch.Tensor, tuple[int, int]]:
        """Read, resize (Pillow) and turn into a (3, h, w) float tensor on the host."""
        image = read_image(image)
        resized = resize_image(image, self.inference.min_size, self.inference.max_size)
        return (torch.from_numpy(resized.transpose(2, 0, 1).astype(np.float32)),
                image.shape[:2])

    def _forward(self, prepared, keep) -> list[Detections]:
        tensors = [t for t, _ in prepared]
        sizes = [size for _, size in prepared]
        with torch.inference_mode(), self._autocast():
            raw = self.model.forward_batch(
                tensors, sizes, score_thresh=self.inference.score_thresh,
                mask_threshold=self.inference.mask_threshold, keep_classes=keep)
        out = [Detections(
            boxes=r.boxes.float().cpu().numpy(),
            scores=r.scores.float().cpu().numpy(),
            class_ids=r.classes.cpu().numpy().astype(np.int64, copy=False),
            masks=r.masks.cpu().numpy(),
            image_size=size,
        ) for r, size in zip(raw, sizes)]
        return out

    predict = __call__


__all__ = ["ARCHITECTURES", "BACKBONE_ALIASES", "Predictor", "load_model", "resize_image",
           "resized_shape"]
