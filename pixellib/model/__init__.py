"""PointRend R-CNN inference modules (see :mod:`pixellib.model.detector`)."""
