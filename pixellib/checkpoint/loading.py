"""Loading a model: a checkpoint file (or a state dict already read) in, a ready
:class:`~pixellib.model.detector.PointRendRCNN` out.

Reading the file safely is :mod:`.files`; key names, architecture detection and shape checks
are :mod:`.state_dict`. This module chains them: read, convert the names, detect the
architecture from the tensors, build that model, load the weights, fold the frozen batch norms
into the convolutions, and switch to channels-last memory.
"""
from __future__ import annotations

import logging
import os

import numpy as np
import torch

from ..config import BACKBONE_ALIASES, InferenceConfig
from ..errors import InvalidArgumentError
from ..model.detector import PointRendRCNN, build_model
from ..model.layers import fold_frozen_norms
from . import state_dict as weights
from .hub import resolve_model

logger = logging.getLogger(__name__)

# How the warnings name the architectures ("resnet101" is PixelLib's name for ResNeXt).
_ARCH_NAMES = {"resnet50": "ResNet-50", "resnet101": "plain ResNet-101",
               "resnext101_32x8d": "ResNeXt-101 32x8d"}


def load_model(
    source: str | os.PathLike | dict, *, backbone: str | None = None,
    inference: InferenceConfig | None = None, fold_norms: bool = True,
) -> PointRendRCNN:
    """Build the model a checkpoint file (or a loaded state dict) describes and load it.

    ``source`` is a path (``~`` expanded), or ``"resnet50"`` / ``"resnet101"`` for the
    released files in the cache (:func:`pixellib.checkpoint.hub.resolve_model`; nothing is
    downloaded here).

    The architecture comes from the tensors; when ``backbone`` (a PixelLib
    ``network_backbone`` name) disagrees, the file wins and a warning says so. An unknown
    ``backbone`` raises :class:`~pixellib.errors.InvalidArgumentError` before anything is
    read. ``inference`` sets the model's search settings (RPN top-k, NMS thresholds,
    detections per image); the default is PixelLib's.

    ``source`` may also be what a loaded model saves: ``torch.save(model.state_dict(), f)``
    holds the weights with the batch norms already folded into the convolutions (no
    ``*.norm.*`` keys, a bias per convolution), and loads back as it was. A dict of the
    ``{"model": state_dict, ...}`` layout of the files is unwrapped as they are.
    """
    wanted = BACKBONE_ALIASES.get(backbone)
    if backbone is not None and wanted is None:
        raise InvalidArgumentError(
            f"unknown network_backbone {backbone!r}: expected 'resnet50' or 'resnet101'"
        )
    if isinstance(source, dict):
        path = None
        if isinstance(source.get("model"), dict):  # the files' {"model": ..., ...} layout
            source = source["model"]
        raw = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
               for k, v in source.items()}
    elif isinstance(source, (str, os.PathLike)):
        path = resolve_model(source, download=False)
        raw = weights.read_checkpoint(path)
    else:
        raise TypeError(f"the model must be a checkpoint path, 'resnet50' / 'resnet101' or a "
                        f"state dict, got {type(source).__name__}")
    with weights.about_file(path or "checkpoint"):
        state_dict, _ = weights.convert_state_dict(raw)
        arch = weights.detect_architecture(state_dict)
    if backbone is not None and wanted != arch:
        logger.warning(
            "network_backbone=%r (%s) but %s holds a %s model; using the %s",
            backbone, _ARCH_NAMES[wanted], path or "the checkpoint", _ARCH_NAMES[arch],
            _ARCH_NAMES[arch],
        )
    model = build_model(arch, inference)
    folded = weights.is_folded(state_dict)
    if folded:  # saved from a loaded model: the model takes the folded weights as they are
        fold_frozen_norms(model)
    weights.load_into(model, state_dict, path=path)
    if fold_norms and not folded:
        fold_frozen_norms(model)
    return model.to(memory_format=torch.channels_last)


__all__ = ["load_model"]
