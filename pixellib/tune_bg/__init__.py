"""PixelLib's background tuning API (``from pixellib.tune_bg import alter_bg``) on PointRend."""
from .alter import VOC_TO_COCO, alter_bg, detect_class_ids

__all__ = ["VOC_TO_COCO", "alter_bg", "detect_class_ids"]
