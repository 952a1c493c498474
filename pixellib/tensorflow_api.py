"""What PixelLib's TensorFlow modules became here.

PixelLib 0.7.1 also shipped TensorFlow APIs: ``pixellib.instance`` (Mask R-CNN,
``instance_segmentation`` and ``custom_segmentation`` with ``.h5`` models),
``pixellib.semantic`` (Deeplabv3+, ``semantic_segmentation``) and ``pixellib.custom_train``
(training). This pixellib is its PyTorch PointRend backend only; importing one of those modules
raises an ``ImportError`` that says what to use instead, where a bare "No module named" would
leave a migrating user guessing.
"""
from __future__ import annotations

_INSTEAD = {
    "pixellib.instance": (
        "PixelLib's TensorFlow Mask R-CNN API (instance_segmentation, custom_segmentation, .h5 "
        "models)",
        "use PixelLib's PyTorch class, which takes the same calls (segmentImage, segmentBatch, "
        "segmentFrame, process_video, process_camera): 'from pixellib.torchbackend.instance "
        "import instanceSegmentation', then load_model('pointrend_resnet50.pkl')",
    ),
    "pixellib.semantic": (
        "PixelLib's TensorFlow semantic segmentation (Deeplabv3+, semantic_segmentation)",
        "for people and objects cut out of a photo or a video use 'from "
        "pixellib.torchbackend.instance import instanceSegmentation'; to change a background, "
        "'from pixellib.tune_bg import alter_bg', which runs on PointRend here",
    ),
    "pixellib.custom_train": (
        "PixelLib's TensorFlow training API (instance_custom_training)",
        "this pixellib runs PixelLib's released PointRend checkpoints (pointrend_resnet50.pkl, "
        "pointrend_resnet101.pkl) and does not train",
    ),
}


def unavailable(module: str) -> ImportError:
    """The ``ImportError`` that ``import <module>`` raises for a PixelLib TensorFlow module."""
    what, instead = _INSTEAD[module]
    return ImportError(f"{module} is {what}, which this PyTorch pixellib does not include: "
                       f"{instead}", name=module)
