"""The 80 COCO class names in model output order (index = class id), PixelLib's spelling."""
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


def class_id(name: str) -> int:
    """Index of a class given as ``"traffic light"`` or ``"traffic_light"``."""
    key = name.strip().replace("_", " ").lower()
    try:
        return COCO_CLASSES.index(key)
    except ValueError:
        valid = ", ".join(n.replace(" ", "_") for n in COCO_CLASSES)
        raise InvalidArgumentError(f"unknown class name {name!r}; valid names: {valid}") from None
