"""PointRend instance segmentation in pure PyTorch, a drop-in for PixelLib 0.7.1's torch backend.

``import pixellib`` is light: it imports neither torch nor OpenCV. The main names are loaded on
first use:

* ``pixellib.Predictor`` (:mod:`pixellib.predictor`): BGR image in, :class:`Detections` out.
* ``pixellib.load_model``: build a PointRend model from a checkpoint file.
* ``pixellib.Detections`` (:mod:`pixellib.structures`): the numpy results object.
* ``pixellib.instanceSegmentation``: PixelLib's class, also importable the PixelLib way,
  ``from pixellib.torchbackend.instance import instanceSegmentation``.
"""
from __future__ import annotations

import importlib

__version__ = "0.8.0"

# public name -> (module, attribute), imported on first access (PEP 562)
_LAZY = {
    "Predictor": ("pixellib.predictor", "Predictor"),
    "load_model": ("pixellib.checkpoint.loading", "load_model"),
    "Detections": ("pixellib.structures", "Detections"),
    "instanceSegmentation": ("pixellib.torchbackend.instance", "instanceSegmentation"),
    "PixellibError": ("pixellib.errors", "PixellibError"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'pixellib' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
