"""Model and inference settings as frozen dataclasses, with the presets PixelLib 0.7.1 uses.

The values mirror detectron2's PointRend configs as merged by PixelLib (docs/design.md,
"Settings"). :data:`ARCHITECTURES` is the one table of model names: the architecture the
checkpoint tensors select, the ``network_backbone`` names that ask for it, and the released
file it ships as; the other name maps here are views of it. The speed table is what PixelLib's
``load_model(detection_speed=...)`` really applies: because of a typo in PixelLib, fast and
rapid only cap the long side and keep the 800 px short side (docs/design.md, "Speed modes").
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .errors import InvalidArgumentError

# How yes and no are written in environment switches and request options (lower case).
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def env_switch(name: str) -> bool:
    """Whether the environment switch ``name`` is set: any value but empty or one of
    :data:`FALSE_WORDS` (any case)."""
    return os.environ.get(name, "").strip().lower() not in ("", *FALSE_WORDS)


# Where PixelLib's released checkpoints are downloaded from.
RELEASE_URL = "https://github.com/ayoolaolafenwa/PixelLib/releases/download/0.2.0"

# ImageNet BGR statistics used by detectron2 for every backbone here.
PIXEL_MEAN_BGR = (103.530, 116.280, 123.675)
# MSRA (caffe) weights expect raw 0..255 minus the mean; FAIR/torchvision weights also divide.
PIXEL_STD_MSRA = (1.0, 1.0, 1.0)
PIXEL_STD_TORCH = (57.375, 57.120, 58.395)


@dataclass(frozen=True)
class ModelConfig:
    """What defines an architecture. Only the builder reads this; modules take plain kwargs."""

    name: str
    depth: int  # 50 or 101: blocks per stage (3,4,6,3) or (3,4,23,3)
    num_groups: int  # ResNeXt cardinality; 1 for ResNet
    width_per_group: int  # bottleneck width at res2 is num_groups * width_per_group
    stride_in_1x1: bool  # MSRA weights stride in conv1, FAIR weights in the 3x3 conv2
    pixel_mean: tuple[float, float, float] = PIXEL_MEAN_BGR
    pixel_std: tuple[float, float, float] = PIXEL_STD_MSRA
    num_classes: int = 80
    # PixelLib's name for the released file of this architecture ("resnet50", "resnet101"):
    # the download name and the file pointrend_<name>.pkl; None when none was released.
    released_as: str | None = None
    # network_backbone values that ask for this architecture.
    backbone_names: tuple[str, ...] = ()

    @property
    def url(self) -> str | None:
        """Download address of the released file, or None."""
        return None if self.released_as is None else (
            f"{RELEASE_URL}/pointrend_{self.released_as}.pkl")

    @property
    def blocks_per_stage(self) -> tuple[int, int, int, int]:
        return {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}[self.depth]


ARCHITECTURES: dict[str, ModelConfig] = {
    "resnet50": ModelConfig("resnet50", 50, 1, 64, True, released_as="resnet50",
                            backbone_names=("resnet50",)),
    "resnet101": ModelConfig("resnet101", 101, 1, 64, True),
    # PixelLib's "resnet101" file: detectron2's pointrend_rcnn_X_101_32x8d_FPN_3x_coco. Any
    # network_backbone other than "resnet50" builds this model in PixelLib.
    "resnext101_32x8d": ModelConfig(
        "resnext101_32x8d", 101, 32, 8, False, pixel_std=PIXEL_STD_TORCH,
        released_as="resnet101",
        backbone_names=("resnet101", "resnext101", "resnext101_32x8d"),
    ),
}

# Views of ARCHITECTURES: released name -> download URL / architecture, and
# network_backbone value -> architecture.
MODEL_URLS: dict[str, str] = {
    c.released_as: c.url for c in ARCHITECTURES.values() if c.released_as is not None
}
MODEL_ARCHS: dict[str, str] = {
    c.released_as: c.name for c in ARCHITECTURES.values() if c.released_as is not None
}
BACKBONE_ALIASES: dict[str, str] = {
    alias: c.name for c in ARCHITECTURES.values() for alias in c.backbone_names
}


@dataclass(frozen=True)
class InferenceConfig:
    """Test-time settings. Defaults are detectron2's, as PixelLib runs them.

    The owner of these values is the :class:`~pixellib.predictor.Predictor` (its
    ``inference``): the search settings (RPN top-k, NMS thresholds, detections per image)
    configure the model when it is built, and the post-processing settings (``score_thresh``,
    ``mask_threshold``) and the resize are passed to each call. The model keeps no copy.
    """

    score_thresh: float = 0.5  # a detection is kept when its softmax score is strictly above
    min_size: int = 800  # shortest edge after resizing
    max_size: int = 1333  # cap on the longest edge after resizing
    rpn_pre_nms_topk: int = 1000  # per FPN level
    rpn_post_nms_topk: int = 1000  # per image
    rpn_nms_thresh: float = 0.7
    box_nms_thresh: float = 0.5
    detections_per_image: int = 100
    mask_threshold: float = 0.5  # pasted probability >= this is foreground


# detection_speed -> (default score threshold, effective long-side cap).
SPEED_PRESETS: dict[str, tuple[float, int]] = {
    "default": (0.5, 1333),
    "fast": (0.3, 667),
    "rapid": (0.2, 333),
}


def inference_config(speed: str | None = None, confidence: float | None = None) -> InferenceConfig:
    """Settings for a PixelLib speed mode; ``confidence`` overrides the mode's threshold."""
    key = "default" if speed is None else speed
    if key not in SPEED_PRESETS:
        raise InvalidArgumentError(
            f"unknown detection_speed {speed!r}: expected one of None (or 'default'), 'fast', "
            "'rapid'"
        )
    thresh, max_size = SPEED_PRESETS[key]
    if confidence is not None:
        try:
            if isinstance(confidence, (str, bytes, bool, np.bool_)):
                raise TypeError
            confidence = float(confidence)
        except (TypeError, ValueError):
            raise InvalidArgumentError(
                f"confidence must be a number between 0 and 1, got {confidence!r}") from None
        if not 0.0 <= confidence <= 1.0:
            raise InvalidArgumentError(f"confidence must be between 0 and 1, got {confidence}")
        thresh = confidence
    return InferenceConfig(score_thresh=thresh, max_size=max_size)
