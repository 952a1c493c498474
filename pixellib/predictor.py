"""Image in, detections out: the one entry point every API (PixelLib compat, CLI) calls.

Resizing follows detectron2's ``ResizeShortestEdge`` at test time with Pillow's bilinear
filter on the uint8 BGR image, exactly as PixelLib runs it (spec §2): Pillow antialiases on
downscale and rounds to uint8 between passes, which neither OpenCV nor torch reproduce.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .config import ARCHITECTURES, InferenceConfig, inference_config
from .errors import InvalidArgumentError
from .media.images import read_image
from .model.detector import PointRendRCNN, build_model
from .model.layers import fold_frozen_norms
from .runtime import heap
from .structures import Detections

logger = logging.getLogger(__name__)

BACKBONE_ALIASES = {
    # PixelLib's names: any non-"resnet50" value builds ResNeXt-101-32x8d there.
    "resnet50": "resnet50",
    "resnet101": "resnext101_32x8d",
    "resnext101": "resnext101_32x8d",
    "resnext101_32x8d": "resnext101_32x8d",
}


PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resized_shape(height: int, width: int, min_size: int, max_size: int) -> tuple[int, int]:
    """(h, w) after scaling the short side to ``min_size`` and capping the long side at
    ``max_size``, rounded half up; computed in float64 like detectron2."""
    scale = min_size / min(height, width)
    if height < width:
        h, w = float(min_size), scale * width
    else:
        h, w = scale * height, float(min_size)
    if max(h, w) > max_size:
        s = max_size / max(h, w)
        h, w = h * s, w * s
    return int(h + 0.5), int(w + 0.5)


def resize_image(image: np.ndarray, min_size: int, max_size: int) -> np.ndarray:
    """Resize (H, W, 3) uint8 with Pillow bilinear; channel order is kept as is."""
    h, w = resized_shape(image.shape[0], image.shape[1], min_size, max_size)
    return np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))


def load_model(
    source: str | os.PathLike | dict, *, backbone: str | None = None,
    inference: InferenceConfig | None = None, fold_norms: bool = True,
) -> PointRendRCNN:
    """Build the model a checkpoint file (or a loaded state dict) describes and load it.

    The architecture comes from the tensors; when ``backbone`` (a PixelLib name) disagrees,
    the file wins and a warning says so.
    """
    from .checkpoint import state_dict as weights

    wanted = BACKBONE_ALIASES.get(backbone)
    if backbone is not None and wanted is None:
        raise InvalidArgumentError(
            f"unknown network_backbone {backbone!r}: expected 'resnet50' or 'resnet101'"
        )
    if isinstance(source, dict):
        path = None
        raw = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
               for k, v in source.items()}
    else:
        path = Path(source)
        raw = weights.read_checkpoint(path)
    state_dict, report = weights.convert_state_dict(raw)
    arch = weights.detect_architecture(state_dict)
    if backbone is not None:
        if wanted != arch:
            logger.warning(
                "network_backbone=%r but %s holds a %s model; using %s",
                backbone, path or "the checkpoint", arch, arch,
            )
    model = build_model(arch, inference)
    weights.load_into(model, state_dict, path=path)
    model.load_report = report
    if fold_norms:
        fold_frozen_norms(model)
    return model.to(memory_format=torch.channels_last)


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
    whether it is on.

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
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise InvalidArgumentError(f"device {device!r} requested but CUDA is not available")
        if precision not in PRECISIONS:
            raise InvalidArgumentError(
                f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}"
            )
        self.precision = precision
        self.heap_reuse = bool(heap_reuse and self.device.type == "cpu"
                               and heap.reuse_freed_memory())
        if not isinstance(model, PointRendRCNN):
            model = load_model(model, backbone=backbone, inference=self.inference)
        self.model = model.to(self.device)

    def _autocast(self):
        """Reduced precision (opt-in, never the default): matmuls and convs in bf16/fp16
        under ``torch.autocast``; results move slightly (see docs/benchmarks.md)."""
        dtype = PRECISIONS[self.precision]
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)

    @property
    def arch(self) -> str:
        return self.model.config.name

    def __call__(self, image: np.ndarray | str | os.PathLike) -> Detections:
        """Detections for one image, in its own pixel coordinates.

        ``image`` is an (H, W, 3) uint8 BGR array, or anything
        :func:`pixellib.media.images.read_image`
        accepts (a path; grey, BGRA, 16-bit or float arrays), converted by its rules; bad
        input raises :class:`~pixellib.errors.ImageReadError` / ``InputNotFoundError``.
        """
        image = read_image(image)
        h0, w0 = image.shape[:2]
        resized = resize_image(image, self.inference.min_size, self.inference.max_size)
        tensor = torch.from_numpy(resized.transpose(2, 0, 1).astype(np.float32))
        with torch.inference_mode(), self._autocast():
            out = self.model(tensor, (h0, w0), score_thresh=self.inference.score_thresh)
        detections = Detections(
            boxes=out.boxes.float().cpu().numpy(),
            scores=out.scores.float().cpu().numpy(),
            class_ids=out.classes.cpu().numpy().astype(np.int64, copy=False),
            masks=out.masks.cpu().numpy(),
            image_size=(h0, w0),
        )
        del out, tensor, resized
        if self.heap_reuse:
            heap.release_surplus()
        return detections

    predict = __call__


__all__ = ["ARCHITECTURES", "Predictor", "load_model", "resize_image", "resized_shape"]
