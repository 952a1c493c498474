"""The 80 COCO class names in model output order (index = class id), PixelLib's spelling."""
from collections.abc import Iterable

import numpy as np

from .errors import InvalidArgumentError

COCO_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat",
    "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack",
    "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball",
    "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket",
    "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair",
    "couch", "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse",
    "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair dryer",
    "toothbrush",
)
#: The same names as COCO's annotation files spell them: one differs, "hair drier". Both
#: spellings are accepted wherever a class is named.
COCO_FILE_NAMES: tuple[str, ...] = tuple(
    "hair drier" if n == "hair dryer" else n for n in COCO_CLASSES)


def class_id(name: str) -> int:
    """Index of a class given as ``"traffic light"`` or ``"traffic_light"``."""
    key = name.strip().replace("_", " ").lower()
    try:
        return (COCO_CLASSES.index(key) if key in COCO_CLASSES
                else COCO_FILE_NAMES.index(key))  # "hair drier" too
    except ValueError:
        valid = ", ".join(n.replace(" ", "_") for n in COCO_CLASSES)
        raise InvalidArgumentError(f"unknown class name {name!r}; valid names: {valid}") from None


def class_ids(classes) -> list[int]:
    """COCO class ids from ids and/or names: one id or name (``0``, ``"person"``,
    ``"traffic_light"``) or an iterable of them. An id outside 0..79, an unknown name or
    anything else raises :class:`InvalidArgumentError` naming it."""
    if isinstance(classes, (str, bytes, int, np.integer)):
        classes = [classes]
    if not isinstance(classes, Iterable) or isinstance(classes, dict):
        raise InvalidArgumentError(
            f"classes must be COCO class ids or names, got {type(classes).__name__}")
    ids = []
    for item in classes:
        if isinstance(item, (int, np.integer)) and not isinstance(item, (bool, np.bool_)):
            if not 0 <= int(item) < len(COCO_CLASSES):
                raise InvalidArgumentError(
                    f"class id must be in 0..{len(COCO_CLASSES) - 1}, got {item}")
            ids.append(int(item))
        elif isinstance(item, str):
            ids.append(class_id(item))
        else:
            raise InvalidArgumentError(
                f"classes must be COCO class ids (whole numbers) or names, got {item!r}")
    return ids
