"""PixelLib-compatible torch backend: ``pixellib.torchbackend.instance.instanceSegmentation``."""
