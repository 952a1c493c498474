"""Model and inference settings as frozen dataclasses, with the presets PixelLib 0.7.1 uses.

The values mirror detectron2's PointRend configs as merged by PixelLib (spec §1): the
architecture table is what the checkpoint tensors select (spec §10.6), the speed table is what
``load_model(detection_speed=...)`` really applies (spec §1.3/§1.4: the min-size typo means
fast/rapid only cap the long side).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from .errors import InvalidArgumentError

# PixelLib's released checkpoints (the founding document's download links).
RELEASE_URL = "https://github.com/ayoolaolafenwa/PixelLib/releases/download/0.2.0"
MODEL_URLS: dict[str, str] = {
    "resnet50": f"{RELEASE_URL}/pointrend_resnet50.pkl",
    "resnet101": f"{RELEASE_URL}/pointrend_resnet101.pkl",
}

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

    @property
    def blocks_per_stage(self) -> tuple[int, int, int, int]:
        return {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}[self.depth]


ARCHITECTURES: dict[str, ModelConfig] = {
    "resnet50": ModelConfig("resnet50", 50, 1, 64, True),
    "resnet101": ModelConfig("resnet101", 101, 1, 64, True),
    # PixelLib's "resnet101" file: detectron2's pointrend_rcnn_X_101_32x8d_FPN_3x_coco.
    "resnext101_32x8d": ModelConfig(
        "resnext101_32x8d", 101, 32, 8, False, pixel_std=PIXEL_STD_TORCH
    ),
}


@dataclass(frozen=True)
class InferenceConfig:
    """Test-time settings. Defaults are detectron2's, as PixelLib runs them."""

    score_thresh: float = 0.5  # a detection is kept when its softmax score is strictly above
    min_size: int = 800  # shortest edge after resizing
    max_size: int = 1333  # cap on the longest edge after resizing
    rpn_pre_nms_topk: int = 1000  # per FPN level
    rpn_post_nms_topk: int = 1000  # per image
    rpn_nms_thresh: float = 0.7
    box_nms_thresh: float = 0.5
    detections_per_image: int = 100
    mask_threshold: float = 0.5  # pasted probability >= this is foreground

    def with_(self, **changes) -> InferenceConfig:
        return replace(self, **changes)


# detection_speed -> (default score threshold, effective long-side cap); spec §1.3.
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
            f"unknown detection_speed {speed!r}: expected one of None, 'fast', 'rapid'"
        )
    thresh, max_size = SPEED_PRESETS[key]
    if confidence is not None:
        confidence = float(confidence)
        if not 0.0 <= confidence <= 1.0:
            raise InvalidArgumentError(f"confidence must be between 0 and 1, got {confidence}")
        thresh = confidence
    return InferenceConfig(score_thresh=thresh, max_size=max_size)
