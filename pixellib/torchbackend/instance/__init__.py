"""PixelLib 0.7.1's ``pixellib.torchbackend.instance``: ``instanceSegmentation`` on this
project's engine (:mod:`.segmentation`), with PixelLib's results dict (:mod:`.results`)."""
from .segmentation import SkippedImageWarning, instanceSegmentation

__all__ = ["SkippedImageWarning", "instanceSegmentation"]
