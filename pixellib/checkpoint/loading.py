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
from pathlib import Path

import numpy as np
import torch

from ..config import BACKBONE_ALIASES, InferenceConfig
from ..errors import InvalidArgumentError
from ..model.detector import PointRendRCNN, build_model
from ..model.layers import fold_frozen_norms
from . import state_dict as weights

logger = logging.getLogger(__name__)

# The stem convolution has a bias only once its batch norm is folded in (the checkpoints
# hold "...conv1.norm.*" and no bias): that marks a state dict saved from a loaded model.
_STEM_CONV = "backbone.bottom_up.stem.conv1"


def load_model(
    source: str | os.PathLike | dict, *, backbone: str | None = None,
    inference: InferenceConfig | None = None, fold_norms: bool = True,
) -> PointRendRCNN:
    """Build the model a checkpoint file (or a loaded state dict) describes and load it.

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
    else:
        path = Path(source)
        raw = weights.read_checkpoint(path)
    state_dict, _ = weights.convert_state_dict(raw)
    arch = weights.detect_architecture(state_dict)
    if backbone is not None and wanted != arch:
        logger.warning(
            "network_backbone=%r but %s holds a %s model; using %s",
            backbone, path or "the checkpoint", arch, arch,
        )
    model = build_model(arch, inference)
    folded = f"{_STEM_CONV}.bias" in state_dict and f"{_STEM_CONV}.norm.weight" not in state_dict
    if folded:  # saved from a loaded model: the model takes the folded weights as they are
        fold_frozen_norms(model)
    weights.load_into(model, state_dict, path=path)
    if fold_norms and not folded:
        fold_frozen_norms(model)
    return model.to(memory_format=torch.channels_last)


__all__ = ["load_model"]
